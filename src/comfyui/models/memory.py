"""Devices, dtypes and "smart memory" for models (ComfyUI's ``model_management``).

Configuration comes from :func:`configure` (called by the CLI/server with the settings
object of ``comfyui.config``; attribute *or* mapping access, ComfyUI flag names with
``-`` replaced by ``_``: ``cpu``, ``cuda_device``, ``lowvram``, ``novram``, ``highvram``,
``normalvram``, ``gpu_only``, ``reserve_vram``, ``disable_smart_memory``, ``force_fp32``,
``force_fp16``, ``bf16_unet``, ``fp16_unet``, ``fp32_unet``, ``fp8_e4m3fn_unet``,
``fp8_e5m2_unet``, ``fp16_vae``, ``bf16_vae``, ``fp32_vae``, ``cpu_vae``,
``fp16_text_enc``, ``fp32_text_enc``, ``bf16_text_enc``, ``fp8_e4m3fn_text_enc``,
``fp8_e5m2_text_enc``, ``disable_mmap``, ``preview_method``).

Loaded models are tracked in a list of :class:`LoadedModel`; :func:`load_models_gpu`
moves models (``ModelPatcher``-like objects: ``.load_device``, ``.offload_device``,
``.model_size()``, ``.patch_model(device, lowvram_budget)``, ``.unpatch_model(device)``)
to their compute device, first offloading least recently used ones when the room is needed.
With ``--lowvram`` (or when a model does not fit) only part of the weights is moved and the
rest is streamed to the device layer by layer during the forward pass.
"""
from __future__ import annotations

import enum
import gc
import logging
import threading
from typing import Any, Iterable

import torch

log = logging.getLogger(__name__)


class VRAMState(enum.Enum):
    DISABLED = 0   # no accelerator: everything on CPU
    NO_VRAM = 1    # stream everything
    LOW_VRAM = 2   # partial loading
    NORMAL_VRAM = 3
    HIGH_VRAM = 4  # keep models on the device
    SHARED = 5     # unified memory (MPS): no offloading needed


_DEFAULTS: dict[str, Any] = {
    "cpu": False, "cuda_device": None, "lowvram": False, "novram": False, "highvram": False,
    "normalvram": False, "gpu_only": False, "reserve_vram": None, "disable_smart_memory": False,
    "force_fp32": False, "force_fp16": False, "force_bf16": False, "default_device": None, "bf16_unet": False, "fp16_unet": False,
    "fp32_unet": False, "fp64_unet": False, "fp8_e4m3fn_unet": False, "fp8_e5m2_unet": False,
    "fp16_vae": False, "bf16_vae": False, "fp32_vae": False, "cpu_vae": False,
    "fp16_text_enc": False, "fp32_text_enc": False, "bf16_text_enc": False,
    "fp8_e4m3fn_text_enc": False, "fp8_e5m2_text_enc": False, "disable_mmap": False,
    "preview_method": "none", "force_channels_last": False,
}

args: dict[str, Any] = dict(_DEFAULTS)
_lock = threading.RLock()
_device_cache: torch.device | None = None
vram_state = VRAMState.NORMAL_VRAM


def _get(config: Any, name: str, default: Any) -> Any:
    if config is None:
        return default
    for key in (name, name.replace("_", "-")):
        if isinstance(config, dict):
            if key in config:
                return config[key]
        else:
            try:
                return getattr(config, key)
            except AttributeError:
                pass
            getter = getattr(config, "get", None)
            if callable(getter):
                try:
                    v = getter(key)
                except Exception:  # noqa: BLE001 - foreign config objects
                    v = None
                if v is not None:
                    return v
    return default


def configure(config: Any = None, **overrides: Any) -> None:
    """Read device/dtype/memory flags from a settings object or mapping (plus overrides).

    ``configure()`` with nothing resets to defaults. Safe to call more than once; the
    already loaded models stay where they are.
    """
    global _device_cache, vram_state
    with _lock:
        new = {}
        for k, d in _DEFAULTS.items():
            new[k] = _get(config, k, d)
        new.update(overrides)
        args.clear()
        args.update(new)
        _device_cache = None
        vram_state = _initial_vram_state()


