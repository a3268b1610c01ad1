"""Tiny random-weight model files (1-10 M parameters) under the exact names the official
Flux.1 / SD3.5 / Z-Image / Lumina 2 (NetaYume) / Chroma templates of
``comfyui-workflow-templates`` ask for, in the real file layouts, plus their input images.

The layouts come from the fixture builders the model tests use (they build each network with
the independent implementation -- diffusers / transformers -- and write it in the layout of the
real file):

- Flux.1 (``models/flux_fixtures.py``): BFL-key diffusion models (dev, schnell, Fill 96-channel
  input, Canny 32-channel input), the all-in-one fp8 checkpoints, CLIP-L and T5-XXL (HF keys),
  the 16-channel ``ae.safetensors``; here also the scaled-fp8 variants the templates name
  (``*_fp8_scaled``: fp8 e4m3fn weights, a per-layer ``scale_weight``, the ``scaled_fp8``
  marker) and the OneReward Fill transformer in plain fp8, with its LoRA in the diffusers/PEFT
  layout (``transformer.<diffusers module>.lora_A/B.weight``).
- SD3.5 large (``models/sd3_fixtures.py``): the all-in-one checkpoint, its MMDiT scaled fp8.
- Z-Image Turbo and Lumina 2 (``models/lumina2_fixtures.py``): ``z_image_turbo_bf16`` (also
  as the base model ``z_image_bf16``, the same layout, and as ``*_int8_convrot``: ComfyUI's
  per-layer ``comfy_quant`` int8 with ConvRot rotation, ``models/quant_fixtures.py``),
  ``qwen_3_4b`` (also as ``qwen_3_4b_fp8_mixed``: per-layer fp8 but the embedding), the Fun
  ControlNet Union model patch (diffusers' ``ZImageControlNetModel`` state dict, bf16), and
  NetaYume's all-in-one checkpoint (``model.diffusion_model.*`` NextDiT,
  ``text_encoders.gemma2_2b.transformer.*`` with ``text_encoders.spiece_model``, ``vae.*``).
- Flux Redux (``models/redux_fixtures.py``): the SigLIP-384 vision tower and the redux
  projector into the Flux text width.
- Flux USO (``models/uso_fixtures.py``): the style projector (model_patches) and the DiT LoRA;
  the SigLIP tower above is 20 layers deep for it.
- Chroma (``models/chroma_fixtures.py``): ``Chroma1-HD-fp8mixed`` (scaled fp8) and its T5;
  ``chroma-radiance-x0`` (bf16, patch 16, the ``__x0__`` marker).
- Lotus depth (``models/lotus_fixtures.py``): ``lotus-depth-d-v1-1`` (a diffusers-layout UNet,
  fp16) and the SD1.x VAE ``vae-ft-mse-840000-ema-pruned``; the SD3.5 large depth ControlNet
  (``models/sd3_cn_fixtures.py``, control type 2).

Run as a script to fill a ComfyUI base directory (``models/...`` and ``input/...``)::

    python tests/workflows/template_fixtures.py /path/to/base
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from models import (chroma_fixtures, flux_fixtures, lotus_fixtures, lumina2_fixtures, quant_fixtures,  # noqa: E402
                    redux_fixtures, sd3_cn_fixtures, sd3_fixtures, uso_fixtures)

FP8_MAX = 448.0   # float8_e4m3fn
INPUT_SIZE = (64, 48)   # (W, H) of every input image


def save(sd: dict[str, torch.Tensor], path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    return path


def scaled_fp8(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """ComfyUI's scaled-fp8 convention for the 2-D weights under ``prefix`` (``w = q * scale``,
    the ``<prefix>scaled_fp8`` marker whose dtype names the fp8 type); the rest unchanged."""
    out = {prefix + "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for k, v in sd.items():
        if k.startswith(prefix) and k.endswith(".weight") and v.ndim == 2 and v.is_floating_point():
            scale = v.float().abs().max().clamp_min(1e-12) / FP8_MAX
            out[k] = (v.float() / scale).to(torch.float8_e4m3fn)
            out[k[:-len("weight")] + "scale_weight"] = scale.reshape(())
        else:
            out[k] = v
    return out


def flux_peft_lora(native: dict[str, torch.Tensor], rank: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A LoRA on a Flux transformer in the diffusers/PEFT layout (``transformer.<module>.lora_A
    .weight`` [rank, in], ``lora_B.weight`` [out, rank]) on the q/k/v projections of the first
    double block (diffusers splits BFL's fused ``qkv``) and the single block's ``proj_out``."""
    g = torch.Generator().manual_seed(seed)
    hidden = native["img_in.weight"].shape[0]
    targets = {f"transformer.transformer_blocks.0.attn.to_{n}": (hidden, hidden) for n in "qkv"}
    targets["transformer.single_transformer_blocks.0.proj_out"] = (
        hidden, native["single_blocks.0.linear2.weight"].shape[1])
    out = {}
    for name, (n_out, n_in) in targets.items():
        out[name + ".lora_A.weight"] = 0.1 * torch.randn(rank, n_in, generator=g)
        out[name + ".lora_B.weight"] = 0.1 * torch.randn(n_out, rank, generator=g)
    return out


