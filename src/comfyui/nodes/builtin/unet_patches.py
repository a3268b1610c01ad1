"""UNet patches: FreeU / FreeU_V2 (ComfyUI's nodes_freelunch; Si et al. 2023), Perturbed-
Attention Guidance (nodes_pag; Ahn et al. 2024), Kohya's Deep Shrink (nodes_model_downscale)
and the attention weight multipliers (nodes_attention_multiply; its
UNetTemporalAttentionMultiply lives in ``wan``). They use the UNet's ``input_block_patch
(_after_skip)``, ``output_block_patch`` and ``patches_replace["attn1"]`` hooks and
ModelPatcher weight patches."""
from __future__ import annotations

import logging

from ._lazy import lazy

torch = lazy("torch")
fft = lazy("torch.fft")
F = lazy("torch.nn.functional")
latent = lazy("comfyui.nodes.builtin.latent")

log = logging.getLogger(__name__)


def fourier_filter(x, threshold: int, scale: float):
    """FreeU's skip filter: the centred (2 threshold)^2 low-frequency block of the H, W spectrum
    scaled by ``scale``, the rest kept."""
    xf = fft.fftshift(fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    b, c, h, w = xf.shape
    mask = torch.ones((b, c, h, w), device=x.device)
    cr, cc = h // 2, w // 2
    mask[..., cr - threshold:cr + threshold, cc - threshold:cc + threshold] = scale
    out = fft.ifftn(fft.ifftshift(xf * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return out.to(x.dtype)


def _filter_skip(hsp, scale: float, cpu_devices: set):
    if hsp.device not in cpu_devices:
        try:
            return fourier_filter(hsp, 1, scale)
        except Exception:  # a device without torch.fft: do it on the CPU from now on
            log.warning("Device %s does not support the torch.fft functions used in the FreeU node, switching to "
                        "CPU.", hsp.device)
            cpu_devices.add(hsp.device)
    return fourier_filter(hsp.cpu(), 1, scale).to(hsp.device)


def _model_channels(model) -> int:
    config = getattr(getattr(model.model, "model_config", None), "unet_config", None) or {}
    if "model_channels" in config:
        return int(config["model_channels"])
    return int(model.model.diffusion_model.model_channels)


def _freeu_inputs(b1, b2):
    f = {"min": 0.0, "max": 10.0, "step": 0.01}
    return {"required": {"model": ("MODEL",),
                         "b1": ("FLOAT", {"default": b1, **f}), "b2": ("FLOAT", {"default": b2, **f}),
                         "s1": ("FLOAT", {"default": 0.9, **f}), "s2": ("FLOAT", {"default": 0.2, **f})}}


class FreeU:
    """On the decoder blocks whose input has 4x / 2x the model channels, the first half of the
    backbone channels is scaled by b1 / b2 and the skip connection's low frequencies by s1 / s2."""

    @classmethod
    def INPUT_TYPES(cls):
        return _freeu_inputs(1.1, 1.2)

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "model_patches/unet"
    V2 = False

    def patch(self, model, b1, b2, s1, s2):
        mc = _model_channels(model)
        scales = {mc * 4: (b1, s1), mc * 2: (b2, s2)}
        cpu_devices: set = set()
        v2 = self.V2

        def output_block_patch(h, hsp, transformer_options):
            scale = scales.get(int(h.shape[1]))
            if scale is None:
                return h, hsp
            half = h.shape[1] // 2
            h = h.clone()
            if v2:  # backbone factor weighted by the min-max normalised channel mean
                mean = h.mean(1, keepdim=True)
                flat = mean.view(mean.shape[0], -1)
                lo = flat.min(dim=-1).values.view(-1, 1, 1, 1)
                hi = flat.max(dim=-1).values.view(-1, 1, 1, 1)
                mean = (mean - lo) / (hi - lo)
                h[:, :half] = h[:, :half] * ((scale[0] - 1) * mean + 1)
            else:
                h[:, :half] = h[:, :half] * scale[0]
            return h, _filter_skip(hsp, scale[1], cpu_devices)

        m = model.clone()
        m.set_model_patch(output_block_patch, "output_block_patch")
        return (m,)


class FreeU_V2(FreeU):
    V2 = True

    @classmethod
    def INPUT_TYPES(cls):
        return _freeu_inputs(1.3, 1.4)


class PerturbedAttentionGuidance:
    """Adds scale * (cond - cond with the middle block's self-attention replaced by identity
    attention, i.e. its values) to the guided prediction."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "scale": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                                 "round": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "model_patches/unet"

    def patch(self, model, scale):
        from comfyui.sampling.conditioning import calc_cond_batch

        def perturbed_attention(q, k, v, extra_options, mask=None):
            return v

        def post_cfg_function(args):
            if scale == 0:
                return args["denoised"]
            options = dict(args["model_options"])
            to = dict(options.get("transformer_options", {}))
            replace = {k: dict(v) for k, v in to.get("patches_replace", {}).items()}
            replace.setdefault("attn1", {})[("middle", 0)] = perturbed_attention
            to["patches_replace"] = replace
            options["transformer_options"] = to
            (pag,) = calc_cond_batch(args["model"], [args["cond"]], args["input"], args["sigma"], options)
            return args["denoised"] + (args["cond_denoised"] - pag) * scale

        m = model.clone()
        m.set_model_sampler_post_cfg_function(post_cfg_function)
        return (m,)


DOWNSCALE_METHODS = ["bicubic", "nearest-exact", "bilinear", "area", "bislerp"]


def _resize(h, width: int, height: int, method: str):
    if method == "bislerp":
        return latent.bislerp(h, width, height)
    return F.interpolate(h, size=(height, width), mode=method)


class PatchModelAddDownscale:
    """Kohya's Deep Shrink: while sigma is in [start_percent, end_percent] of the schedule, the
    activations after input block ``block_number`` are downscaled by ``downscale_factor``
    (before or after its skip connection is taken); the decoder scales them back up to each
    skip connection's size."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "block_number": ("INT", {"default": 3, "min": 1, "max": 32, "step": 1}),
            "downscale_factor": ("FLOAT", {"default": 2.0, "min": 0.1, "max": 9.0, "step": 0.001}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
            "end_percent": ("FLOAT", {"default": 0.35, "min": 0.0, "max": 1.0, "step": 0.001}),
            "downscale_after_skip": ("BOOLEAN", {"default": True}),
            "downscale_method": (DOWNSCALE_METHODS,),
            "upscale_method": (DOWNSCALE_METHODS,)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "model_patches/unet"

    def patch(self, model, block_number, downscale_factor, start_percent, end_percent, downscale_after_skip,
              downscale_method, upscale_method):
        sampling = model.get_model_object("model_sampling")
        sigma_start = sampling.percent_to_sigma(start_percent)
        sigma_end = sampling.percent_to_sigma(end_percent)

        def input_block_patch(h, transformer_options):
            if transformer_options["block"][1] == block_number:
                sigma = transformer_options["sigmas"][0].item()
                if sigma_end <= sigma <= sigma_start:
                    h = _resize(h, round(h.shape[-1] / downscale_factor), round(h.shape[-2] / downscale_factor),
                                downscale_method)
            return h

        def output_block_patch(h, hsp, transformer_options):
            if h.shape[2] != hsp.shape[2]:
                h = _resize(h, hsp.shape[-1], hsp.shape[-2], upscale_method)
            return h, hsp

        m = model.clone()
        if downscale_after_skip:
            m.set_model_input_block_patch_after_skip(input_block_patch)
        else:
            m.set_model_input_block_patch(input_block_patch)
        m.set_model_output_block_patch(output_block_patch)
        return (m,)


# ----------------------------------------------------------------------------------------
# attention multipliers
# ----------------------------------------------------------------------------------------
def _scale_weights(patcher_like, keys, suffixes: dict) -> None:
    """Multiplies the weights and biases ending in each suffix by its factor (a weight patch
    with strength_model = factor and nothing added)."""
    zero = torch.zeros(())
    for key in keys:
        for suffix, factor in suffixes.items():
            if key.endswith(suffix + ".weight") or key.endswith(suffix + ".bias"):
                patcher_like.add_patches({key: ("diff", (zero,))}, 0.0, factor)


def _attention_multiply(attn: str, model, q, k, v, out):
    m = model.clone()
    _scale_weights(m, model.model_state_dict(), {f"{attn}.to_q": q, f"{attn}.to_k": k, f"{attn}.to_v": v,
                                                 f"{attn}.to_out.0": out})
    return m


def _qkvo():
    f = {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}
    return {"q": ("FLOAT", f), "k": ("FLOAT", f), "v": ("FLOAT", f), "out": ("FLOAT", f)}


class UNetSelfAttentionMultiply:
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), **_qkvo()}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing/attention_experiments"

    def patch(self, model, q, k, v, out):
        return (_attention_multiply("attn1", model, q, k, v, out),)


class UNetCrossAttentionMultiply(UNetSelfAttentionMultiply):
    def patch(self, model, q, k, v, out):
        return (_attention_multiply("attn2", model, q, k, v, out),)


class CLIPAttentionMultiply:
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), **_qkvo()}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing/attention_experiments"

    def patch(self, clip, q, k, v, out):
        m = clip.clone()
        _scale_weights(m, m.patcher.model_state_dict(), {"self_attn.q_proj": q, "self_attn.k_proj": k,
                                                         "self_attn.v_proj": v, "self_attn.out_proj": out})
        return (m,)


NODE_CLASS_MAPPINGS = {
    "FreeU": FreeU,
    "FreeU_V2": FreeU_V2,
    "PerturbedAttentionGuidance": PerturbedAttentionGuidance,
    "PatchModelAddDownscale": PatchModelAddDownscale,
    "UNetSelfAttentionMultiply": UNetSelfAttentionMultiply,
    "UNetCrossAttentionMultiply": UNetCrossAttentionMultiply,
    "CLIPAttentionMultiply": CLIPAttentionMultiply,
}
NODE_DISPLAY_NAME_MAPPINGS = {"PatchModelAddDownscale": "PatchModelAddDownscale (Kohya Deep Shrink)"}
