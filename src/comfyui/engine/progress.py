"""Progress, preview and interrupt hooks that node code calls while it runs.

The executor sets a per-task context (prompt id, node id, hooks); node code only
calls ``ProgressBar`` / ``throw_if_interrupted`` and never needs to know who listens.
"""
from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import runtime


class InterruptProcessingException(Exception):
    """Raised inside node code when the running prompt has been interrupted."""


@dataclass
class NodeContext:
    prompt_id: str
    node_id: str
    display_node_id: str
    real_node_id: str
    parent_node_id: str | None
    # (value, max, preview, node_id) -> None; preview is None or ("PNG"|"JPEG", PIL.Image, max_size)
    on_progress: Callable[[float, float, Any], None] | None = None
    on_text: Callable[[str], None] | None = None
    interrupt_flag: threading.Event = field(default_factory=threading.Event)
    # the prompt's own latent preview method (the frontend's "Live preview method" setting,
    # extra_data.preview_method); None: the server's --preview-method
    preview_method: str | None = None


_current: contextvars.ContextVar[NodeContext | None] = contextvars.ContextVar("comfyui_node_context", default=None)


def current_context() -> NodeContext | None:
    return _current.get()


def set_context(ctx: NodeContext | None) -> contextvars.Token:
    return _current.set(ctx)


def reset_context(token: contextvars.Token) -> None:
    _current.reset(token)


def interrupt_requested() -> bool:
    ctx = _current.get()
    if ctx is not None and ctx.interrupt_flag.is_set():
        return True
    return runtime.current().interrupt.is_set()


def global_interrupt_requested() -> bool:
    """The active runtime's interrupt (ComfyUI's ``interrupt_current_processing``), which stops
    whatever prompt is running in it."""
    return runtime.current().interrupt.is_set()


def throw_if_interrupted() -> None:
    if interrupt_requested():
        raise InterruptProcessingException()


def request_global_interrupt(value: bool = True) -> None:
    if value:
        runtime.current().interrupt.set()
    else:
        runtime.current().interrupt.clear()


def report_progress(value: float, total: float, preview: Any = None, node_id: str | None = None) -> None:
    ctx = _current.get()
    if ctx is not None and ctx.on_progress is not None:
        ctx.on_progress(value, total, preview, node_id)


def report_text(text: str, node_id: str | None = None) -> None:
    ctx = _current.get()
    if ctx is not None and ctx.on_text is not None:
        ctx.on_text(text, node_id)


class ProgressBar:
    """ComfyUI's ``comfy.utils.ProgressBar``: ``update(n)`` / ``update_absolute(value, total, preview)``."""

    def __init__(self, total: int, node_id: str | None = None):
        self.total = total
        self.current = 0
        self.node_id = node_id

    def update_absolute(self, value: float, total: float | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        throw_if_interrupted()
        report_progress(self.current, self.total, preview, self.node_id)

    def update(self, value: float) -> None:
        self.update_absolute(self.current + value)
