"""ContextWindowsManual / WanContextWindowsManual (ComfyUI's nodes_context_windows): sample a
long axis in overlapping windows (see :mod:`comfyui.sampling.context_windows`)."""
from __future__ import annotations

from ._image_utils import MAX_RESOLUTION
from ._lazy import lazy

cw = lazy("comfyui.sampling.context_windows")

SCHEDULES = ["standard_static", "standard_uniform", "looped_uniform", "batched"]
FUSE_METHODS = ["pyramid", "relative", "flat", "overlap-linear"]


def _inputs(length: dict, overlap_default: int, with_dim: bool) -> dict:
    required = {
        "model": ("MODEL", {"tooltip": "The model to apply context windows to during sampling."}),
        "context_length": ("INT", {**length, "tooltip": "The length of the context window."}),
        "context_overlap": ("INT", {"default": overlap_default, "min": 0,
                                    "tooltip": "The overlap of the context window."}),
        "context_schedule": (SCHEDULES, {"tooltip": "The stride of the context window."}),
        "context_stride": ("INT", {"default": 1, "min": 1, "tooltip": (
            "The stride of the context window; only applicable to uniform schedules.")}),
        "closed_loop": ("BOOLEAN", {"default": False, "tooltip": (
            "Whether to close the context window loop; only applicable to looped schedules.")}),
        "fuse_method": (FUSE_METHODS, {"default": "pyramid",
                                       "tooltip": "The method to use to fuse the context windows."}),
    }
    if with_dim:
        required["dim"] = ("INT", {"default": 0, "min": 0, "max": 5,
                                   "tooltip": "The dimension to apply the context windows to."})
    return {"required": required}


class ContextWindowsManual:
    DESCRIPTION = "Manually set context windows."
    EXPERIMENTAL = True
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with context windows applied during sampling.",)
    FUNCTION = "apply"
    CATEGORY = "context"

    @classmethod
    def INPUT_TYPES(cls):
        return _inputs({"default": 16, "min": 1}, 4, with_dim=True)

    def apply(self, model, context_length, context_overlap, context_schedule, context_stride, closed_loop,
              fuse_method, dim=0):
        handler = cw.ContextHandler(context_schedule, fuse_method, context_length, context_overlap, context_stride,
                                    closed_loop, dim)
        m = model.clone()
        m.model_options["context_handler"] = handler
        return (m,)


class WanContextWindowsManual(ContextWindowsManual):
    DESCRIPTION = "Manually set context windows for WAN-like models (dim=2)."

    @classmethod
    def INPUT_TYPES(cls):
        return _inputs({"default": 81, "min": 1, "max": MAX_RESOLUTION, "step": 4}, 30, with_dim=False)

    def apply(self, model, context_length, context_overlap, context_schedule, context_stride, closed_loop,
              fuse_method, dim=2):
        # lengths in frames -> latent frames (4 frames each after the first)
        return super().apply(model, max((context_length - 1) // 4 + 1, 1), max((context_overlap - 1) // 4 + 1, 0),
                             context_schedule, context_stride, closed_loop, fuse_method, 2)


NODE_CLASS_MAPPINGS = {"ContextWindowsManual": ContextWindowsManual,
                       "WanContextWindowsManual": WanContextWindowsManual}
NODE_DISPLAY_NAME_MAPPINGS = {"ContextWindowsManual": "Context Windows (Manual)",
                              "WanContextWindowsManual": "WAN Context Windows (Manual)"}
