"""ModelPatcher: what a MODEL / CLIP / VAE socket carries around a torch module.

A patcher wraps a module that many patchers may share (``clone()`` is cheap: it shares the
module and copies only the patch lists and options). Weight patches (LoRA, diffs) and object
patches are *recorded* on the patcher and applied only when :meth:`ModelPatcher.patch_model`
runs (called by ``memory.load_models_gpu``); :meth:`unpatch_model` restores the original
weights (kept as backups, never copied) and objects.

For the sampling engineer::

    m = model.clone()
    m.model_options            # {"transformer_options": {...}, "sampler_cfg_function": f, ...}
    m.set_model_sampler_cfg_function(fn, disable_cfg1_optimization=False)
        # fn(args) with args = {"cond", "uncond", "cond_scale", "timestep", "input",
        #   "sigma", "cond_denoised", "uncond_denoised", "model", "model_options"}
        # returns x - denoised style output exactly as ComfyUI (i.e. the cfg result in
        # the same space as cond/uncond which there are ``x - denoised``).
    m.set_model_sampler_post_cfg_function(fn)   # appended to "sampler_post_cfg_function"
    m.set_model_sampler_pre_cfg_function(fn)    # appended to "sampler_pre_cfg_function"
    m.set_model_unet_function_wrapper(fn)       # "model_function_wrapper"
    m.add_object_patch("model_sampling", obj)   # e.g. ModelSamplingDiscrete node
    m.get_model_object("model_sampling")        # object patch if any, else the real one
    memory.load_models_gpu([m], memory_required=m.model.memory_required(shape))
    m.model.apply_model(...)                    # see comfyui.models.base
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable

import torch

from . import ops
from .wrappers import copy_wrappers

log = logging.getLogger(__name__)


def _get_attr(obj: Any, name: str) -> Any:
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _set_attr(obj: Any, name: str, value: Any) -> Any:
    parts = name.split(".")
    for part in parts[:-1]:
        obj = getattr(obj, part)
    prev = getattr(obj, parts[-1])
    setattr(obj, parts[-1], value)
    return prev


def _set_attr_param(obj: Any, name: str, value: torch.Tensor) -> Any:
    if not isinstance(value, torch.nn.Parameter):
        value = torch.nn.Parameter(value, requires_grad=False)
    return _set_attr(obj, name, value)


def module_size(module: torch.nn.Module) -> int:
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


class ModelPatcher:
    """Patches and device placement for a shared torch module.

    ``model``: the module (``BaseModel`` for MODEL; text encoder / VAE modules otherwise).
    ``load_device``: where it computes; ``offload_device``: where it waits.
    ``patches``: {state-dict key: [(strength_patch, patch, strength_model, offset, function)]}
    ``model_options``: dict passed to samplers; ``{"transformer_options": {}}`` at least.
    """

    def __init__(self, model: torch.nn.Module, load_device: torch.device, offload_device: torch.device,
                 size: int = 0, weight_inplace_update: bool = False):
        self.model = model
        self.load_device = torch.device(load_device)
        self.offload_device = torch.device(offload_device)
        self.size = size
        self.patches: dict[str, list[tuple]] = {}
        self.backup: dict[str, torch.Tensor] = {}
        self.object_patches: dict[str, Any] = {}
        self.object_patches_backup: dict[str, Any] = {}
        self.model_options: dict[str, Any] = {"transformer_options": {}}
        self.patches_uuid = uuid.uuid4()
        self.parent: ModelPatcher | None = None
        # hooks (comfyui.models.hooks): {hook_ref: (target, {key: [(patch, offset, function)]})},
        # and for a CLIP the hooks its text is always encoded with (SetClipHooks)
        self.hook_patches: dict[Any, tuple[Any, dict[str, list[tuple]]]] = {}
        self.forced_hooks = None
        if not hasattr(model, "_patcher_state"):
            model._patcher_state = {"applied_by": None, "applied_uuid": None, "device": None,
                                    "lowvram": False, "loaded_bytes": 0}

    # ----------------------------------------------------------------------------- info
    @property
    def _state(self) -> dict[str, Any]:
        return self.model._patcher_state

    def model_size(self) -> int:
        if self.size > 0:
            return self.size
        self.size = module_size(self.model)
        return self.size

    def loaded_size(self) -> int:
        if self._state["applied_by"] is not self:
            return 0
        return self._state["loaded_bytes"]

    def is_fully_loaded(self) -> bool:
        return self._state["applied_by"] is self and not self._state["lowvram"] and \
            self._state["device"] == self.load_device

    def current_device_is_offload(self) -> bool:
        return self.load_device == self.offload_device and self._state["applied_by"] is self

    def patches_up_to_date(self) -> bool:
        return self._state["applied_by"] is self and self._state["applied_uuid"] == self.patches_uuid

    def model_dtype(self) -> torch.dtype:
        if hasattr(self.model, "get_dtype"):
            return self.model.get_dtype()
        return next(self.model.parameters()).dtype

    def is_clone(self, other: Any) -> bool:
        return isinstance(other, ModelPatcher) and other.model is self.model

    def clone(self) -> "ModelPatcher":
        n = self.__class__.__new__(self.__class__)
        n.model = self.model
        n.load_device = self.load_device
        n.offload_device = self.offload_device
        n.size = self.size
        n.patches = {k: list(v) for k, v in self.patches.items()}
        n.backup = self.backup  # shared: backups belong to the shared module
        n.object_patches = dict(self.object_patches)
        n.object_patches_backup = self.object_patches_backup
        n.model_options = copy_model_options(self.model_options)
        n.patches_uuid = self.patches_uuid
        n.parent = self
        n.hook_patches = dict(getattr(self, "hook_patches", {}))
        for k, v in self.__dict__.items():
            if k not in n.__dict__:
                n.__dict__[k] = v
        return n

    # ------------------------------------------------------------------------- options
    def set_model_sampler_cfg_function(self, sampler_cfg_function: Callable, disable_cfg1_optimization: bool = False) -> None:
        self.model_options["sampler_cfg_function"] = sampler_cfg_function
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_post_cfg_function(self, fn: Callable, disable_cfg1_optimization: bool = False) -> None:
        self.model_options["sampler_post_cfg_function"] = self.model_options.get("sampler_post_cfg_function", []) + [fn]
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_pre_cfg_function(self, fn: Callable, disable_cfg1_optimization: bool = False) -> None:
        self.model_options["sampler_pre_cfg_function"] = self.model_options.get("sampler_pre_cfg_function", []) + [fn]
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_unet_function_wrapper(self, fn: Callable) -> None:
        self.model_options["model_function_wrapper"] = fn

    def set_model_denoise_mask_function(self, fn: Callable) -> None:
        self.model_options["denoise_mask_function"] = fn

    def set_model_patch(self, patch: Any, name: str) -> None:
        to = self.model_options["transformer_options"]
        to.setdefault("patches", {})
        to["patches"][name] = to["patches"].get(name, []) + [patch]

    def set_model_patch_replace(self, patch: Any, name: str, block_name: str, number: int,
                                transformer_index: int | None = None) -> None:
        to = self.model_options["transformer_options"]
        to.setdefault("patches_replace", {}).setdefault(name, {})
        key = (block_name, number) if transformer_index is None else (block_name, number, transformer_index)
        to["patches_replace"][name][key] = patch

    def set_model_attn1_replace(self, patch: Any, block_name: str, number: int,
                                transformer_index: int | None = None) -> None:
        self.set_model_patch_replace(patch, "attn1", block_name, number, transformer_index)

    def set_model_input_block_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "input_block_patch")

    def set_model_input_block_patch_after_skip(self, patch: Any) -> None:
        self.set_model_patch(patch, "input_block_patch_after_skip")

    def set_model_output_block_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "output_block_patch")

    def set_model_attn1_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn1_patch")

    def set_model_attn2_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn2_patch")

    def set_model_attn1_output_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn1_output_patch")

    def set_model_attn2_output_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn2_output_patch")

    def add_wrapper_with_key(self, kind: str, key: str, wrapper: Callable) -> None:
        """Run ``wrapper`` around a sampling stage (see :mod:`comfyui.models.wrappers`)."""
        wrappers = self.model_options["transformer_options"].setdefault("wrappers", {})
        wrappers.setdefault(kind, {}).setdefault(key, []).append(wrapper)

    def remove_wrappers_with_key(self, kind: str, key: str) -> None:
        self.model_options["transformer_options"].get("wrappers", {}).get(kind, {}).pop(key, None)

    def set_model_compute_dtype(self, dtype: torch.dtype | None) -> None:
        """Compute in ``dtype`` (weights cast per layer); None: in the weights' dtype."""
        self.add_object_patch("manual_cast_dtype", dtype)

    def add_object_patch(self, name: str, obj: Any) -> None:
        """Replace attribute ``name`` (dotted path inside ``.model``) while this patcher is loaded."""
        self.object_patches[name] = obj
        self.patches_uuid = uuid.uuid4()

    def get_model_object(self, name: str) -> Any:
        if name in self.object_patches:
            return self.object_patches[name]
        if name in self.object_patches_backup:
            return self.object_patches_backup[name]
        return _get_attr(self.model, name)

    # ------------------------------------------------------------------------- patches
    def model_state_dict(self, filter_prefix: str | None = None) -> dict[str, torch.Tensor]:
        sd = self.model.state_dict(keep_vars=True)
        if filter_prefix is not None:
            sd = {k: v for k, v in sd.items() if k.startswith(filter_prefix)}
        # weights currently replaced by patches: report the originals
        for k, v in self.backup.items():
            if k in sd:
                sd[k] = v
        return sd

    def add_patches(self, patches: dict[Any, Any], strength_patch: float = 1.0, strength_model: float = 1.0) -> list[Any]:
        """Record weight patches. ``patches``: {key: patch} where key is a state-dict key
        of ``.model`` (or a tuple ``(key, offset)`` / ``(key, offset, function)``) and patch
        is a ``comfyui.models.lora`` patch (``("lora", (...))``, ``("diff", (tensor,))`` or
        a bare tensor = diff, or another model's ``[(weight,), *its patches]`` as
        ``get_key_patches`` gives it, evaluated when patched: model merging). Weight
        becomes ``w*strength_model + strength_patch*delta``.
        Returns the keys that exist in the model (others are ignored)."""
        sd = self.model.state_dict(keep_vars=True)
        added = []
        for k, v in patches.items():
            offset = None
            function = None
            key = k
            if isinstance(k, tuple):
                key = k[0]
                offset = k[1] if len(k) > 1 else None
                function = k[2] if len(k) > 2 else None
            if key in sd:
                added.append(k)
                self.patches.setdefault(key, []).append((strength_patch, v, strength_model, offset, function))
        self.patches_uuid = uuid.uuid4()
        return added

    def get_key_patches(self, filter_prefix: str | None = None) -> dict[str, list]:
        sd = self.model_state_dict()
        out = {}
        for k, w in sd.items():
            if filter_prefix is not None and not k.startswith(filter_prefix):
                continue
            out[k] = [(w,)] + self.patches.get(k, [])
        return out

    def patched_weight(self, key: str, weight: torch.Tensor | None = None, device: torch.device | None = None) -> torch.Tensor:
        """The weight of ``key`` with this patcher's patches applied (float32 math, result
        in the stored dtype unless that is fp8, then in the compute dtype)."""
        from .lora import calculate_weight
        if weight is None:
            weight = self.backup.get(key)
            if weight is None:
                weight = _get_attr(self.model, key)
        dev = device or weight.device
        out_dtype = weight.dtype
        w = weight.to(dev, dtype=torch.float32, copy=True)
        # scaled fp8: patch the real values, store them rescaled
        owner = _get_attr(self.model, key.rpartition(".")[0]) if key.endswith(".weight") else None
        scale = getattr(owner, "scale_weight", None)
        if scale is not None:
            w = w * scale.to(dev, torch.float32)
        w = calculate_weight(self.patches.get(key, []), w, key)
        if scale is not None:
            w = w / scale.to(dev, torch.float32)
        return w.to(out_dtype)

    # --------------------------------------------------------------------------- hooks
    def register_hooks(self, group: Any, target: Any) -> None:
        """Record the weight patches of ``group``'s hooks for this module (``target``: the
        ``EnumWeightTarget`` that picks each hook's model or CLIP strength); they apply only
        while :meth:`apply_hooks` selects their hook."""
        sd = None
        for hook in group.hooks:
            if hook.hook_ref in self.hook_patches:
                continue
            sd = sd if sd is not None else self.model.state_dict(keep_vars=True)
            entries: dict[str, list[tuple]] = {}
            for k, patch in hook.patches_for(self, target).items():
                key, offset, function = (k + (None, None))[:3] if isinstance(k, tuple) else (k, None, None)
                if key in sd:
                    entries.setdefault(key, []).append((patch, offset, function))
            self.hook_patches[hook.hook_ref] = (target, entries)

    def clear_hooks(self) -> None:
        self.apply_hooks(None)
        self.hook_patches = {}

    def apply_hooks(self, group: Any) -> None:
        """Make the loaded module's weights those of ``group``'s registered hooks at their
        current strengths (None: no hooks). Hooked weights are the loaded (patched) weights plus
        each hook's delta; the loaded ones are kept aside and come back for another group."""
        wanted = []
        for hook in (group.hooks if group is not None else []):
            if hook.hook_ref in self.hook_patches:
                target = self.hook_patches[hook.hook_ref][0]
                strength = hook.base_strength(target) * hook.strength
                if strength != 0.0:  # e.g. a CLIP-only LoRA hook on the model: nothing to compute
                    wanted.append((hook.hook_ref, strength))
        wanted = tuple(wanted)
        st = self._state
        if st.get("hooks_applied", ()) == wanted:
            return
        self._restore_hooked_weights()
        from .lora import calculate_weight
        by_key: dict[str, list[tuple]] = {}
        for ref, strength in wanted:
            for key, entries in self.hook_patches[ref][1].items():
                for patch, offset, function in entries:
                    by_key.setdefault(key, []).append((strength, patch, 1.0, offset, function))
        backup = st.setdefault("hook_backup", {})
        for key, patches in by_key.items():
            current = _get_attr(self.model, key)
            backup[key] = current
            original = self.backup.get(key, current)
            patches = [(s, _resolve_model_as_lora(p, original), sm, o, f) for s, p, sm, o, f in patches]
            new = calculate_weight(patches, current.detach().to(torch.float32, copy=True), key)
            _set_attr_param(self.model, key, new.to(current.dtype))
        st["hooks_applied"] = wanted

    def _restore_hooked_weights(self) -> None:
        st = self._state
        for key, w in st.get("hook_backup", {}).items():
            _set_attr_param(self.model, key, w)
        st["hook_backup"] = {}
        st["hooks_applied"] = ()

    # --------------------------------------------------------------- load / unload
    def patch_model(self, device_to: torch.device | None = None, lowvram_budget: int | None = None,
                    load_weights: bool = True) -> torch.nn.Module:
        """Apply object and weight patches and move to ``device_to``.

        ``lowvram_budget``: bytes of weights to place on the device; the remaining layers
        stay on the offload device and are streamed (cast per forward). ``None``: all."""
        st = self._state
        other = st["applied_by"]
        if other is not None and other is not self:
            other.unpatch_model(device_to=None)
        elif other is self and st["applied_uuid"] == self.patches_uuid and st["device"] == device_to \
                and bool(lowvram_budget) == st["lowvram"]:
            return self.model
        elif other is self:
            self.unpatch_model(device_to=None)

        for name, obj in self.object_patches.items():
            prev = _set_attr(self.model, name, obj)
            if name not in self.object_patches_backup:
                self.object_patches_backup[name] = prev

        device_to = torch.device(device_to) if device_to is not None else self.load_device
        weight_dtype = self.model_dtype()
        compute = getattr(self.model, "manual_cast_dtype", None)
        need_cast = compute is not None and compute != weight_dtype

        if lowvram_budget is None:
            self.model.to(device_to)
            for key in self.patches:
                self._apply_patch_inplace(key, device_to)
            if need_cast:
                ops.set_manual_cast(self.model, True)
            st["lowvram"] = False
            st["loaded_bytes"] = self.model_size()
        else:
            from .lora import changes_shape
            used = 0
            streamed: set[str] = set()
            for key, patches in self.patches.items():  # widened weights (control LoRAs): in place
                if changes_shape(patches):
                    self._apply_patch_inplace(key, self.offload_device)
            for name, m in ops.castable_modules(self.model):
                params = [p for p in m.parameters(recurse=False)]
                nbytes = sum(p.nelement() * p.element_size() for p in params)
                if used + nbytes <= lowvram_budget:
                    m.to(device_to)
                    used += nbytes
                    for pname, _ in m.named_parameters(recurse=False):
                        key = f"{name}.{pname}" if name else pname
                        if key in self.patches:
                            self._apply_patch_inplace(key, device_to)
                    m.cast_weights = need_cast
                else:
                    m.to(self.offload_device)
                    for pname, _ in m.named_parameters(recurse=False):
                        key = f"{name}.{pname}" if name else pname
                        if key in self.patches and key not in self.backup:
                            fn = _LazyPatch(self, key)
                            (m.weight_function if pname == "weight" else m.bias_function).append(fn)
                            streamed.add(key)
                    m.cast_weights = True
            for key in self.patches:  # parameters of other modules (norm scales): patched in place
                if key not in streamed and key not in self.backup:
                    self._apply_patch_inplace(key, device_to)
            # anything that is not a castable layer (buffers, odd parameters) goes to the device
            for mod in self.model.modules():
                if isinstance(mod, ops.CastWeightBias):
                    continue
                for pname, p in list(mod.named_parameters(recurse=False)):
                    setattr(mod, pname, torch.nn.Parameter(p.data.to(device_to), requires_grad=False))
                for bname, b in list(mod.named_buffers(recurse=False)):
                    if b is not None:
                        mod._buffers[bname] = b.to(device_to)
            st["lowvram"] = True
            st["loaded_bytes"] = used
        for mod in self.model.modules():  # a device-specific weight layout (the UNet's), once per load
            if hasattr(mod, "set_weight_layout"):
                mod.set_weight_layout(device_to)
        st["applied_by"] = self
        st["applied_uuid"] = self.patches_uuid
        st["device"] = device_to
        return self.model

    def _apply_patch_inplace(self, key: str, device: torch.device) -> None:
        current = _get_attr(self.model, key)
        if key not in self.backup:
            self.backup[key] = current
            original = current
        else:
            original = self.backup[key]
        new = self.patched_weight(key, original, device=device)
        _set_attr_param(self.model, key, new)

    def unpatch_model(self, device_to: torch.device | None = None, unpatch_weights: bool = True) -> None:
        """Restore original weights/objects; move to ``device_to`` (None: stay)."""
        st = self._state
        if st["applied_by"] is not self and st["applied_by"] is not None:
            st["applied_by"].unpatch_model(device_to)
            return
        self._restore_hooked_weights()
        for key, orig in list(self.backup.items()):
            _set_attr_param(self.model, key, orig)
        self.backup.clear()
        for _, m in ops.castable_modules(self.model):
            m.weight_function = []
            m.bias_function = []
            m.cast_weights = False
        for name, obj in list(self.object_patches_backup.items()):
            _set_attr(self.model, name, obj)
        self.object_patches_backup.clear()
        if device_to is not None:
            self.model.to(device_to)
            compute = getattr(self.model, "manual_cast_dtype", None)
            if compute is not None and compute != self.model_dtype():
                ops.set_manual_cast(self.model, True)
        st["applied_by"] = None
        st["applied_uuid"] = None
        st["device"] = device_to
        st["lowvram"] = False
        st["loaded_bytes"] = 0

    def detach(self) -> None:
        self.unpatch_model(self.offload_device)


