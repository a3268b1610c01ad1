"""Seeded noise: the initial latent noise and the per-step noise samplers.

Seeding follows ComfyUI so that a shared workflow reproduces:

* initial noise: ``torch.manual_seed(seed)`` generator, ``torch.randn`` on the CPU in
  float32 for the whole latent shape; with a ``batch_index`` list, draws are made one
  sample at a time up to ``max(batch_index)`` and the indexed ones are kept (so sample
  ``k`` of a batch gets the same noise as it would in a larger batch);
* ancestral samplers: a ``torch.Generator`` on the latent's device seeded with
  ``seed + 1`` on CPU (``seed`` elsewhere), one ``randn`` of the latent's shape per call;
* SDE samplers: a Brownian tree (``torchsde.BrownianTree``, entropy = seed) over
  ``[sigma_min, sigma_max]``; increments are normalised to unit variance.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import torch

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def prepare_noise(latent_image: torch.Tensor, seed: int, noise_inds: Sequence[int] | None = None) -> torch.Tensor:
    """ComfyUI's ``comfy.sample.prepare_noise``: CPU float32 noise of ``latent_image``'s shape."""
    generator = torch.manual_seed(int(seed))
    shape = latent_image.size()
    if noise_inds is None:
        return torch.randn(shape, dtype=torch.float32, layout=latent_image.layout,
                           generator=generator, device="cpu")
    unique_inds, inverse = np.unique(np.asarray(noise_inds), return_inverse=True)
    noises = []
    for i in range(int(unique_inds[-1]) + 1):
        noise = torch.randn([1] + list(shape)[1:], dtype=torch.float32, layout=latent_image.layout,
                            generator=generator, device="cpu")
        if i in unique_inds:
            noises.append(noise)
    noises = [noises[int(i)] for i in inverse]
    return torch.cat(noises, dim=0)


class Noise_EmptyNoise:
    """NOISE object that adds nothing (DisableNoise)."""

    def __init__(self):
        self.seed = 0

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        s = input_latent["samples"]
        return torch.zeros(s.shape, dtype=s.dtype, layout=s.layout, device="cpu")


class Noise_RandomNoise:
    """NOISE object seeded like KSampler (RandomNoise)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        return prepare_noise(input_latent["samples"], self.seed, input_latent.get("batch_index"))


def default_noise_sampler(x: torch.Tensor, seed: int | None = None) -> NoiseSampler:
    """Per-step Gaussian noise from a generator seeded from the sampling seed."""
    if seed is not None:
        if x.device.type == "cpu":
            seed = seed + 1
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed))
    else:
        generator = None

    def sample(sigma, sigma_next):
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    return sample


class BatchedBrownianTree:
    """``torchsde.BrownianTree`` over [t0, t1] for a tensor shaped like ``x``
    (one tree per seed when a list of seeds is given)."""

    def __init__(self, x: torch.Tensor, t0, t1, seed=None, cpu: bool = True):
        import torchsde  # imported lazily: only SDE samplers need it

        self.cpu_tree = cpu
        t0, t1, self.sign = self._sort(torch.as_tensor(t0), torch.as_tensor(t1))
        w0 = torch.zeros_like(x)
        self.batched = False
        if seed is None:
            seeds = (int(torch.randint(0, 2 ** 63 - 1, ()).item()),)
        elif isinstance(seed, (tuple, list)):
            if len(seed) != x.shape[0]:
                raise ValueError("a list of seeds must have one seed per batch item")
            self.batched = True
            seeds = tuple(int(s) for s in seed)
            w0 = w0[0]
        else:
            seeds = (int(seed),)
        if cpu:
            t0, w0, t1 = t0.detach().cpu(), w0.detach().cpu(), t1.detach().cpu()
        self.trees = tuple(torchsde.BrownianTree(t0, w0, t1, entropy=s) for s in seeds)

    @staticmethod
    def _sort(a, b):
        return (a, b, 1) if a < b else (b, a, -1)

    def __call__(self, t0, t1):
        t0, t1, sign = self._sort(torch.as_tensor(t0), torch.as_tensor(t1))
        device, dtype = t0.device, t0.dtype
        if self.cpu_tree:
            t0, t1 = t0.detach().cpu().float(), t1.detach().cpu().float()
        with warnings.catch_warnings():
            # float32 round-off at the interval ends ("Should have tb<=t1") is harmless
            warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
            w = torch.stack([tree(t0, t1) for tree in self.trees]).to(device=device, dtype=dtype) * (self.sign * sign)
        return w if self.batched else w[0]


class BrownianTreeNoiseSampler:
    """Noise sampler backed by a Brownian tree: ``ns(sigma, sigma_next)`` returns the
    (unit-variance normalised) Brownian increment between the two noise levels, so SDE
    samplers give consistent results when the number of steps changes."""

    def __init__(self, x, sigma_min, sigma_max, seed=None, transform=lambda s: s, cpu: bool = False):
        self.transform = transform
        t0 = self.transform(torch.as_tensor(sigma_min))
        t1 = self.transform(torch.as_tensor(sigma_max))
        self.tree = BatchedBrownianTree(x, t0, t1, seed, cpu=cpu)

    def __call__(self, sigma, sigma_next):
        t0 = self.transform(torch.as_tensor(sigma))
        t1 = self.transform(torch.as_tensor(sigma_next))
        return self.tree(t0, t1) / (t1 - t0).abs().sqrt()
