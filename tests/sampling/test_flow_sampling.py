"""Flow-matching schedules (ModelSamplingDiscreteFlow, ModelSamplingFlux), their nodes, and
every sampler and scheduler on a flow model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comfyui.nodes.builtin import sampling as sampling_nodes
from comfyui.sampling import model_sampling as ms
from comfyui.sampling import samplers as smp
from comfyui.sampling.names import SAMPLER_NAMES, SCHEDULER_NAMES
from comfyui.sampling.schedulers import calculate_sigmas

from sampling_toy import ToyLatentFormat, ToyPatcher, cond


class GaussianFlowModel:
    """A rectified-flow model of data N(mu, s^2) per value: x_t = (1-sigma) x0 + sigma eps.
    The network output is the exact velocity; CONST turns it into the denoised estimate."""

    def __init__(self, model_sampling, s: float = 0.5):
        self.s = s
        self.model_sampling = model_sampling
        self.latent_format = ToyLatentFormat()
        self.timesteps_seen: list[float] = []

    def apply_model(self, x, t, c_crossattn=None, transformer_options=None, **kwargs):
        ms_ = self.model_sampling
        sigma = t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        self.timesteps_seen.append(float(ms_.timestep(t).flatten()[0]))
        mu = c_crossattn.float().mean(dim=(1, 2)).reshape(sigma.shape) if c_crossattn is not None else 0.0
        a = 1.0 - sigma
        x0 = mu + a * self.s ** 2 / (a * a * self.s ** 2 + sigma * sigma) * (x - a * mu)
        velocity = (x - x0) / sigma.clamp(min=1e-6)  # eps - x0
        return ms_.calculate_denoised(t, velocity, x)


def _flow_patcher(shift=3.0):
    model = GaussianFlowModel(ms.flow_model_sampling(ms.ModelSamplingDiscreteFlow, {"shift": shift}))
    return ToyPatcher(model)


def test_discrete_flow_table_matches_sd3_shift():
    m = ms.flow_model_sampling(ms.ModelSamplingDiscreteFlow, {"shift": 3.0})
    t = torch.arange(1, 1001) / 1000
    assert torch.allclose(m.sigmas, 3 * t / (1 + 2 * t))
    assert float(m.sigma_max) == pytest.approx(1.0) and float(m.sigma_min) == pytest.approx(0.003 / 1.002)
    # the network sees sigma * multiplier (SD3: 1000; AuraFlow / Lumina 2: 1)
    assert float(m.timestep(torch.tensor(0.25))) == pytest.approx(250.0)
    aura = ms.flow_model_sampling(ms.ModelSamplingDiscreteFlow, {"shift": 1.73, "multiplier": 1.0})
    assert float(aura.timestep(torch.tensor(0.25))) == pytest.approx(0.25)
    assert m.percent_to_sigma(0.0) == 1.0 and m.percent_to_sigma(1.0) == 0.0
    assert m.percent_to_sigma(0.5) == pytest.approx(1.5 / 2.0)


def test_flow_noise_scaling_is_the_interpolation():
    m = ms.flow_model_sampling(ms.ModelSamplingDiscreteFlow, {"shift": 1.0})
    x0, eps = torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), -1.0)
    assert torch.allclose(m.noise_scaling(torch.tensor([0.25]), eps, x0), torch.full_like(x0, 0.75 * 2 - 0.25))


@pytest.mark.parametrize("shift,steps", [(1.0, 4), (3.0, 10), (3.0, 20), (1.73, 8)])
def test_sd3_sigmas_match_diffusers(shift, steps):
    from diffusers import FlowMatchEulerDiscreteScheduler
    sch = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    # the training table, high to low in diffusers
    ours = ms.flow_model_sampling(ms.ModelSamplingDiscreteFlow, {"shift": shift})
    assert np.allclose(sch.sigmas.numpy(), ours.sigmas.flip(0).numpy(), atol=1e-6)
    # the SD3 / Flux pipelines' schedule: linspace(1, 1/n) shifted, then 0 = ComfyUI's "simple"
    sch.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps))
    assert np.allclose(calculate_sigmas(ours, "simple", steps).numpy(), sch.sigmas.numpy(), atol=1e-5)
    assert np.allclose((calculate_sigmas(ours, "simple", steps)[:-1] * 1000).numpy(), sch.timesteps.numpy(), atol=1e-3)


def test_simple_schedule_reads_the_table_like_comfyui():
    """A step count that does not divide the 1000-entry table picks the nearest lower table
    entry (ComfyUI's "simple"), within one table step of diffusers' exact linspace."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    sch = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    sch.set_timesteps(sigmas=np.linspace(1.0, 1 / 28, 28))
    ours = calculate_sigmas(ms.flow_model_sampling(ms.ModelSamplingDiscreteFlow, {"shift": 3.0}), "simple", 28)
    diff = np.abs(ours.numpy() - sch.sigmas.numpy())
    assert diff.max() < 3 * 3 / 1000 and diff.max() > 1e-5


@pytest.mark.parametrize("width,height,steps", [(1024, 1024, 20), (512, 768, 4), (256, 256, 8)])
def test_flux_sigmas_match_diffusers_dynamic_shifting(width, height, steps):
    from diffusers import FlowMatchEulerDiscreteScheduler
    sch = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                          base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                          max_image_seq_len=4096)
    seq_len = (height // 16) * (width // 16)  # 2x2 patches of the 8x-downsampled latent
    mu = 0.5 + (1.15 - 0.5) / (4096 - 256) * (seq_len - 256)  # FluxPipeline's calculate_shift
    sch.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    patched = sampling_nodes.ModelSamplingFlux().patch(_flow_patcher(), 1.15, 0.5, width, height)[0]
    ours = patched.get_model_object("model_sampling")
    assert ours.shift == pytest.approx(mu)
    assert np.allclose(calculate_sigmas(ours, "simple", steps).numpy(), sch.sigmas.numpy(), atol=1e-4)
    assert float(ours.timestep(torch.tensor(0.3))) == pytest.approx(0.3)  # Flux's timestep is sigma


def test_model_sampling_nodes_inputs_are_upstreams():
    sd3 = sampling_nodes.ModelSamplingSD3.INPUT_TYPES()["required"]
    assert sd3["shift"] == ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01})
    aura = sampling_nodes.ModelSamplingAuraFlow.INPUT_TYPES()["required"]
    assert aura["shift"][1]["default"] == 1.73
    flux = sampling_nodes.ModelSamplingFlux.INPUT_TYPES()["required"]
    assert list(flux) == ["model", "max_shift", "base_shift", "width", "height"]
    assert flux["width"][1] == {"default": 1024, "min": 16, "max": 16384, "step": 8}
    p = _flow_patcher(shift=1.0)
    patched = sampling_nodes.ModelSamplingAuraFlow().patch_aura(p, 6.0)[0]
    m = patched.get_model_object("model_sampling")
    assert isinstance(m, ms.ModelSamplingDiscreteFlow) and isinstance(m, ms.CONST)
    assert (m.shift, m.multiplier) == (6.0, 1.0)
    assert p.get_model_object("model_sampling").shift == 1.0  # the input model is untouched


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_every_sampler_and_scheduler_runs_on_a_flow_model(scheduler):
    mu, s = 0.5, 0.5
    for sampler in SAMPLER_NAMES:
        p = _flow_patcher(shift=3.0)
        latent = {"samples": torch.zeros(1, 4, 8, 8)}
        out = smp.common_ksampler(p, 3, 6, 1.0, sampler, scheduler, cond(mu), cond(mu), latent)[0]["samples"]
        assert out.shape == (1, 4, 8, 8), (sampler, scheduler)
        assert torch.isfinite(out).all(), (sampler, scheduler)
        # the flow model's timesteps stay in its range (sigma in [0, 1] times 1000)
        assert all(0.0 <= t <= 1000.0 + 1e-3 for t in p.model.timesteps_seen), (sampler, scheduler)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "res_multistep", "uni_pc"])
def test_flow_sampling_reaches_the_data_distribution(sampler):
    mu, s = 0.5, 0.5
    p = _flow_patcher(shift=3.0)
    latent = {"samples": torch.zeros(1, 4, 32, 32)}
    out = smp.common_ksampler(p, 7, 30, 1.0, sampler, "simple", cond(mu), cond(mu), latent)[0]["samples"]
    assert float(out.mean()) == pytest.approx(mu, abs=0.04)
    assert float(out.std()) == pytest.approx(s, abs=0.06)
    assert not math.isnan(float(out.std()))
