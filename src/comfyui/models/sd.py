"""The loaders: checkpoints, split diffusion-model / text-encoder / VAE files, diffusers
folders. Which model a file holds comes from the family table (:mod:`comfyui.models.registry`)
and the text-encoder recipes (:mod:`comfyui.models.text_encoders.recipes`), never from its
name. Loaded results are cached by (path, modification time, options)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable

import torch

from .. import runtime
from . import clip_vision, memory, ops
from .convert import hf_to_open_clip, normalize_hf_text_keys
from .detection import VAE_PREFIX, find_text_encoders, find_vae
from .family import Family, UnknownModelError, describe_state_dict
from .loading import ModelFileError, StateDict, load_torch_file
from .patcher import ModelPatcher
from .registry import FAMILIES, detect_family
from .stable_diffusion import diffusers as sd_diffusers
from .text_encoders.encoder import CLIP, detect_configs
from .text_encoders.recipes import CLIP_TYPES, RECIPES, clip_type_problem
from .vae import VAE
from .ltxv import vae as ltxv_vae
from .wan import vae as wan_vae


log = logging.getLogger(__name__)

UNET_PREFIX = "model.diffusion_model."


# ----------------------------------------------------------------------------------- cache
class LoadedFileCache:
    """Weak cache of load results keyed by (path, mtime, size, options); the most recent
    few results are also held strongly so a re-run of a prompt never re-reads the file.
    Each runtime has one (:attr:`comfyui.runtime.Runtime.model_files`); ``/free`` with
    ``free_memory`` clears it."""

    def __init__(self, strong: int = 2):
        self.weak: dict[tuple, list[weakref.ref | None]] = {}
        self.strong: OrderedDict[tuple, tuple] = OrderedDict()
        self.strong_size = strong
        self.lock = threading.Lock()
        self.loads = 0  # how many times a file was actually read (tests)

    @staticmethod
    def key(path: str, *options: Any) -> tuple:
        st = os.stat(path)
        return (os.path.realpath(path), st.st_mtime_ns, st.st_size) + tuple(options)

    def get(self, key: tuple) -> tuple | None:
        with self.lock:
            if key in self.strong:
                self.strong.move_to_end(key)
                return self.strong[key]
            refs = self.weak.get(key)
            if refs is None:
                return None
            vals = tuple(r() if r is not None else None for r in refs)
            if any(r is not None and v is None for r, v in zip(refs, vals)):
                del self.weak[key]
                return None
            return vals

    def put(self, key: tuple, value: tuple) -> None:
        with self.lock:
            self.weak[key] = [weakref.ref(v) if v is not None else None for v in value]
            self.strong[key] = value
            self.strong.move_to_end(key)
            while len(self.strong) > self.strong_size:
                self.strong.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.weak.clear()
            self.strong.clear()

    def loaded_paths(self) -> set[str]:
        """Real paths of the files whose load results are still in memory."""
        with self.lock:
            keys = list(self.strong) + [k for k in self.weak if k not in self.strong]
        return {key[0] for key in keys if self.get(key) is not None}


def _cached(path: str, options: tuple, loader: Callable[[], tuple]) -> tuple:
    cache = runtime.current().model_files
    key = cache.key(path, *options)
    hit = cache.get(key)
    if hit is not None:
        return hit
    value = loader()
    cache.loads += 1
    cache.put(key, value)
    return value


# -------------------------------------------------------------------------------- models
def _dtype_option(weight_dtype: str | None) -> torch.dtype | None:
    return {None: None, "default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fn_fast": torch.float8_e4m3fn,
            "fp8_e5m2": torch.float8_e5m2, "fp16": torch.float16, "bf16": torch.bfloat16,
            "fp32": torch.float32}.get(weight_dtype)


def _main_dtype(sd: dict[str, torch.Tensor]) -> torch.dtype | None:
    """The dtype of most of the floating-point weights (by element count)."""
    counts: dict[torch.dtype, int] = {}
    for v in sd.values():
        if v.is_floating_point():
            counts[v.dtype] = counts.get(v.dtype, 0) + v.nelement()
    return max(counts, key=counts.get) if counts else None


def build_model(family: Family, config: dict[str, Any], sd: dict[str, torch.Tensor], prefix: str = "",
                dtype: torch.dtype | None = None) -> ModelPatcher:
    """Instantiate ``family``'s BaseModel for ``config``, assign the weights under ``prefix``
    and wrap it in a patcher."""
    load_device = memory.get_torch_device()
    offload_device = memory.unet_offload_device()
    ksd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    # a scaled-fp8 file keeps its storage dtypes whatever was asked for
    weight_dtype = (ops.scaled_fp8_dtype(ksd) or dtype
                    or memory.unet_dtype(load_device, family.supported_dtypes, file_dtype=_main_dtype(ksd)))
    manual_cast = memory.unet_manual_cast(weight_dtype, load_device, family.supported_dtypes)
    with torch.device("meta"):
        model = family.model_class(config, family, dtype=weight_dtype)
    missing, unexpected = ops.assign_state_dict(model.diffusion_model, ksd, weight_dtype)
    if missing:
        raise UnknownModelError(f"diffusion model weights missing for {len(missing)} parameters, e.g. {missing[:5]}")
    if unexpected:
        log.debug("diffusion model: unexpected keys %s", unexpected[:10])
    model.eval().requires_grad_(False)
    if manual_cast is not None and manual_cast != weight_dtype:
        model.manual_cast_dtype = manual_cast
        ops.set_manual_cast(model, True)
    model.to(memory.unet_inital_load_device())
    return ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def _clip_from_sd(clip_type: str, sd: dict[str, torch.Tensor], embedding_directory: Any,
                  hidden_acts: dict[str, str] | None = None) -> CLIP:
    """A CLIP of ``clip_type`` from native weights keyed ``<recipe>.<native key>``;
    ``hidden_acts`` overrides a CLIP encoder's activation (diffusers folders state it)."""
    ctype = CLIP_TYPES[clip_type]
    configs = detect_configs(ctype, sd)
    if not ctype.one_of and not ctype.partial:
        absent = [name for name in ctype.recipes if name not in configs]
        if absent:
            raise UnknownModelError(f"text encoder(s) {', '.join(absent)} of a {clip_type} model not found")
    elif not configs:
        raise UnknownModelError(f"no text encoder of type {clip_type} found")
    for name, act in (hidden_acts or {}).items():
        if act and name in configs:
            configs[name] = dataclasses.replace(configs[name], hidden_act=act)
    clip = CLIP(ctype, configs, embedding_directory=embedding_directory)
    clip.load_sd(sd)
    return clip


