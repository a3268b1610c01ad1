"""``import execution``: names of upstream's execution module that packs reference.

Prompts run in :mod:`comfyui.engine`, not through upstream's ``PromptExecutor``; the class
exists (packs read or wrap its methods at import) and cannot be used.
"""
from __future__ import annotations

import enum

from comfyui.compat import _unsupported


class ExecutionResult(enum.Enum):
    SUCCESS = 0
    FAILURE = 1
    PENDING = 2


class CacheType(enum.Enum):
    CLASSIC = 0
    LRU = 1
    NONE = 2
    RAM_PRESSURE = 3


class PromptExecutor:
    """Upstream's prompt executor; comfyui's engine runs prompts, so this cannot be built and
    wrapping its methods has no effect."""

    def __init__(self, *args, **kwargs):
        raise _unsupported.NotSupportedError("execution.PromptExecutor is not supported by comfyui: "
                                             "prompts run in comfyui.engine")

    def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        raise _unsupported.NotSupportedError("execution.PromptExecutor.execute")

    def handle_execution_error(self, prompt_id, prompt, current_outputs, executed, error, ex):
        raise _unsupported.NotSupportedError("execution.PromptExecutor.handle_execution_error")


__getattr__ = _unsupported.module_getattr(__name__, {
    "IsChangedCache", "CacheSet", "get_input_data", "get_output_data", "execute", "validate_inputs",
    "validate_prompt", "PromptQueue", "DuplicateNodeError", "merge_result_data", "get_output_from_returns",
    "format_value", "full_type_name",
}, "prompts run in comfyui.engine")
