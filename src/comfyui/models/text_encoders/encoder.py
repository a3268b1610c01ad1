"""The CLIP object that CLIP sockets carry: the tokenizers and text-encoder modules of one
:class:`~comfyui.models.text_encoders.recipes.ClipType`, in a ModelPatcher.

::

    tokens = clip.tokenize("a (red:1.2) cat")        # {"l": [[(id, w), ...] * 77, ...], "g": ...}
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    clip2 = clip.clone(); clip2.clip_layer(-2)        # CLIPSetLastLayer
    clip.encode_from_tokens_scheduled(tokens)         # [[cond, {"pooled_output": pooled, ...}]]
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .. import memory, ops
from ..patcher import ModelPatcher
from .recipes import CLIP_TYPES, RECIPES, ClipType, checkpoint_type_of

log = logging.getLogger(__name__)


class TextEncoders(nn.Module):
    """The encoder modules of one CLIP, as submodules named by recipe ("clip_l", "t5xxl" ...)."""

    def __init__(self, clip_type: ClipType, configs: dict[str, Any]):
        super().__init__()
        self.clip_type = clip_type
        self.names = [name for name in clip_type.recipes if name in configs]
        built = set(self.names)
        self.family = checkpoint_type_of(built) or clip_type.name
        for name in self.names:
            self.add_module(name, RECIPES[name].build(configs[name], clip_type.options.get(name, {})))

    def encoder(self, name: str) -> nn.Module:
        return getattr(self, name)

    def get_dtype(self) -> torch.dtype:
        """The weights' storage dtype (a scaled-fp8 file's fp8 type, whatever its other tensors)."""
        storage = getattr(self, "storage_dtype", None)
        return storage if storage is not None else next(self.parameters()).dtype

    def clip_layer(self, idx: int | None) -> None:
        for name in self.names:
            enc = self.encoder(name)
            if idx is None:
                if hasattr(enc, "reset_clip_layer"):
                    enc.reset_clip_layer()
            elif hasattr(enc, "clip_layer"):
                enc.clip_layer(idx)

    def encode_token_weights(self, tokens: dict[str, list]) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        outputs = {}
        skip = [n for n in self.clip_type.skip_when_empty if n in self.names]
        if skip and all(len(tokens.get(RECIPES[n].key, ())) == 0 for n in skip):
            skip_set = set(skip)  # e.g. SD3's CLIP-L/G with both prompts empty and unpadded
        else:
            skip_set = set()
        for name in self.names:
            out = self.encoder(name).encode_token_weights([] if name in skip_set else tokens[RECIPES[name].key])
            if name in skip_set:  # no features; a zero pooled vector of the encoder's width
                out = (None, None if out[1] is None else torch.zeros_like(out[1]), {})
            outputs[name] = out if len(out) == 3 else (out[0], out[1], {})
        cond, pooled, extra = self.clip_type.combine(outputs)
        for out in outputs.values():
            extra = {**out[2], **extra}
        return cond, pooled, extra


class Tokenizers:
    def __init__(self, clip_type: ClipType, configs: dict[str, Any], embedding_directory: Any = None):
        self.family = checkpoint_type_of({name for name in clip_type.recipes if name in configs}) or clip_type.name
        self.tokenizers = {}
        for name in clip_type.recipes:
            if name in configs:
                recipe = RECIPES[name]
                self.tokenizers[recipe.key] = recipe.tokenizer(configs[name], clip_type.options.get(name, {}),
                                                               embedding_directory)

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False,
                              tokenizer_options: dict | None = None) -> dict[str, list]:
        """Tokens per encoder key; ``tokenizer_options`` (e.g. ``t5xxl_min_length``) go to the
        tokenizers that take options (those with an ``option_key``)."""
        out = {}
        for k, t in self.tokenizers.items():
            if tokenizer_options and getattr(t, "option_key", None):
                out[k] = t.tokenize_with_weights(text, return_word_ids, tokenizer_options=tokenizer_options)
            else:
                out[k] = t.tokenize_with_weights(text, return_word_ids)
        return out


def detect_configs(clip_type: ClipType, sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """{recipe: config} for the encoders of ``clip_type`` present in ``sd`` (native keys under
    ``<recipe>.``)."""
    configs = {}
    for name in clip_type.recipes:
        config = RECIPES[name].detect(sd, name + ".")
        if config is not None:
            configs[name] = config
    return configs


class CLIP:
    """What CLIP sockets carry: tokenizers + text-encoder modules in a patcher. ``family`` is
    the checkpoint layout ("sd1", "sd2", "sdxl", "sdxl_refiner") or the CLIP type's name."""

    def __init__(self, clip_type: ClipType | str, configs: dict[str, Any], embedding_directory: Any = None,
                 device: torch.device | None = None, dtype: torch.dtype | None = None,
                 _cond_stage_model: TextEncoders | None = None, _patcher: ModelPatcher | None = None):
        if isinstance(clip_type, str):
            clip_type = CLIP_TYPES[clip_type]
        self.clip_type = clip_type
        self.configs = configs
        self.tokenizer = Tokenizers(clip_type, configs, embedding_directory)
        self.tokenizer_options: dict[str, Any] = {}  # T5TokenizerOptions: "t5xxl_min_length" ...
        self.layer_idx: int | None = None
        # SetClipHooks: the hooks the conds get, and whether text is encoded once per keyframe range
        self.apply_hooks_to_conds = None
        self.use_clip_schedule = False
        if _cond_stage_model is not None:
            self.cond_stage_model = _cond_stage_model
            self.patcher = _patcher
            return
        load_device = device or memory.text_encoder_device()
        offload = memory.text_encoder_offload_device()
        with torch.device("meta"):
            self.cond_stage_model = TextEncoders(clip_type, configs)
        self.cond_stage_model.eval().requires_grad_(False)
        self.dtype = dtype or memory.text_encoder_dtype(load_device)
        self.cond_stage_model.manual_cast_dtype = None
        if self.dtype in memory.FP8_TYPES:
            cdt = torch.float16 if memory.should_use_fp16(load_device) else torch.float32
            self.cond_stage_model.manual_cast_dtype = cdt
            for name in self.cond_stage_model.names:
                self.cond_stage_model.encoder(name).compute_dtype = cdt
        self.patcher = ModelPatcher(self.cond_stage_model, load_device=load_device, offload_device=offload)

    @property
    def family(self) -> str:
        return self.cond_stage_model.family

    def load_sd(self, sd: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Load native weights keyed ``<recipe>.<native key>`` (the module is built on the meta
        device: this is what materialises it). A missing square CLIP ``text_projection``
        becomes the identity (SD1 CLIP-L files have none)."""
        fill = {}
        for name in self.cond_stage_model.names:
            key = f"{name}.transformer.text_projection.weight"
            fill[key] = lambda t: torch.eye(t.shape[0], t.shape[1], dtype=t.dtype)
        if ops.is_scaled_fp8(sd) and self.cond_stage_model.manual_cast_dtype is None:
            # scaled-fp8 files (t5xxl / umt5_xxl_fp8_e4m3fn_scaled ...) keep their fp8 weights,
            # cast per layer to a wider compute dtype
            cdt = torch.float16 if memory.should_use_fp16(self.patcher.load_device) else torch.float32
            self.cond_stage_model.manual_cast_dtype = cdt
            self.cond_stage_model.storage_dtype = ops.scaled_fp8_dtype(sd)
            for name in self.cond_stage_model.names:
                self.cond_stage_model.encoder(name).compute_dtype = cdt
        missing, unexpected = ops.assign_state_dict(self.cond_stage_model, sd, self.dtype, fill=fill)
        if self.cond_stage_model.manual_cast_dtype is not None:
            ops.set_manual_cast(self.cond_stage_model, True)
        unexpected = [k for k in unexpected if not k.endswith("position_ids")]
        if missing:
            log.warning("text encoder: missing keys %s", missing[:10])
        return missing, unexpected

    def get_sd(self) -> dict[str, torch.Tensor]:
        return self.cond_stage_model.state_dict()

    def clone(self) -> "CLIP":
        n = CLIP(self.clip_type, self.configs, None, _cond_stage_model=self.cond_stage_model,
                 _patcher=self.patcher.clone())
        n.tokenizer = self.tokenizer
        n.layer_idx = self.layer_idx
        n.tokenizer_options = dict(self.tokenizer_options)
        n.dtype = getattr(self, "dtype", None)
        n.apply_hooks_to_conds = self.apply_hooks_to_conds
        n.use_clip_schedule = self.use_clip_schedule
        return n

    def add_patches(self, patches: dict, strength_patch: float = 1.0, strength_model: float = 1.0) -> list:
        return self.patcher.add_patches(patches, strength_patch, strength_model)

    def get_key_patches(self) -> dict[str, list]:
        return self.patcher.get_key_patches()

    def clip_layer(self, layer_idx: int) -> None:
        self.layer_idx = layer_idx

    def set_tokenizer_option(self, name: str, value: Any) -> None:
        self.tokenizer_options[name] = value

    def tokenize(self, text: str, return_word_ids: bool = False, **kwargs: Any) -> dict[str, list]:
        options = {**self.tokenizer_options, **(kwargs.get("tokenizer_options") or {})}
        return self.tokenizer.tokenize_with_weights(text, return_word_ids, options or None)

    def load_model(self) -> ModelPatcher:
        memory.load_models_gpu([self.patcher])
        return self.patcher

    def encode_from_tokens(self, tokens: dict[str, list], return_pooled: bool | str = False,
                           return_dict: bool = False) -> Any:
        cond, pooled, extra = self._encode(tokens, self.patcher.forced_hooks)
        if return_dict:
            out = {"cond": cond, "pooled_output": pooled, **extra}
            if self.apply_hooks_to_conds is not None:
                out["hooks"] = self.apply_hooks_to_conds
            return out
        if return_pooled:
            return cond, pooled
        return cond

    def _encode(self, tokens: dict[str, list], hooks: Any) -> tuple:
        """Encode with the weights of ``hooks`` (SetClipHooks) at their current strengths."""
        self.cond_stage_model.clip_layer(self.layer_idx)
        self.load_model()
        try:
            if hooks is not None:
                self.patcher.apply_hooks(hooks)
            with torch.inference_mode():
                cond, pooled, extra = self.cond_stage_model.encode_token_weights(tokens)
        finally:
            if hooks is not None:
                self.patcher.apply_hooks(None)  # the module is shared with unhooked clones
        return cond.clone(), (pooled.clone() if pooled is not None else None), extra

    def encode_from_tokens_scheduled(self, tokens: dict[str, list], add_dict: dict | None = None) -> list:
        add_dict = add_dict or {}
        hooks = self.patcher.forced_hooks
        if hooks is None or not self.use_clip_schedule:
            out = self.encode_from_tokens(tokens, return_dict=True)
            cond = out.pop("cond")
            if out.get("pooled_output") is None:
                out.pop("pooled_output")
            out.update(add_dict)
            return [[cond, out]]
        # one encoding per range of steps over which the hooks keep their keyframes
        result = []
        for (start, end), chosen in hooks.clip_schedule():
            if "start_percent" in add_dict and end < add_dict["start_percent"]:
                continue
            if "end_percent" in add_dict and start > add_dict["end_percent"]:
                continue
            for hook, keyframe in chosen:
                hook.hook_keyframe._current = keyframe
            cond, pooled, extra = self._encode(tokens, hooks)
            out = {**extra, "clip_start_percent": start, "clip_end_percent": end}
            if pooled is not None:
                out["pooled_output"] = pooled
            out.update(add_dict)
            if self.apply_hooks_to_conds is not None:
                out["hooks"] = self.apply_hooks_to_conds
            result.append([cond, out])
        hooks.reset()
        return result

    def encode(self, text: str) -> torch.Tensor:
        return self.encode_from_tokens(self.tokenize(text))
