"""Flux ControlNets against diffusers (``FluxControlNetModel`` + ``FluxTransformer2DModel``) on
the same tiny random weights: InstantX (VAE-encoded hint), its union form (SetUnionControlNetType's
mode token), XLabs (pixel hint through the conv stack; diffusers' port of it is
``FluxControlNetModel(conditioning_embedding_channels=16)`` -- the XLabs <-> diffusers key map is
written here), the residuals' assignment to the Flux blocks and the denoised output of one step."""
from __future__ import annotations

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.models import sd as sdm
from comfyui.models.controlnet import load_controlnet_state_dict
from comfyui.models.controlnet.flux import ControlNetFlux
from comfyui.models.flux.convert import diffusers_to_native
from comfyui.models.flux.detection import rope_axes
from comfyui.models.vae import VAE

from . import fixtures
from . import flux_fixtures as ffx
from . import sd3_fixtures as fx

pytest.importorskip("diffusers")

HIDDEN, HEADS, CONTEXT, VEC = 64, 2, 32, 24
DEPTH, SINGLE = 4, 4  # the base model's blocks


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    yield
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


def _pack(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)


def _unpack(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b = t.shape[0]
    return t.view(b, h // 2, w // 2, -1, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, -1, h, w)


def _ids(h: int, w: int) -> torch.Tensor:
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3)


def _diffusers_controlnet(layers: int, single: int, seed: int, num_mode: int | None = None,
                          hint_encoder: bool = False):
    from diffusers import FluxControlNetModel
    torch.manual_seed(seed)
    # patch_size only cuts the encoded hint into tokens (2x2 for XLabs); the latents come packed
    m = FluxControlNetModel(patch_size=2 if hint_encoder else 1, in_channels=64, num_layers=layers, num_single_layers=single,
                            attention_head_dim=HIDDEN // HEADS, num_attention_heads=HEADS,
                            joint_attention_dim=CONTEXT, pooled_projection_dim=VEC, guidance_embeds=True,
                            axes_dims_rope=tuple(rope_axes(HIDDEN // HEADS)), num_mode=num_mode,
                            conditioning_embedding_channels=16 if hint_encoder else None)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
    return m.eval()


def _xlabs_file(cn) -> dict[str, torch.Tensor]:
    """diffusers' XLabs port -> the XLabs file: BFL block names (the family's key map),
    ``input_hint_block.{0,2,..,14}`` for conv_in, blocks.0-5, conv_out, ``pos_embed_input``."""
    sd = {k: v.detach().clone() for k, v in cn.state_dict().items()}
    hint = {}
    names = ["conv_in"] + [f"blocks.{i}" for i in range(6)] + ["conv_out"]
    for j, name in enumerate(names):
        for s in ("weight", "bias"):
            hint[f"input_hint_block.{2 * j}.{s}"] = sd.pop(f"input_hint_block.{name}.{s}")
    own = {k: sd.pop(k) for k in list(sd) if k.startswith(("controlnet_blocks.", "controlnet_single_blocks."))}
    own["pos_embed_input.weight"] = sd.pop("controlnet_x_embedder.weight")
    own["pos_embed_input.bias"] = sd.pop("controlnet_x_embedder.bias")
    inner = sd["x_embedder.weight"].shape[0]
    sd["proj_out.weight"] = torch.zeros(64, inner)  # the key map wants a final layer: dropped below
    sd["norm_out.linear.weight"] = torch.zeros(2 * inner, inner)
    native = {k: v for k, v in diffusers_to_native(sd).items() if not k.startswith("final_layer.")}
    return {**native, **own, **hint}


def _base(seed: int = 1):
    dm = ffx.diffusers_flux(seed=seed, depth=DEPTH, depth_single=SINGLE, hidden=HIDDEN, heads=HEADS,
                            context=CONTEXT, vec=VEC)
    model = sdm.load_diffusion_model_state_dict(diffusers_to_native(dm.state_dict()), source="test").model
    return dm, model


def _inputs(h=8, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 16, h, w, generator=g), torch.randn(1, 5, CONTEXT, generator=g),
            torch.randn(1, VEC, generator=g), torch.rand(1, h * 8, w * 8, 3, generator=g))


def _control(control, model, x, sigma, ctx, pooled, image, vae, strength, guidance=3.5):
    c = control.copy().set_cond_hint(image.movedim(-1, 1), strength, (0.0, 1.0), vae=vae)
    c.pre_run(model, lambda p: model.model_sampling.percent_to_sigma(p))
    conds = model.extra_conds(cross_attn=ctx, pooled_output=pooled, guidance=guidance, noise=x)
    with torch.no_grad():
        out = c.get_control(x, sigma, conds, 1, {})
    return c, conds, out


@pytest.mark.parametrize("union", [False, True])
def test_instantx_matches_diffusers(union):
    dm, model = _base()
    cn = _diffusers_controlnet(layers=2, single=1, seed=2, num_mode=3 if union else None)
    control = load_controlnet_state_dict({k: v.clone() for k, v in cn.state_dict().items()})
    assert isinstance(control, ControlNetFlux) and control.latent_format is not None
    if union:  # SetUnionControlNetType "depth" (1)
        from comfyui.nodes.builtin.controlnet import SetUnionControlNetType
        (control,) = SetUnionControlNetType().set_controlnet_type(control, "depth")
    vae = VAE(sd=fixtures.vae_sd(fx.VAE16, 5))
    x, ctx, pooled, image = _inputs()
    h, w = x.shape[-2:]
    sigma, strength, guidance = torch.tensor([0.6]), 0.75, 3.5
    c, conds, ours = _control(control, model, x, sigma, ctx, pooled, image, vae, strength, guidance)
    with torch.no_grad():
        hint = (vae.encode(image) - 0.1159) * 0.3611  # the Flux latent format
    torch.testing.assert_close(c.cond_hint, hint.to(c.cond_hint), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        res = cn(hidden_states=_pack(x), controlnet_cond=_pack(hint), encoder_hidden_states=ctx,
                 pooled_projections=pooled, timestep=sigma, guidance=torch.tensor([guidance]),
                 img_ids=_ids(h, w), txt_ids=torch.zeros(ctx.shape[1], 3), conditioning_scale=strength,
                 controlnet_mode=torch.tensor([[1]]) if union else None)
    double, single = res.controlnet_block_samples, res.controlnet_single_block_samples
    # 2 ControlNet double blocks over 4 Flux ones (0, 0, 1, 1); 1 single block over all 4
    assert len(ours["input"]) == DEPTH and len(ours["output"]) == SINGLE
    for i in range(DEPTH):
        torch.testing.assert_close(ours["input"][i], double[i // 2], atol=2e-5, rtol=1e-4)
    for i in range(SINGLE):
        torch.testing.assert_close(ours["output"][i], single[0], atol=2e-5, rtol=1e-4)
    with torch.no_grad():
        denoised = model.apply_model(x, sigma, **conds, control=ours)
        plain = model.apply_model(x, sigma, **conds)
        v = dm(hidden_states=_pack(x), encoder_hidden_states=ctx, pooled_projections=pooled, timestep=sigma,
               img_ids=_ids(h, w), txt_ids=torch.zeros(ctx.shape[1], 3), guidance=torch.tensor([guidance]),
               controlnet_block_samples=list(double), controlnet_single_block_samples=list(single)).sample
    assert (denoised - plain).abs().max() > 1e-2
    torch.testing.assert_close(denoised, x - sigma * _unpack(v, h, w), atol=1e-4, rtol=1e-4)


def test_union_type_changes_the_residuals_and_out_of_range_type_fails():
    dm, model = _base()
    cn = _diffusers_controlnet(layers=1, single=0, seed=3, num_mode=2)
    control = load_controlnet_state_dict({k: v.clone() for k, v in cn.state_dict().items()})
    from comfyui.nodes.builtin.controlnet import SetUnionControlNetType
    vae = VAE(sd=fixtures.vae_sd(fx.VAE16, 5))
    x, ctx, pooled, image = _inputs(4, 4)
    outs = {}
    for kind in ("auto", "openpose", "depth"):
        (typed,) = SetUnionControlNetType().set_controlnet_type(control, kind)
        outs[kind] = _control(typed, model, x, torch.tensor([0.5]), ctx, pooled, image, vae, 1.0)[2]["input"][0]
    assert not torch.allclose(outs["auto"], outs["openpose"]) and not torch.allclose(outs["openpose"], outs["depth"])
    (bad,) = SetUnionControlNetType().set_controlnet_type(control, "normal")  # type 4 of 2
    with pytest.raises(ValueError, match="2 control types"):
        _control(bad, model, x, torch.tensor([0.5]), ctx, pooled, image, vae, 1.0)


def test_xlabs_matches_diffusers_port():
    dm, model = _base(seed=4)
    cn = _diffusers_controlnet(layers=2, single=0, seed=6, hint_encoder=True)
    control = load_controlnet_state_dict(_xlabs_file(cn))
    assert isinstance(control, ControlNetFlux) and control.latent_format is None
    x, ctx, pooled, image = _inputs(seed=7)
    h, w = x.shape[-2:]
    sigma, strength = torch.tensor([0.3]), 0.9
    c, conds, ours = _control(control, model, x, sigma, ctx, pooled, image, None, strength)
    assert c.cond_hint.shape == (1, 3, h * 8, w * 8)  # pixels at 8x the latent
    assert ours["output"] == []  # no single-block residuals
    with torch.no_grad():  # diffusers' XLabs pipeline feeds the image scaled to -1..1
        res = cn(hidden_states=_pack(x), controlnet_cond=image.movedim(-1, 1) * 2 - 1, encoder_hidden_states=ctx,
                 pooled_projections=pooled, timestep=sigma, guidance=torch.tensor([3.5]), img_ids=_ids(h, w),
                 txt_ids=torch.zeros(ctx.shape[1], 3), conditioning_scale=strength)
    double = res.controlnet_block_samples
    assert len(ours["input"]) == DEPTH
    for i in range(DEPTH):  # XLabs residuals cycle over the blocks: 0, 1, 0, 1
        torch.testing.assert_close(ours["input"][i], double[i % 2], atol=2e-5, rtol=1e-4)
    with torch.no_grad():
        denoised = model.apply_model(x, sigma, **conds, control=ours)
        v = dm(hidden_states=_pack(x), encoder_hidden_states=ctx, pooled_projections=pooled, timestep=sigma,
               img_ids=_ids(h, w), txt_ids=torch.zeros(ctx.shape[1], 3), guidance=torch.tensor([3.5]),
               controlnet_block_samples=list(double), controlnet_blocks_repeat=True).sample
    torch.testing.assert_close(denoised, x - sigma * _unpack(v, h, w), atol=1e-4, rtol=1e-4)


def test_mistoline_layout_loads_and_runs():
    """Mistoline (``controlnet_blocks.N.linear``, ``single_controlnet_blocks``, its own hint
    encoder): loaded by keys; residuals are SiLU(Linear(tokens)) -- never below -0.279."""
    cn = _diffusers_controlnet(layers=1, single=1, seed=8, hint_encoder=True)
    sd = _xlabs_file(cn)
    for k in [k for k in sd if k.startswith(("controlnet_blocks.", "controlnet_single_blocks.", "input_hint_block."))]:
        v = sd.pop(k)
        if k.startswith("controlnet_blocks."):
            sd[k.replace("controlnet_blocks.0.", "controlnet_blocks.0.linear.")] = v
        elif k.startswith("controlnet_single_blocks."):
            sd[k.replace("controlnet_single_blocks.0.", "single_controlnet_blocks.0.linear.")] = v
    g = torch.Generator().manual_seed(1)
    convs = [(16, 3, 3), (16, 16, 1), (16, 16, 3), (16, 16, 3), (16, 16, 3), (16, 16, 3), (16, 16, 3), (16, 16, 3),
             (16, 16, 1), (16, 16, 3)]
    for j, (co, ci, k) in enumerate(convs):
        sd[f"input_cond_block.encoder.{2 * j}.weight"] = torch.randn(co, ci, k, k, generator=g) * 0.2
        sd[f"input_cond_block.encoder.{2 * j}.bias"] = torch.zeros(co)
    control = load_controlnet_state_dict(sd)
    assert control.control_model.mistoline
    _, model = _base()
    x, ctx, pooled, image = _inputs(4, 4)
    _, _, out = _control(control, model, x, torch.tensor([0.5]), ctx, pooled, image, None, 1.0)
    assert len(out["input"]) == DEPTH and len(out["output"]) == SINGLE
    assert min(float(t.min()) for t in out["input"] + out["output"]) > -0.2785


# ------------------------------------------------------------------------- through the engine
def test_union_controlnet_prompt_through_the_engine(workspace):
    """UNETLoader + DualCLIPLoader + VAELoader (the Flux fixture files), ControlNetLoader ->
    SetUnionControlNetType -> ControlNetApplyAdvanced with the VAE, KSampler, SaveImage."""
    import json
    import os

    import numpy as np
    from PIL import Image

    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    models = os.path.join(workspace, "models")
    ffx.write_flux_files(models)  # transformer 64 wide (2 heads), text 64, pooled 64
    from diffusers import FluxControlNetModel
    torch.manual_seed(11)
    cn = FluxControlNetModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=32,
                             num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=64,
                             guidance_embeds=True, axes_dims_rope=tuple(rope_axes(32)), num_mode=7)
    with torch.no_grad():
        for p in cn.parameters():
            p.copy_(torch.randn(p.shape) * 0.1)
    fx.save({k: v.detach().clone() for k, v in cn.state_dict().items()},
            os.path.join(models, "controlnet", "FLUX.1-dev-ControlNet-Union-Pro.safetensors"))
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(os.path.join(workspace, "input", "d.png"))
    base = json.loads(open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "flux",
                                        "flux_dev_text_to_image.api.json")).read())
    base["7"]["inputs"].update(width=64, height=48)
    base["8"]["inputs"]["steps"] = 2

    def prompt(strength: float, kind: str) -> dict:
        p = json.loads(json.dumps(base))
        p["20"] = {"class_type": "ControlNetLoader",
                   "inputs": {"control_net_name": "FLUX.1-dev-ControlNet-Union-Pro.safetensors"}}
        p["21"] = {"class_type": "SetUnionControlNetType", "inputs": {"control_net": ["20", 0], "type": kind}}
        p["22"] = {"class_type": "LoadImage", "inputs": {"image": "d.png"}}
        p["23"] = {"class_type": "ControlNetApplyAdvanced",
                   "inputs": {"positive": ["5", 0], "negative": ["6", 0], "control_net": ["21", 0],
                              "image": ["22", 0], "vae": ["3", 0], "strength": strength,
                              "start_percent": 0.0, "end_percent": 1.0}}
        p["8"]["inputs"]["positive"], p["8"]["inputs"]["negative"] = ["23", 0], ["23", 1]
        return p

    eng = Engine(NodeRegistry.with_builtins())
    eng.start()
    try:
        def image(p):
            sub = eng.submit(p)
            assert sub.node_errors == {}, sub.node_errors
            h = eng.wait(sub.prompt_id).result(300)
            assert h["status"]["status_str"] == "success", h["status"]
            name = h["outputs"]["10"]["images"][0]["filename"]
            with Image.open(os.path.join(workspace, "output", name)) as f:
                assert f.size == (64, 48)
                return np.asarray(f.convert("RGB")).astype(np.float32)

        depth = image(prompt(1.0, "depth"))
        canny = image(prompt(1.0, "canny/lineart/anime_lineart/mlsd"))
        off = image(prompt(0.0, "depth"))
    finally:
        eng.stop()
    assert np.abs(depth - off).mean() > 0.5  # the ControlNet changes the picture
    # the union type reaches the network (one extra text token among T5's 256: a small change
    # here; test_union_type_changes_the_residuals measures it on the residuals)
    assert np.abs(depth - canny).max() > 0
