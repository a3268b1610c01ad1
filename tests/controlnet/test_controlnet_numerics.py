"""ControlNet residuals against diffusers' ControlNetModel for the same tiny weights, in both
file layouts (SD1.5- and SDXL-shaped), union ControlNets against ControlNetUnionModel,
T2I-Adapters against diffusers' T2IAdapter and their feature placement; chaining, strength
and timestep ranges."""
from __future__ import annotations

import pytest
import torch

from comfyui.models import controlnet as cn
from comfyui.models import memory

from .cn_fixtures import SD15_SHAPED_UNET, write_controlnet, write_t2i_adapter


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    yield
    memory.configure(None)


SDXL_SHAPED = dict(in_channels=4, out_channels=4, model_channels=64, num_res_blocks=[2, 2], channel_mult=[1, 2],
                   transformer_depth=[0, 0, 2, 2], transformer_depth_middle=2, context_dim=96, num_heads=-1,
                   num_head_channels=64, use_linear_in_transformer=True, adm_in_channels=64 + 6 * 256)


@pytest.mark.parametrize("ucfg,layout,fname", [
    (SD15_SHAPED_UNET, "ldm", "control_v11p_sd15_scribble_fp16.safetensors"),
    (SD15_SHAPED_UNET, "diffusers", "diffusion_pytorch_model.safetensors"),
    (SDXL_SHAPED, "diffusers", "controlnet-sdxl.safetensors"),
    (SDXL_SHAPED, "ldm", "controlnet-sdxl-ldm.safetensors"),
])
def test_residuals_match_diffusers(tmp_path, ucfg, layout, fname):
    ref = write_controlnet(str(tmp_path / fname), layout=layout, ucfg=ucfg)
    net = cn.load_controlnet(str(tmp_path / fname))
    assert isinstance(net, cn.ControlNet)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=g)
    hint = torch.rand(2, 3, 128, 128, generator=g)
    ctx = torch.randn(2, 7, ucfg["context_dim"], generator=g)
    t = torch.tensor([999.0, 250.0])
    kw = {}
    y = None
    if ucfg.get("adm_in_channels"):
        y = torch.randn(2, ucfg["adm_in_channels"], generator=g)
        # diffusers splits y into the pooled text embedding and the 6 size values it embeds itself
        from comfyui.models.base import timestep_embedding
        sizes = torch.tensor([[64.0, 64, 0, 0, 64, 64], [32, 48, 8, 0, 64, 64]])
        y = torch.cat([y[:, :64], timestep_embedding(sizes.flatten(), 256).reshape(2, -1)], dim=1)
        kw["added_cond_kwargs"] = {"text_embeds": y[:, :64], "time_ids": sizes}
    with torch.no_grad():
        down, mid = ref(x, t, encoder_hidden_states=ctx, controlnet_cond=hint, conditioning_scale=1.0,
                        return_dict=False, **kw)
        ours = net.control_model(x=x, hint=hint, timesteps=t, context=ctx, y=y)
    assert len(ours["output"]) == len(down)
    for a, b in zip(ours["output"], down):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-4)
    torch.testing.assert_close(ours["middle"][0], mid, rtol=2e-4, atol=2e-4)
    assert mid.abs().mean() > 1e-3


def test_t2i_adapter_features_land_at_the_end_of_each_level(tmp_path):
    p = str(tmp_path / "t2iadapter_depth_sd15v2.pth")
    write_t2i_adapter(p)
    net = cn.load_controlnet(p)
    assert isinstance(net, cn.T2IAdapter) and net.channels_in == 3
    feats = net.t2i_model(torch.rand(1, 3, 64, 64))["input"]
    assert len(feats) == 12
    # popped from the end by input blocks 0..11: None, None, level0, None, None, level1, ...
    popped = list(reversed(feats))
    shapes = [None if f is None else tuple(f.shape[1:]) for f in popped]
    assert shapes == [None, None, (32, 8, 8), None, None, (64, 4, 4), None, None, (128, 2, 2), None, None, (128, 1, 1)]


class _MS:
    def timestep(self, s):
        return s * 100

    def calculate_input(self, s, x):
        return x

    def percent_to_sigma(self, p):
        return 10.0 * (1 - p)


class _Model:
    model_sampling = _MS()


def test_chain_strength_and_timestep_range(tmp_path):
    write_controlnet(str(tmp_path / "a.safetensors"), seed=0)
    write_controlnet(str(tmp_path / "b.safetensors"), seed=1)
    a, b = cn.load_controlnet(str(tmp_path / "a.safetensors")), cn.load_controlnet(str(tmp_path / "b.safetensors"))
    hint = torch.rand(1, 3, 40, 48)
    x = torch.randn(2, 4, 8, 8)
    cond = {"c_crossattn": torch.randn(2, 5, 32)}
    ca = a.copy().set_cond_hint(hint, 0.5, (0.0, 1.0))
    cb = b.copy().set_cond_hint(hint, 2.0, (0.0, 0.5)).set_previous_controlnet(ca)
    cb.pre_run(_Model(), _Model.model_sampling.percent_to_sigma)
    early, late = torch.tensor([8.0, 8.0]), torch.tensor([2.0, 2.0])
    ra, rb_alone = ca.get_control(x, early, cond, 2), b.copy().set_cond_hint(hint, 2.0)
    rb_alone.pre_run(_Model(), _Model.model_sampling.percent_to_sigma)
    rb = rb_alone.get_control(x, early, cond, 2)
    both = cb.get_control(x, early, cond, 2)
    for key in ("output", "middle"):
        for s, p, q in zip(both[key], ra[key], rb[key]):
            torch.testing.assert_close(s, p + q)
    # strength scales the residuals linearly
    ca1 = a.copy().set_cond_hint(hint, 1.0)
    ca1.pre_run(_Model(), _Model.model_sampling.percent_to_sigma)
    torch.testing.assert_close(ca1.get_control(x, early, cond, 2)["middle"][0] * 0.5, ra["middle"][0])
    # past end_percent=0.5 (sigma 5) only the previous ControlNet contributes
    late_out = cb.get_control(x, late, cond, 2)
    torch.testing.assert_close(late_out["middle"][0], ca.get_control(x, late, cond, 2)["middle"][0])
    # the hint is centre-cropped and resized to latent*8
    assert cb.cond_hint.shape[-2:] == (64, 64)
    cb.cleanup()
    assert cb.cond_hint is None and ca.cond_hint is None


