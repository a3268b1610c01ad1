"""Latent math (ComfyUI's ``nodes_latent`` group): add, subtract, multiply, interpolate,
concatenate and cut latents, the batch seed behaviour, and latent operations (tonemap,
sharpen) applied to a latent or to the guidance of a model (LatentApplyOperationCFG).
LatentBatch of the same group lives in ``latent``."""
from __future__ import annotations

from ._image_utils import MAX_RESOLUTION, gaussian_kernel
from ._lazy import lazy
from .latent import _repeat_batch, upscale_latent

torch = lazy("torch")
F = lazy("torch.nn.functional")


def reshape_latent_to(target_shape, latent, repeat_batch: bool = True):
    """``latent`` resized (bilinear, centre crop) to the spatial size of ``target_shape`` and
    repeated / cut to its batch size."""
    if latent.shape[1:] != target_shape[1:]:
        latent = upscale_latent(latent, target_shape[-1], target_shape[-2], "bilinear", "center")
    return _repeat_batch(latent, target_shape[0]) if repeat_batch else latent


def _two(op_name):
    class _Binary:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",)}}

        RETURN_TYPES = ("LATENT",)
        FUNCTION = "op"
        CATEGORY = "latent/advanced"

        def op(self, samples1, samples2):
            out = dict(samples1)
            s1 = samples1["samples"]
            s2 = reshape_latent_to(s1.shape, samples2["samples"])
            out["samples"] = s1 + s2 if op_name == "add" else s1 - s2
            return (out,)

    return _Binary


class LatentAdd(_two("add")):
    pass


class LatentSubtract(_two("subtract")):
    pass


class LatentMultiply:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",),
                             "multiplier": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent/advanced"

    def op(self, samples, multiplier):
        out = dict(samples)
        out["samples"] = samples["samples"] * multiplier
        return (out,)


class LatentInterpolate:
    """Interpolates direction and length separately: per latent pixel, the channel vectors are
    normalised, mixed by ``ratio`` (samples1's share) and renormalised, then given the mixed
    length ``|s1| * ratio + |s2| * (1 - ratio)``. Zero vectors give zero (nan -> 0)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",),
                             "ratio": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent/advanced"

    def op(self, samples1, samples2, ratio):
        out = dict(samples1)
        s1 = samples1["samples"]
        s2 = reshape_latent_to(s1.shape, samples2["samples"])
        # per sample and pixel (upstream's norm drops the channel axis, which is the same for
        # a batch of one and mixes samples for larger batches; this keeps each sample apart)
        m1 = torch.linalg.vector_norm(s1, dim=1, keepdim=True)
        m2 = torch.linalg.vector_norm(s2, dim=1, keepdim=True)
        u1 = torch.nan_to_num(s1 / m1)
        u2 = torch.nan_to_num(s2 / m2)
        t = u1 * ratio + u2 * (1.0 - ratio)
        mt = torch.linalg.vector_norm(t, dim=1, keepdim=True)
        out["samples"] = torch.nan_to_num(t / mt) * (m1 * ratio + m2 * (1.0 - ratio))
        return (out,)


class LatentConcat:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples1": ("LATENT",), "samples2": ("LATENT",),
                             "dim": (["x", "-x", "y", "-y", "t", "-t"],)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent/advanced"

    def op(self, samples1, samples2, dim):
        out = dict(samples1)
        s1 = samples1["samples"]
        s2 = _repeat_batch(samples2["samples"], s1.shape[0])
        pair = (s2, s1) if dim.startswith("-") else (s1, s2)
        axis = {"x": -1, "y": -2, "t": -3}[dim.lstrip("-")]
        out["samples"] = torch.cat(pair, dim=axis)
        return (out,)


class LatentCut:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "dim": (["x", "y", "t"],),
                             "index": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION, "step": 1}),
                             "amount": ("INT", {"default": 1, "min": 1, "max": MAX_RESOLUTION, "step": 1})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent/advanced"

    def op(self, samples, dim, index, amount):
        out = dict(samples)
        s = samples["samples"]
        axis = s.ndim - {"x": 1, "y": 2, "t": 3}[dim]
        size = s.shape[axis]
        if index >= 0:
            index = min(index, size - 1)
            amount = min(size - index, amount)
        else:
            index = max(index, -size)
            amount = min(-index, amount)
        out["samples"] = torch.narrow(s, axis, index, amount)
        return (out,)


class LatentBatchSeedBehavior:
    """``fixed``: every latent of the batch gets the noise of the first one's batch index;
    ``random``: each its own (the batch index is dropped)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",),
                             "seed_behavior": (["random", "fixed"], {"default": "fixed"})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent/advanced"

    def op(self, samples, seed_behavior):
        out = dict(samples)
        if seed_behavior == "random":
            out.pop("batch_index", None)
        elif seed_behavior == "fixed":
            first = list(out.get("batch_index", [0]))[0]
            out["batch_index"] = [first] * samples["samples"].shape[0]
        return (out,)


