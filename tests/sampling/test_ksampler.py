"""KSampler pipeline: CFG batching, denoise trimming, advanced step ranges, masks, areas,
timestep ranges, progress / preview / interrupt, node wrappers."""
import pytest
import torch

from comfyui.engine import progress
from comfyui.nodes.builtin import sampling as nodes
from comfyui.sampling import samplers as smp
from comfyui.sampling.conditioning import calc_cond_batch, convert_cond, process_conds
from comfyui.sampling.schedulers import calculate_sigmas

from sampling_toy import GaussianModel, ToyPatcher, cond


def _run(p, seed=1, steps=6, cfg=1.0, sampler="euler", scheduler="normal", pos=None, neg=None, latent=None, **kw):
    latent = latent if latent is not None else {"samples": torch.zeros(2, 4, 8, 8)}
    pos = pos if pos is not None else cond(0.5)
    neg = neg if neg is not None else cond(-1.0)
    return smp.common_ksampler(p, seed, steps, cfg, sampler, scheduler, pos, neg, latent, **kw)[0]["samples"]


def test_cfg_one_skips_uncond_and_cfg_batches_cond_with_uncond():
    m = GaussianModel()
    p = ToyPatcher(m)
    _run(p, steps=5, cfg=1.0)
    assert m.calls == 5 and m.batch_sizes == [2] * 5
    m.calls, m.batch_sizes = 0, []
    _run(p, steps=5, cfg=7.0)
    assert m.calls == 5 and m.batch_sizes == [4] * 5
    # cond / uncond bookkeeping reaches the model
    assert sorted(m.seen_transformer_options[-1]["cond_or_uncond"]) == [0, 1]


def test_cfg_combines_predictions_linearly():
    """With mu linear in the cond, cfg-guided sampling equals sampling the extrapolated mean."""
    p = ToyPatcher(GaussianModel())
    guided = _run(p, steps=8, cfg=3.0, pos=cond(0.5), neg=cond(-1.0))
    direct = _run(p, steps=8, cfg=1.0, pos=cond(-1.0 + 3.0 * 1.5), neg=cond(0.0))
    torch.testing.assert_close(guided, direct, rtol=1e-4, atol=1e-4)


def test_same_seed_same_result_and_seed_changes_result():
    p = ToyPatcher(GaussianModel())
    a = _run(p, seed=5)
    torch.testing.assert_close(a, _run(p, seed=5))
    assert not torch.allclose(a, _run(p, seed=6))


def test_batch_index_reproduces_a_batch_member():
    p = ToyPatcher(GaussianModel())
    full = _run(p, seed=9, latent={"samples": torch.zeros(3, 4, 8, 8)})
    one = _run(p, seed=9, latent={"samples": torch.zeros(1, 4, 8, 8), "batch_index": [2]})
    torch.testing.assert_close(one[0], full[2], rtol=1e-5, atol=1e-5)


def test_denoise_trims_schedule_like_comfyui():
    p = ToyPatcher(GaussianModel())
    ks = smp.KSampler(p, steps=10, device="cpu", sampler="euler", scheduler="karras", denoise=0.5)
    ms = p.model.model_sampling
    torch.testing.assert_close(ks.sigmas, calculate_sigmas(ms, "karras", 20)[-11:])
    ks = smp.KSampler(p, steps=4, device="cpu", sampler="euler", scheduler="normal", denoise=0.3)
    torch.testing.assert_close(ks.sigmas, calculate_sigmas(ms, "normal", 13)[-5:])
    ks = smp.KSampler(p, steps=10, device="cpu", sampler="dpm_2", scheduler="normal")
    full = calculate_sigmas(ms, "normal", 11)
    torch.testing.assert_close(ks.sigmas, torch.cat([full[:-2], full[-1:]]))


def test_img2img_denoise_starts_from_noised_latent():
    m = GaussianModel()
    p = ToyPatcher(m)
    seen = []
    orig = m.apply_model

    def spy(x, t, **kw):
        seen.append(float(t[0]))
        return orig(x, t, **kw)

    m.apply_model = spy
    latent = {"samples": torch.full((1, 4, 8, 8), 0.3)}
    _run(p, steps=4, latent=latent, denoise=0.5, scheduler="normal")
    expected = calculate_sigmas(m.model_sampling, "normal", 8)[-5:]
    assert seen == pytest.approx(expected[:-1].tolist(), rel=1e-5)


