"""LoRA training nodes on a tiny random SD1 checkpoint: training lowers the denoising loss,
reports progress per step and stops on interrupt; the saved LoRA loads in LoraLoader, gives
the same image as the trained model and changes it; the loss graph is a picture."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from models import fixtures as fx
from PIL import Image

from comfyui import runtime
from comfyui.models import memory


@pytest.fixture(autouse=True)
def _cpu():
    memory.configure(None, cpu=True)
    runtime.current().model_files.clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy shared CPU makes multi-threaded backward passes crawl
    yield
    torch.set_num_threads(threads)
    memory.unload_all_models()
    memory.configure(None)
    runtime.current().model_files.clear()


@pytest.fixture
def ws(workspace):
    from comfyui import paths
    fx.make_sd1_checkpoint(os.path.join(workspace, "models", "checkpoints", "a.safetensors"), seed=41)
    data = workspace / "input" / "dataset"
    data.mkdir(parents=True)
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(2):
        img = np.stack([(xx * 4 + i * 60) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], -1).astype(np.uint8)
        Image.fromarray(img).save(data / f"img{i}.png")
        (data / f"img{i}.txt").write_text(f"a striped pattern number {i}")
    paths.invalidate_cache()
    return workspace


def _engine():
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry
    eng = Engine(NodeRegistry.with_builtins())
    eng.start()
    return eng


def _train_prompt(steps: int) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
        "2": {"class_type": "LoadImageTextSetFromFolderNode", "inputs": {"folder": "dataset", "clip": ["1", 1]}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "4": {"class_type": "TrainLoraNode", "inputs": {
            "model": ["1", 0], "latents": ["3", 0], "positive": ["2", 1], "batch_size": 2,
            "grad_accumulation_steps": 1, "steps": steps, "learning_rate": 0.01, "rank": 4, "optimizer": "AdamW",
            "loss_function": "MSE", "seed": 3, "training_dtype": "fp32", "lora_dtype": "fp32", "algorithm": "LoRA",
            "gradient_checkpointing": True, "existing_lora": "[None]"}},
    }


def _sample(model: list, clip: list, vae: list, prefix: str) -> dict:
    return {
        "20": {"class_type": "CLIPTextEncode", "inputs": {"clip": clip, "text": "a striped pattern number 0"}},
        "22": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "23": {"class_type": "KSampler", "inputs": {
            "model": model, "seed": 7, "steps": 2, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["20", 0], "negative": ["20", 0], "latent_image": ["22", 0], "denoise": 1.0}},
        "24": {"class_type": "VAEDecode", "inputs": {"samples": ["23", 0], "vae": vae}},
        "25": {"class_type": "SaveImage", "inputs": {"images": ["24", 0], "filename_prefix": prefix}},
    }


def _run(eng, prompt) -> tuple[dict, dict]:
    sub = eng.submit(prompt)
    assert sub.node_errors == {}, sub.node_errors
    h = eng.wait(sub.prompt_id).result(300)
    return h, h["outputs"]


def _image(ws, outputs) -> np.ndarray:
    im = outputs["25"]["images"][0]
    with Image.open(os.path.join(ws, "output", im["subfolder"], im["filename"])) as f:
        return np.asarray(f.convert("RGB")).astype(np.int16)


def test_train_save_load_with_lora_loader_and_plot(ws):
    from comfyui import paths
    steps = 6
    events = []
    eng = _engine()
    eng.add_listener(lambda ev, data, cid: events.append(data) if ev == "progress" else None)
    try:
        p = _train_prompt(steps)
        p["5"] = {"class_type": "SaveLoRANode", "inputs": {"lora": ["4", 1], "prefix": "loras/trained", "steps": ["4", 3]}}
        p["6"] = {"class_type": "LossGraphNode", "inputs": {"loss": ["4", 2], "filename_prefix": "loss_graph"}}
        p.update(_sample(["4", 0], ["1", 1], ["1", 2], "trained"))
        h, out = _run(eng, p)
        assert h["status"]["status_str"] == "success", h["status"]
        trained = _image(ws, out)

        saved = os.path.join(ws, "output", "loras", f"trained_{steps}_steps_00001_.safetensors")
        assert os.path.isfile(saved)
        shutil.copy(saved, os.path.join(ws, "models", "loras", "trained.safetensors"))
        paths.invalidate_cache()
        p2 = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
              "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": "trained.safetensors",
                                                           "strength_model": 1.0, "strength_clip": 1.0}}}
        p2.update(_sample(["2", 0], ["2", 1], ["1", 2], "loaded"))
        _, out2 = _run(eng, p2)
        p3 = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}}}
        p3.update(_sample(["1", 0], ["1", 1], ["1", 2], "plain"))
        _, out3 = _run(eng, p3)
    finally:
        eng.stop()

    loaded, plain = _image(ws, out2), _image(ws, out3)
    assert np.abs(trained - loaded).max() <= 1  # the file holds what was trained
    assert np.abs(loaded - plain).max() > 0  # and the LoRA changes the image
    progress = [(e["value"], e["max"]) for e in events if e.get("node") == "4"]
    assert progress == [(i, steps) for i in range(1, steps + 1)]

    graph = out["6"]["images"][0]
    assert graph["type"] == "temp" and graph["filename"].startswith("loss_graph_")
    with Image.open(os.path.join(ws, "temp", graph["filename"])) as g:
        assert g.size == (840, 520)
        blue = np.asarray(g.convert("RGB"))
        assert ((blue[..., 2] > 200) & (blue[..., 0] < 60)).sum() > 50  # the loss curve is drawn


def test_training_lowers_the_denoising_loss(ws):
    """The x0 loss at fixed noise and sigmas, before and after training on the same latents."""
    from comfyui.models import lora as lora_mod
    from comfyui.models import lora_train
    from comfyui.models import sd as sdm
    model, clip = sdm.load_checkpoint_guess_config(os.path.join(ws, "models", "checkpoints", "a.safetensors"))[:2]
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a striped pattern"))
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=g) * 0.5

    def eval_loss(patcher) -> float:
        memory.load_models_gpu([patcher])
        base = patcher.model
        x0 = base.process_latent_in(latents)
        total = 0.0
        for pct in (0.3, 0.5, 0.7, 0.9):
            sigma = torch.full((2,), base.model_sampling.percent_to_sigma(pct))
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(pct * 10)))
            xt = base.model_sampling.noise_scaling(sigma, noise, x0, False)
            with torch.no_grad():
                pred = base.apply_model(xt, sigma, c_crossattn=cond[0][0].repeat(2, 1, 1))
            total += torch.nn.functional.mse_loss(pred, x0).item()
        return total

    before = eval_loss(model)
    with torch.inference_mode():  # as the executor runs nodes
        sd, losses = lora_train.train_lora(model, latents, cond * 2, steps=25, batch_size=2, learning_rate=0.01,
                                           rank=4, seed=1, gradient_checkpointing=False)
    assert len(losses) == 25
    assert any(k.endswith(".lora_up.weight") for k in sd) and any(k.endswith(".diff_b") for k in sd)
    after = eval_loss(lora_mod.load_lora_for_models(model, None, sd, 1.0, 0.0)[0])
    assert after < 0.8 * before, (before, after)
    # training left the shared model untouched
    assert eval_loss(model) == pytest.approx(before, rel=1e-6)


def test_training_stops_on_interrupt(ws):
    eng = _engine()
    interrupted = []

    def on_event(ev, data, cid):
        if ev == "progress" and data.get("node") == "4" and data["value"] == 2 and not interrupted:
            interrupted.append(eng.interrupt(data["prompt_id"]))

    eng.add_listener(on_event)
    try:
        p = _train_prompt(200)
        p["6"] = {"class_type": "LossGraphNode", "inputs": {"loss": ["4", 2], "filename_prefix": "loss_graph"}}
        h, _ = _run(eng, p)
    finally:
        eng.stop()
    assert interrupted == [True]
    assert h["status"]["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in h["status"]["messages"])


def test_image_dataset_folder_and_resize(ws):
    from comfyui.nodes.builtin import train as T
    assert "dataset" in T.LoadImageSetFromFolderNode.INPUT_TYPES()["required"]["folder"][0]
    Image.new("RGB", (32, 48), (255, 0, 0)).save(ws / "input" / "dataset" / "img2.png")
    with pytest.raises(ValueError, match="does not match the first image"):
        T.LoadImageSetFromFolderNode().load_images("dataset", "None")
    (images,) = T.LoadImageSetFromFolderNode().load_images("dataset", "Stretch")
    assert images.shape == (3, 64, 64, 3)
    assert images[2].mean(dim=(0, 1)).tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-3)
    (cropped,) = T.LoadImageSetFromFolderNode().load_images("dataset", "Crop")
    assert cropped.shape == (3, 64, 64, 3)
    with pytest.raises(ValueError, match="no values"):
        T.LossGraphNode().plot_loss({"loss": []}, "loss_graph")


def test_sdxl_defaults_bf16_and_continuing_an_existing_lora(workspace):
    """Upstream's defaults (bf16 training and LoRA, gradient checkpointing) on a tiny SDXL
    model; a second run starts from the saved file and counts its steps on."""
    from comfyui import paths
    from comfyui.models import sd as sdm
    from comfyui.models.loading import load_torch_file
    from comfyui.nodes.builtin import train as T
    path = fx.make_sdxl_checkpoint(os.path.join(workspace, "models", "checkpoints", "xl.safetensors"), seed=5)
    model, clip = sdm.load_checkpoint_guess_config(path)[:2]
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a house"))
    latents = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))}
    defaults = {k: v[1]["default"] for k, v in T.TrainLoraNode.INPUT_TYPES()["required"].items()
                if isinstance(v[1], dict) and "default" in v[1]}
    defaults.update(steps=2)
    with torch.inference_mode():
        trained, lora, loss, steps = T.TrainLoraNode().train(model, latents, cond, **defaults)
    assert steps == 2 and len(loss["loss"]) == 2 and all(np.isfinite(loss["loss"]))
    assert {t.dtype for t in lora.values()} == {torch.bfloat16}
    assert trained.patches and not model.patches  # the input model is left as it was
    T.SaveLoRA().save(lora, "loras/xl", steps=steps)
    saved = os.path.join(workspace, "output", "loras", "xl_2_steps_00001_.safetensors")
    shutil.copy(saved, os.path.join(workspace, "models", "loras", "xl_2_steps_00001_.safetensors"))
    paths.invalidate_cache()
    assert "xl_2_steps_00001_.safetensors" in T.TrainLoraNode.INPUT_TYPES()["required"]["existing_lora"][0]

    defaults.update(steps=1, existing_lora="xl_2_steps_00001_.safetensors", learning_rate=1e-7)
    with torch.inference_mode():
        _, lora2, _, steps2 = T.TrainLoraNode().train(model, latents, cond, **defaults)
    assert steps2 == 3
    first = load_torch_file(saved)
    assert lora2.keys() == first.keys()
    key = next(k for k in first if k.endswith(".lora_down.weight") and first[k].abs().max() > 0)
    # a tiny learning rate: the second run continued from the saved values
    assert torch.allclose(lora2[key].float(), first[key].float(), atol=1e-3)


def test_node_specs_match_upstream():
    from comfyui.nodes.builtin import train as T
    req = T.TrainLoraNode.INPUT_TYPES()["required"]
    assert list(req) == ["model", "latents", "positive", "batch_size", "grad_accumulation_steps", "steps",
                         "learning_rate", "rank", "optimizer", "loss_function", "seed", "training_dtype",
                         "lora_dtype", "algorithm", "gradient_checkpointing", "existing_lora"]
    assert req["steps"][1]["default"] == 16 and req["learning_rate"][1]["default"] == 0.0005
    assert req["rank"][1]["default"] == 8 and req["optimizer"][0] == ["AdamW", "Adam", "SGD", "RMSprop"]
    assert req["loss_function"][0] == ["MSE", "L1", "Huber", "SmoothL1"]
    assert req["existing_lora"][0][-1] == "[None]" and req["existing_lora"][1]["default"] == "[None]"
    assert T.TrainLoraNode.RETURN_TYPES == ("MODEL", "LORA_MODEL", "LOSS_MAP", "INT")
    assert T.TrainLoraNode.RETURN_NAMES == ("model_with_lora", "lora", "loss", "steps")
    assert T.SaveLoRA.INPUT_TYPES()["required"]["prefix"][1]["default"] == "loras/ComfyUI_trained_lora"
    assert T.SaveLoRA.INPUT_TYPES()["optional"]["steps"][1]["forceInput"] is True
    assert list(T.LoadImageTextSetFromFolderNode.INPUT_TYPES()["optional"]) == ["resize_method", "width", "height"]
    assert T.NODE_CLASS_MAPPINGS["SaveLoRANode"] is T.SaveLoRA
