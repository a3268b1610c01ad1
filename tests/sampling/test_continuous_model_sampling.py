"""ModelSamplingContinuousEDM / V: the continuous log-sigma schedules (values by hand), EDM
preconditioning with sigma_data 0.5, Playground v2.5's latent normalisation, and the nodes
re-timing a model for the schedulers and samplers."""
import math

import pytest
import torch

from comfyui.models.latent_formats import SDXL_Playground_2_5
from comfyui.nodes.builtin import model_advanced as MA
from comfyui.nodes.builtin import sampling as S
from comfyui.sampling import model_sampling as msm

from sampling_toy import GaussianModel, ToyPatcher, cond


def test_edm_schedule_values():
    ms = msm.continuous_model_sampling(msm.ModelSamplingContinuousEDM, "edm", None, 0.002, 120.0, 0.5)
    assert ms.sigma_min.item() == pytest.approx(0.002, rel=1e-5)
    assert ms.sigma_max.item() == pytest.approx(120.0, rel=1e-5)
    assert ms.timestep(torch.tensor(1.0)).item() == 0.0
    assert ms.timestep(torch.tensor(math.e ** 4)).item() == pytest.approx(1.0)
    assert ms.sigma(torch.tensor(0.5)).item() == pytest.approx(math.e ** 2)
    assert ms.percent_to_sigma(0.5) == pytest.approx(math.sqrt(0.24), rel=1e-5)  # geometric middle
    assert ms.percent_to_sigma(0.0) == pytest.approx(999999999.9) and ms.percent_to_sigma(1.0) == 0.0
    # EDM: c_skip = sd^2 / (s^2 + sd^2) = 0.5, c_out = s sd / sqrt(s^2 + sd^2) = 0.25 / sqrt(0.5) at s = sd = 0.5
    den = ms.calculate_denoised(torch.tensor([0.5]), torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert den.item() == pytest.approx(0.5 + 0.25 / math.sqrt(0.5))


def test_v_schedule_values():
    ms = msm.continuous_model_sampling(msm.ModelSamplingContinuousV, "v_prediction", None, 0.03, 500.0, 1.0)
    assert ms.timestep(torch.tensor(1.0)).item() == pytest.approx(0.5)  # 2 atan(1) / pi
    assert ms.sigma(torch.tensor(0.5)).item() == pytest.approx(1.0)
    assert ms.sigma_max.item() == pytest.approx(500.0, rel=1e-5)


def test_playground_latent_format():
    lf = SDXL_Playground_2_5()
    mean = torch.tensor([-1.6574, 1.886, -1.383, 2.5155]).view(1, 4, 1, 1)
    std = torch.tensor([8.4927, 5.9022, 6.5498, 5.2299]).view(1, 4, 1, 1)
    torch.testing.assert_close(lf.process_in(mean.expand(1, 4, 2, 2)), torch.zeros(1, 4, 2, 2))
    torch.testing.assert_close(lf.process_in(mean + std), torch.full((1, 4, 1, 1), 0.5))
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(lf.process_out(lf.process_in(x)), x, atol=1e-5, rtol=1e-5)


def test_nodes_retime_the_model():
    p = ToyPatcher(GaussianModel())
    (m,) = MA.ModelSamplingContinuousEDM().patch(p, "edm", 120.0, 0.002)
    ms = m.get_model_object("model_sampling")
    assert isinstance(ms, msm.ModelSamplingContinuousEDM) and isinstance(ms, msm.EDM) and ms.sigma_data == 0.5
    assert "model_sampling" not in p.object_patches
    (sig,) = S.BasicScheduler().get_sigmas(m, "karras", 4, 1.0)
    assert sig[0].item() == pytest.approx(120.0, rel=1e-4) and sig[-2].item() == pytest.approx(0.002, rel=1e-3)
    (eps,) = MA.ModelSamplingContinuousEDM().patch(p, "eps", 80.0, 0.01)
    assert eps.get_model_object("model_sampling").sigma_data == 1.0
    (pg,) = MA.ModelSamplingContinuousEDM().patch(p, "edm_playground_v2.5", 80.0, 0.002)
    assert isinstance(pg.object_patches["latent_format"], SDXL_Playground_2_5)
    with pytest.raises(ValueError, match="Cosmos"):
        MA.ModelSamplingContinuousEDM().patch(p, "cosmos_rflow", 80.0, 0.002)
    (v,) = MA.ModelSamplingContinuousV().patch(p, "v_prediction", 500.0, 0.03)
    vms = v.get_model_object("model_sampling")
    assert isinstance(vms, msm.ModelSamplingContinuousV) and isinstance(vms, msm.V_PREDICTION)
    # the toy denoiser is exact whatever the schedule: sampling an EPS-timed model still lands
    # on the data mean from a high sigma
    (e2,) = MA.ModelSamplingContinuousEDM().patch(p, "eps", 80.0, 0.002)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (sig2,) = S.BasicScheduler().get_sigmas(e2, "karras", 12, 1.0)
    (sampler,) = S.KSamplerSelect().get_sampler("euler")
    out, _ = S.SamplerCustom().sample(e2, True, 1, 1.0, cond(0.5), cond(0.0), sampler, sig2, latent)
    assert abs(out["samples"].mean().item() - 0.5) < 0.1