class LatentApplyOperation:
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "operation": ("LATENT_OPERATION",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent/advanced/operations"

    def op(self, samples, operation):
        out = dict(samples)
        out["samples"] = operation(latent=samples["samples"])
        return (out,)


class LatentApplyOperationCFG:
    """Applies the operation to the guidance direction (cond - uncond) before CFG, or to the
    cond prediction when there is no uncond pass."""

    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "operation": ("LATENT_OPERATION",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "op"
    CATEGORY = "latent/advanced/operations"

    def op(self, model, operation):
        m = model.clone()

        def pre_cfg_function(args):
            conds_out = args["conds_out"]
            if len(conds_out) == 2 and conds_out[1] is not None:
                conds_out[0] = operation(latent=(conds_out[0] - conds_out[1])) + conds_out[1]
            else:
                conds_out[0] = operation(latent=conds_out[0])
            return conds_out

        m.set_model_sampler_pre_cfg_function(pre_cfg_function)
        return (m,)


def tonemap_reinhard(latent, multiplier: float):
    """Reinhard tonemap of the per-pixel channel-vector length: lengths are divided by
    ``top = (mean + 5 * std) * multiplier`` (over the sample), mapped by x / (x + 1) and scaled
    back by ``top``; directions are kept."""
    mag = (torch.linalg.vector_norm(latent, dim=1) + 1e-10)[:, None]
    normalized = latent / mag
    mean = torch.mean(mag, dim=(1, 2, 3), keepdim=True)
    std = torch.std(mag, dim=(1, 2, 3), keepdim=True)
    top = (std * 5 + mean) * multiplier
    scaled = mag / top
    return normalized * (scaled / (scaled + 1.0) * top)


def sharpen_latent(latent, sharpen_radius: int, sigma: float, alpha: float):
    """Unsharp-style sharpening of the normalised latent (directions), length kept: the kernel
    is ``-10 * alpha * gaussian`` with its centre raised so it sums to 1; reflect padding."""
    luminance = (torch.linalg.vector_norm(latent, dim=1) + 1e-6)[:, None]
    normalized = latent / luminance
    channels = latent.shape[1]
    size = sharpen_radius * 2 + 1
    kernel = gaussian_kernel(size, sigma, device=latent.device) * (alpha * -10)
    c = size // 2
    kernel[c, c] = kernel[c, c] - kernel.sum() + 1.0
    padded = F.pad(normalized, (sharpen_radius,) * 4, "reflect")
    weight = kernel.to(latent.dtype).repeat(channels, 1, 1).unsqueeze(1)
    sharpened = F.conv2d(padded, weight, groups=channels)
    return luminance * sharpened


class LatentOperationTonemapReinhard:
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"multiplier": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("LATENT_OPERATION",)
    FUNCTION = "op"
    CATEGORY = "latent/advanced/operations"

    def op(self, multiplier):
        def operation(latent, **kwargs):
            return tonemap_reinhard(latent, multiplier)
        return (operation,)


class LatentOperationSharpen:
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sharpen_radius": ("INT", {"default": 9, "min": 1, "max": 31, "step": 1}),
            "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
            "alpha": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 5.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("LATENT_OPERATION",)
    FUNCTION = "op"
    CATEGORY = "latent/advanced/operations"

    def op(self, sharpen_radius, sigma, alpha):
        def operation(latent, **kwargs):
            return sharpen_latent(latent, sharpen_radius, sigma, alpha)
        return (operation,)


NODE_CLASS_MAPPINGS = {
    "LatentAdd": LatentAdd,
    "LatentSubtract": LatentSubtract,
    "LatentMultiply": LatentMultiply,
    "LatentInterpolate": LatentInterpolate,
    "LatentConcat": LatentConcat,
    "LatentCut": LatentCut,
    "LatentBatchSeedBehavior": LatentBatchSeedBehavior,
    "LatentApplyOperation": LatentApplyOperation,
    "LatentApplyOperationCFG": LatentApplyOperationCFG,
    "LatentOperationTonemapReinhard": LatentOperationTonemapReinhard,
    "LatentOperationSharpen": LatentOperationSharpen,
}
