"""LoRA training nodes (upstream's ``nodes_train``): image (and caption) datasets from an input
folder, TrainLoraNode (the loop lives in :mod:`comfyui.models.lora_train`), applying and saving
the trained LoRA, and a plot of the loss. Upstream's names, inputs, defaults and categories."""
from __future__ import annotations

import datetime
import json
import logging
import os

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from comfyui import paths

from ._lazy import lazy

torch = lazy("torch")
np = lazy("numpy")
_train = lazy("comfyui.models.lora_train")
_lora = lazy("comfyui.models.lora")
_loading = lazy("comfyui.models.loading")
_progress = lazy("comfyui.engine.progress")

log = logging.getLogger(__name__)

_RESIZE = (["None", "Stretch", "Crop", "Pad"], {"default": "None"})
_DATASET_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
# upstream's algorithm list; only LoRA has a trainer and a loader here
_ALGORITHMS = ["LoRA", "LoHa", "LoKr", "OFT"]


def _dtype(name: str):
    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


def load_and_process_images(files: list[str], folder: str, resize_method: str = "None",
                            w: int | None = None, h: int | None = None) -> torch.Tensor:
    """IMAGE [N,H,W,3] of ``files`` (relative to ``folder``), all at the first image's size
    (or ``w``x``h``): "Stretch"/"Pad" resize (Lanczos), "Crop" cuts the top-left corner,
    "None" refuses images of another size."""
    if not files:
        raise ValueError("No valid images found in input")
    out = []
    for name in files:
        with Image.open(os.path.join(folder, name)) as img:
            if img.mode == "I":
                img = img.point(lambda v: v * (1 / 255))
            img = img.convert("RGB")
        if w is None and h is None:
            w, h = img.size
        w = w if w is not None else img.size[0]
        h = h if h is not None else img.size[1]
        if img.size != (w, h):
            if resize_method in ("Stretch", "Pad"):
                img = img.resize((w, h), Image.Resampling.LANCZOS)
            elif resize_method == "Crop":
                img = img.crop((0, 0, w, h))
            else:
                raise ValueError("Your input image size does not match the first image in the dataset. Either select "
                                 "a valid resize method or use the same size for all images.")
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None])
    return torch.cat(out, dim=0)


def _dataset_folder(folder: str) -> str:
    path = str(paths.safe_join(paths.get_input_directory(), folder))
    if not os.path.isdir(path):
        raise ValueError(f"input folder not found: {folder}")
    return path


class LoadImageSetFromFolderNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"folder": (paths.get_input_subfolders(), {"tooltip": "The folder to load images from."})},
                "optional": {"resize_method": _RESIZE}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "load_images"
    CATEGORY = "loaders"
    EXPERIMENTAL = True
    DESCRIPTION = "Loads a batch of images from a directory for training."

    def load_images(self, folder, resize_method="None"):
        path = _dataset_folder(folder)
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(_DATASET_EXTENSIONS))
        return (load_and_process_images(files, path, resize_method),)


class LoadImageTextSetFromFolderNode:
    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": -1, "min": -1, "max": 10000, "step": 1}
        return {
            "required": {
                "folder": (paths.get_input_subfolders(), {"tooltip": "The folder to load images from."}),
                "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
            },
            "optional": {
                "resize_method": _RESIZE,
                "width": ("INT", {**size, "tooltip": "The width to resize the images to. -1 means use the original width."}),
                "height": ("INT", {**size, "tooltip": "The height to resize the images to. -1 means use the original height."}),
            },
        }

    RETURN_TYPES = ("IMAGE", "CONDITIONING")
    FUNCTION = "load_images"
    CATEGORY = "loaders"
    EXPERIMENTAL = True
    DESCRIPTION = "Loads a batch of images and caption from a directory for training."

    def load_images(self, folder, clip, resize_method="None", width=-1, height=-1):
        if clip is None:
            raise RuntimeError("ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node "
                               "your checkpoint does not contain a valid clip or text encoder model.")
        path = _dataset_folder(folder)
        files = []
        for item in sorted(os.listdir(path)):
            full = os.path.join(path, item)
            if item.lower().endswith(_DATASET_EXTENSIONS):
                files.append(full)
            elif os.path.isdir(full):
                # kohya-ss sd-scripts layout: "<repeats>_<name>/" subfolders
                head = item.split("_")[0]
                repeats = int(head) if head.isdigit() else 1
                inner = [os.path.join(full, f) for f in sorted(os.listdir(full)) if f.lower().endswith(_DATASET_EXTENSIONS)]
                files.extend(inner * repeats)
        images = load_and_process_images(files, path, resize_method, None if width == -1 else width,
                                         None if height == -1 else height)
        conditioning = []
        for f in files:
            caption_path = os.path.splitext(f)[0] + ".txt"
            caption = ""
            if os.path.exists(caption_path):
                with open(caption_path, encoding="utf-8") as fh:
                    caption = fh.read().strip()
            conditioning.extend(clip.encode_from_tokens_scheduled(clip.tokenize(caption)))
        log.info("Loaded %d images and captions from %s", len(files), path)
        return (images, conditioning)


class TrainLoraNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model to train the LoRA on."}),
                "latents": ("LATENT", {"tooltip": "The Latents to use for training, serve as dataset/input of the model."}),
                "positive": ("CONDITIONING", {"tooltip": "The positive conditioning to use for training."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 10000, "step": 1,
                                       "tooltip": "The batch size to use for training."}),
                "grad_accumulation_steps": ("INT", {"default": 1, "min": 1, "max": 1024, "step": 1,
                                                    "tooltip": "The number of gradient accumulation steps to use for training."}),
                "steps": ("INT", {"default": 16, "min": 1, "max": 100000,
                                  "tooltip": "The number of steps to train the LoRA for."}),
                "learning_rate": ("FLOAT", {"default": 0.0005, "min": 0.0000001, "max": 1.0, "step": 0.000001,
                                            "tooltip": "The learning rate to use for training."}),
                "rank": ("INT", {"default": 8, "min": 1, "max": 128, "tooltip": "The rank of the LoRA layers."}),
                "optimizer": (["AdamW", "Adam", "SGD", "RMSprop"],
                              {"default": "AdamW", "tooltip": "The optimizer to use for training."}),
                "loss_function": (["MSE", "L1", "Huber", "SmoothL1"],
                                  {"default": "MSE", "tooltip": "The loss function to use for training."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "The seed to use for training (used in generator for LoRA weight "
                                            "initialization and noise sampling)"}),
                "training_dtype": (["bf16", "fp32"], {"default": "bf16", "tooltip": "The dtype to use for training."}),
                "lora_dtype": (["bf16", "fp32"], {"default": "bf16", "tooltip": "The dtype to use for lora."}),
                "algorithm": (_ALGORITHMS, {"default": "LoRA", "tooltip": "The algorithm to use for training."}),
                "gradient_checkpointing": ("BOOLEAN", {"default": True,
                                                       "tooltip": "Use gradient checkpointing for training."}),
                "existing_lora": (paths.get_filename_list("loras") + ["[None]"],
                                  {"default": "[None]",
                                   "tooltip": "The existing LoRA to append to. Set to None for new LoRA."}),
            },
        }

    RETURN_TYPES = ("MODEL", "LORA_MODEL", "LOSS_MAP", "INT")
    RETURN_NAMES = ("model_with_lora", "lora", "loss", "steps")
    FUNCTION = "train"
    CATEGORY = "training"
    EXPERIMENTAL = True

    def train(self, model, latents, positive, batch_size, steps, grad_accumulation_steps, learning_rate, rank,
              optimizer, loss_function, seed, training_dtype, lora_dtype, algorithm, gradient_checkpointing,
              existing_lora):
        if algorithm != "LoRA":
            raise ValueError(f"algorithm {algorithm!r} is not supported yet; use LoRA")
        samples = latents["samples"]
        n = samples.shape[0]
        if len(positive) == 1 and n > 1:
            positive = positive * n
        elif len(positive) != n:
            raise ValueError(f"Number of positive conditions ({len(positive)}) does not match number of images ({n}).")
        existing, existing_steps = None, 0
        if existing_lora != "[None]":
            existing = _loading.load_torch_file(paths.get_full_path_or_raise("loras", existing_lora))
            # SaveLoRANode's names carry the steps: "<prefix>_<steps>_steps_<counter>_.safetensors"
            head = existing_lora.split("_steps_")[0].split("_")[-1]
            existing_steps = int(head) if "_steps_" in existing_lora and head.isdigit() else 0

        bar = _progress.ProgressBar(steps * grad_accumulation_steps)
        lora_sd, losses = _train.train_lora(
            model, samples, positive, steps=steps, batch_size=batch_size,
            grad_accumulation_steps=grad_accumulation_steps, learning_rate=learning_rate, rank=rank,
            optimizer=optimizer, loss_function=loss_function, seed=seed, training_dtype=_dtype(training_dtype),
            lora_dtype=_dtype(lora_dtype), gradient_checkpointing=gradient_checkpointing, existing=existing,
            on_step=lambda step, total, loss: bar.update_absolute(step, total))
        model_with_lora, _ = _lora.load_lora_for_models(model, None, lora_sd, 1.0, 0.0)
        return (model_with_lora, lora_sd, {"loss": losses}, steps + existing_steps)


class LoraModelLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
            "lora": ("LORA_MODEL", {"tooltip": "The LoRA model to apply to the diffusion model."}),
            "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                                         "tooltip": "How strongly to modify the diffusion model. This value can be negative."}),
        }}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The modified diffusion model.",)
    FUNCTION = "load_lora_model"
    CATEGORY = "loaders"
    DESCRIPTION = "Load Trained LoRA weights from Train LoRA node."
    EXPERIMENTAL = True

    def load_lora_model(self, model, lora, strength_model):
        if strength_model == 0:
            return (model,)
        return (_lora.load_lora_for_models(model, None, lora, strength_model, 0)[0],)


class SaveLoRA:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "lora": ("LORA_MODEL", {"tooltip": "The LoRA model to save. Do not use the model with LoRA layers."}),
                "prefix": ("STRING", {"default": "loras/ComfyUI_trained_lora",
                                      "tooltip": "The prefix to use for the saved LoRA file."}),
            },
            "optional": {
                "steps": ("INT", {"forceInput": True, "tooltip": "Optional: The number of steps to LoRA has been "
                                                                 "trained for, used to name the saved file."}),
            },
        }

    RETURN_TYPES = ()
    FUNCTION = "save"
    CATEGORY = "loaders"
    EXPERIMENTAL = True
    OUTPUT_NODE = True

    def save(self, lora, prefix, steps=None):
        folder, filename, counter, _sub, _prefix = paths.get_save_image_path(prefix, paths.get_output_directory())
        middle = "" if steps is None else f"_{steps}_steps"
        _loading.save_torch_file(dict(lora), os.path.join(folder, f"{filename}{middle}_{counter:05}_.safetensors"))
        return {}


class LossGraphNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"loss": ("LOSS_MAP", {"default": {}}),
                             "filename_prefix": ("STRING", {"default": "loss_graph"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "plot_loss"
    OUTPUT_NODE = True
    CATEGORY = "training"
    EXPERIMENTAL = True
    DESCRIPTION = "Plots the loss graph and saves it to the output directory."

    def plot_loss(self, loss, filename_prefix, prompt=None, extra_pnginfo=None):
        values = list(loss.get("loss", []))
        if not values:
            raise ValueError("the loss map holds no values to plot")
        width, height, margin = 800, 480, 40  # upstream's canvas: the plot plus a margin for the labels
        img = Image.new("RGB", (width + margin, height + margin), "white")
        draw = ImageDraw.Draw(img)
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        points = [(margin + int(i / len(values) * width), height - int((v - lo) / span * height))
                  for i, v in enumerate(values)]
        if len(points) > 1:
            draw.line(points, fill="blue", width=2)
        draw.line([(margin, 0), (margin, height)], fill="black", width=2)
        draw.line([(margin, height), (width + margin, height)], fill="black", width=2)
        font = ImageFont.load_default()
        draw.text((5, height // 2), "Loss", font=font, fill="black")
        draw.text((width // 2, height + 10), "Steps", font=font, fill="black")
        draw.text((margin - 30, 0), f"{hi:.2f}", font=font, fill="black")
        draw.text((margin - 30, height - 10), f"{lo:.2f}", font=font, fill="black")

        from .loaders import _metadata_disabled
        meta = None
        if not _metadata_disabled():
            meta = PngInfo()
            if prompt is not None:
                meta.add_text("prompt", json.dumps(prompt))
            for k, v in (extra_pnginfo or {}).items():
                meta.add_text(k, json.dumps(v))
        name = f"{filename_prefix}_{datetime.datetime.now().strftime('%Y%m%d_%H%M%S')}.png"
        img.save(str(paths.safe_join(paths.get_temp_directory(), name)), pnginfo=meta)
        return {"ui": {"images": [{"filename": name, "subfolder": "", "type": "temp"}]}}


NODE_CLASS_MAPPINGS = {
    "TrainLoraNode": TrainLoraNode,
    "SaveLoRANode": SaveLoRA,
    "LoraModelLoader": LoraModelLoader,
    "LoadImageSetFromFolderNode": LoadImageSetFromFolderNode,
    "LoadImageTextSetFromFolderNode": LoadImageTextSetFromFolderNode,
    "LossGraphNode": LossGraphNode,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "TrainLoraNode": "Train LoRA",
    "SaveLoRANode": "Save LoRA Weights",
    "LoraModelLoader": "Load LoRA Model",
    "LoadImageSetFromFolderNode": "Load Image Dataset from Folder",
    "LoadImageTextSetFromFolderNode": "Load Image and Text Dataset from Folder",
    "LossGraphNode": "Plot Loss Graph",
}
