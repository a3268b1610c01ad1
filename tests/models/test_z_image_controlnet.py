"""Z-Image Fun ControlNet (a model patch): the NextDiT with the control patch against diffusers'
``ZImageTransformer2DModel`` + ``ZImageControlNetModel`` on the same tiny random weights (the
control file written in its real layout, diffusers' state dict, and loaded by ModelPatchLoader's
loader), and the loader's refusals."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from comfyui.models import model_patch
from comfyui.models.loading import ModelFileError
from comfyui.models.lumina2 import controlnet as zc
from comfyui.models.lumina2 import detect as lumina_detect
from comfyui.models.lumina2.model import NextDiT

from . import lumina2_fixtures as lf

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    ref = lf.diffusers_z_image(seed=3, layers=4)
    ref_control = lf.diffusers_z_image_controlnet(seed=4, places=(0, 2))
    path = str(tmp_path_factory.mktemp("patches") / "Z-Image-Turbo-Fun-Controlnet-Union.safetensors")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in ref_control.state_dict().items()}, path)
    # the file is bf16: compare with diffusers on the same rounded weights
    ref_control.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in ref_control.state_dict().items()})
    ref_control = type(ref_control).from_transformer(ref_control, ref)
    native = lf.z_image_diffusers_to_native(ref.state_dict())
    net = NextDiT(lumina_detect.detect(native, "")).eval()
    net.load_state_dict(native, strict=True)
    return ref, ref_control, net, model_patch.load_model_patch(path)


def reference(ref, ref_control, x, sigma, text, control, strength):
    t = torch.tensor([1.0 - sigma])
    hints = ref_control([x[0].unsqueeze(1)], t, [text[0]], [control[0].unsqueeze(1)], conditioning_scale=strength)
    out = ref([x[0].unsqueeze(1)], t, [text[0]], controlnet_block_samples=hints, return_dict=False)[0]
    return out[0][:, 0][None]


@pytest.mark.parametrize("shape,text_tokens,strength", [((1, 16, 8, 6), 7, 1.0), ((1, 16, 10, 12), 40, 0.6)])
def test_control_patch_matches_diffusers(nets, shape, text_tokens, strength):
    ref, ref_control, net, patcher = nets
    assert patcher.model.cfg["n_control_layers"] == 2 and patcher.model.cfg["control_in_channels"] == 16
    g = torch.Generator().manual_seed(shape[2] + text_tokens)
    x, text = torch.randn(shape, generator=g), torch.randn(1, text_tokens, 32, generator=g)
    control = torch.randn(shape, generator=g)
    patch = zc.ZImageFunControlPatch(patcher, None, None, strength, None)
    patch.latent = control  # the control latent already in model space (the VAE path: the workflow tests)
    options = {"patches": {"double_block": [patch]}}
    with torch.no_grad():
        for sigma in (1.0, 0.4):
            want = reference(ref, ref_control, x, sigma, text, control, strength)
            got = net(x, torch.tensor([sigma]), text, transformer_options=options)
            plain = net(x, torch.tensor([sigma]), text)
            assert (got - plain).abs().max() > 0.1   # the control changes the prediction
            torch.testing.assert_close(got, -want, atol=1e-4, rtol=1e-4)


def test_loader_refuses_the_2x_layout_and_unknown_files(nets, tmp_path):
    _, ref_control, _, _ = nets
    sd = {k: v for k, v in ref_control.state_dict().items()
          if k.startswith(("control_layers.", "control_all_x_embedder.", "control_noise_refiner."))}
    v2 = dict(sd)
    v2["control_noise_refiner.0.after_proj.weight"] = torch.zeros(64, 64)
    v2["control_all_x_embedder.2-1.weight"] = torch.zeros(64, 33 * 4)
    save_file({k: v.contiguous() for k, v in v2.items()}, tmp_path / "v2.safetensors")
    with pytest.raises(ModelFileError, match="2.x layout"):
        model_patch.load_model_patch(str(tmp_path / "v2.safetensors"))
    save_file({"something.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="not a known model patch"):
        model_patch.load_model_patch(str(tmp_path / "other.safetensors"))


def test_node_encodes_the_control_image_and_steers_the_model(nets):
    """QwenImageDiffsynthControlnet on a loaded Z-Image model: the control image goes through the
    VAE and the model's latent format at the sampled latent's size, and changes the prediction;
    a non-Z-Image model is refused."""
    from comfyui.models import memory
    from comfyui.models.convert import diffusers_vae_to_ldm
    from comfyui.models.sd import load_diffusion_model_state_dict, make_vae
    from comfyui.nodes.builtin.model_patch import QwenImageDiffsynthControlnet
    from . import flux_fixtures as fx

    ref, _, _, patcher = nets
    memory.configure(None, cpu=True)
    try:
        model = load_diffusion_model_state_dict(lf.z_image_diffusers_to_native(ref.state_dict()))
        vae = make_vae(diffusers_vae_to_ldm(lf.diffusers_vae16_f8(seed=2).state_dict()))
        image = torch.rand(1, 48, 64, 3, generator=torch.Generator().manual_seed(3))
        patched = QwenImageDiffsynthControlnet().diffsynth_controlnet(model, patcher, vae, image, 0.8)[0]
        patch = patched.model_options["transformer_options"]["patches"]["double_block"][0]
        assert "patches" not in model.model_options["transformer_options"]   # the input model is untouched
        x, text = torch.randn(1, 16, 6, 8), torch.randn(1, 9, 32)
        sigma = torch.tensor([0.5])
        with torch.no_grad():
            plain = model.model.apply_model(x, sigma, c_crossattn=text)
            steered = model.model.apply_model(x, sigma, c_crossattn=text,
                                              transformer_options=patched.model_options["transformer_options"])
        want = model.model.latent_format.process_in(vae.encode(image))
        torch.testing.assert_close(patch.latent, want)   # 48x64 pixels = the 6x8 latent: no rescale
        assert (steered - plain).abs().max() > 1e-2
        flux = load_diffusion_model_state_dict(fx._flux_native(seed=1))
        with pytest.raises(ValueError, match="patches a Z-Image model, not flux"):
            QwenImageDiffsynthControlnet().diffsynth_controlnet(flux, patcher, vae, image, 1.0)
    finally:
        memory.configure(None)