def test_ksampler_advanced_split_equals_full_run():
    p = ToyPatcher(GaussianModel())
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    adv = nodes.KSamplerAdvanced()
    args = dict(model=p, noise_seed=4, steps=10, cfg=2.0, sampler_name="euler", scheduler="karras",
                positive=cond(0.5), negative=cond(0.0))
    (full,) = adv.sample(add_noise="enable", latent_image=latent, start_at_step=0, end_at_step=10000,
                         return_with_leftover_noise="disable", **args)
    (first,) = adv.sample(add_noise="enable", latent_image=latent, start_at_step=0, end_at_step=4,
                          return_with_leftover_noise="enable", **args)
    assert float(first["samples"].std()) > 1.0  # still noisy
    (second,) = adv.sample(add_noise="disable", latent_image=first, start_at_step=4, end_at_step=10000,
                           return_with_leftover_noise="disable", **args)
    torch.testing.assert_close(second["samples"], full["samples"], rtol=1e-4, atol=1e-4)
    # force_full_denoise: stopping early without leftover noise ends at sigma 0
    (early,) = adv.sample(add_noise="enable", latent_image=latent, start_at_step=0, end_at_step=4,
                          return_with_leftover_noise="disable", **args)
    assert float(early["samples"].std()) < 1.0
    # start beyond the end returns the input latent
    (same,) = adv.sample(add_noise="enable", latent_image=first, start_at_step=10, end_at_step=10000,
                         return_with_leftover_noise="disable", **args)
    assert torch.equal(same["samples"], first["samples"])


def test_noise_mask_keeps_unmasked_region():
    p = ToyPatcher(GaussianModel())
    original = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :, :8] = 1.0  # repaint the left half (mask is at a different resolution)
    latent = {"samples": original.clone(), "noise_mask": mask}
    out = _run(p, steps=8, latent=latent, pos=cond(3.0), neg=cond(3.0))
    torch.testing.assert_close(out[..., 5:], original[..., 5:])
    assert float(out[..., :3].mean()) == pytest.approx(3.0, abs=0.3)


def _direct_pred(conds_pos, x, sigma, model):
    c = {"positive": convert_cond(conds_pos)}
    c = process_conds(model, x, c, "cpu")
    return calc_cond_batch(model, [c["positive"]], x, sigma, {})[0]


def test_area_conditioning_blends_by_area_with_feathering():
    m = GaussianModel(s=1e-4)  # denoiser returns mu almost exactly
    x = torch.zeros(1, 4, 16, 48)
    sigma = torch.tensor([10.0])
    area = cond(2.0, area=(16, 24, 0, 0), strength=1.0)
    out = _direct_pred(cond(0.0) + area, x, sigma, m)
    assert torch.allclose(out[..., :16], torch.tensor(1.0), atol=1e-3)
    assert torch.allclose(out[..., 24:], torch.tensor(0.0), atol=1e-3)
    # feathered edge inside the area: weights k / 6 over the last min(8, 24 // 4) = 6 columns
    assert float(out[0, 0, 0, 18]) == pytest.approx(1.0, abs=1e-3)
    assert 0.0 < float(out[0, 0, 0, 23]) < float(out[0, 0, 0, 19]) < 1.0
    strong = cond(2.0, area=(16, 24, 0, 0), strength=3.0)
    out = _direct_pred(cond(0.0) + strong, x, sigma, m)
    assert torch.allclose(out[..., :16], torch.tensor(1.5), atol=1e-3)
    pct = cond(2.0, area=("percentage", 1.0, 0.5, 0.0, 0.0), strength=1.0)
    out2 = _direct_pred(cond(0.0) + pct, x, sigma, m)
    assert torch.allclose(out2[..., :16], torch.tensor(1.0), atol=1e-3)


