"""Devices, dtypes and "smart memory" for models (ComfyUI's ``model_management``).

The state lives in :class:`MemoryManager`, one per :class:`~comfyui.runtime.Runtime` (made
from the runtime's config on first use); the module-level functions act on the active
runtime's. Flags are read by :meth:`MemoryManager.configure` from a settings object or a
mapping (attribute *or* mapping access, ComfyUI flag names with
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
import functools
import gc
import logging
import threading
from typing import Any, Iterable

import torch

from .. import runtime

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


# ------------------------------------------------------------------------------ devices
def _xpu_available() -> bool:
    return hasattr(torch, "xpu") and torch.xpu.is_available()


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def is_device_cpu(device: torch.device | str | None) -> bool:
    return device is not None and torch.device(device).type == "cpu"


# ------------------------------------------------------------------------------- dtypes
FP8_TYPES = tuple(t for t in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if t)


def dtype_size(dtype: torch.dtype) -> int:
    try:
        return torch.empty((), dtype=dtype).element_size()
    except Exception:  # noqa: BLE001
        return 4


def supports_cast(device: torch.device, dtype: torch.dtype) -> bool:
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        return True
    return dtype in FP8_TYPES and device.type in ("cuda", "cpu")


def cpuinfo_has_native_bf16(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo`` text lists bf16 arithmetic in hardware: x86 ``avx512_bf16`` or
    ``amx_bf16`` in its flags, Arm's ``bf16`` in its features."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        words = set(value.split())
        if key.strip() == "flags" and words & {"avx512_bf16", "amx_bf16"}:
            return True
        if key.strip() == "Features" and "bf16" in words:
            return True
    return False


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively, so torch's bf16 kernels run faster than fp32.
    Without it torch emulates bf16 and a bf16 matmul is several times slower than fp32 (9x
    measured on an AVX2 EPYC). torch's own detection where it has one, else /proc/cpuinfo."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):
        caps = {}
    if "avx512_bf16" in caps:   # x86: cpuinfo's view of the same flags
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return cpuinfo_has_native_bf16(f.read())
    except OSError:
        return False


# ---------------------------------------------------------------------- memory queries


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


def _parents(model: Any) -> list[Any]:
    p = getattr(model, "parent", None)
    return [p] if p is not None else []


def cast_to(t: torch.Tensor, dtype: torch.dtype | None = None, device: torch.device | None = None,
            non_blocking: bool = False) -> torch.Tensor:
    return t.to(device=device, dtype=dtype, non_blocking=non_blocking)


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


def get_autocast_device(dev: Any) -> str:
    return torch.device(dev).type if dev is not None else "cuda"


def cast_to_device(tensor: torch.Tensor, device: Any, dtype: torch.dtype | None, copy: bool = False) -> torch.Tensor:
    return tensor.to(device=device, dtype=dtype, copy=copy)


def module_size(module: torch.nn.Module) -> int:
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


class MemoryManager:
    """One runtime's device policy (devices, dtypes, the VRAM mode from its flags) and its
    loaded models, most recently used first. The module-level functions act on the active
    runtime's (:mod:`comfyui.runtime`); ComfyUI's ``comfy.model_management`` is a view of them."""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        self._lock = threading.RLock()
        self.args: dict[str, Any] = dict(_DEFAULTS)
        self._device_cache: torch.device | None = None
        self.vram_state = VRAMState.NORMAL_VRAM
        self.current_loaded_models: list[LoadedModel] = []
        self.configure(config, **overrides)

    def configure(self, config: Any = None, **overrides: Any) -> None:
        """Read device/dtype/memory flags from a settings object or mapping (plus overrides).

        ``configure()`` with nothing resets to defaults. Safe to call more than once; the
        already loaded models stay where they are.
        """
        with self._lock:
            new = {}
            for k, d in _DEFAULTS.items():
                new[k] = _get(config, k, d)
            new.update(overrides)
            self.args.clear()
            self.args.update(new)
            self._device_cache = None
            self.vram_state = self._initial_vram_state()

    def _initial_vram_state(self) -> VRAMState:
        dev = self.get_torch_device()
        if dev.type == "cpu":
            return VRAMState.DISABLED
        if dev.type == "mps":
            return VRAMState.SHARED
        if self.args["novram"]:
            return VRAMState.NO_VRAM
        if self.args["lowvram"]:
            return VRAMState.LOW_VRAM
        if self.args["highvram"] or self.args["gpu_only"]:
            return VRAMState.HIGH_VRAM
        return VRAMState.NORMAL_VRAM

    def get_torch_device(self) -> torch.device:
        """The compute device: CUDA (``--cuda-device``), XPU, MPS, else CPU (``--cpu``)."""
        if self._device_cache is not None:
            return self._device_cache
        if self.args["cpu"]:
            dev = torch.device("cpu")
        elif torch.cuda.is_available():
            idx = self.args["cuda_device"]
            if idx is None:
                idx = self.args["default_device"]
            if idx is None or int(idx) >= torch.cuda.device_count():
                idx = torch.cuda.current_device()  # the CLI may already have set CUDA_VISIBLE_DEVICES
            dev = torch.device("cuda", int(idx))
        elif _xpu_available():
            dev = torch.device("xpu", torch.xpu.current_device())
        elif _mps_available():
            dev = torch.device("mps")
        else:
            dev = torch.device("cpu")
        self._device_cache = dev
        return dev

    def cpu_mode(self) -> bool:
        return self.get_torch_device().type == "cpu"

    def intermediate_device(self) -> torch.device:
        """Where node outputs (conditioning, latents, images) live between nodes."""
        if self.args["gpu_only"]:
            return self.get_torch_device()
        return torch.device("cpu")

    def unet_offload_device(self) -> torch.device:
        if self.vram_state == VRAMState.HIGH_VRAM or self.vram_state == VRAMState.SHARED:
            return self.get_torch_device()
        return torch.device("cpu")

    def unet_inital_load_device(self, parameters: int = 0, dtype: torch.dtype = torch.float32) -> torch.device:
        dev = self.get_torch_device()
        if self.vram_state in (VRAMState.HIGH_VRAM, VRAMState.SHARED):
            return dev
        return torch.device("cpu")

    def text_encoder_device(self) -> torch.device:
        if self.args["gpu_only"]:
            return self.get_torch_device()
        if self.vram_state in (VRAMState.HIGH_VRAM, VRAMState.NORMAL_VRAM, VRAMState.SHARED):
            return self.get_torch_device()
        return torch.device("cpu")

    def text_encoder_offload_device(self) -> torch.device:
        return self.get_torch_device() if self.args["gpu_only"] else torch.device("cpu")

    def vae_device(self) -> torch.device:
        return torch.device("cpu") if self.args["cpu_vae"] else self.get_torch_device()

    def vae_offload_device(self) -> torch.device:
        return self.get_torch_device() if self.args["gpu_only"] else torch.device("cpu")

    def should_use_fp16(self, device: torch.device | None = None, prioritize_performance: bool = True) -> bool:
        device = device or self.get_torch_device()
        if self.args["force_fp32"] or device.type == "cpu":
            return False
        if self.args["force_fp16"]:
            return True
        if device.type == "mps" or device.type == "xpu":
            return True
        if device.type == "cuda":
            major, _ = torch.cuda.get_device_capability(device)
            return major >= 6
        return False

    def should_use_bf16(self, device: torch.device | None = None) -> bool:
        device = device or self.get_torch_device()
        if self.args["force_fp32"] or device.type == "cpu":
            return False
        if self.args["force_bf16"]:
            return True
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return device.type in ("xpu", "mps")

    def cpu_computes_bf16(self, device: torch.device | None = None) -> bool:
        """bf16 weights compute in bf16 on a CPU that does bf16 natively (upstream computes
        them in fp32 on every CPU: 3.5x slower per Wan step on an avx512_bf16 EPYC). Weights
        stored in another dtype keep upstream's CPU choices (fp32 storage and compute)."""
        device = device or self.get_torch_device()
        return device.type == "cpu" and not self.args["force_fp32"] and cpu_has_native_bf16()

    def unet_dtype(self, device: torch.device | None = None,
                   supported_dtypes: Iterable[torch.dtype] = (torch.float16, torch.float32),
                   file_dtype: torch.dtype | None = None) -> torch.dtype:
        """Storage dtype of the diffusion model's weights (may be fp8: then compute in
        :func:`unet_manual_cast`); ``file_dtype``: the dtype most of the file's weights have."""
        if self.args["fp32_unet"]:
            return torch.float32
        if self.args["force_fp32"]:
            return torch.float32
        if self.args["fp64_unet"]:
            return torch.float64
        if self.args["bf16_unet"]:
            return torch.bfloat16
        if self.args["fp16_unet"]:
            return torch.float16
        if self.args["fp8_e4m3fn_unet"]:
            return torch.float8_e4m3fn
        if self.args["fp8_e5m2_unet"]:
            return torch.float8_e5m2
        device = device or self.get_torch_device()
        if file_dtype == torch.bfloat16 and torch.bfloat16 in supported_dtypes and self.cpu_computes_bf16(device):
            return torch.bfloat16
        for dt in supported_dtypes:
            if dt == torch.float16 and self.should_use_fp16(device):
                return dt
            if dt == torch.bfloat16 and self.should_use_bf16(device):
                return dt
        return torch.float32

    def unet_manual_cast(self, weight_dtype: torch.dtype, device: torch.device | None = None,
                         supported_dtypes: Iterable[torch.dtype] = (torch.float16, torch.float32)) -> torch.dtype | None:
        """The compute dtype when weights are stored in a dtype the device cannot compute in
        (fp8 storage), else ``None`` (compute in the weight dtype)."""
        device = device or self.get_torch_device()
        if weight_dtype in (torch.float32, torch.float64):
            return None
        if weight_dtype == torch.float16 and self.should_use_fp16(device):
            return None
        if weight_dtype == torch.bfloat16 and (self.should_use_bf16(device) or self.cpu_computes_bf16(device)):
            return None
        for dt in supported_dtypes:
            if dt == torch.float16 and self.should_use_fp16(device):
                return dt
            if dt == torch.bfloat16 and self.should_use_bf16(device):
                return dt
        return torch.float32

    def text_encoder_dtype(self, device: torch.device | None = None) -> torch.dtype:
        if self.args["fp8_e4m3fn_text_enc"]:
            return torch.float8_e4m3fn
        if self.args["fp8_e5m2_text_enc"]:
            return torch.float8_e5m2
        if self.args["fp16_text_enc"]:
            return torch.float16
        if self.args["bf16_text_enc"]:
            return torch.bfloat16
        if self.args["fp32_text_enc"]:
            return torch.float32
        device = device or self.text_encoder_device()
        return torch.float16 if self.should_use_fp16(device) else torch.float32

    def vae_dtype(self, device: torch.device | None = None,
                  allowed_dtypes: Iterable[torch.dtype] = (torch.bfloat16, torch.float32)) -> torch.dtype:
        if self.args["fp16_vae"]:
            return torch.float16
        if self.args["bf16_vae"]:
            return torch.bfloat16
        if self.args["fp32_vae"]:
            return torch.float32
        device = device or self.vae_device()
        for dt in allowed_dtypes:
            if dt == torch.float16 and self.should_use_fp16(device):
                return dt
            if dt == torch.bfloat16 and self.should_use_bf16(device):
                return dt
        return torch.float32

    def get_total_memory(self, device: torch.device | None = None) -> int:
        device = device or self.get_torch_device()
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
        if device.type == "xpu":
            return torch.xpu.get_device_properties(device).total_memory
        import psutil
        return psutil.virtual_memory().total

    def get_free_memory(self, device: torch.device | None = None) -> int:
        """Free bytes on ``device`` (for CUDA: driver free + torch cache reserved-but-unused)."""
        device = device or self.get_torch_device()
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

    def extra_reserved_memory(self) -> int:
        if self.args["reserve_vram"] is not None:
            return int(float(self.args["reserve_vram"]) * 1024 ** 3)
        return 400 * 1024 ** 2

    def minimum_inference_memory(self) -> int:
        return 800 * 1024 ** 2 + self.extra_reserved_memory()

    def soft_empty_cache(self, force: bool = False) -> None:
        """Give cached allocator blocks back to the driver."""
        dev = self.get_torch_device()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()
        elif dev.type == "xpu":
            torch.xpu.empty_cache()
        elif dev.type == "mps":
            torch.mps.empty_cache()

    def loaded_models(self, only_currently_used: bool = False) -> list[Any]:
        return [lm.model for lm in self.current_loaded_models]

    def _unload(self, index: int) -> None:
        lm = self.current_loaded_models.pop(index)
        lm.unload()

    def free_memory(self, memory_required: int, device: torch.device, keep_loaded: Iterable[Any] = ()) -> list[Any]:
        """Offload least-recently-used models on ``device`` until ``memory_required`` bytes are
        free (always all of them with ``--disable-smart-memory``). Returns what was unloaded."""
        keep = {id(m) for m in keep_loaded}
        unloaded = []
        with self._lock:
            # least recently used is at the end of the list
            for i in range(len(self.current_loaded_models) - 1, -1, -1):
                lm = self.current_loaded_models[i]
                if lm.device != device or id(lm.model) in keep or any(id(p) in keep for p in _parents(lm.model)):
                    continue
                if not self.args["disable_smart_memory"] and self.get_free_memory(device) > memory_required:
                    break
                unloaded.append(lm.model)
                self._unload(i)
            if unloaded:
                gc.collect()
                self.soft_empty_cache()
        return unloaded

    def load_models_gpu(self, models: Iterable[Any], memory_required: int = 0, force_patch_weights: bool = False,
                        minimum_memory_required: int | None = None, force_full_load: bool = False) -> None:
        """Put ``models`` (patchers) on their load device, patched, ready to run.

        ``memory_required``: bytes the caller will need for activations on top of weights.
        Other models are offloaded first when the room is needed; a model that still does not
        fit (or any model with ``--lowvram``/``--novram``) is loaded partially and the rest of
        its weights stream to the device per layer during the forward pass.
        """
        with self._lock:
            models = [m for m in models if m is not None]
            inference_memory = self.minimum_inference_memory()
            extra_mem = max(inference_memory, int(memory_required) + self.extra_reserved_memory())
            to_load: list[LoadedModel] = []
            for m in models:
                lm = LoadedModel(m)
                if lm in self.current_loaded_models:
                    idx = self.current_loaded_models.index(lm)
                    existing = self.current_loaded_models.pop(idx)
                    self.current_loaded_models.insert(0, existing)
                    if existing.model.is_fully_loaded() or existing.model.current_device_is_offload():
                        if existing.model.patches_up_to_date():
                            continue
                    lm = existing
                    self.current_loaded_models.remove(existing)
                to_load.append(lm)
            if not to_load:
                return
            per_device: dict[torch.device, int] = {}
            for lm in to_load:
                if lm.device.type == "cpu":
                    continue
                per_device[lm.device] = per_device.get(lm.device, 0) + lm.size()
            for dev, need in per_device.items():
                self.free_memory(need + extra_mem, dev, keep_loaded=models)
            for lm in to_load:
                budget = None
                dev = lm.device
                if dev.type not in ("cpu", "mps") and not force_full_load:
                    if self.vram_state == VRAMState.NO_VRAM:
                        budget = 64 * 1024 ** 2
                    elif self.vram_state == VRAMState.LOW_VRAM or (
                            self.vram_state == VRAMState.NORMAL_VRAM and lm.size() + extra_mem > self.get_free_memory(dev)):
                        if self.vram_state != VRAMState.HIGH_VRAM:
                            budget = max(64 * 1024 ** 2, self.get_free_memory(dev) - extra_mem)
                            if budget >= lm.size():
                                budget = None
                # clones share the module: the one being loaded takes it over (patch_model
                # unpatches the other), so forget the other's entry
                for i in range(len(self.current_loaded_models) - 1, -1, -1):
                    other = self.current_loaded_models[i].model
                    if other is not lm.model and getattr(other, "model", None) is getattr(lm.model, "model", object()):
                        self.current_loaded_models.pop(i)
                lm.load(budget)
                self.current_loaded_models.insert(0, lm)

    def load_model_gpu(self, model: Any) -> None:
        self.load_models_gpu([model])

    def unload_model_clones(self, model: Any) -> None:
        with self._lock:
            for i in range(len(self.current_loaded_models) - 1, -1, -1):
                other = self.current_loaded_models[i].model
                if other is not model and getattr(other, "model", None) is getattr(model, "model", object()):
                    self._unload(i)

    def unload_all_models(self) -> None:
        """Move every loaded model back to its offload device (the ``/free`` endpoint)."""
        with self._lock:
            while self.current_loaded_models:
                self._unload(len(self.current_loaded_models) - 1)
            gc.collect()
            self.soft_empty_cache()

    def cleanup_models(self) -> None:
        """Forget models nobody references any more."""
        import sys
        with self._lock:
            for i in range(len(self.current_loaded_models) - 1, -1, -1):
                if sys.getrefcount(self.current_loaded_models[i].model) <= 3:
                    self._unload(i)

    def pytorch_attention_flash_attention(self) -> bool:
        return self.get_torch_device().type == "cuda"

    def total_vram_mb(self) -> float:
        return self.get_total_memory() / (1024 * 1024)