def input_image(path: str, seed: int) -> None:
    """A random RGBA image (a transparent rectangle: the mask LoadImage gives) or, for .jpg, RGB."""
    w, h = INPUT_SIZE
    rgba = (np.random.default_rng(seed).random((h, w, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = 255
    rgba[h // 4:h // 2, w // 4:w // 2, 3] = 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(rgba, "RGBA")
    (image.convert("RGB") if path.lower().endswith((".jpg", ".jpeg")) else image).save(path)


def write_template_files(base: str, input_names: list[str] = ()) -> dict[str, str]:
    """Every model file below (``base/models/<folder>/<name>``) and each input image named in
    ``input_names`` (``base/input/<name>``). Returns {file name: path}."""
    models = os.path.join(base, "models")
    out = dict(lumina2_fixtures.write_default_workflow_models(models))   # Z-Image Turbo (+ its ae)
    out.update(chroma_fixtures.write_chroma_files(models))               # Chroma (T5 and ae 64 wide too)
    out.update(flux_fixtures.write_flux_files(models))                   # Flux.1 (its ae replaces both)
    # SigLIP (20 layers: USO reads layer -20) + Redux into T5 width 64
    out.update(redux_fixtures.write_redux_files(models, txt=64, siglip_layers=20))
    te, dm = os.path.join(models, "text_encoders"), os.path.join(models, "diffusion_models")
    z_image = load_file(os.path.join(dm, "z_image_turbo_bf16.safetensors"))
    out["z_image_bf16.safetensors"] = save(z_image, os.path.join(dm, "z_image_bf16.safetensors"))  # same layout
    for name in ("z_image_int8_convrot.safetensors", "z_image_turbo_int8_convrot.safetensors"):
        out[name] = save(quant_fixtures.int8_convrot_file(z_image, group=16), os.path.join(dm, name))
    qwen = load_file(os.path.join(te, "qwen_3_4b.safetensors"))
    out["qwen_3_4b_fp8_mixed.safetensors"] = save(
        quant_fixtures.fp8_mixed_file(qwen, keep=lambda k: "embed_tokens" in k),
        os.path.join(te, "qwen_3_4b_fp8_mixed.safetensors"))
    t5 = load_file(os.path.join(te, "t5xxl_fp16.safetensors"))
    dev = load_file(os.path.join(dm, "flux1-dev.safetensors"))
    fill = load_file(os.path.join(dm, "flux1-fill-dev.safetensors"))
    out["t5xxl_fp8_e4m3fn_scaled.safetensors"] = save(scaled_fp8(t5), os.path.join(te, "t5xxl_fp8_e4m3fn_scaled.safetensors"))
    for name in ("flux1-krea-dev_fp8_scaled.safetensors", "flux1-dev-kontext_fp8_scaled.safetensors"):
        out[name] = save(scaled_fp8(dev), os.path.join(dm, name))
    # the depth LoRA template loads the all-in-one fp8 checkpoint with UNETLoader
    name = "flux1-dev-fp8.safetensors"
    save(load_file(os.path.join(models, "checkpoints", name)), os.path.join(dm, name))
    name = "flux.1-fill-dev-OneReward-transformer_fp8.safetensors"
    out[name] = save({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in fill.items()},
                     os.path.join(dm, name))
    name = "removal_timestep_alpha-2-1740.safetensors"
    out[name] = save(flux_peft_lora(fill), os.path.join(models, "loras", name))
    name = "sd3.5_large_fp8_scaled.safetensors"
    ckpt = sd3_fixtures.checkpoint_sd(seed=7, medium=False)
    out[name] = save(scaled_fp8(ckpt, "model.diffusion_model."), os.path.join(models, "checkpoints", name))
    name = "sd3.5_large_controlnet_depth.safetensors"
    widths = sd3_fixtures.CKPT_WIDTHS
    depth_cn = sd3_cn_fixtures.diffusers_sd35_controlnet(2, layers=1, pooled=widths["clip_l"] + widths["clip_g"], seed=9)
    out[name] = save(sd3_cn_fixtures.sd35_file(depth_cn, control_type=2), os.path.join(models, "controlnet", name))
    name = "lotus-depth-d-v1-1.safetensors"
    out[name] = save({k: v.half() for k, v in lotus_fixtures.lotus_file_sd(seed=10).items()}, os.path.join(dm, name))
    name = "vae-ft-mse-840000-ema-pruned.safetensors"
    out[name] = save(lotus_fixtures.sd1_vae_file_sd(seed=11), os.path.join(models, "vae", name))
    name = "NetaYumev35_pretrained_all_in_one.safetensors"
    out[name] = save(lumina2_fixtures.lumina2_checkpoint_sd(seed=8), os.path.join(models, "checkpoints", name))
    name = "chroma-radiance-x0.safetensors"   # T5 width 64, the x0 release's marker
    out[name] = save({k: v.to(torch.bfloat16) for k, v in chroma_fixtures.radiance(seed=12, context=64)[1].items()},
                     os.path.join(dm, name))
    name = "uso-flux1-projector-v1.safetensors"   # SigLIP 144 wide -> Flux hidden 64
    out[name] = save({k: v.to(torch.bfloat16) for k, v in uso_fixtures.projector_sd(seed=10).items()},
                     os.path.join(models, "model_patches", name))
    name = "uso-flux1-dit-lora-v1.safetensors"
    out[name] = save(uso_fixtures.dit_lora_sd(dev, seed=11), os.path.join(models, "loras", name))
    name = "Z-Image-Turbo-Fun-Controlnet-Union.safetensors"   # for z_image_turbo_bf16 (64 wide, 2 layers)
    control = lumina2_fixtures.diffusers_z_image_controlnet(seed=9, places=(0, 1))
    out[name] = save({k: v.to(torch.bfloat16) for k, v in control.state_dict().items()},
                     os.path.join(models, "model_patches", name))
    for i, image in enumerate(sorted(set(input_names))):
        input_image(os.path.join(base, "input", image), seed=i)
    return out


# the local (not api_*) templates of the families these files serve: Flux.1 (not Flux.2 / Klein,
# other families), SD3.5, Z-Image, Lumina 2 / NetaYume, Chroma
TEMPLATE_PREFIXES = ("flux_", "flux1_", "image_flux.1_", "sd3.5_", "image_z_image", "image_netayume_", "image_chroma")


def family_templates(prefixes: tuple[str, ...] = TEMPLATE_PREFIXES) -> dict[str, dict]:
    """{template name: UI workflow} of the installed ``comfyui-workflow-templates-json`` whose
    names start with one of ``prefixes``."""
    import importlib.resources
    import json

    import comfyui_workflow_templates_json as pkg
    folder = Path(str(importlib.resources.files(pkg)), "templates")
    out = {}
    for path in sorted(folder.glob("*.json")):
        if path.stem.startswith(prefixes) and not path.stem.endswith(".app"):
            workflow = json.loads(path.read_text())
            if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
                out[path.stem] = workflow
    return out


def load_image_names(workflow: dict) -> list[str]:
    """The file names the workflow's LoadImage nodes (subgraphs included) ask for."""
    graphs, names = [workflow], []
    while graphs:
        graph = graphs.pop()
        graphs += (graph.get("definitions") or {}).get("subgraphs") or []
        names += [n["widgets_values"][0] for n in graph.get("nodes") or []
                  if n.get("type") == "LoadImage" and n.get("widgets_values")]
    return names


if __name__ == "__main__":
    images = [name for workflow in family_templates().values() for name in load_image_names(workflow)]
    for name, path in write_template_files(sys.argv[1] if len(sys.argv) > 1 else ".", images).items():
        print(name, "->", path)