def _initial_vram_state() -> VRAMState:
    dev = get_torch_device()
    if dev.type == "cpu":
        return VRAMState.DISABLED
    if dev.type == "mps":
        return VRAMState.SHARED
    if args["novram"]:
        return VRAMState.NO_VRAM
    if args["lowvram"]:
        return VRAMState.LOW_VRAM
    if args["highvram"] or args["gpu_only"]:
        return VRAMState.HIGH_VRAM
    return VRAMState.NORMAL_VRAM


# ------------------------------------------------------------------------------ devices
def _xpu_available() -> bool:
    return hasattr(torch, "xpu") and torch.xpu.is_available()


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def get_torch_device() -> torch.device:
    """The compute device: CUDA (``--cuda-device``), XPU, MPS, else CPU (``--cpu``)."""
    global _device_cache
    if _device_cache is not None:
        return _device_cache
    if args["cpu"]:
        dev = torch.device("cpu")
    elif torch.cuda.is_available():
        idx = args["cuda_device"]
        if idx is None:
            idx = args["default_device"]
        if idx is None or int(idx) >= torch.cuda.device_count():
            idx = torch.cuda.current_device()  # the CLI may already have set CUDA_VISIBLE_DEVICES
        dev = torch.device("cuda", int(idx))
    elif _xpu_available():
        dev = torch.device("xpu", torch.xpu.current_device())
    elif _mps_available():
        dev = torch.device("mps")
    else:
        dev = torch.device("cpu")
    _device_cache = dev
    return dev


def cpu_mode() -> bool:
    return get_torch_device().type == "cpu"


def is_device_cpu(device: torch.device | str | None) -> bool:
    return device is not None and torch.device(device).type == "cpu"


def intermediate_device() -> torch.device:
    """Where node outputs (conditioning, latents, images) live between nodes."""
    if args["gpu_only"]:
        return get_torch_device()
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    if vram_state == VRAMState.HIGH_VRAM or vram_state == VRAMState.SHARED:
        return get_torch_device()
    return torch.device("cpu")


def unet_inital_load_device(parameters: int = 0, dtype: torch.dtype = torch.float32) -> torch.device:
    dev = get_torch_device()
    if vram_state in (VRAMState.HIGH_VRAM, VRAMState.SHARED):
        return dev
    return torch.device("cpu")


def text_encoder_device() -> torch.device:
    if args["gpu_only"]:
        return get_torch_device()
    if vram_state in (VRAMState.HIGH_VRAM, VRAMState.NORMAL_VRAM, VRAMState.SHARED):
        return get_torch_device()
    return torch.device("cpu")


def text_encoder_offload_device() -> torch.device:
    return get_torch_device() if args["gpu_only"] else torch.device("cpu")


def vae_device() -> torch.device:
    return torch.device("cpu") if args["cpu_vae"] else get_torch_device()


def vae_offload_device() -> torch.device:
    return get_torch_device() if args["gpu_only"] else torch.device("cpu")


# ------------------------------------------------------------------------------- dtypes
FP8_TYPES = tuple(t for t in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if t)


def dtype_size(dtype: torch.dtype) -> int:
    try:
        return torch.empty((), dtype=dtype).element_size()
    except Exception:  # noqa: BLE001
        return 4


def should_use_fp16(device: torch.device | None = None, prioritize_performance: bool = True) -> bool:
    device = device or get_torch_device()
    if args["force_fp32"] or device.type == "cpu":
        return False
    if args["force_fp16"]:
        return True
    if device.type == "mps" or device.type == "xpu":
        return True
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return major >= 6
    return False


def should_use_bf16(device: torch.device | None = None) -> bool:
    device = device or get_torch_device()
    if args["force_fp32"] or device.type == "cpu":
        return False
    if args["force_bf16"]:
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type in ("xpu", "mps")


def supports_cast(device: torch.device, dtype: torch.dtype) -> bool:
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        return True
    return dtype in FP8_TYPES and device.type in ("cuda", "cpu")