def _resolve_model_as_lora(patch: Any, original: torch.Tensor) -> Any:
    """A ``("model_as_lora", (weight,))`` patch is the difference of that weight from the
    hooked module's own unpatched one."""
    if isinstance(patch, tuple) and patch and patch[0] == "model_as_lora":
        other = patch[1][0]
        return ("diff", (other.to(original.device, torch.float32) - original.detach().to(torch.float32),))
    return patch


class _LazyPatch:
    """Weight function for streamed layers: applies the patcher's patches to a cast copy."""

    def __init__(self, patcher: ModelPatcher, key: str):
        self.patcher = patcher
        self.key = key

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        from .lora import calculate_weight
        out = calculate_weight(self.patcher.patches.get(self.key, []), w.to(torch.float32, copy=True), self.key)
        return out.to(w.dtype)


def copy_model_options(options: dict) -> dict:
    """A copy a clone may change: its lists, transformer_options, patches and wrappers are new."""
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in options.items()}
    to = dict(options.get("transformer_options", {}))
    if "patches" in to:
        to["patches"] = {k: list(v) for k, v in to["patches"].items()}
    if "patches_replace" in to:
        to["patches_replace"] = {k: dict(v) for k, v in to["patches_replace"].items()}
    if "wrappers" in to:
        to["wrappers"] = copy_wrappers(to["wrappers"])
    out["transformer_options"] = to
    return out
