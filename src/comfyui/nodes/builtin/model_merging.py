"""Model merging and saving (upstream's ``nodes_model_merging`` and the SD1/SD2/SDXL nodes of
``nodes_model_merging_model_specific``). A merge is recorded as weight patches on a clone of the
first model: every weight of the second model becomes a patch (its original tensor and its own
patches, evaluated only when the merged model is patched), so nothing is copied until then.
Weights follow upstream: Simple/Blocks ``ratio*w1 + (1-ratio)*w2``, Subtract
``m*w1 - m*w2``, Add ``w1 + w2``. CheckpointSave lives in ``loaders``."""
from __future__ import annotations

import json
import os

from comfyui import paths

from ._lazy import lazy

sdm = lazy("comfyui.models.sd")
_memory = lazy("comfyui.models.memory")
_io = lazy("comfyui.models.loading")

_RATIO = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})
_MULT = ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})
_CLIP_SKIP = (".position_ids", ".logit_scale")


def _merge_model(model1, model2, strength_patch, strength_model):
    """Clone of model1 with every diffusion-model weight of model2 as a patch; the
    strengths may be functions of the key (for per-block ratios)."""
    m = model1.clone()
    for k, patch in model2.get_key_patches("diffusion_model.").items():
        sp, sm = strength_patch(k), strength_model(k)
        m.add_patches({k: patch}, sp, sm)
    return m


def _merge_clip(clip1, clip2, strength_patch, strength_model):
    m = clip1.clone()
    for k, patch in clip2.get_key_patches().items():
        if k.endswith(_CLIP_SKIP):
            continue
        m.add_patches({k: patch}, strength_patch, strength_model)
    return m


class ModelMergeSimple:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "ratio": _RATIO}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    CATEGORY = "advanced/model_merging"

    def merge(self, model1, model2, ratio):
        return (_merge_model(model1, model2, lambda k: 1.0 - ratio, lambda k: ratio),)


class ModelSubtract:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "multiplier": _MULT}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    CATEGORY = "advanced/model_merging"

    def merge(self, model1, model2, multiplier):
        return (_merge_model(model1, model2, lambda k: -multiplier, lambda k: multiplier),)


class ModelAdd:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    CATEGORY = "advanced/model_merging"

    def merge(self, model1, model2):
        return (_merge_model(model1, model2, lambda k: 1.0, lambda k: 1.0),)


class CLIPMergeSimple:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",), "ratio": _RATIO}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"
    CATEGORY = "advanced/model_merging"

    def merge(self, clip1, clip2, ratio):
        return (_merge_clip(clip1, clip2, 1.0 - ratio, ratio),)


class CLIPSubtract:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",), "multiplier": _MULT}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"
    CATEGORY = "advanced/model_merging"

    def merge(self, clip1, clip2, multiplier):
        return (_merge_clip(clip1, clip2, -multiplier, multiplier),)


class CLIPAdd:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",)}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"
    CATEGORY = "advanced/model_merging"

    def merge(self, clip1, clip2):
        return (_merge_clip(clip1, clip2, 1.0, 1.0),)


