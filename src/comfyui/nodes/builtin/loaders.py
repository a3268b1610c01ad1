"""Model loader nodes: CheckpointLoaderSimple, CheckpointLoader, DiffusersLoader, VAELoader,
CLIPLoader, DualCLIPLoader, TripleCLIPLoader, UNETLoader, LoraLoader, LoraLoaderModelOnly, CLIPSetLastLayer, CheckpointSave."""
from __future__ import annotations

import json
import os

from comfyui import known_models, paths

from ._lazy import lazy

lora_mod = lazy("comfyui.models.lora")
sdm = lazy("comfyui.models.sd")
vae_module = lazy("comfyui.models.vae")
_loading = lazy("comfyui.models.loading")
_recipes = lazy("comfyui.models.text_encoders.recipes")


def _embeddings():
    return paths.get_folder_paths("embeddings")


class CheckpointLoaderSimple:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (known_models.filename_list("checkpoints"),
                                           {"tooltip": "The name of the checkpoint (model) to load."})}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("The model used for denoising latents.",
                       "The CLIP model used for encoding text prompts.",
                       "The VAE model used for encoding and decoding images to and from latent space.")
    FUNCTION = "load_checkpoint"
    CATEGORY = "loaders"
    DESCRIPTION = "Loads a diffusion model checkpoint, diffusion models are used to denoise latents."

    def load_checkpoint(self, ckpt_name):
        ckpt_path = paths.get_full_path_or_raise("checkpoints", ckpt_name)
        out = sdm.load_checkpoint_guess_config(ckpt_path, output_vae=True, output_clip=True,
                                               embedding_directory=_embeddings())
        return out[:3]


class CheckpointLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"config_name": (paths.get_filename_list("configs"),),
                             "ckpt_name": (known_models.filename_list("checkpoints"),)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    CATEGORY = "advanced/loaders"
    DEPRECATED = True

    def load_checkpoint(self, config_name, ckpt_name):
        # the model is detected from the weights; the yaml config is not needed
        ckpt_path = paths.get_full_path_or_raise("checkpoints", ckpt_name)
        return sdm.load_checkpoint_guess_config(ckpt_path, output_vae=True, output_clip=True,
                                                embedding_directory=_embeddings())[:3]