def test_small_area_feathers_over_a_quarter_of_its_size():
    """A 64x64 px ConditioningSetArea prompt (8x8 latent pixels) fades in over 8 // 4 = 2 latent
    pixels at its inner edges, as in ComfyUI; sampled end to end on latents."""
    from comfyui.nodes.builtin.conditioning import ConditioningSetArea

    p = ToyPatcher(GaussianModel())
    latent = {"samples": torch.zeros(1, 4, 32, 32)}
    (area,) = ConditioningSetArea().append(cond(1.0), 64, 64, 64, 64, 1.0)
    with_area = _run(p, steps=10, pos=cond(0.0) + area, neg=cond(0.0), latent=latent)
    without = _run(p, steps=10, pos=cond(0.0), neg=cond(0.0), latent=latent)
    # the toy denoiser is affine in its data mean, so the difference of two runs with the same noise
    # is a fixed multiple of the blended mean m / (1 + m), m the area's weight at that pixel
    effect = with_area - without
    weight = torch.zeros(32)
    weight[8:16] = torch.tensor([0.5, 1, 1, 1, 1, 1, 1, 0.5])
    m = weight[:, None] * weight[None, :]
    expected = (m / (1 + m)) / 0.5 * effect[0, 0, 11, 11]
    torch.testing.assert_close(effect, expected.expand_as(effect), rtol=0, atol=1e-4)


def test_mask_conditioning_and_mask_strength():
    m = GaussianModel(s=1e-4)
    x = torch.zeros(1, 4, 8, 8)
    sigma = torch.tensor([10.0])
    mask = torch.zeros(1, 32, 32)
    mask[:, :, :16] = 1.0
    out = _direct_pred(cond(0.0) + cond(2.0, mask=mask, mask_strength=1.0), x, sigma, m)
    assert torch.allclose(out[..., :3], torch.tensor(1.0), atol=1e-3)
    assert torch.allclose(out[..., 5:], torch.tensor(0.0), atol=1e-3)
    out = _direct_pred(cond(0.0) + cond(2.0, mask=mask, mask_strength=3.0), x, sigma, m)
    assert torch.allclose(out[..., :3], torch.tensor(1.5), atol=1e-3)


def test_timestep_ranges_switch_conds():
    m = GaussianModel(s=1e-4)
    x = torch.zeros(1, 4, 4, 4)
    ms = m.model_sampling
    pos = cond(2.0, start_percent=0.0, end_percent=0.5) + cond(-2.0, start_percent=0.5, end_percent=1.0)
    hi = torch.tensor([ms.percent_to_sigma(0.2)])
    lo = torch.tensor([ms.percent_to_sigma(0.8)])
    assert torch.allclose(_direct_pred(pos, x, hi, m), torch.tensor(2.0), atol=1e-3)
    assert torch.allclose(_direct_pred(pos, x, lo, m), torch.tensor(-2.0), atol=1e-3)


def test_area_cond_gets_matching_uncond_entry():
    m = GaussianModel()
    x = torch.zeros(1, 4, 16, 16)
    c = {"positive": convert_cond(cond(1.0) + cond(2.0, area=(8, 8, 0, 0))), "negative": convert_cond(cond(0.0))}
    c = process_conds(m, x, c, "cpu")
    assert len(c["negative"]) == 2
    assert tuple(c["negative"][1]["area"]) == (8, 8, 0, 0)


def test_different_token_lengths_batch_together():
    m = GaussianModel()
    p = ToyPatcher(m)
    _run(p, steps=2, cfg=4.0, pos=cond(0.5, tokens=77), neg=cond(0.0, tokens=154))
    assert m.batch_sizes == [4, 4]


def test_progress_preview_and_interrupt():
    from comfyui.models import memory

    p = ToyPatcher(GaussianModel())
    events = []
    ctx = progress.NodeContext("p", "1", "1", "1", None,
                               on_progress=lambda v, t, preview, node_id=None: events.append((v, t, preview)))
    old = memory.args.get("preview_method")
    memory.args["preview_method"] = "latent2rgb"
    token = progress.set_context(ctx)
    try:
        _run(p, steps=4)
        assert [e[:2] for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]
        fmt, img, size = events[-1][2]
        assert fmt == "JPEG" and img.size == (8, 8) and size == 512
        ctx.interrupt_flag.set()
        with pytest.raises(progress.InterruptProcessingException):
            _run(p, steps=4)
    finally:
        progress.reset_context(token)
        memory.args["preview_method"] = old