def unet_dtype(device: torch.device | None = None,
               supported_dtypes: Iterable[torch.dtype] = (torch.float16, torch.float32)) -> torch.dtype:
    """Storage dtype of the diffusion model's weights (may be fp8: then compute in
    :func:`unet_manual_cast`)."""
    if args["fp32_unet"]:
        return torch.float32
    if args["force_fp32"]:
        return torch.float32
    if args["fp64_unet"]:
        return torch.float64
    if args["bf16_unet"]:
        return torch.bfloat16
    if args["fp16_unet"]:
        return torch.float16
    if args["fp8_e4m3fn_unet"]:
        return torch.float8_e4m3fn
    if args["fp8_e5m2_unet"]:
        return torch.float8_e5m2
    device = device or get_torch_device()
    for dt in supported_dtypes:
        if dt == torch.float16 and should_use_fp16(device):
            return dt
        if dt == torch.bfloat16 and should_use_bf16(device):
            return dt
    return torch.float32


def unet_manual_cast(weight_dtype: torch.dtype, device: torch.device | None = None,
                     supported_dtypes: Iterable[torch.dtype] = (torch.float16, torch.float32)) -> torch.dtype | None:
    """The compute dtype when weights are stored in a dtype the device cannot compute in
    (fp8 storage), else ``None`` (compute in the weight dtype)."""
    device = device or get_torch_device()
    if weight_dtype in (torch.float32, torch.float64):
        return None
    if weight_dtype == torch.float16 and should_use_fp16(device):
        return None
    if weight_dtype == torch.bfloat16 and should_use_bf16(device):
        return None
    for dt in supported_dtypes:
        if dt == torch.float16 and should_use_fp16(device):
            return dt
        if dt == torch.bfloat16 and should_use_bf16(device):
            return dt
    return torch.float32


def text_encoder_dtype(device: torch.device | None = None) -> torch.dtype:
    if args["fp8_e4m3fn_text_enc"]:
        return torch.float8_e4m3fn
    if args["fp8_e5m2_text_enc"]:
        return torch.float8_e5m2
    if args["fp16_text_enc"]:
        return torch.float16
    if args["bf16_text_enc"]:
        return torch.bfloat16
    if args["fp32_text_enc"]:
        return torch.float32
    device = device or text_encoder_device()
    return torch.float16 if should_use_fp16(device) else torch.float32


def vae_dtype(device: torch.device | None = None,
              allowed_dtypes: Iterable[torch.dtype] = (torch.bfloat16, torch.float32)) -> torch.dtype:
    if args["fp16_vae"]:
        return torch.float16
    if args["bf16_vae"]:
        return torch.bfloat16
    if args["fp32_vae"]:
        return torch.float32
    device = device or vae_device()
    for dt in allowed_dtypes:
        if dt == torch.float16 and should_use_fp16(device):
            return dt
        if dt == torch.bfloat16 and should_use_bf16(device):
            return dt
    return torch.float32


# ---------------------------------------------------------------------- memory queries
def get_total_memory(device: torch.device | None = None) -> int:
    device = device or get_torch_device()
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "xpu":
        return torch.xpu.get_device_properties(device).total_memory
    import psutil
    return psutil.virtual_memory().total


def get_free_memory(device: torch.device | None = None) -> int:
    """Free bytes on ``device`` (for CUDA: driver free + torch cache reserved-but-unused)."""
    device = device or get_torch_device()
    if device.type == "cuda":
        free_cuda, _ = torch.cuda.mem_get_info(device)
        stats = torch.cuda.memory_stats(device)
        reserved = stats.get("reserved_bytes.all.current", 0)
        active = stats.get("active_bytes.all.current", 0)
        return free_cuda + (reserved - active)
    if device.type == "xpu":
        props = torch.xpu.get_device_properties(device)
        return props.total_memory - torch.xpu.memory_allocated(device)
    import psutil
    return psutil.virtual_memory().available


def extra_reserved_memory() -> int:
    if args["reserve_vram"] is not None:
        return int(float(args["reserve_vram"]) * 1024 ** 3)
    return 400 * 1024 ** 2