class DiffusersLoader:
    @classmethod
    def INPUT_TYPES(cls):
        found = []
        for search_path in paths.get_folder_paths("diffusers"):
            if os.path.exists(search_path):
                for root, _dirs, files in os.walk(search_path, followlinks=True):
                    if "model_index.json" in files:
                        found.append(os.path.relpath(root, start=search_path))
        return {"required": {"model_path": (sorted(found),)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    CATEGORY = "advanced/loaders/deprecated"

    def load_checkpoint(self, model_path, output_vae=True, output_clip=True):
        resolved = None
        for search_path in paths.get_folder_paths("diffusers"):
            if os.path.exists(search_path):
                candidate = paths.safe_join(search_path, model_path)
                if os.path.exists(candidate):
                    resolved = str(candidate)
                    break
        if resolved is None:
            raise FileNotFoundError(f"diffusers model not found: {model_path}")
        return sdm.load_diffusers(resolved, output_vae=output_vae, output_clip=output_clip,
                                  embedding_directory=_embeddings())


class VAELoader:
    """``pixel_space``: not a file, the identity "VAE" of pixel-space models (Chroma Radiance)."""

    @staticmethod
    def vae_list():
        return known_models.filename_list("vae") + ["pixel_space"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae_name": (cls.vae_list(),)}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"
    CATEGORY = "loaders"

    def load_vae(self, vae_name):
        if vae_name == "pixel_space":
            return (vae_module.PixelSpaceVAE(),)
        return (sdm.load_vae(paths.get_full_path_or_raise("vae", vae_name)),)


# the type lists upstream's loaders show; which of them this build can load is
# comfyui.models.text_encoders.recipes.CLIP_TYPES, checked at prompt validation
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2", "ovis"]
DUAL_CLIP_TYPES = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image"]


def _clip_type_refusal(listed: list[str], clip_type: str, files: int) -> str | bool:
    """VALIDATE_INPUTS' answer for a text-encoder type: True, or why the prompt is refused."""
    if clip_type not in listed:
        return f"type '{clip_type}' not in {listed}"
    return _recipes.clip_type_problem(clip_type, files) or True


def _file_refusal(name: str | None, clip_type: str) -> str | bool:
    """What the file's tensor names (its safetensors header; nothing is loaded) tell against
    using it as ``clip_type``, e.g. a Gemma file without its tokenizer; True if nothing."""
    if not isinstance(name, str):
        return True  # a linked input: checked when it runs
    names = known_models.filename_list("text_encoders")
    if name not in names:  # asking for clip_name takes over the list check (as in ComfyUI)
        return f"Value not in list: clip_name: '{name}' not in {names[:20]}"
    path = paths.get_full_path("text_encoders", name)
    if path is None or not path.endswith((".safetensors", ".sft")):
        return True
    try:
        keys = set(_loading.safetensors_header(path)) - {"__metadata__"}
    except Exception as exc:  # noqa: BLE001 - any unreadable header: the loader will say more
        return f"{name}: cannot read the file: {exc}"
    problem = _recipes.file_problem(clip_type, keys)
    return f"{name}: {problem}" if problem else True


def _load_text_encoders(names: list[str], clip_type: str, device: str):
    paths_ = [paths.get_full_path_or_raise("text_encoders", n) for n in names]
    clip = sdm.load_clip(paths_, embedding_directory=_embeddings(), clip_type=clip_type)
    if device == "cpu":
        import torch
        clip = clip.clone()
        clip.patcher.load_device = torch.device("cpu")
    return (clip,)


class CLIPLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (known_models.filename_list("text_encoders"),),
                             "type": (CLIP_TYPES,)},
                "optional": {"device": (["default", "cpu"], {"advanced": True})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    CATEGORY = "advanced/loaders"
    DESCRIPTION = ("[Recipes]\n\nstable_diffusion: clip-l\nstable_cascade: clip-g\nsd3: t5 xxl/ clip-g / clip-l\n"
                   "stable_audio: t5 base\nmochi: t5 xxl\ncosmos: old t5 xxl\nlumina2: gemma 2 2B\nwan: umt5 xxl\n"
                   " hidream: llama-3.1 (Recommend) or t5")

    @classmethod
    def VALIDATE_INPUTS(cls, type, clip_name=None):  # noqa: A002 - the input's name
        refusal = _clip_type_refusal(CLIP_TYPES, type, 1)
        return refusal if refusal is not True else _file_refusal(clip_name, type)

    def load_clip(self, clip_name, type="stable_diffusion", device="default"):  # noqa: A002
        return _load_text_encoders([clip_name], type, device)


class DualCLIPLoader:
    @classmethod
    def INPUT_TYPES(cls):
        names = known_models.filename_list("text_encoders")
        return {"required": {"clip_name1": (names,), "clip_name2": (names,), "type": (DUAL_CLIP_TYPES,)},
                "optional": {"device": (["default", "cpu"], {"advanced": True})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    CATEGORY = "advanced/loaders"
    DESCRIPTION = ("[Recipes]\n\nsdxl: clip-l, clip-g\nsd3: clip-l, clip-g / clip-l, t5 / clip-g, t5\n"
                   "flux: clip-l, t5\nhidream: at least one of t5 or llama, recommended t5 and llama\n"
                   "hunyuan_image: qwen2.5vl 7b and byt5 small")

    @classmethod
    def VALIDATE_INPUTS(cls, type):  # noqa: A002
        return _clip_type_refusal(DUAL_CLIP_TYPES, type, 2)

    def load_clip(self, clip_name1, clip_name2, type, device="default"):  # noqa: A002
        return _load_text_encoders([clip_name1, clip_name2], type, device)


class TripleCLIPLoader:
    @classmethod
    def INPUT_TYPES(cls):
        names = known_models.filename_list("text_encoders")
        return {"required": {"clip_name1": (names,), "clip_name2": (names,), "clip_name3": (names,)}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    CATEGORY = "advanced/loaders"
    DESCRIPTION = "[Recipes]\n\nsd3: clip-l, clip-g, t5"

    @classmethod
    def VALIDATE_INPUTS(cls):
        return _recipes.clip_type_problem("sd3", 3) or True

    def load_clip(self, clip_name1, clip_name2, clip_name3):
        return _load_text_encoders([clip_name1, clip_name2, clip_name3], "sd3", "default")


class UNETLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": (known_models.filename_list("diffusion_models"),),
                             "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],
                                              {"advanced": True})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"
    CATEGORY = "advanced/loaders"

    def load_unet(self, unet_name, weight_dtype="default"):
        unet_path = paths.get_full_path_or_raise("diffusion_models", unet_name)
        return (sdm.load_diffusion_model(unet_path, weight_dtype),)


class LoraLoader:
    def __init__(self):
        self.loaded_lora = None

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}),
            "lora_name": (known_models.filename_list("loras"), {"tooltip": "The name of the LoRA."}),
            "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                                         "tooltip": "How strongly to modify the diffusion model. This value can be negative."}),
            "strength_clip": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                                        "tooltip": "How strongly to modify the CLIP model. This value can be negative."}),
        }}

    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The modified diffusion model.", "The modified CLIP model.")
    FUNCTION = "load_lora"
    CATEGORY = "loaders"
    DESCRIPTION = ("LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are "
                   "denoised such as applying styles. Multiple LoRA nodes can be linked together.")

    def load_lora(self, model, clip, lora_name, strength_model, strength_clip):
        if strength_model == 0 and strength_clip == 0:
            return (model, clip)
        lora_path = paths.get_full_path_or_raise("loras", lora_name)
        lora = None
        if self.loaded_lora is not None:
            if self.loaded_lora[0] == lora_path:
                lora = self.loaded_lora[1]
            else:
                self.loaded_lora = None
        if lora is None:
            lora = _loading.load_torch_file(lora_path, safe_load=True)
            self.loaded_lora = (lora_path, lora)
        return lora_mod.load_lora_for_models(model, clip, lora, strength_model, strength_clip)


