"""Guidance patches that act on the CFG step only (no model code): ComfyUI's nodes_cfg
(CFGNorm; its CFGZeroStar lives in ``wan``), nodes_mahiro, nodes_tcfg, nodes_apg,
nodes_fresca and nodes_eps
(Epsilon Scaling). Each clones the MODEL and adds a pre-CFG, CFG or post-CFG function."""
from __future__ import annotations

from ._lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")
fft = lazy("torch.fft")


def _patch(model, kind: str, fn):
    m = model.clone()
    getattr(m, f"set_model_sampler_{kind}_function")(fn)
    return m


# ----------------------------------------------------------------------------------------
# formulas
# ----------------------------------------------------------------------------------------
def mahiro_guidance(args):
    """Mix of the CFG result and the cond prediction scaled by cfg ("leap"), weighted by the
    cosine similarity (over channels, averaged) of the signed square roots of the scaled
    uncond prediction and of the (leap + cfg) / 2 mean."""
    scale = args["cond_scale"]
    leap = args["cond_denoised"] * scale
    u_leap = args["uncond_denoised"] * scale
    cfg = args["denoised"]
    merge = (leap + cfg) / 2
    normu = torch.sqrt(u_leap.abs()) * u_leap.sign()
    normm = torch.sqrt(merge.abs()) * merge.sign()
    simsc = 2 * (F.cosine_similarity(normu, normm).mean() + 1)
    return (simsc * cfg + (4 - simsc) * leap) / 4


def score_tangential_damping(cond_score, uncond_score):
    """TCFG: the uncond score projected on the first right-singular vector of the
    [uncond; cond] score matrix (per sample), dropping its tangential part."""
    b = cond_score.shape[0]
    c = cond_score.reshape(b, 1, -1).float()
    u = uncond_score.reshape(b, 1, -1).float()
    try:
        _, _, vh = torch.linalg.svd(torch.cat((u, c), dim=1), full_matrices=False)
    except RuntimeError:
        _, _, vh = torch.linalg.svd(torch.cat((u, c), dim=1).cpu(), full_matrices=False)
    v1 = vh[:, 0:1, :].to(u.device)
    return ((u @ v1.transpose(-2, -1)) * v1).reshape_as(uncond_score).to(uncond_score.dtype)


def project(v0, v1):
    """Parts of v0 parallel and orthogonal to v1 (over the last three axes)."""
    v1 = F.normalize(v1, dim=[-1, -2, -3])
    par = (v0 * v1).sum(dim=[-1, -2, -3], keepdim=True) * v1
    return par, v0 - par