def load_state_dict_guess_config(sd: dict[str, torch.Tensor], output_vae: bool = True, output_clip: bool = True,
                                 embedding_directory: Any = None, source: str = "checkpoint",
                                 weight_dtype: torch.dtype | None = None) -> tuple:
    """(MODEL, CLIP | None, VAE | None) from an original single-file checkpoint state dict."""
    if not any(k.startswith(UNET_PREFIX) for k in sd):
        raise UnknownModelError(f"{source}: not a diffusion model checkpoint: no diffusion model weights "
                                f"(model.diffusion_model.*) found. Found {describe_state_dict(sd)}")
    try:
        family, config = detect_family(sd, UNET_PREFIX)
    except UnknownModelError as exc:
        raise UnknownModelError(f"{source}: {exc}") from exc
    model = build_model(family, config, sd, UNET_PREFIX, dtype=weight_dtype)
    clip = None
    if output_clip:
        clip_type, clip_sd = find_text_encoders(sd)
        own = CLIP_TYPES.get(family.clip_type or "")
        if clip_sd and own is not None and own.partial and {k.split(".", 1)[0] for k in clip_sd} <= set(own.recipes):
            clip_type = own.name  # e.g. an SD3 checkpoint with CLIP-L/G only is not an SDXL pair
        if clip_type is None:
            log.warning("%s: no text encoder weights in the checkpoint; CLIP output is None", source)
        else:
            clip = _clip_from_sd(clip_type, clip_sd, embedding_directory)
    vae = None
    if output_vae:
        vae_sd = find_vae(sd)
        if vae_sd:
            vae = make_vae(vae_sd, getattr(sd, "metadata", None))
        else:
            log.warning("%s: no VAE weights in the checkpoint; VAE output is None", source)
    return model, clip, vae