def minimum_inference_memory() -> int:
    return 800 * 1024 ** 2 + extra_reserved_memory()


def soft_empty_cache(force: bool = False) -> None:
    """Give cached allocator blocks back to the driver."""
    dev = get_torch_device()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    elif dev.type == "xpu":
        torch.xpu.empty_cache()
    elif dev.type == "mps":
        torch.mps.empty_cache()


# --------------------------------------------------------------------- loaded models
class LoadedModel:
    """A model patcher currently placed (fully or partly) on its load device."""

    def __init__(self, model: Any):
        self.model = model
        self.device = model.load_device
        self.lowvram_budget: int | None = None  # bytes kept on the device when partial

    def size(self) -> int:
        return self.model.model_size()

    def loaded_size(self) -> int:
        return self.model.loaded_size()

    def load(self, lowvram_budget: int | None) -> None:
        self.lowvram_budget = lowvram_budget
        self.model.patch_model(device_to=self.device, lowvram_budget=lowvram_budget)

    def unload(self) -> None:
        self.model.unpatch_model(device_to=self.model.offload_device)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoadedModel) and other.model is self.model

    def __hash__(self) -> int:
        return id(self.model)


current_loaded_models: list[LoadedModel] = []


def loaded_models(only_currently_used: bool = False) -> list[Any]:
    return [lm.model for lm in current_loaded_models]


def _unload(index: int) -> None:
    lm = current_loaded_models.pop(index)
    lm.unload()


def free_memory(memory_required: int, device: torch.device, keep_loaded: Iterable[Any] = ()) -> list[Any]:
    """Offload least-recently-used models on ``device`` until ``memory_required`` bytes are
    free (always all of them with ``--disable-smart-memory``). Returns what was unloaded."""
    keep = {id(m) for m in keep_loaded}
    unloaded = []
    with _lock:
        # least recently used is at the end of the list
        for i in range(len(current_loaded_models) - 1, -1, -1):
            lm = current_loaded_models[i]
            if lm.device != device or id(lm.model) in keep or any(id(p) in keep for p in _parents(lm.model)):
                continue
            if not args["disable_smart_memory"] and get_free_memory(device) > memory_required:
                break
            unloaded.append(lm.model)
            _unload(i)
        if unloaded:
            gc.collect()
            soft_empty_cache()
    return unloaded


def _parents(model: Any) -> list[Any]:
    p = getattr(model, "parent", None)
    return [p] if p is not None else []


def load_models_gpu(models: Iterable[Any], memory_required: int = 0, force_patch_weights: bool = False,
                    minimum_memory_required: int | None = None, force_full_load: bool = False) -> None:
    """Put ``models`` (patchers) on their load device, patched, ready to run.

    ``memory_required``: bytes the caller will need for activations on top of weights.
    Other models are offloaded first when the room is needed; a model that still does not
    fit (or any model with ``--lowvram``/``--novram``) is loaded partially and the rest of
    its weights stream to the device per layer during the forward pass.
    """
    with _lock:
        models = [m for m in models if m is not None]
        inference_memory = minimum_inference_memory()
        extra_mem = max(inference_memory, int(memory_required) + extra_reserved_memory())
        to_load: list[LoadedModel] = []
        for m in models:
            lm = LoadedModel(m)
            if lm in current_loaded_models:
                idx = current_loaded_models.index(lm)
                existing = current_loaded_models.pop(idx)
                current_loaded_models.insert(0, existing)
                if existing.model.is_fully_loaded() or existing.model.current_device_is_offload():
                    if existing.model.patches_up_to_date():
                        continue
                lm = existing
                current_loaded_models.remove(existing)
            to_load.append(lm)
        if not to_load:
            return
        per_device: dict[torch.device, int] = {}
        for lm in to_load:
            if lm.device.type == "cpu":
                continue
            per_device[lm.device] = per_device.get(lm.device, 0) + lm.size()
        for dev, need in per_device.items():
            free_memory(need + extra_mem, dev, keep_loaded=models)
        for lm in to_load:
            budget = None
            dev = lm.device
            if dev.type not in ("cpu", "mps") and not force_full_load:
                if vram_state == VRAMState.NO_VRAM:
                    budget = 64 * 1024 ** 2
                elif vram_state == VRAMState.LOW_VRAM or (
                        vram_state == VRAMState.NORMAL_VRAM and lm.size() + extra_mem > get_free_memory(dev)):
                    if vram_state != VRAMState.HIGH_VRAM:
                        budget = max(64 * 1024 ** 2, get_free_memory(dev) - extra_mem)
                        if budget >= lm.size():
                            budget = None
            # clones share the module: the one being loaded takes it over (patch_model
            # unpatches the other), so forget the other's entry
            for i in range(len(current_loaded_models) - 1, -1, -1):
                other = current_loaded_models[i].model
                if other is not lm.model and getattr(other, "model", None) is getattr(lm.model, "model", object()):
                    current_loaded_models.pop(i)
            lm.load(budget)
            current_loaded_models.insert(0, lm)