def fourier_filter(x, scale_low=1.0, scale_high=1.5, freq_cutoff=20):
    """Scales the centred 2 * cutoff frequency block (per spatial axis, FFT over H, W; on
    5-D latents the frame axis is narrowed too, as upstream) by scale_low, the rest by
    scale_high."""
    dtype = x.dtype
    xf = fft.fftshift(fft.fftn(x.to(torch.float32), dim=(-2, -1)), dim=(-2, -1))
    mask = torch.full(xf.shape, float(scale_high), device=x.device)
    m = mask
    for dim in range(2, xf.ndim):
        cc = xf.shape[dim] // 2
        fc = min(freq_cutoff, cc)
        m = m.narrow(dim, cc - fc, fc * 2)
    m[:] = scale_low
    out = fft.ifftn(fft.ifftshift(xf * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return out.to(dtype)


# ----------------------------------------------------------------------------------------
# nodes
# ----------------------------------------------------------------------------------------
class CFGNorm:
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("patched_model",)
    FUNCTION = "patch"
    CATEGORY = "advanced/guidance"

    def patch(self, model, strength):
        def cfg_norm(args):
            cond_p = args["cond_denoised"]
            pred = args["denoised"]
            scale = (torch.norm(cond_p, dim=1, keepdim=True)
                     / (torch.norm(pred, dim=1, keepdim=True) + 1e-8)).clamp(min=0.0, max=1.0)
            return pred * scale * strength
        return (_patch(model, "post_cfg", cfg_norm),)


class Mahiro:
    EXPERIMENTAL = True
    DESCRIPTION = ("Modify the guidance to scale more on the 'direction' of the positive prompt rather than the "
                   "difference between the negative prompt.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("patched_model",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"

    def patch(self, model):
        return (_patch(model, "post_cfg", mahiro_guidance),)


class TCFG:
    DESCRIPTION = ("TCFG – Tangential Damping CFG (2503.18137)\n\nRefine the uncond (negative) to align with the "
                   "cond (positive) for improving quality.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("patched_model",)
    FUNCTION = "patch"
    CATEGORY = "advanced/guidance"

    def patch(self, model):
        def tangential_damping_cfg(args):
            x = args["input"]
            out = args["conds_out"]
            if len(out) <= 1 or None in args["conds"][:2]:
                return out
            cond_pred, uncond_pred = out[0], out[1]
            uncond_td = score_tangential_damping(x - cond_pred, x - uncond_pred)
            return [cond_pred, x - uncond_td] + list(out[2:])
        return (_patch(model, "pre_cfg", tangential_damping_cfg),)


class APG:
    """Adaptive Projected Guidance (Sadat et al. 2024): the guidance cond - uncond, optionally
    averaged with momentum and clipped to ``norm_threshold``, has its part parallel to the cond
    prediction scaled by ``eta``; the cond is rewritten so that CFG applies that guidance."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "eta": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                              "tooltip": "Controls the scale of the parallel guidance vector. Default CFG behavior "
                                         "at a setting of 1."}),
            "norm_threshold": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 50.0, "step": 0.1,
                                         "tooltip": "Normalize guidance vector to this value, normalization disable "
                                                    "at a setting of 0."}),
            "momentum": ("FLOAT", {"default": 0.0, "min": -5.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "Controls a running average of guidance during diffusion, disabled at "
                                              "a setting of 0."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "sampling/custom_sampling"

    def patch(self, model, eta, norm_threshold, momentum):
        state = {"avg": None, "prev_sigma": None}

        def pre_cfg_function(args):
            out = args["conds_out"]
            if len(out) == 1 or out[1] is None:
                return out
            cond, uncond = out[0], out[1]
            sigma = args["sigma"][0]
            scale = args["cond_scale"]
            if state["prev_sigma"] is not None and sigma > state["prev_sigma"]:
                state["avg"] = None  # a new sampling run
            state["prev_sigma"] = sigma
            guidance = cond - uncond
            if momentum != 0:
                state["avg"] = guidance if state["avg"] is None else momentum * state["avg"] + guidance
                guidance = state["avg"]
            if norm_threshold > 0:
                norm = guidance.norm(p=2, dim=[-1, -2, -3], keepdim=True)
                guidance = guidance * torch.minimum(torch.ones_like(norm), norm_threshold / norm)
            par, orth = project(guidance, cond)
            modified = orth + eta * par
            return [(uncond + modified) + (cond - uncond) / scale, uncond] + list(out[2:])

        return (_patch(model, "pre_cfg", pre_cfg_function),)


class FreSca:
    EXPERIMENTAL = True
    DESCRIPTION = "Applies frequency-dependent scaling to the guidance"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "scale_low": ("FLOAT", {"default": 1.0, "min": 0, "max": 10, "step": 0.01,
                                    "tooltip": "Scaling factor for low-frequency components"}),
            "scale_high": ("FLOAT", {"default": 1.25, "min": 0, "max": 10, "step": 0.01,
                                     "tooltip": "Scaling factor for high-frequency components"}),
            "freq_cutoff": ("INT", {"default": 20, "min": 1, "max": 10000, "step": 1,
                                    "tooltip": "Number of frequency indices around center to consider as "
                                               "low-frequency"}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"

    def patch(self, model, scale_low, scale_high, freq_cutoff):
        def fresca(args):
            out = args["conds_out"]
            if len(out) <= 1 or None in args["conds"][:2]:
                return out
            cond, uncond = out[0], out[1]
            filtered = fourier_filter(cond - uncond, scale_low=scale_low, scale_high=scale_high,
                                      freq_cutoff=freq_cutoff)
            return [filtered + uncond, uncond] + list(out[2:])
        return (_patch(model, "pre_cfg", fresca),)


class EpsilonScaling:
    """Epsilon Scaling (Ning et al. 2023, uniform schedule): the guided noise prediction
    x - denoised is divided by ``scaling_factor``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "scaling_factor": ("FLOAT", {"default": 1.005, "min": 0.5, "max": 1.5, "step": 0.001,
                                                          "display": "number"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "model_patches/unet"

    def patch(self, model, scaling_factor):
        factor = scaling_factor if scaling_factor != 0 else 1e-9

        def epsilon_scaling(args):
            x = args["input"]
            return x - (x - args["denoised"]) / factor
        return (_patch(model, "post_cfg", epsilon_scaling),)


NODE_CLASS_MAPPINGS = {
    "CFGNorm": CFGNorm,
    "Mahiro": Mahiro,
    "TCFG": TCFG,
    "APG": APG,
    "FreSca": FreSca,
    "Epsilon Scaling": EpsilonScaling,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Mahiro": "Mahiro is so cute that she deserves a better guidance function!! (。・ω・。)",
    "TCFG": "Tangential Damping CFG",
    "APG": "Adaptive Projected Guidance",
}