def test_model_sampling_discrete_node_patches_a_clone():
    m = GaussianModel()
    p = ToyPatcher(m)
    (patched,) = nodes.ModelSamplingDiscrete().patch(p, "v_prediction", True)
    ms = patched.get_model_object("model_sampling")
    from comfyui.sampling.model_sampling import V_PREDICTION, LCM
    assert isinstance(ms, V_PREDICTION) and float(ms.sigma_max) > 4000
    assert not isinstance(p.get_model_object("model_sampling"), V_PREDICTION)
    (lcm,) = nodes.ModelSamplingDiscrete().patch(p, "lcm", False)
    assert isinstance(lcm.get_model_object("model_sampling"), LCM)
    # the schedule used by KSampler comes from the patch, and sampling uses it (huge first sigma)
    seen = []
    orig = m.apply_model
    m.apply_model = lambda x, t, **kw: (seen.append(float(t[0])), orig(x, t, **kw))[1]
    _run(patched, steps=3, scheduler="karras")
    assert seen[0] > 4000
    assert m.model_sampling is not ms  # restored after sampling


def test_rescale_cfg_multiplier_zero_is_plain_cfg():
    p = ToyPatcher(GaussianModel())
    (r0,) = nodes.RescaleCFG().patch(p, 0.0)
    a = _run(r0, steps=5, cfg=4.0)
    b = _run(p, steps=5, cfg=4.0)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    (r1,) = nodes.RescaleCFG().patch(p, 1.0)
    fn = r1.model_options["sampler_cfg_function"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    sigma = torch.tensor([2.0, 5.0])
    cond_d = torch.randn(2, 4, 8, 8, generator=g)
    uncond_d = torch.randn(2, 4, 8, 8, generator=g) * 3
    args = {"cond": x - cond_d, "uncond": x - uncond_d, "cond_scale": 4.0, "sigma": sigma, "input": x}
    denoised = x - fn(args)
    # in v space, the rescaled guided prediction has the std of the cond prediction
    sb = sigma.view(2, 1, 1, 1)

    def to_v(d):
        return (x / (sb ** 2 + 1) - d) * (sb ** 2 + 1) ** 0.5 / sb

    v_out, v_cond = to_v(denoised), to_v(cond_d)
    torch.testing.assert_close(v_out.std(dim=(1, 2, 3)), v_cond.std(dim=(1, 2, 3)), rtol=1e-4, atol=1e-5)
    plain = uncond_d + 4.0 * (cond_d - uncond_d)
    assert not torch.allclose(denoised, plain, atol=1e-2)
    assert "sampler_cfg_function" not in p.model_options


def test_sampler_custom_nodes_match_ksampler():
    p = ToyPatcher(GaussianModel())
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (ks,) = nodes.KSampler().sample(p, 3, 6, 2.0, "euler", "karras", cond(0.5), cond(0.0), latent, 1.0)
    (sigmas,) = nodes.BasicScheduler().get_sigmas(p, "karras", 6, 1.0)
    (sampler,) = nodes.KSamplerSelect().get_sampler("euler")
    out, denoised = nodes.SamplerCustom().sample(p, True, 3, 2.0, cond(0.5), cond(0.0), sampler, sigmas, latent)
    torch.testing.assert_close(out["samples"], ks["samples"])
    assert denoised["samples"].shape == out["samples"].shape
    (guider,) = nodes.CFGGuider().get_guider(p, cond(0.5), cond(0.0), 2.0)
    (noise,) = nodes.RandomNoise().get_noise(3)
    out2, _ = nodes.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent)
    torch.testing.assert_close(out2["samples"], ks["samples"])
    # DisableNoise: starting from a zero latent without noise stays at the data mean path
    (zero,) = nodes.DisableNoise().get_noise()
    (basic,) = nodes.BasicGuider().get_guider(p, cond(0.5))
    out3, _ = nodes.SamplerCustomAdvanced().sample(zero, basic, sampler, sigmas, latent)
    assert torch.allclose(out3["samples"], out3["samples"].flatten()[0])


