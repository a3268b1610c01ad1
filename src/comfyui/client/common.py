"""What the embedded and remote clients (and the CLI) share: the event type, errors,
prompt normalization (API or UI format) and absolute output paths."""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from ..workflows.convert import convert_ui_to_api, is_api_prompt, is_ui_workflow

TERMINAL_EVENTS = frozenset({"execution_success", "execution_error", "execution_interrupted"})


@dataclass
class ProgressEvent:
    """One notification while a prompt runs.

    ``event`` is the engine's event name (``execution_start``, ``execution_cached``,
    ``executing``, ``progress``, ``progress_state``, ``executed``, ``preview_image``,
    ``progress_text``, ``execution_success``, ...) with ComfyUI's payload in ``data``.
    A ``preview_image`` carries ``data["image"]`` (a PIL image). The last event of a
    successful run is ``result`` with ``data = {"prompt_id", "outputs"}``.
    """

    event: str
    data: Any
    client_id: str | None = None

    @property
    def outputs(self) -> dict | None:
        return self.data.get("outputs") if self.event == "result" and isinstance(self.data, dict) else None


class ExecutionError(RuntimeError):
    """A prompt failed while it ran. ``data`` is the ``execution_error`` payload
    (node_id, node_type, exception_message, exception_type, traceback, ...)."""

    def __init__(self, prompt_id: str, data: dict | None = None, history: dict | None = None):
        data = data or {}
        self.prompt_id = prompt_id
        self.data = data
        self.history = history
        msg = data.get("exception_message") or "prompt failed"
        where = f" in node {data.get('node_id')} ({data.get('node_type')})" if data.get("node_id") is not None else ""
        super().__init__(f"{data.get('exception_type', 'Error')}{where}: {msg}".strip())


class PromptInterrupted(ExecutionError):
    """The prompt was interrupted before it finished."""

    def __init__(self, prompt_id: str, data: dict | None = None, history: dict | None = None):
        super().__init__(prompt_id, data, history)
        self.args = (f"prompt {prompt_id} was interrupted",)


@dataclass
class PreparedPrompt:
    prompt: dict
    extra_data: dict = field(default_factory=dict)
    converted: bool = False


def prepare_prompt(prompt: Any, object_info: Any, extra_data: dict | None = None) -> PreparedPrompt:
    """Accept an API prompt, a UI workflow, a ``{"prompt": ..., "extra_data": ...}`` body or
    their JSON text; UI workflows are converted and kept as ``extra_pnginfo.workflow``
    (what the frontend sends, so saved images carry the workflow)."""
    if isinstance(prompt, (str, bytes, bytearray)):
        prompt = json.loads(prompt)
    if not isinstance(prompt, dict):
        raise TypeError(f"a prompt must be a dict (API or UI format), got {type(prompt).__name__}")
    extra = copy.deepcopy(extra_data) if extra_data else {}
    if is_ui_workflow(prompt):
        api = convert_ui_to_api(prompt, object_info() if callable(object_info) else object_info)
        extra.setdefault("extra_pnginfo", {}).setdefault("workflow", prompt)
        return PreparedPrompt(api, extra, converted=True)
    inner = prompt.get("prompt")
    if isinstance(inner, dict) and not is_api_prompt(prompt) and (is_api_prompt(inner) or is_ui_workflow(inner)):
        body_extra = prompt.get("extra_data") if isinstance(prompt.get("extra_data"), dict) else {}
        merged = {**copy.deepcopy(body_extra), **extra}
        return prepare_prompt(inner, object_info, merged)
    return PreparedPrompt(prompt, extra)


def _abs_path_for(item: dict, directory_for_type: Callable[[str], str | None]) -> str | None:
    base = directory_for_type(item.get("type") or "output")
    if not base:
        return None
    return os.path.abspath(os.path.join(base, item.get("subfolder") or "", item["filename"]))


def with_abs_paths(outputs: dict, directory_for_type: Callable[[str], str | None] | None = None) -> dict:
    """A copy of history ``outputs`` where every file entry (``{"filename", "subfolder",
    "type"}``) also has ``abs_path``."""
    if directory_for_type is None:
        from .. import paths

        directory_for_type = paths.get_directory_by_type
    result = copy.deepcopy(outputs) if outputs else {}
    for node_output in result.values():
        if not isinstance(node_output, dict):
            continue
        for items in node_output.values():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str) and "abs_path" not in item:
                    path = _abs_path_for(item, directory_for_type)
                    if path is not None:
                        item["abs_path"] = path
    return result


def error_from_history(prompt_id: str, entry: dict) -> ExecutionError | None:
    """The error a failed history entry describes, or None when it succeeded."""
    status = entry.get("status") or {}
    messages = status.get("messages") or []
    for msg in messages:
        if isinstance(msg, (list, tuple)) and len(msg) == 2 and msg[0] == "execution_interrupted":
            return PromptInterrupted(prompt_id, msg[1], entry)
    if status.get("status_str") == "error":
        for msg in messages:
            if isinstance(msg, (list, tuple)) and len(msg) == 2 and msg[0] == "execution_error":
                return ExecutionError(prompt_id, msg[1], entry)
        return ExecutionError(prompt_id, {}, entry)
    return None
