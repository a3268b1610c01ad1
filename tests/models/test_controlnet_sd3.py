"""SD3 / SD3.5 ControlNets against diffusers (``SD3ControlNetModel`` + ``SD3Transformer2DModel``)
on the same tiny random weights: the per-block residuals, their assignment to the MMDiT's
blocks, the hint (VAE-encoded, per-type remap, latent format) and the denoised output of one
step; then the nodes and an API prompt through the engine on tiny fixture files.

Where upstream (ComfyUI, which the SD3.5 ControlNets were released for) and diffusers differ,
upstream's behaviour is the one implemented, and the diffusers reference is given the same
inputs: the SD3.5 ControlNet's position code is upstream's fixed sin-cos grid (diffusers'
pipeline feeds the MMDiT's learned table instead), and upstream adds the last residual after
the MMDiT's last block too (diffusers skips that block) -- a forward hook on diffusers' last
block adds it there.
"""
from __future__ import annotations

import functools
import json
import os

import pytest
import torch

from comfyui import runtime
from comfyui.models import memory
from comfyui.models import sd as sdm
from comfyui.models.controlnet import load_controlnet_state_dict
from comfyui.models.controlnet.mmdit import ControlNetSD35, sincos_grid
from comfyui.models.registry import detect_family
from comfyui.models.vae import VAE

from . import fixtures
from . import sd3_cn_fixtures as cnfx
from . import sd3_fixtures as fx

pytest.importorskip("diffusers")

DEPTH, POOLED, CONTEXT = 4, 48, 64


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    runtime.current().model_files.clear()
    yield
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


@functools.lru_cache(maxsize=None)
def _base(seed: int, depth: int, qk_norm: bool):
    """(diffusers MMDiT, our SD3 model with its weights): built once per module run."""
    dm = fx.diffusers_sd3(seed=seed, depth=depth, context=CONTEXT, pooled=POOLED, qk_norm=qk_norm)
    return dm, _our_model(dm)


def _our_model(dm):
    native = fx.native_sd(dm)
    family, config = detect_family(native, "")
    model = family.model_class(config, family).eval()
    model.diffusion_model.load_state_dict(native)
    return model


def _vae() -> VAE:
    return VAE(sd=fixtures.vae_sd(fx.VAE16, 5))


def _inputs(h=8, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 16, h, w, generator=g), torch.randn(1, 7, CONTEXT, generator=g),
            torch.randn(1, POOLED, generator=g), torch.rand(1, h * 8, w * 8, 3, generator=g))


def _run_control(control, model, x, sigma, ctx, pooled, image, vae, strength):
    c = control.copy().set_cond_hint(image.movedim(-1, 1), strength, (0.0, 1.0), vae=vae)
    c.pre_run(model, lambda p: model.model_sampling.percent_to_sigma(p))
    conds = model.extra_conds(cross_attn=ctx, pooled_output=pooled, noise=x)
    with torch.no_grad():
        out = c.get_control(x, sigma, conds, 1, {})
    return c, conds, out


def _add_after_last_block(dm, residual):
    def hook(module, args, out):
        return out[0], out[1] + residual
    return dm.transformer_blocks[-1].register_forward_hook(hook)