def load_checkpoint_guess_config(ckpt_path: str, output_vae: bool = True, output_clip: bool = True,
                                 embedding_directory: Any = None) -> tuple:
    """CheckpointLoaderSimple: (MODEL, CLIP, VAE), cached by path and mtime."""

    def load() -> tuple:
        sd = load_torch_file(ckpt_path)
        return load_state_dict_guess_config(sd, output_vae, output_clip, embedding_directory,
                                            source=os.path.basename(ckpt_path))

    return _cached(ckpt_path, ("ckpt", output_vae, output_clip, _emb_key(embedding_directory)), load)


def _emb_key(embedding_directory: Any) -> Any:
    if embedding_directory is None or isinstance(embedding_directory, str):
        return embedding_directory
    return tuple(embedding_directory)


def load_diffusion_model_state_dict(sd: dict[str, torch.Tensor], weight_dtype: torch.dtype | None = None,
                                    source: str = "unet") -> ModelPatcher:
    """A bare diffusion-model file: native keys (optionally under ``model.diffusion_model.``),
    or a layout a family converts (``Family.diffusers_to_native``, e.g. diffusers UNets)."""
    prefix = UNET_PREFIX if any(k.startswith(UNET_PREFIX) for k in sd) else ""
    try:
        family, config = detect_family(sd, prefix)
    except UnknownModelError as exc:
        native = None
        if not prefix:
            for fam in FAMILIES:
                if fam.diffusers_to_native is not None:
                    native = fam.diffusers_to_native(sd)
                    if native is not None:
                        break
        if native is None:
            raise UnknownModelError(f"{source}: {exc}") from exc
        sd, prefix = native, ""
        try:
            family, config = detect_family(sd, prefix)
        except UnknownModelError as exc2:
            raise UnknownModelError(f"{source}: {exc2}") from exc2
    return build_model(family, config, sd, prefix, dtype=weight_dtype)


def load_diffusion_model(unet_path: str, weight_dtype: str | None = None) -> ModelPatcher:
    """UNETLoader: a split diffusion-model file from ``models/diffusion_models``."""

    def load() -> tuple:
        sd = load_torch_file(unet_path)
        return (load_diffusion_model_state_dict(sd, _dtype_option(weight_dtype), os.path.basename(unet_path)),)

    return _cached(unet_path, ("unet", weight_dtype), load)[0]


