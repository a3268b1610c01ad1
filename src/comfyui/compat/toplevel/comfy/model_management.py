"""``comfy.model_management``: devices, memory and interrupts.

Interrupts go to :mod:`comfyui.engine.progress`. Everything else comes from
:mod:`comfyui.models.memory` (any attribute not defined here is looked up there).
"""
from __future__ import annotations

from typing import Any

import torch

from comfyui.engine import progress as _progress
from comfyui.engine.progress import InterruptProcessingException  # noqa: F401

try:
    from comfyui.models import memory as _memory
except ImportError:  # pragma: no cover - inference stack not installed
    _memory = None


def interrupt_current_processing(value: bool = True) -> None:
    _progress.request_global_interrupt(value)


def processing_interrupted() -> bool:
    return _progress.interrupt_requested()


def throw_exception_if_processing_interrupted() -> None:
    _progress.throw_if_interrupted()


def _cpu_default() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def get_torch_device() -> torch.device:
    return _memory.get_torch_device() if _memory else _cpu_default()


def intermediate_device() -> torch.device:
    return _memory.intermediate_device() if _memory else torch.device("cpu")


def unet_offload_device() -> torch.device:
    return _memory.unet_offload_device() if _memory else torch.device("cpu")


def soft_empty_cache(force: bool = False) -> None:
    if _memory:
        _memory.soft_empty_cache(force)
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def intermediate_dtype() -> torch.dtype:
    """The dtype of tensors passed between nodes (float32, as upstream by default)."""
    return torch.float32


def get_torch_device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} {torch.cuda.get_device_name(device)}"
    return str(device.type)


def is_intel_xpu() -> bool:
    return False


def is_directml_enabled() -> bool:
    return False


def device_supports_non_blocking(device: torch.device) -> bool:
    return torch.device(device).type == "cuda"


def device_should_use_non_blocking(device: torch.device) -> bool:
    return device_supports_non_blocking(device)


def raise_non_oom(exception: BaseException) -> None:
    """Re-raise ``exception`` unless it is an out-of-memory error."""
    if not isinstance(exception, torch.OutOfMemoryError):
        raise exception


def __getattr__(name: str) -> Any:
    if _memory is not None and not name.startswith("__"):
        try:
            return getattr(_memory, name)
        except AttributeError:
            pass
    raise AttributeError(f"module 'comfy.model_management' has no attribute {name!r}")