def test_unknown_file_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file
    save_file({"foo.weight": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not a ControlNet"):
        cn.load_controlnet(str(tmp_path / "x.safetensors"))


def test_union_controlnet_matches_diffusers_for_one_type(tmp_path):
    from safetensors.torch import save_file
    from comfyui.models.base import timestep_embedding
    from comfyui.nodes.builtin.controlnet import SetUnionControlNetType
    from .cn_fixtures import diffusers_union_controlnet
    ref = diffusers_union_controlnet(SDXL_SHAPED)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()},
              str(tmp_path / "controlnet-union-sdxl-1.0.safetensors"))
    net = cn.load_controlnet(str(tmp_path / "controlnet-union-sdxl-1.0.safetensors"))
    assert net.control_model.num_control_type == 6
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, 16, 16, generator=g)
    hint = torch.rand(1, 3, 128, 128, generator=g)
    ctx = torch.randn(1, 7, 96, generator=g)
    sizes = torch.tensor([[64.0, 64, 0, 0, 64, 64]])
    pooled = torch.randn(1, 64, generator=g)
    y = torch.cat([pooled, timestep_embedding(sizes.flatten(), 256).reshape(1, -1)], dim=1)
    t = torch.tensor([500.0])
    outs = {}
    for ctype in (1, 3):
        onehot = torch.zeros(1, 6)
        onehot[0, ctype] = 1
        with torch.no_grad():
            down, mid = ref(x, t, encoder_hidden_states=ctx, controlnet_cond=[hint], control_type=onehot,
                            control_type_idx=[ctype], conditioning_scale=[1.0], return_dict=False,
                            added_cond_kwargs={"text_embeds": pooled, "time_ids": sizes})
            ours = net.control_model(x=x, hint=hint, timesteps=t, context=ctx, y=y, control_type=[ctype])
        for a, b in zip(ours["output"] + ours["middle"], list(down) + [mid]):
            torch.testing.assert_close(a, b, rtol=3e-4, atol=3e-4)
        outs[ctype] = ours["middle"][0]
    assert (outs[1] - outs[3]).abs().mean() > 1e-4  # the type matters
    # SetUnionControlNetType's choice reaches the network through get_control
    (typed,) = SetUnionControlNetType().set_controlnet_type(net, "canny/lineart/anime_lineart/mlsd")
    c = typed.copy().set_cond_hint(hint, 1.0)

    class MS:
        def timestep(self, s):
            return s

        def calculate_input(self, s, v):
            return v

    c.model_sampling_current = MS()
    got = c.get_control(x, t, {"c_crossattn": ctx, "y": y}, 1)
    torch.testing.assert_close(got["middle"][0], outs[3])
    with pytest.raises(ValueError, match="control types"):
        net.control_model(x=x, hint=hint, timesteps=t, context=ctx, y=y, control_type=[7])


@pytest.mark.parametrize("adapter_type", ["full_adapter", "light_adapter"])
def test_t2i_adapter_diffusers_layout_matches_diffusers(tmp_path, adapter_type):
    from diffusers import T2IAdapter
    from safetensors.torch import save_file
    torch.manual_seed(0)
    kw = dict(num_res_blocks=2) if adapter_type == "full_adapter" else dict(num_res_blocks=4)
    ref = T2IAdapter(in_channels=3, channels=[32, 64, 128, 128], downscale_factor=8, adapter_type=adapter_type, **kw).eval()
    if adapter_type == "light_adapter":
        # the light adapter's original layout (TencentARC / ComfyUI): body.N.in_conv / body.N.body.M / body.N.out_conv
        # (diffusers adds a fifth block the original 4-level light adapter does not have: left out)
        sd = {k.replace("adapter.body.", "body.").replace(".resnets.", ".body."): v for k, v in ref.state_dict().items()
              if not k.startswith("adapter.body.4.")}
    else:
        sd = dict(ref.state_dict())
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "t2i.safetensors"))
    net = cn.load_controlnet(str(tmp_path / "t2i.safetensors"))
    assert isinstance(net, cn.T2IAdapter)
    # even sizes at every level (odd ones are pooled with ComfyUI's symmetric padding, diffusers uses ceil_mode)
    x = torch.rand(2, 3, 128, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(x)[:4]
        got = [f for f in reversed(net.t2i_model(x)["input"]) if f is not None]
    assert len(got) == len(want) == 4
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