class ModelMergeBlocks:
    """Per-block ratios: each input after model1/model2 names a key prefix of the diffusion
    model; a weight takes the ratio of the longest matching prefix, else the first input's."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",),
                             "input": _RATIO, "middle": _RATIO, "out": _RATIO}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    CATEGORY = "advanced/model_merging"

    def merge(self, model1, model2, **kwargs):
        default = next(iter(kwargs.values()))

        def ratio(k: str) -> float:
            k_unet = k[len("diffusion_model."):]
            best, r = 0, default
            for prefix, value in kwargs.items():
                if k_unet.startswith(prefix) and len(prefix) > best:
                    best, r = len(prefix), value
            return r

        return (_merge_model(model1, model2, lambda k: 1.0 - ratio(k), ratio),)


def _unet_blocks(inputs: int, middle: int, outputs: int, dot: str) -> dict:
    d = {"model1": ("MODEL",), "model2": ("MODEL",), "time_embed.": _RATIO, "label_emb.": _RATIO}
    d.update({f"input_blocks.{i}{dot}": _RATIO for i in range(inputs)})
    d.update({f"middle_block.{i}{dot}": _RATIO for i in range(middle)})
    d.update({f"output_blocks.{i}{dot}": _RATIO for i in range(outputs)})
    d["out."] = _RATIO
    return d


class ModelMergeSD1(ModelMergeBlocks):
    CATEGORY = "advanced/model_merging/model_specific"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": _unet_blocks(12, 3, 12, ".")}


class ModelMergeSDXL(ModelMergeBlocks):
    CATEGORY = "advanced/model_merging/model_specific"

    @classmethod
    def INPUT_TYPES(cls):
        # upstream's SDXL names carry no trailing dot ("input_blocks.1" also matches 10+ if any)
        return {"required": _unet_blocks(9, 3, 9, "")}


def _metadata(prompt, extra_pnginfo) -> dict[str, str]:
    from .loaders import _metadata_disabled
    if _metadata_disabled():
        return {}
    meta = {"prompt": json.dumps(prompt) if prompt is not None else ""}
    for k, v in (extra_pnginfo or {}).items():
        meta[k] = json.dumps(v)
    return meta


def _out_path(filename_prefix: str, output_dir: str) -> str:
    folder, filename, counter, _sub, _prefix = paths.get_save_image_path(filename_prefix, output_dir)
    return os.path.join(folder, f"{filename}_{counter:05}_.safetensors")


class _Saver:
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "advanced/model_merging"

    def __init__(self):
        self.output_dir = paths.get_output_directory()

    def _dir(self) -> str:
        return getattr(self, "output_dir", None) or paths.get_output_directory()


# the text encoders of a CLIP state dict, each saved in its own file (upstream's order)
_CLIP_PREFIXES = ("clip_l.", "clip_g.", "clip_h.", "t5xxl.", "pile_t5xl.", "mt5xl.", "umt5xxl.", "t5base.",
                  "gemma2_2b.", "llama.", "hydit_clip.", "")


class CLIPSave(_Saver):
    """One file per text encoder (``<prefix>_clip_l_00001_.safetensors`` ...) in the encoder's
    own (transformers) layout, which CLIPLoader reads."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), "filename_prefix": ("STRING", {"default": "clip/ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save(self, clip, filename_prefix, prompt=None, extra_pnginfo=None):
        metadata = _metadata(prompt, extra_pnginfo)
        if metadata:
            metadata = {"format": "pt", **metadata}
        _memory.load_models_gpu([clip.patcher], force_full_load=True)
        sd = {k: v.detach().to("cpu") for k, v in clip.get_sd().items()}
        for prefix in _CLIP_PREFIXES:
            part = {k: sd.pop(k) for k in [k for k in sd if k.startswith(prefix)]}
            if not part:
                continue
            name = filename_prefix + (f"_{prefix[:-1]}" if prefix else "")
            out = {}
            for k, v in part.items():
                k = k[len(prefix):]
                if k.startswith("transformer."):
                    k = k[len("transformer."):]
                out[k] = v
            _io.save_torch_file(out, _out_path(name, self._dir()), metadata=metadata)
        return {}


class VAESave(_Saver):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": ("VAE",), "filename_prefix": ("STRING", {"default": "vae/ComfyUI_vae"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save(self, vae, filename_prefix, prompt=None, extra_pnginfo=None):
        sd = {k: v.detach().to("cpu") for k, v in vae.get_sd().items()}
        _io.save_torch_file(sd, _out_path(filename_prefix, self._dir()),
                            metadata=_metadata(prompt, extra_pnginfo))
        return {}


class ModelSave(_Saver):
    """The (merged) diffusion model alone, as ``model.diffusion_model.*`` like upstream."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "filename_prefix": ("STRING", {"default": "diffusion_models/ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save(self, model, filename_prefix, prompt=None, extra_pnginfo=None):
        # upstream writes it with its checkpoint writer, no CLIP / VAE: same metadata
        from .loaders import CheckpointSave
        return CheckpointSave.save(self, model, None, None, filename_prefix, prompt, extra_pnginfo)


NODE_CLASS_MAPPINGS = {
    "ModelMergeSimple": ModelMergeSimple,
    "ModelMergeBlocks": ModelMergeBlocks,
    "ModelMergeSubtract": ModelSubtract,
    "ModelMergeAdd": ModelAdd,
    "CLIPMergeSimple": CLIPMergeSimple,
    "CLIPMergeSubtract": CLIPSubtract,
    "CLIPMergeAdd": CLIPAdd,
    "CLIPSave": CLIPSave,
    "VAESave": VAESave,
    "ModelSave": ModelSave,
    "ModelMergeSD1": ModelMergeSD1,
    "ModelMergeSD2": ModelMergeSD1,  # SD1 and SD2 UNets have the same blocks
    "ModelMergeSDXL": ModelMergeSDXL,
}