def load_model_gpu(model: Any) -> None:
    load_models_gpu([model])


def unload_model_clones(model: Any) -> None:
    with _lock:
        for i in range(len(current_loaded_models) - 1, -1, -1):
            other = current_loaded_models[i].model
            if other is not model and getattr(other, "model", None) is getattr(model, "model", object()):
                _unload(i)


def unload_all_models() -> None:
    """Move every loaded model back to its offload device (the ``/free`` endpoint)."""
    with _lock:
        while current_loaded_models:
            _unload(len(current_loaded_models) - 1)
        gc.collect()
        soft_empty_cache()


def cleanup_models() -> None:
    """Forget models nobody references any more."""
    import sys
    with _lock:
        for i in range(len(current_loaded_models) - 1, -1, -1):
            if sys.getrefcount(current_loaded_models[i].model) <= 3:
                _unload(i)


def cast_to(t: torch.Tensor, dtype: torch.dtype | None = None, device: torch.device | None = None,
            non_blocking: bool = False) -> torch.Tensor:
    return t.to(device=device, dtype=dtype, non_blocking=non_blocking)



def _initial_configure() -> None:
    """At import: the process-wide settings (``comfyui.config.current()``) if there are
    any; the CLI/server calls :func:`configure` again after it parsed its flags."""
    try:
        from comfyui import config as _config
        configure(_config.current())
    except Exception:  # noqa: BLE001 - config layer missing or broken: defaults
        configure(None)


_initial_configure()


_free_memory_callbacks: list = []


def on_free_memory(callback) -> None:
    """Register ``callback()`` to run when a client asks to free memory (the loaders clear
    their cache of loaded files); this module stays below the loaders."""
    _free_memory_callbacks.append(callback)


def engine_free_hook(unload_models: bool, free_memory: bool) -> None:
    """For ``Engine.on_free`` (the ``/free`` endpoint): unload models and release cached
    device memory."""
    if unload_models or free_memory:
        unload_all_models()
    if free_memory:
        for callback in _free_memory_callbacks:
            callback()
    soft_empty_cache()


# ---------------------------------------------------------------- ComfyUI-compatible names
OOM_EXCEPTION = torch.cuda.OutOfMemoryError


def is_device_mps(device: Any) -> bool:
    return device is not None and torch.device(device).type == "mps"


def is_device_cuda(device: Any) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def xformers_enabled() -> bool:
    return False


def pytorch_attention_enabled() -> bool:
    return True


def pytorch_attention_flash_attention() -> bool:
    return get_torch_device().type == "cuda"


def get_autocast_device(dev: Any) -> str:
    return torch.device(dev).type if dev is not None else "cuda"


def cast_to_device(tensor: torch.Tensor, device: Any, dtype: torch.dtype | None, copy: bool = False) -> torch.Tensor:
    return tensor.to(device=device, dtype=dtype, copy=copy)


def module_size(module: torch.nn.Module) -> int:
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


def total_vram_mb() -> float:
    return get_total_memory() / (1024 * 1024)