# ----------------------------------------------------------------------------- SD3.5 large
def test_sd35_controlnet_matches_diffusers_residuals_and_one_step():
    dm, model = _base(1, DEPTH, True)
    cn = cnfx.diffusers_sd35_controlnet(DEPTH, layers=2, pooled=POOLED, seed=2)
    control = load_controlnet_state_dict(cnfx.sd35_file(cn, control_type=0))  # blur: no remap
    assert isinstance(control, ControlNetSD35) and control.latent_format is not None
    vae = _vae()
    x, ctx, pooled, image = _inputs()
    sigma, strength = torch.tensor([0.7]), 0.8
    c, conds, ours = _run_control(control, model, x, sigma, ctx, pooled, image, vae, strength)
    # the hint: the image at latent size x 8, VAE-encoded, SD3 latent format (shift and scale)
    with torch.no_grad():
        expected_hint = (vae.encode(image) - 0.0609) * 1.5305
    torch.testing.assert_close(c.cond_hint, expected_hint.to(c.cond_hint), atol=1e-5, rtol=1e-5)

    # diffusers: the MMDiT's patch embedding (copied into ours at pre_run) + upstream's grid
    with torch.no_grad():
        hidden = dm.pos_embed.proj(x).flatten(2).transpose(1, 2) + sincos_grid(64 * DEPTH, 4, 6)
        ref = cn(hidden_states=hidden, controlnet_cond=expected_hint, pooled_projections=pooled,
                 timestep=sigma * 1000, conditioning_scale=strength).controlnet_block_samples
    # 2 ControlNet blocks feed 4 MMDiT blocks: 0, 0, 1, 1
    assert len(ours["output"]) == DEPTH
    for i, r in enumerate(ours["output"]):
        torch.testing.assert_close(r, ref[i // 2], atol=2e-5, rtol=1e-4)

    with torch.no_grad():
        denoised = model.apply_model(x, sigma, **conds, control=ours)
        plain = model.apply_model(x, sigma, **conds)
        handle = _add_after_last_block(dm, ref[-1])
        try:
            v = dm(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=sigma * 1000,
                   block_controlnet_hidden_states=list(ref)).sample
        finally:
            handle.remove()
    expected = x - sigma.view(-1, 1, 1, 1) * v
    assert (denoised - plain).abs().max() > 1e-2  # the control moves the prediction
    torch.testing.assert_close(denoised, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("control_type, remap", [(0, lambda a: a), (1, lambda a: a * 127.5 + 0.5),
                                                 (2, lambda a: 1.0 - a)])
def test_sd35_hint_remap_per_control_type(control_type, remap):
    """Blur hints are encoded as they are, canny ones as ``x * 255 * 0.5 + 0.5`` and depth
    ones inverted (upstream's load_controlnet_sd35)."""
    _, model = _base(1, 2, True)
    cn = cnfx.diffusers_sd35_controlnet(2, layers=1, pooled=POOLED, seed=3)
    control = load_controlnet_state_dict(cnfx.sd35_file(cn, control_type))
    vae = _vae()
    x, ctx, pooled, image = _inputs(4, 4)
    c, _, out = _run_control(control, model, x, torch.tensor([0.5]), ctx, pooled, image, vae, 1.0)
    with torch.no_grad():
        expected = (vae.encode(remap(image)) - 0.0609) * 1.5305
    torch.testing.assert_close(c.cond_hint, expected.to(c.cond_hint), atol=1e-4, rtol=1e-4)
    assert len(out["output"]) == 2  # one ControlNet block repeated for both MMDiT blocks
    assert out["output"][0] is out["output"][1] or torch.equal(out["output"][0], out["output"][1])


def test_sd35_takes_the_patch_embedding_from_a_scaled_fp8_model():
    """The file has no patch embedding: the sampled MMDiT's is copied in as real values (its
    fp8 weight times ``scale_weight``), not as raw fp8 codes."""
    from comfyui.models.controlnet.mmdit import SD35ControlNet
    from comfyui.models.sd3.mmdit import PatchEmbed
    net = SD35ControlNet(128, 1, main_depth=2, double_y_emb=False, adm_in_channels=POOLED)
    mmdit = torch.nn.Module()
    mmdit.x_embedder = PatchEmbed(16, 128, 2)
    w = torch.randn(128, 16, 2, 2)
    stored = (w / 4).to(torch.float8_e4m3fn)
    mmdit.x_embedder.proj.weight = torch.nn.Parameter(stored, requires_grad=False)
    mmdit.x_embedder.proj.register_buffer("scale_weight", torch.tensor(4.0))
    net.copy_from_model(mmdit)
    torch.testing.assert_close(net.x_embedder.proj.weight, stored.float() * 4)
    torch.testing.assert_close(net.x_embedder.proj.bias, mmdit.x_embedder.proj.bias)


def test_sincos_grid_is_upstreams_position_code():
    """Columns then rows; the shorter side spans 0..15, the longer one proportionally more."""
    dim, h, w = 64, 4, 6
    grid = sincos_grid(dim, h, w).reshape(h, w, dim)
    cols = torch.linspace(7.5 - 7.5 * w / h, 7.5 + 7.5 * w / h, w)
    rows = torch.linspace(0.0, 15.0, h)
    # frequency 0 of each half is 1: sin(position) in feature 0 (columns) and dim/2 (rows)
    torch.testing.assert_close(grid[0, :, 0], cols.sin())
    torch.testing.assert_close(grid[:, 0, dim // 2], rows.sin())
    torch.testing.assert_close(grid[:, 0, dim // 2 + dim // 4], rows.cos())


def test_sd35_without_vae_asks_for_one():
    _, model = _base(1, 2, True)
    cn = cnfx.diffusers_sd35_controlnet(2, layers=1, pooled=POOLED, seed=3)
    control = load_controlnet_state_dict(cnfx.sd35_file(cn, 1))
    x, ctx, pooled, image = _inputs(4, 4)
    with pytest.raises(ValueError, match="needs a VAE"):
        _run_control(control, model, x, torch.tensor([0.5]), ctx, pooled, image, None, 1.0)


# --------------------------------------------------------------------------- SD3 diffusers
def test_sd3_diffusers_controlnet_matches_diffusers():
    """InstantX-style (SD3 medium: no q/k norms; the joint blocks are the MMDiT's own code)."""
    dm, model = _base(4, DEPTH, False)
    cn = cnfx.diffusers_sd3_controlnet(DEPTH, layers=2, context=CONTEXT, pooled=POOLED, pos=16, seed=5)
    control = load_controlnet_state_dict({k: v.clone() for k, v in cn.state_dict().items()})
    vae = _vae()
    x, ctx, pooled, image = _inputs(seed=6)
    sigma, strength = torch.tensor([0.4]), 0.7
    c, conds, ours = _run_control(control, model, x, sigma, ctx, pooled, image, vae, strength)
    with torch.no_grad():
        hint = vae.encode(image) * 1.5305  # no latent shift for these ControlNets
    torch.testing.assert_close(c.cond_hint, hint.to(c.cond_hint), atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # diffusers' pipeline zeroes the pooled vector for the ControlNet
        ref = cn(hidden_states=x, controlnet_cond=hint, encoder_hidden_states=ctx,
                 pooled_projections=torch.zeros_like(pooled), timestep=sigma * 1000,
                 conditioning_scale=strength).controlnet_block_samples
    # blocks 0, 1 <- residual 0; block 2 <- residual 1; the last block (pre_only) gets none
    assert len(ours["output"]) == DEPTH - 1
    for i, r in enumerate(ours["output"]):
        torch.testing.assert_close(r, ref[i // 2], atol=2e-5, rtol=1e-4)
    with torch.no_grad():
        denoised = model.apply_model(x, sigma, **conds, control=ours)
        v = dm(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=sigma * 1000,
               block_controlnet_hidden_states=list(ref)).sample
    torch.testing.assert_close(denoised, x - sigma.view(-1, 1, 1, 1) * v, atol=1e-4, rtol=1e-4)


def test_sd3_inpaint_controlnet_gets_a_mask_channel():
    """A 17-channel hint embedding: the encoded hint plus a mask channel (ones without a mask)."""
    _, model = _base(1, 2, True)
    cn = cnfx.diffusers_sd3_controlnet(2, layers=1, context=CONTEXT, pooled=POOLED, pos=16, seed=5,
                                       extra_channels=1, qk_norm=True)
    control = load_controlnet_state_dict({k: v.clone() for k, v in cn.state_dict().items()})
    assert control.concat_mask
    vae = _vae()
    x, ctx, pooled, image = _inputs(4, 4)
    c, _, out = _run_control(control, model, x, torch.tensor([0.5]), ctx, pooled, image, vae, 1.0)
    assert c.cond_hint.shape == (1, 17, 4, 4)
    assert torch.all(c.cond_hint[:, 16] == 1)
    with torch.no_grad():
        ref = cn(hidden_states=x, controlnet_cond=c.cond_hint, encoder_hidden_states=ctx,
                 pooled_projections=torch.zeros_like(pooled), timestep=torch.tensor([500.0])).controlnet_block_samples
    torch.testing.assert_close(out["output"][0], ref[0], atol=2e-5, rtol=1e-4)


# ------------------------------------------------------------------------- through the engine
def _run(prompt: dict) -> dict:
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry
    eng = Engine(NodeRegistry.with_builtins())
    eng.start()
    try:
        sub = eng.submit(prompt)
        assert sub.node_errors == {}
        hist = eng.wait(sub.prompt_id).result(300)
        assert hist["status"]["status_str"] == "success", hist["status"]
        return hist
    finally:
        eng.stop()


def _canny_prompt(apply_node: dict, seed: int = 7) -> dict:
    """The shape of the sd3.5_large_canny_controlnet_example template, made small: checkpoint,
    LoadImage -> ImageScale -> Canny -> ControlNetLoader + apply (VAE from the checkpoint)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3.5_large_fp8_scaled.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a bird on a branch", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "10": {"class_type": "LoadImage", "inputs": {"image": "edges.png"}},
        "11": {"class_type": "ImageScale", "inputs": {"image": ["10", 0], "upscale_method": "bilinear",
                                                      "width": 64, "height": 48, "crop": "disabled"}},
        "12": {"class_type": "Canny", "inputs": {"image": ["11", 0], "low_threshold": 0.2, "high_threshold": 0.5}},
        "13": {"class_type": "ControlNetLoader",
               "inputs": {"control_net_name": "sd3.5_large_controlnet_canny.safetensors"}},
        "14": apply_node,
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "3": {"class_type": "KSampler",
              "inputs": {"seed": seed, "steps": 2, "cfg": 3.5, "sampler_name": "euler", "scheduler": "simple",
                         "denoise": 1.0, "model": ["4", 0], "positive": ["14", 0], "negative": ["14", 1],
                         "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "cn", "images": ["8", 0]}},
    }


def _apply(kind: str, strength: float) -> dict:
    inputs = {"positive": ["6", 0], "negative": ["7", 0], "control_net": ["13", 0], "image": ["12", 0],
              "vae": ["4", 2], "strength": strength, "start_percent": 0.0, "end_percent": 1.0}
    return {"class_type": kind, "inputs": inputs}


def test_sd35_canny_prompt_through_the_engine(workspace):
    import numpy as np
    from PIL import Image
    w = fx.CKPT_WIDTHS
    fx.write_checkpoint(os.path.join(workspace, "models", "checkpoints", "sd3.5_large_fp8_scaled.safetensors"),
                        medium=False)
    cn = cnfx.diffusers_sd35_controlnet(2, layers=1, pooled=w["clip_l"] + w["clip_g"], seed=9)
    fx.save(cnfx.sd35_file(cn, control_type=1),
            os.path.join(workspace, "models", "controlnet", "sd3.5_large_controlnet_canny.safetensors"))
    yy, xx = np.mgrid[:96, :128]
    Image.fromarray((((xx // 16 + yy // 16) % 2) * 255).astype(np.uint8)).convert("RGB").save(
        os.path.join(workspace, "input", "edges.png"))

    def image(prompt):
        hist = _run(prompt)
        name = hist["outputs"]["9"]["images"][0]["filename"]
        with Image.open(os.path.join(workspace, "output", name)) as im:
            assert im.size == (64, 48)
            return np.asarray(im).astype(np.float32)

    advanced = image(_canny_prompt(_apply("ControlNetApplyAdvanced", 1.0)))
    with_vae = image(_canny_prompt(_apply("ControlNetApplySD3", 1.0)))
    off = image(_canny_prompt(_apply("ControlNetApplyAdvanced", 0.0)))
    assert np.array_equal(advanced, with_vae)  # the same node with the VAE required
    assert np.abs(advanced - off).mean() > 1.0  # the ControlNet changes the picture


def test_controlnet_nodes_schema():
    from comfyui.nodes.registry import NodeRegistry
    info = NodeRegistry.with_builtins().object_info()
    sd3 = info["ControlNetApplySD3"]
    assert sd3["display_name"] == "Apply Controlnet with VAE" and sd3["deprecated"] is True
    assert list(sd3["input"]["required"]) == ["positive", "negative", "control_net", "vae", "image", "strength",
                                              "start_percent", "end_percent"]
    assert sd3["category"] == "conditioning/controlnet"
    assert "vae" in info["ControlNetApplyAdvanced"]["input"]["optional"]
    inpaint = info["ControlNetInpaintingAliMamaApply"]
    assert list(inpaint["input"]["required"])[3:6] == ["vae", "image", "mask"]


@pytest.mark.parametrize("template, control_type", [("sd3.5_large_canny_controlnet_example", 1),
                                                    ("sd3.5_large_blur", 0)])
def test_official_sd35_controlnet_templates_run(workspace, template, control_type):
    """The official templates (comfyui-workflow-templates), converted to API format by our
    converter, run on tiny files with the names they ask for (1024 px and 20-32 steps made
    64 px and 2 steps). The depth template (its depth map comes from a Lotus model) runs in
    tests/workflows/test_templates_run.py."""
    import numpy as np
    from PIL import Image

    from comfyui.nodes.registry import NodeRegistry
    from comfyui.workflows.convert import convert_ui_to_api
    templates = pytest.importorskip("comfyui_workflow_templates_json")
    path = os.path.join(os.path.dirname(templates.__file__), "templates", f"{template}.json")
    with open(path) as f:
        workflow = json.load(f)
    prompt = convert_ui_to_api(workflow, NodeRegistry.with_builtins().object_info())
    w = fx.CKPT_WIDTHS
    models = os.path.join(workspace, "models")
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "CheckpointLoaderSimple":
            fx.write_checkpoint(os.path.join(models, "checkpoints", inputs["ckpt_name"]), medium=False)
        elif kind == "ControlNetLoader":
            cn = cnfx.diffusers_sd35_controlnet(2, layers=1, pooled=w["clip_l"] + w["clip_g"], seed=9)
            fx.save(cnfx.sd35_file(cn, control_type), os.path.join(models, "controlnet", inputs["control_net_name"]))
        elif kind == "LoadImage":
            rng = np.random.default_rng(0)
            Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(
                os.path.join(workspace, "input", inputs["image"]))
        elif kind in ("EmptySD3LatentImage", "ImageScale"):
            inputs.update(width=64, height=64)
        elif kind == "KSampler":
            inputs["steps"] = 2
    assert {n["class_type"] for n in prompt.values()} >= {"ControlNetLoader", "ControlNetApplyAdvanced"}
    hist = _run(prompt)
    saved = [img for out in hist["outputs"].values() for img in out.get("images", []) if img["type"] == "output"]
    assert saved
    with Image.open(os.path.join(workspace, "output", saved[0]["subfolder"], saved[0]["filename"])) as im:
        assert im.size == (64, 64)


def test_inpainting_apply_node_masks_the_image_and_adds_the_kept_area():
    """ControlNetInpaintingAliMamaApply on a mask-channel ControlNet: the masked pixels are
    blacked out before encoding and the mask channel is 1 - mask (1 = keep)."""
    from comfyui.nodes.builtin.controlnet import ControlNetInpaintingAliMamaApply
    _, model = _base(1, 2, True)
    cn = cnfx.diffusers_sd3_controlnet(2, layers=1, context=CONTEXT, pooled=POOLED, pos=16, seed=5,
                                       extra_channels=1, qk_norm=True)
    control = load_controlnet_state_dict({k: v.clone() for k, v in cn.state_dict().items()})
    vae = _vae()
    x, ctx, pooled, image = _inputs(4, 4)
    mask = torch.zeros(1, 32, 32)
    mask[:, :16] = 1.0  # repaint the top half
    cond = [[ctx, {"pooled_output": pooled}]]
    pos, _ = ControlNetInpaintingAliMamaApply().apply_inpaint_controlnet(cond, cond, control, vae, image, mask,
                                                                         1.0, 0.0, 1.0)
    c = pos[0][1]["control"]
    c.pre_run(model, lambda p: model.model_sampling.percent_to_sigma(p))
    conds = model.extra_conds(cross_attn=ctx, pooled_output=pooled, noise=x)
    with torch.no_grad():
        c.get_control(x, torch.tensor([0.5]), conds, 1, {})
        masked = image.clone()
        masked[:, :16] = 0
        expected = vae.encode(masked) * 1.5305
    torch.testing.assert_close(c.cond_hint[:, :16], expected.to(c.cond_hint), atol=1e-4, rtol=1e-4)
    assert torch.all(c.cond_hint[:, 16, :2] == 0) and torch.all(c.cond_hint[:, 16, 2:] == 1)


def test_sd35_double_y_variant_reads_the_embedded_input_in_every_block():
    """A square ``y_embedder`` ("double y", upstream's ControlNetEmbedder): a second pooled
    embedder comes from the sampled MMDiT, no position grid is added, and every block reads
    the embedded input (so block 1's residual does not depend on block 0's weights)."""
    _, model = _base(1, 2, True)
    cn = cnfx.diffusers_sd35_controlnet(2, layers=2, pooled=128, seed=12)  # y_embedder 128 -> 128
    sd = cnfx.sd35_file(cn, 0)
    assert sd["time_text_embed.text_embedder.linear_1.weight"].shape == (128, 128)
    vae = _vae()
    x, ctx, pooled, image = _inputs(4, 4)
    outs = []
    for scale in (1.0, 3.0):
        changed = dict(sd)
        changed["transformer_blocks.0.mlp.fc2.weight"] = sd["transformer_blocks.0.mlp.fc2.weight"] * scale
        control = load_controlnet_state_dict(changed)
        assert control.control_model.double_y_emb
        _, _, out = _run_control(control, model, x, torch.tensor([0.5]), ctx, pooled, image, vae, 1.0)
        outs.append(out["output"])
    assert len(outs[0]) == 2  # 2 blocks for a 2-block MMDiT: one each
    assert not torch.allclose(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])