class LoraLoaderModelOnly(LoraLoader):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "lora_name": (known_models.filename_list("loras"),),
                             "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_lora_model_only"

    def load_lora_model_only(self, model, lora_name, strength_model):
        return (self.load_lora(model, None, lora_name, strength_model, 0)[0],)


class CLIPSetLastLayer:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",),
                             "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1, "step": 1})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"
    CATEGORY = "conditioning"

    def set_last_layer(self, clip, stop_at_clip_layer):
        clip = clip.clone()
        clip.clip_layer(stop_at_clip_layer)
        return (clip,)


_ARCH = {"sd1": "stable-diffusion-v1", "sd2": "stable-diffusion-v2-768-v", "sdxl": "stable-diffusion-xl-v1-base",
         "sdxl_refiner": "stable-diffusion-xl-v1-refiner"}


class CheckpointSave:
    def __init__(self):
        self.output_dir = paths.get_output_directory()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "clip": ("CLIP",), "vae": ("VAE",),
                             "filename_prefix": ("STRING", {"default": "checkpoints/ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "advanced/model_merging"

    def save(self, model, clip, vae, filename_prefix, prompt=None, extra_pnginfo=None):
        output_dir = getattr(self, "output_dir", None) or paths.get_output_directory()
        full_output_folder, filename, counter, _subfolder, _prefix = paths.get_save_image_path(filename_prefix, output_dir)
        metadata: dict[str, str] = {}
        mc = model.model.model_config
        clip_type = model.model.family.clip_type or ""
        arch = _ARCH.get(clip_type, "stable-diffusion-v1")
        if clip_type == "sd2" and model.model.model_type != "v_prediction":
            arch = "stable-diffusion-v2-512"
        if mc.inpaint:
            arch += "/inpainting"
        metadata["modelspec.sai_model_spec"] = "1.0.0"
        metadata["modelspec.architecture"] = arch
        metadata["modelspec.implementation"] = "sgm"
        metadata["modelspec.title"] = f"{filename} {counter}"
        if model.model.model_type == "v_prediction":
            metadata["modelspec.predict_key"] = "v"
        elif clip_type.startswith("sdxl"):
            metadata["modelspec.predict_key"] = "epsilon"
        if not _metadata_disabled():
            if prompt is not None:
                metadata["prompt"] = json.dumps(prompt)
            if extra_pnginfo is not None:
                for k, v in extra_pnginfo.items():
                    metadata[k] = json.dumps(v)
        out_path = os.path.join(full_output_folder, f"{filename}_{counter:05}_.safetensors")
        sd = sdm.checkpoint_state_dict(model, clip, vae)
        _loading.save_torch_file(sd, out_path, metadata=metadata)
        return {}


def _metadata_disabled() -> bool:
    try:
        from comfyui import config
        return bool(config.current().disable_metadata)
    except Exception:  # noqa: BLE001
        return False


NODE_CLASS_MAPPINGS = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple,
    "CheckpointLoader": CheckpointLoader,
    "DiffusersLoader": DiffusersLoader,
    "VAELoader": VAELoader,
    "CLIPLoader": CLIPLoader,
    "DualCLIPLoader": DualCLIPLoader,
    "TripleCLIPLoader": TripleCLIPLoader,
    "UNETLoader": UNETLoader,
    "LoraLoader": LoraLoader,
    "LoraLoaderModelOnly": LoraLoaderModelOnly,
    "CLIPSetLastLayer": CLIPSetLastLayer,
    "CheckpointSave": CheckpointSave,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CheckpointLoaderSimple": "Load Checkpoint",
    "CheckpointLoader": "Load Checkpoint With Config (DEPRECATED)",
    "DiffusersLoader": "DiffusersLoader",
    "VAELoader": "Load VAE",
    "CLIPLoader": "Load CLIP",
    "UNETLoader": "Load Diffusion Model",
    "LoraLoader": "Load LoRA",
    "LoraLoaderModelOnly": "LoraLoaderModelOnly",
    "CLIPSetLastLayer": "CLIP Set Last Layer",
    "CheckpointSave": "Save Checkpoint",
}
