"""A tiny model with an exact denoiser, for sampler tests.

Data: every latent value is N(mu, s^2) independently, where mu depends on the
conditioning (mean of its cross-attention tensor). The exact denoiser is
D(x, sigma) = (s^2 x + sigma^2 mu) / (s^2 + sigma^2), and the probability-flow ODE has the
closed form x(sigma) = mu + (x(sigma0) - mu) * sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma0^2).
"""
from __future__ import annotations

import copy
import math

import torch

from comfyui.sampling.model_sampling import model_sampling


class ToyLatentFormat:
    latent_channels = 4
    scale_factor = 1.0
    latent_rgb_factors = [[0.3, 0.2, 0.2], [0.2, 0.3, 0.2], [0.2, 0.2, 0.3], [-0.1, -0.1, -0.1]]
    latent_rgb_factors_bias = None

    def process_in(self, latent):
        return latent * self.scale_factor

    def process_out(self, latent):
        return latent / self.scale_factor


class GaussianModel:
    """BaseModel-like: apply_model(x, sigma, c_crossattn=...) returns the exact denoised x0."""

    def __init__(self, s: float = 0.5, prediction: str = "eps"):
        self.s = s
        self.model_sampling = model_sampling(prediction)
        self.latent_format = ToyLatentFormat()
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.seen_transformer_options: list[dict] = []

    def apply_model(self, x, t, c_crossattn=None, c_concat=None, y=None, control=None, transformer_options=None,
                    **kwargs):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        if transformer_options is not None:
            self.seen_transformer_options.append(transformer_options)
        sigma = t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        if c_crossattn is None:
            mu = torch.zeros_like(sigma)
        else:
            mu = c_crossattn.float().mean(dim=(1, 2)).reshape(sigma.shape)
        s2 = self.s ** 2
        return (s2 * x + sigma ** 2 * mu) / (s2 + sigma ** 2)


class ToyPatcher:
    """ModelPatcher-like wrapper (clone, object patches, model options)."""

    def __init__(self, model):
        self.model = model
        self.model_options = {"transformer_options": {}}
        self.object_patches: dict = {}
        self.load_device = torch.device("cpu")

    def clone(self):
        n = ToyPatcher(self.model)
        n.model_options = copy.copy(self.model_options)
        n.model_options["transformer_options"] = dict(self.model_options.get("transformer_options", {}))
        n.object_patches = dict(self.object_patches)
        return n

    def get_model_object(self, name):
        if name in self.object_patches:
            return self.object_patches[name]
        return getattr(self.model, name)

    def add_object_patch(self, name, obj):
        self.object_patches[name] = obj

    def set_model_sampler_cfg_function(self, fn, disable_cfg1_optimization=False):
        self.model_options["sampler_cfg_function"] = fn
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_pre_cfg_function(self, fn, disable_cfg1_optimization=False):
        self.model_options["sampler_pre_cfg_function"] = list(
            self.model_options.get("sampler_pre_cfg_function", [])) + [fn]
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_post_cfg_function(self, fn, disable_cfg1_optimization=False):
        self.model_options["sampler_post_cfg_function"] = list(
            self.model_options.get("sampler_post_cfg_function", [])) + [fn]
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True


def cond(mu: float, tokens: int = 4, dim: int = 8, **opts):
    """A CONDITIONING whose toy data mean is ``mu``."""
    return [[torch.full((1, tokens, dim), float(mu)), dict(opts)]]


def exact_flow(x0: torch.Tensor, sigma0: float, sigma1: float, mu: float, s: float) -> torch.Tensor:
    return mu + (x0 - mu) * math.sqrt(s * s + sigma1 * sigma1) / math.sqrt(s * s + sigma0 * sigma0)