def test_dual_cfg_guider():
    p = ToyPatcher(GaussianModel())
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (sigmas,) = nodes.BasicScheduler().get_sigmas(p, "normal", 6, 1.0)
    (sampler,) = nodes.KSamplerSelect().get_sampler("euler")
    (noise,) = nodes.RandomNoise().get_noise(2)
    (dual,) = nodes.DualCFGGuider().get_guider(p, cond(1.0), cond(0.5), cond(0.0), 2.0, 3.0, "regular")
    out, _ = nodes.SamplerCustomAdvanced().sample(noise, dual, sampler, sigmas, latent)
    # regular: neg + cfg2 * (c2 - neg) + cfg1 * (c1 - c2) = 0 + 1.5 + 1.0
    (ref,) = nodes.CFGGuider().get_guider(p, cond(2.5), cond(0.0), 1.0)
    expected, _ = nodes.SamplerCustomAdvanced().sample(noise, ref, sampler, sigmas, latent)
    torch.testing.assert_close(out["samples"], expected["samples"], rtol=1e-4, atol=1e-4)
    (nested,) = nodes.DualCFGGuider().get_guider(p, cond(1.0), cond(0.5), cond(0.0), 2.0, 3.0, "nested")
    out_n, _ = nodes.SamplerCustomAdvanced().sample(noise, nested, sampler, sigmas, latent)
    # nested: neg + cfg2 * ((c2 + cfg1 * (c1 - c2)) - neg) = 3 * 1.5
    (ref_n,) = nodes.CFGGuider().get_guider(p, cond(4.5), cond(0.0), 1.0)
    expected_n, _ = nodes.SamplerCustomAdvanced().sample(noise, ref_n, sampler, sigmas, latent)
    torch.testing.assert_close(out_n["samples"], expected_n["samples"], rtol=1e-4, atol=1e-4)


def test_process_latent_in_and_out_applied():
    m = GaussianModel()
    m.latent_format.scale_factor = 2.0
    p = ToyPatcher(m)
    latent = {"samples": torch.full((1, 4, 8, 8), 0.25)}
    # with denoise 0 nothing runs; with a mask of zeros the latent comes back unchanged through in/out
    out = _run(p, steps=4, latent={**latent, "noise_mask": torch.zeros(1, 1, 8, 8)}, pos=cond(0.0), neg=cond(0.0))
    torch.testing.assert_close(out, latent["samples"])


def test_taesd_preview_from_vae_approx(workspace):
    import safetensors.torch

    from comfyui import paths
    from comfyui.models import memory
    from comfyui.sampling import preview

    dec = preview.taesd_decoder(4)
    folder = paths.get_folder_paths("vae_approx")[0]
    import os

    os.makedirs(folder, exist_ok=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in dec.state_dict().items()},
                                os.path.join(folder, "taesd_decoder.safetensors"))
    paths.invalidate_cache("vae_approx")
    m = GaussianModel()
    m.latent_format.taesd_decoder_name = "taesd_decoder"
    p = ToyPatcher(m)
    events = []
    ctx = progress.NodeContext("p", "1", "1", "1", None,
                               on_progress=lambda v, t, prev, node_id=None: events.append(prev))
    old = memory.args.get("preview_method")
    memory.args["preview_method"] = "taesd"
    token = progress.set_context(ctx)
    try:
        _run(p, steps=2)
    finally:
        progress.reset_context(token)
        memory.args["preview_method"] = old
    fmt, img, size = events[-1]
    assert fmt == "JPEG" and img.size == (64, 64)  # TAESD upsamples 8x
    # without weights for the format, taesd falls back to latent2rgb
    m.latent_format.taesd_decoder_name = "taesdxl_decoder"
    memory.args["preview_method"] = "taesd"
    try:
        assert isinstance(preview.get_previewer(p), preview.Latent2RGBPreviewer)
    finally:
        memory.args["preview_method"] = old