# ------------------------------------------------------------------------------------------
# The module-level API (ComfyUI's model_management): views onto the active runtime's manager
# ------------------------------------------------------------------------------------------

_view = functools.partial(runtime.method_view, "memory", MemoryManager)

configure = _view("configure")
get_torch_device = _view("get_torch_device")
cpu_mode = _view("cpu_mode")
intermediate_device = _view("intermediate_device")
unet_offload_device = _view("unet_offload_device")
unet_inital_load_device = _view("unet_inital_load_device")
text_encoder_device = _view("text_encoder_device")
text_encoder_offload_device = _view("text_encoder_offload_device")
vae_device = _view("vae_device")
vae_offload_device = _view("vae_offload_device")
should_use_fp16 = _view("should_use_fp16")
should_use_bf16 = _view("should_use_bf16")
unet_dtype = _view("unet_dtype")
unet_manual_cast = _view("unet_manual_cast")
cpu_computes_bf16 = _view("cpu_computes_bf16")
text_encoder_dtype = _view("text_encoder_dtype")
vae_dtype = _view("vae_dtype")
get_total_memory = _view("get_total_memory")
get_free_memory = _view("get_free_memory")
extra_reserved_memory = _view("extra_reserved_memory")
minimum_inference_memory = _view("minimum_inference_memory")
soft_empty_cache = _view("soft_empty_cache")
loaded_models = _view("loaded_models")
free_memory = _view("free_memory")
load_models_gpu = _view("load_models_gpu")
load_model_gpu = _view("load_model_gpu")
unload_model_clones = _view("unload_model_clones")
unload_all_models = _view("unload_all_models")
cleanup_models = _view("cleanup_models")
pytorch_attention_flash_attention = _view("pytorch_attention_flash_attention")
total_vram_mb = _view("total_vram_mb")

# Module attributes ComfyUI's model_management has, read from the active runtime at each access.
_ATTRIBUTES = frozenset({"args", "vram_state", "current_loaded_models"})

__getattr__ = runtime.attribute_view(__name__, "memory", _ATTRIBUTES)
