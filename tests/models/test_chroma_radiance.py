"""Chroma Radiance (pixel-space Chroma): detection, the transformer trunk against diffusers'
ChromaTransformer2DModel on the same tiny weights (its x_embedder = our img_in_patch
convolution; compared before the final layer, which Radiance replaces), the NeRF head against
a per-patch reference written from the formula, the x0 convention, tiling, the pixel_space VAE
and ChromaRadianceOptions."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from comfyui.models import memory
from comfyui.models.chroma.radiance import ChromaRadiance
from comfyui.models.dit import rope_angles
from comfyui.models.family import UnknownModelError
from comfyui.models.registry import detect_family

from . import chroma_fixtures as cfx

pytest.importorskip("diffusers")
P = 16


@pytest.fixture(scope="module")
def tiny():
    ref, sd = cfx.radiance(seed=3, context=32)
    family, config = detect_family(sd)
    net = ChromaRadiance(**config).eval()
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert not missing and unexpected == ["__x0__"]
    return ref, sd, family, config, net


def test_detected_from_the_native_keys(tiny):
    _, _, family, config, _ = tiny
    assert family.name == "chroma_radiance" and family.clip_type == "chroma"
    assert family.latent_format.latent_channels == 3
    assert {k: config[k] for k in ("in_channels", "out_channels", "patch_size", "hidden_size", "nerf_hidden_size",
                                   "nerf_mlp_ratio", "nerf_depth", "nerf_max_freqs", "nerf_tile_size",
                                   "nerf_final_head_type", "x0")} == {
        "in_channels": 3, "out_channels": 3, "patch_size": 16, "hidden_size": 64, "nerf_hidden_size": 16,
        "nerf_mlp_ratio": 4, "nerf_depth": 2, "nerf_max_freqs": 8, "nerf_tile_size": 32,
        "nerf_final_head_type": "linear", "x0": True}


def test_sequential_text_ids_variant_is_refused(tiny):
    _, sd, _, _, _ = tiny
    with pytest.raises(UnknownModelError, match="__sequential__"):
        detect_family({**sd, "__sequential__": torch.empty(0)})


def _trunk_inputs(h: int = 32, w: int = 48, t: int = 5):
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, h, w, generator=g), torch.randn(1, t, 32, generator=g)


def test_trunk_matches_diffusers_chroma(tiny):
    ref, _, _, _, net = tiny
    x, ctx = _trunk_inputs()
    h, w = x.shape[2] // P, x.shape[3] // P
    captured = {}
    hook = ref.norm_out.register_forward_hook(lambda mod, inp, out: captured.setdefault("hidden", inp[0]))
    patches = x.reshape(1, 3, h, P, w, P).permute(0, 2, 4, 1, 3, 5).reshape(1, h * w, 3 * P * P)
    ids = torch.zeros(h, w, 3)
    ids[..., 1], ids[..., 2] = torch.arange(h)[:, None], torch.arange(w)[None]
    sigma = torch.tensor([0.6])
    try:
        with torch.no_grad():
            ref(hidden_states=patches, encoder_hidden_states=ctx, timestep=sigma, img_ids=ids.reshape(-1, 3),
                txt_ids=torch.zeros(ctx.shape[1], 3))
            tokens, img_ids = net.patchify(x)
            rope = rope_angles(torch.cat((torch.zeros(1, ctx.shape[1], 3), img_ids), dim=1), net.axes_dim, net.theta)
            ours = net.forward_tokens(tokens, ctx, sigma, None, rope)
    finally:
        hook.remove()
    want = captured["hidden"]   # the image tokens after the single blocks
    assert want.abs().max() > 0.1
    torch.testing.assert_close(ours, want, atol=2e-5, rtol=1e-5)


def reference_nerf(sd: dict, pixels: torch.Tensor, hidden: torch.Tensor, max_freqs: int = 8,
                   ratio: int = 4) -> torch.Tensor:
    """The NeRF head written out patch by patch and pixel by pixel from the formula."""
    b, c, height, width = pixels.shape
    rows, cols = height // P, width // P
    nh = sd["nerf_image_embedder.embedder.0.weight"].shape[0]
    code = torch.zeros(P * P, max_freqs * max_freqs)
    for y in range(P):
        for x in range(P):
            for fx in range(max_freqs):
                for fy in range(max_freqs):
                    code[y * P + x, fx * max_freqs + fy] = (math.cos(math.pi * fx * x / (P - 1))
                                                            * math.cos(math.pi * fy * y / (P - 1)) / (1 + fx * fy))

    def rms(v, scale):
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6) * scale

    features = torch.zeros(b, nh, height, width)
    for i in range(b):
        for r in range(rows):
            for q in range(cols):
                patch = pixels[i, :, r * P:(r + 1) * P, q * P:(q + 1) * P].reshape(c, -1).T   # [P*P, C]
                f = torch.cat((patch, code), dim=1) @ sd["nerf_image_embedder.embedder.0.weight"].T \
                    + sd["nerf_image_embedder.embedder.0.bias"]
                s = hidden[i, r * cols + q]
                for k in range(len([key for key in sd if key.endswith("param_generator.weight")])):
                    params = sd[f"nerf_blocks.{k}.param_generator.weight"] @ s + sd[f"nerf_blocks.{k}.param_generator.bias"]
                    gate, value, out = params.chunk(3)
                    gate = gate.reshape(nh, nh * ratio)
                    value = value.reshape(nh, nh * ratio)
                    out = out.reshape(nh * ratio, nh)
                    gate, value, out = (m / m.norm(dim=0, keepdim=True) for m in (gate, value, out))
                    n = rms(f, sd[f"nerf_blocks.{k}.norm.scale"])
                    f = f + (F.silu(n @ gate) * (n @ value)) @ out
                features[i, :, r * P:(r + 1) * P, q * P:(q + 1) * P] = f.T.reshape(nh, P, P)
    normed = rms(features.movedim(1, -1), sd["nerf_final_layer.norm.scale"])
    return (normed @ sd["nerf_final_layer.linear.weight"].T + sd["nerf_final_layer.linear.bias"]).movedim(-1, 1)


def test_nerf_head_matches_the_formula_at_every_tile_size(tiny):
    _, sd, _, _, net = tiny
    g = torch.Generator().manual_seed(1)
    pixels, hidden = torch.randn(2, 3, 32, 48, generator=g), torch.randn(2, 6, 64, generator=g)
    want = reference_nerf(sd, pixels, hidden)
    with torch.no_grad():
        for tile in (0, 1, 5, 32):
            torch.testing.assert_close(net.nerf(pixels, hidden, tile), want, atol=1e-4, rtol=1e-4)


def test_x0_file_denoises_to_the_network_image(tiny, tmp_path):
    """With __x0__ the network's image is the sampler's denoised estimate (velocity (x - x0)/sigma
    through denoised = x - sigma * v); without it the output is the velocity."""
    from safetensors.torch import save_file
    from comfyui.models import sd as sdm
    _, sd, _, _, net = tiny
    memory.configure(None, cpu=True)
    try:
        path = tmp_path / "chroma-radiance-x0.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
        model = sdm.load_diffusion_model(str(path)).model
        x, ctx = _trunk_inputs(32, 32)
        sigma = torch.tensor([0.7])
        with torch.no_grad():
            denoised = model.apply_model(x, sigma, c_crossattn=ctx, guidance=torch.tensor([0.0]))
            net.x0 = False
            image = net(x, sigma, ctx)
            net.x0 = True
        torch.testing.assert_close(denoised, image, atol=1e-5, rtol=1e-5)
    finally:
        memory.configure(None)


def test_pixel_space_vae_round_trip():
    from comfyui.nodes.builtin.loaders import VAELoader
    assert "pixel_space" in VAELoader.vae_list()
    vae = VAELoader().load_vae("pixel_space")[0]
    image = torch.rand(2, 24, 40, 3)
    latent = vae.encode(image)
    assert latent.shape == (2, 3, 24, 40)
    torch.testing.assert_close(latent, image.movedim(-1, 1) * 2 - 1)
    torch.testing.assert_close(vae.decode(latent), image)
    assert vae.spacial_compression_encode() == 1


def test_radiance_options_set_the_tile_size_in_their_sigma_range():
    from comfyui.models.patcher import ModelPatcher
    from comfyui.nodes.builtin.chroma_radiance import ChromaRadianceOptions
    model = ModelPatcher(torch.nn.Linear(1, 1), torch.device("cpu"), torch.device("cpu"))
    patched = ChromaRadianceOptions().execute(model, True, 0.8, 0.2, 4)[0]
    wrapper = patched.model_options["model_function_wrapper"]
    seen = []

    def apply_model(x, t, **c):
        seen.append(c.get("transformer_options", {}).get("chroma_radiance_options"))
        return x

    for sigma in (0.9, 0.5, 0.1):
        wrapper(apply_model, {"input": torch.zeros(1), "timestep": torch.tensor([sigma]), "c": {}})
    assert seen == [None, {"nerf_tile_size": 4}, None]
    assert ChromaRadianceOptions().execute(model, True, 1.0, 0.0, -1)[0] is model