def test_control_objects_reach_the_model_and_uncond():
    class FakeControl:
        def __init__(self):
            self.pre_runs = 0
            self.calls = []
            self.cleaned = False

        def pre_run(self, model, percent_to_sigma):
            self.pre_runs += 1

        def get_control(self, x, t, c, batched_number, transformer_options):
            self.calls.append((x.shape[0], batched_number))
            return {"marker": x.shape[0]}

        def cleanup(self):
            self.cleaned = True

    m = GaussianModel()
    seen = []
    orig = m.apply_model
    m.apply_model = lambda x, t, control=None, **kw: (seen.append(control), orig(x, t, **kw))[1]
    p = ToyPatcher(m)
    ctrl = FakeControl()
    pos = cond(0.5, control=ctrl, control_apply_to_uncond=True)
    _run(p, steps=3, cfg=4.0, pos=pos, neg=cond(0.0))
    assert ctrl.pre_runs == 1  # before the uncond shares it, as ComfyUI
    assert ctrl.calls == [(4, 2)] * 3  # cond + uncond batched together, control for both
    assert seen == [{"marker": 4}] * 3
    assert ctrl.cleaned


def test_custom_sampler_registration_and_previewer_signature():
    from comfyui.models import memory
    from comfyui.sampling import k_diffusion as kd
    from comfyui.sampling import preview

    calls = []

    def sample_my_test(model, x, sigmas, extra_args=None, callback=None, disable=None):
        calls.append(len(sigmas))
        return kd.sample_euler(model, x, sigmas, extra_args=extra_args, callback=callback)

    kd.sample_my_test = sample_my_test
    try:
        p = ToyPatcher(GaussianModel())
        latent = {"samples": torch.zeros(1, 4, 8, 8)}
        (sampler,) = nodes.KSamplerSelect().get_sampler("my_test")
        (sigmas,) = nodes.BasicScheduler().get_sigmas(p, "normal", 3, 1.0)
        nodes.SamplerCustom().sample(p, True, 0, 1.0, cond(0.0), cond(0.0), sampler, sigmas, latent)
        assert calls == [4]
    finally:
        del kd.sample_my_test
    with pytest.raises(ValueError):
        smp.sampler_object("no_such_sampler")
    old = memory.args.get("preview_method")
    memory.args["preview_method"] = "latent2rgb"
    try:
        prev = preview.get_previewer("cpu", GaussianModel().latent_format)
        assert isinstance(prev, preview.Latent2RGBPreviewer)
    finally:
        memory.args["preview_method"] = old
    assert preview.get_previewer("cpu", GaussianModel().latent_format) is None


def test_model_extra_conds_receive_entry_options_and_batch():
    class AdmModel(GaussianModel):
        def __init__(self):
            super().__init__()
            self.extra_calls = []
            self.ys = []

        def extra_conds(self, **kw):
            self.extra_calls.append(kw)
            y = torch.cat([kw["pooled_output"], torch.tensor([[kw["width"], kw["height"]]], dtype=torch.float32)], 1)
            return {"c_crossattn": kw["cross_attn"], "y": y}

        def apply_model(self, x, t, y=None, **kw):
            self.ys.append(y)
            return super().apply_model(x, t, **kw)

    m = AdmModel()
    p = ToyPatcher(m)
    pos = cond(0.5, pooled_output=torch.ones(1, 3), width=1024)
    neg = cond(0.0, pooled_output=torch.zeros(1, 3))
    _run(p, steps=2, cfg=3.0, pos=pos, neg=neg, latent={"samples": torch.zeros(2, 4, 8, 16)})
    by_type = {c["prompt_type"]: c for c in m.extra_calls}
    assert by_type["positive"]["width"] == 1024 and by_type["positive"]["height"] == 64
    assert by_type["negative"]["width"] == 128  # default: latent width * 8
    assert by_type["positive"]["noise"].shape == (2, 4, 8, 16)
    y = m.ys[0]
    assert y.shape == (4, 5)  # cond and uncond, each repeated to the batch of 2
    assert sorted(y[:, -2].tolist()) == [128.0, 128.0, 1024.0, 1024.0]
