"""What every CONTROL_NET object shares: ComfyUI's ControlBase protocol (hint, strength,
percent range, chaining, residual merging) and :class:`ControlNet`, the wrapper that runs a
control network on the sampler's input and hands its residuals to the sampled model.

A ControlNet in latent space (SD3.5, SD3 diffusers, Flux InstantX: ``latent_format`` set)
encodes its hint with the VAE given to the apply node: the image is scaled to the latent's
size times the VAE's downscale, passed through ``preprocess_image`` (SD3.5 canny / depth
remap their input), encoded, put through ``latent_format.process_in``; ``concat_mask``
ControlNets then get a mask channel (all ones unless the node gives one) concatenated.
It imports no model family (the network modules beside it do).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .. import memory
from ..patcher import ModelPatcher

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- helpers
def common_upscale(samples: torch.Tensor, width: int, height: int, method: str = "nearest-exact",
                   crop: str = "center") -> torch.Tensor:
    """Resize [B,C,H,W] to (height, width), cropping the centre to the target aspect first."""
    s = samples
    if crop == "center":
        ow, oh = s.shape[-1], s.shape[-2]
        oa, na = ow / oh, width / height
        x = y = 0
        if oa > na:
            x = round((ow - ow * (na / oa)) / 2)
        elif oa < na:
            y = round((oh - oh * (oa / na)) / 2)
        s = s.narrow(-2, y, oh - 2 * y).narrow(-1, x, ow - 2 * x)
    if s.shape[-2:] == (height, width):
        return s
    if method == "bilinear" or method == "bicubic":
        return F.interpolate(s, size=(height, width), mode=method, align_corners=False)
    return F.interpolate(s, size=(height, width), mode=method)


def broadcast_image_to(t: torch.Tensor, target: int, batched_number: int) -> torch.Tensor:
    """Repeat a hint batch to the sampler's batch (cond and uncond chunks of ``target // batched_number``)."""
    cur = t.shape[0]
    if cur == 1:
        return t
    per = target // batched_number
    t = t[:per]
    if per > t.shape[0]:
        t = torch.cat([t] * (per // t.shape[0]) + [t[:per % t.shape[0]]], dim=0)
    if t.shape[0] == target:
        return t
    return torch.cat([t] * batched_number, dim=0)


def _identity(image: torch.Tensor) -> torch.Tensor:
    return image


def _repeat_to_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    if t.shape[0] < batch:
        t = t.repeat(-(-batch // t.shape[0]), *([1] * (t.ndim - 1)))
    return t[:batch]


# ------------------------------------------------------------------------- ControlBase
class ControlBase:
    """Common state of everything a CONTROL_NET carries (see the module docstring)."""

    def __init__(self) -> None:
        self.cond_hint_original: torch.Tensor | None = None
        self.cond_hint: torch.Tensor | None = None
        self.strength = 1.0
        self.timestep_percent_range = (0.0, 1.0)
        self.timestep_range: tuple[float, float] | None = None
        self.latent_format = None
        self.vae = None
        self.global_average_pooling = False
        self.compression_ratio = 8
        self.upscale_algorithm = "nearest-exact"
        self.previous_controlnet: ControlBase | None = None
        self.extra_args: dict[str, Any] = {}
        self.union_type: list[int] = []
        self.extra_conds: list[str] = []           # cond entries handed to the network ("y", "guidance")
        self.concat_mask = False                    # a mask channel follows the encoded hint
        self.extra_concat_orig: list[torch.Tensor] = []
        self.preprocess_image: Callable[[torch.Tensor], torch.Tensor] = _identity

    def set_cond_hint(self, cond_hint: torch.Tensor, strength: float = 1.0,
                      timestep_percent_range: tuple[float, float] = (0.0, 1.0), vae: Any = None,
                      extra_concat: list | None = None) -> "ControlBase":
        self.cond_hint_original = cond_hint
        self.strength = strength
        self.timestep_percent_range = timestep_percent_range
        if self.latent_format is not None:  # only ControlNets working in latent space use the VAE
            if vae is None:
                log.warning("no VAE given to the ControlNet apply node while this ControlNet needs one")
            self.vae = vae
        self.extra_concat_orig = list(extra_concat or [])
        if self.concat_mask and not self.extra_concat_orig:
            self.extra_concat_orig.append(torch.ones(1, 1, 1, 1))
        return self

    def set_previous_controlnet(self, prev: "ControlBase | None") -> "ControlBase":
        self.previous_controlnet = prev
        return self

    def pre_run(self, model: Any, percent_to_timestep_function: Any) -> None:
        self.timestep_range = (percent_to_timestep_function(self.timestep_percent_range[0]),
                               percent_to_timestep_function(self.timestep_percent_range[1]))
        if self.previous_controlnet is not None:
            self.previous_controlnet.pre_run(model, percent_to_timestep_function)

    def cleanup(self) -> None:
        if self.previous_controlnet is not None:
            self.previous_controlnet.cleanup()
        self.cond_hint = None
        self.timestep_range = None

    def get_models(self) -> list[Any]:
        return self.previous_controlnet.get_models() if self.previous_controlnet is not None else []

    def copy_to(self, c: "ControlBase") -> None:
        c.cond_hint_original = self.cond_hint_original
        c.strength = self.strength
        c.timestep_percent_range = self.timestep_percent_range
        c.global_average_pooling = self.global_average_pooling
        c.compression_ratio = self.compression_ratio
        c.upscale_algorithm = self.upscale_algorithm
        c.latent_format = self.latent_format
        c.extra_args = dict(self.extra_args)
        c.vae = self.vae
        c.union_type = list(self.union_type)
        c.extra_conds = list(self.extra_conds)
        c.concat_mask = self.concat_mask
        c.extra_concat_orig = list(self.extra_concat_orig)
        c.preprocess_image = self.preprocess_image

    def _outside_range(self, t: torch.Tensor) -> bool:
        r = self.timestep_range
        return r is not None and (float(t[0]) > r[0] or float(t[0]) < r[1])

    def control_merge(self, control: dict[str, list], control_prev: dict[str, list] | None,
                      output_dtype: torch.dtype | None) -> dict[str, list]:
        out: dict[str, list] = {"input": [], "middle": [], "output": []}
        for key, values in control.items():
            scaled: dict[int, torch.Tensor] = {}  # a tensor shared by several blocks is scaled once
            for x in values:
                if x is not None:
                    if id(x) in scaled:
                        x = scaled[id(x)]
                    else:
                        own = x
                        if self.global_average_pooling:
                            x = x.mean(dim=(2, 3), keepdim=True).expand(-1, -1, x.shape[2], x.shape[3])
                        x = x * self.strength
                        scaled[id(own)] = x
                    if output_dtype is not None and x.dtype != output_dtype:
                        x = x.to(output_dtype)
                out[key].append(x)
        if control_prev is not None:
            for key in ("input", "middle", "output"):
                o = out[key]
                for i, prev in enumerate(control_prev.get(key, [])):
                    if i >= len(o):
                        o.append(prev)
                    elif prev is not None:
                        o[i] = prev if o[i] is None else prev + o[i]
        return out


class ControlNet(ControlBase):
    """A control network run by the sampler: SD UNet ControlNets (v1.x / SDXL / diffusers /
    control-LoRA once built) and the DiT ones (SD3.5, SD3, Flux), which work on latents
    (``compression_ratio`` 1, a ``latent_format``) and take other conditioning entries
    (``extra_conds``)."""

    def __init__(self, control_model: Any, global_average_pooling: bool = False,
                 load_device: torch.device | None = None, manual_cast_dtype: torch.dtype | None = None,
                 compression_ratio: int = 8, latent_format: Any = None, extra_conds: tuple[str, ...] = ("y",),
                 concat_mask: bool = False, preprocess_image: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.compression_ratio = compression_ratio
        self.latent_format = latent_format
        self.extra_conds = list(extra_conds)
        self.concat_mask = concat_mask
        self.preprocess_image = preprocess_image or _identity
        self.control_model = control_model
        self.load_device = load_device or memory.get_torch_device()
        self.manual_cast_dtype = manual_cast_dtype
        self.patcher = None
        if control_model is not None:
            self.patcher = ModelPatcher(control_model, load_device=self.load_device,
                                        offload_device=memory.unet_offload_device())
        self.global_average_pooling = global_average_pooling
        self.model_sampling_current = None

    def copy(self) -> "ControlNet":
        c = type(self).__new__(type(self))
        ControlNet.__init__(c, None, self.global_average_pooling, self.load_device, self.manual_cast_dtype)
        c.control_model = self.control_model
        c.patcher = self.patcher
        self.copy_to(c)
        return c

    def pre_run(self, model: Any, percent_to_timestep_function: Any) -> None:
        super().pre_run(model, percent_to_timestep_function)
        self.model_sampling_current = model.model_sampling

    def cleanup(self) -> None:
        self.model_sampling_current = None
        super().cleanup()

    def get_models(self) -> list[Any]:
        return super().get_models() + ([self.patcher] if self.patcher is not None else [])

    def _hint(self, x_noisy: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The hint at the size the network takes for this latent (cached until it changes):
        pixels scaled to latent size x ``compression_ratio`` (x the VAE's downscale when the
        network works on latents), ``preprocess_image``, VAE-encoded and ``process_in``,
        then the extra channels (``concat_mask``)."""
        ratio = self.compression_ratio
        height, width = x_noisy.shape[2] * ratio, x_noisy.shape[3] * ratio
        if self.cond_hint is not None and self.cond_hint.shape[2] == height and self.cond_hint.shape[3] == width:
            return self.cond_hint
        if self.vae is not None:
            ratio *= self.vae.spacial_compression_encode()
        elif self.latent_format is not None:
            raise ValueError("This Controlnet needs a VAE but none was provided, please use a "
                             "ControlNetApplyAdvanced node with a VAE input and connect it.")
        hint = common_upscale(self.cond_hint_original, x_noisy.shape[3] * ratio, x_noisy.shape[2] * ratio,
                              self.upscale_algorithm, "center")
        hint = self.preprocess_image(hint)
        if self.vae is not None:
            hint = self.vae.encode(hint.movedim(1, -1))
        if self.latent_format is not None:
            hint = self.latent_format.process_in(hint)
        if self.extra_concat_orig:
            extra = []
            for c in self.extra_concat_orig:
                c = common_upscale(c.to(hint.device, hint.dtype), hint.shape[-1], hint.shape[-2],
                                   self.upscale_algorithm, "center")
                extra.append(_repeat_to_batch(c, hint.shape[0]))
            hint = torch.cat([hint] + extra, dim=1)
        self.cond_hint = hint.to(device=x_noisy.device, dtype=dtype)
        return self.cond_hint

    def get_control(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: dict, batched_number: int,
                    transformer_options: dict | None = None) -> dict[str, list] | None:
        prev = None
        if self.previous_controlnet is not None:
            prev = self.previous_controlnet.get_control(x_noisy, t, cond, batched_number, transformer_options)
        if self._outside_range(t):
            return prev
        dtype = self.manual_cast_dtype or self.control_model.dtype
        hint = self._hint(x_noisy, dtype)
        if x_noisy.shape[0] != hint.shape[0]:
            hint = broadcast_image_to(hint, x_noisy.shape[0], batched_number)
        context = cond.get("crossattn_controlnet", cond.get("c_crossattn"))
        ms = self.model_sampling_current
        timestep = ms.timestep(t).float()
        xc = ms.calculate_input(t, x_noisy)
        extra = dict(self.extra_args)
        for name in self.extra_conds:
            value = cond.get(name)
            if value is not None:
                extra[name] = value.to(x_noisy.device, dtype) if isinstance(value, torch.Tensor) else value
        if getattr(self.control_model, "num_control_type", None) is not None:
            extra["control_type"] = list(self.union_type)
        with torch.no_grad():
            control = self.control_model(x=xc.to(dtype), hint=hint, timesteps=timestep.to(dtype),
                                         context=context.to(x_noisy.device, dtype) if context is not None else None,
                                         **extra)
        return self.control_merge(control, prev, output_dtype=None)