def text_encoder_from_file(sd: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """(recipe name, weights keyed ``<recipe>.<native key>``) of a standalone text-encoder
    file: the first recipe that recognises it."""
    for recipe in RECIPES.values():
        native = recipe.from_file(sd)
        if native is not None:
            return recipe.name, {f"{recipe.name}.{k}": v for k, v in native.items()}
    raise UnknownModelError(f"not a known text encoder. Found {describe_state_dict(sd)}")


def load_clip(ckpt_paths: list[str], embedding_directory: Any = None, clip_type: str = "stable_diffusion") -> CLIP:
    """CLIPLoader / DualCLIPLoader / TripleCLIPLoader: text-encoder files combined as
    ``clip_type`` (a name in CLIP_TYPES) says."""
    problem = clip_type_problem(clip_type, len(ckpt_paths))
    if problem:
        raise UnknownModelError(problem)
    ctype = CLIP_TYPES[clip_type]

    def load() -> tuple:
        merged: dict[str, torch.Tensor] = {}
        found: list[str] = []
        for path in ckpt_paths:
            sd = load_torch_file(path)
            if any(k.startswith(("cond_stage_model.", "conditioner.")) for k in sd):
                layout, part = find_text_encoders(sd)  # a checkpoint used as a text-encoder file
                if layout is None:
                    raise UnknownModelError(f"{os.path.basename(path)}: no text encoder found. "
                                            f"Found {describe_state_dict(sd)}")
                names = list(CLIP_TYPES[layout].recipes)
            else:
                name, part = text_encoder_from_file(sd)
                names = [name]
            for name in names:
                if name not in ctype.recipes:
                    raise UnknownModelError(f"{os.path.basename(path)}: a {name} text encoder does not belong to "
                                            f"type '{clip_type}' (which takes {', '.join(ctype.recipes)})")
                if name in found:
                    raise UnknownModelError(f"{os.path.basename(path)}: a second {name} text encoder")
            found.extend(names)
            merged.update(part)
        if ctype.one_of and len(found) != 1:
            raise UnknownModelError(f"type '{clip_type}' takes one text encoder, these files hold {', '.join(found)}")
        return (_clip_from_sd(clip_type, merged, embedding_directory),)

    key_path = ckpt_paths[0]
    return _cached(key_path, ("clip", clip_type, tuple(ckpt_paths), _emb_key(embedding_directory)), load)[0]


def make_vae(sd: dict[str, torch.Tensor], metadata: dict | None = None) -> Any:
    """The VAE object of VAE weights: a family's video VAE when its keys say so, else the
    image AutoencoderKL. ``metadata``: the file's safetensors metadata (LTX-Video's config)."""
    if wan_vae.is_wan21_vae(sd) or wan_vae.is_wan22_vae(sd):
        return wan_vae.load_video_vae(sd)
    if ltxv_vae.is_ltxv_vae(sd):
        if metadata and not getattr(sd, "metadata", None):
            sd = StateDict(sd)
            sd.metadata = metadata
        return ltxv_vae.load_video_vae(sd)
    return VAE(sd=sd)


def load_vae(vae_path: str) -> VAE:
    def load() -> tuple:
        sd = load_torch_file(vae_path)
        metadata = getattr(sd, "metadata", None)
        sd = find_vae(sd) or sd
        if not any(k.startswith(("encoder.", "decoder.")) for k in sd):
            raise UnknownModelError(f"{os.path.basename(vae_path)}: not a VAE. Found {describe_state_dict(sd)}")
        return (make_vae(sd, metadata),)

    return _cached(vae_path, ("vae",), load)[0]


# ------------------------------------------------------------------------- diffusers dirs
def _load_dir_weights(folder: str) -> dict[str, torch.Tensor]:
    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
                 "pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return load_torch_file(p)
    raise ModelFileError(f"{folder}: no weights file found")


def load_diffusers(model_path: str, output_vae: bool = True, output_clip: bool = True,
                   embedding_directory: Any = None) -> tuple:
    """DiffusersLoader: a diffusers pipeline folder (unet/, vae/, text_encoder/, text_encoder_2/)."""

    def load() -> tuple:
        with open(os.path.join(model_path, "unet", "config.json")) as f:
            ucfg = json.load(f)
        usd = sd_diffusers.diffusers_unet_to_native(_load_dir_weights(os.path.join(model_path, "unet")), ucfg)
        family, config = detect_family(usd, "")
        te1 = os.path.join(model_path, "text_encoder")
        te2 = os.path.join(model_path, "text_encoder_2")
        sched = os.path.join(model_path, "scheduler", "scheduler_config.json")
        if os.path.isfile(sched):
            with open(sched) as f:
                pred = json.load(f).get("prediction_type")
            if pred in ("v_prediction", "epsilon"):
                sampling = dict(family.sampling, type="v_prediction" if pred == "v_prediction" else "eps")
                family = dataclasses.replace(family, sampling=sampling)
        model = build_model(family, config, usd)
        clip = None
        if output_clip and family.clip_type is not None:
            # text_encoder/ holds the first encoder of the type, text_encoder_2/ the second
            recipes = CLIP_TYPES[family.clip_type].recipes
            folders = [te1, te2] if len(recipes) == 2 else [te2 if os.path.isdir(te2) else te1]
            csd: dict[str, torch.Tensor] = {}
            acts: dict[str, str] = {}
            for name, folder in zip(recipes, folders):
                if not os.path.isdir(folder):
                    continue
                for k, v in normalize_hf_text_keys(_load_dir_weights(folder)).items():
                    csd[f"{name}.transformer.{k}"] = v
                cfg_path = os.path.join(folder, "config.json")
                if os.path.isfile(cfg_path):
                    with open(cfg_path) as f:
                        acts[name] = json.load(f).get("hidden_act", "")
            if csd:
                clip = _clip_from_sd(family.clip_type, csd, embedding_directory, acts)
        vae = None
        if output_vae and os.path.isdir(os.path.join(model_path, "vae")):
            vae = VAE(sd=_load_dir_weights(os.path.join(model_path, "vae")))
        return model, clip, vae

    cfg = os.path.join(model_path, "unet", "config.json")
    return _cached(cfg, ("diffusers", model_path, output_vae, output_clip, _emb_key(embedding_directory)), load)


def load_unclip_checkpoint(path: str, embedding_directory: Any = None) -> tuple:
    """unCLIPCheckpointLoader: (MODEL, CLIP, VAE, CLIP_VISION) from one SD 2.1 unCLIP file
    (the image encoder is stored under ``embedder.model.``)."""
    model, clip, vae = load_checkpoint_guess_config(path, output_vae=True, output_clip=True,
                                                    embedding_directory=embedding_directory)[:3]
    sd = load_torch_file(path)
    vision = None
    for prefix in ("embedder.model.", "embedder."):
        if any(k.startswith(prefix) for k in sd):
            vision = clip_vision.clip_vision_from_state_dict(sd, prefix)
            break
    if vision is None:
        raise ModelFileError(f"{os.path.basename(path)}: no CLIP vision encoder (embedder.model.*) in this checkpoint")
    return model, clip, vae, vision


# ---------------------------------------------------------------------------------- saving
def checkpoint_state_dict(model: ModelPatcher, clip: CLIP | None, vae: VAE | None) -> dict[str, torch.Tensor]:
    """An original-layout checkpoint of (patched) weights, for CheckpointSave."""
    memory.load_models_gpu([model], force_full_load=True)
    sd: dict[str, torch.Tensor] = {}
    for k, v in model.model.diffusion_model.state_dict().items():
        sd[UNET_PREFIX + k] = v.detach().to("cpu")
    if clip is not None:
        memory.load_models_gpu([clip.patcher], force_full_load=True)
        csd = {k: v.detach().to("cpu") for k, v in clip.cond_stage_model.state_dict().items()}
        fam = clip.family

        def hf(key: str) -> dict[str, torch.Tensor]:
            p = f"clip_{key}.transformer."
            return {k[len(p):]: v for k, v in csd.items() if k.startswith(p)}

        if fam == "sd1":
            for k, v in hf("l").items():
                if not k.startswith("text_projection"):
                    sd["cond_stage_model.transformer." + k] = v
        elif fam == "sd2":
            sd.update(hf_to_open_clip(hf("h"), "", "cond_stage_model.model."))
        elif fam == "sdxl":
            for k, v in hf("l").items():
                if not k.startswith("text_projection"):
                    sd["conditioner.embedders.0.transformer." + k] = v
            sd.update(hf_to_open_clip(hf("g"), "", "conditioner.embedders.1.model."))
        elif fam == "sdxl_refiner":
            sd.update(hf_to_open_clip(hf("g"), "", "conditioner.embedders.0.model."))
    if vae is not None:
        for k, v in vae.get_sd().items():
            sd[VAE_PREFIX + k] = v.detach().to("cpu")
    if model.model.model_type == "v_prediction":
        sd["v_pred"] = torch.tensor([])
    return sd


# ComfyUI's older names (comfy.sd.load_unet / load_unet_state_dict)
load_unet = load_diffusion_model
load_unet_state_dict = load_diffusion_model_state_dict
