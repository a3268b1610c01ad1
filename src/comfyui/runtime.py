"""Runtime: the state one engine owns, and which runtime is active where.

ComfyUI keeps its settings, folder map, device policy, loaded models and interrupt flag in
module globals. Here they live in a :class:`Runtime`; every :class:`~comfyui.engine.Engine`
made from a config gets its own, so two engines in one process (embedded clients, tests) never
share a folder map, a model cache or an interrupt. The module-level APIs that node code calls
(``comfyui.paths`` / ``folder_paths``, ``comfyui.models.memory`` / ``comfy.model_management``,
``comfyui.config.current()`` / ``comfy.cli_args.args``, the interrupt functions of
``comfyui.engine.progress``) are views onto the *active* runtime:

* the one made active in the current context (a context variable): the engine's worker thread,
  its validation and custom-node loading, and the server's request handlers run with their
  engine's runtime active;
* otherwise the process default, which the ``comfyui`` command replaces with its engine's
  runtime (:func:`make_default`) so that threads a custom node starts see it too.

This module imports nothing from the package at import time; the parts that need torch are
created on first use.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config
    from .models.memory import MemoryManager
    from .models.sd import LoadedFileCache
    from .paths import Folders

__all__ = ["Runtime", "current", "make_default", "method_view", "attribute_view"]


class Runtime:
    """Settings, folders, device policy, loaded models and the interrupt flag of one engine."""

    def __init__(self, config: "Config | None" = None) -> None:
        from . import paths
        from .config import Config

        self.config: Config = config if config is not None else Config()
        self.folders: Folders = paths.Folders()
        if config is not None:
            self.folders.configure(**config.folder_settings())
        # Set by an interrupt that is not aimed at one prompt (ComfyUI's
        # interrupt_current_processing); the engine clears it when a prompt starts.
        self.interrupt = threading.Event()
        self._lock = threading.Lock()
        self._memory: MemoryManager | None = None
        self._model_files: LoadedFileCache | None = None

    @property
    def memory(self) -> "MemoryManager":
        """Device policy and the loaded-models list (imports torch on first use)."""
        if self._memory is None:
            with self._lock:
                if self._memory is None:
                    from .models.memory import MemoryManager

                    self._memory = MemoryManager(self.config)
        return self._memory

    @property
    def model_files(self) -> "LoadedFileCache":
        """Model files already read by the loaders, shared by nodes that load the same file."""
        if self._model_files is None:
            with self._lock:
                if self._model_files is None:
                    from .models.sd import LoadedFileCache

                    self._model_files = LoadedFileCache()
        return self._model_files

    def loaded_model_paths(self) -> set[str]:
        """Real paths of the model files this runtime holds loaded (none before any loader ran;
        torch is not imported for the answer)."""
        return set() if self._model_files is None else self._model_files.loaded_paths()

    def free_models(self, unload_models: bool, free_memory: bool) -> None:
        """``/free``: offload loaded models, and with ``free_memory`` forget loaded files and
        give cached device memory back. Does nothing when no model code ever ran."""
        if self._memory is None:
            return
        if unload_models or free_memory:
            self._memory.unload_all_models()
        if free_memory and self._model_files is not None:
            self._model_files.clear()
        self._memory.soft_empty_cache()

    @contextlib.contextmanager
    def active(self) -> Iterator["Runtime"]:
        """Make this runtime the active one in the current context for the ``with`` block."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)

    def activate(self) -> None:
        """Make this runtime active for the rest of the current thread (a worker's start)."""
        _active.set(self)


_active: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar("comfyui_runtime", default=None)
_default: Runtime | None = None
_default_lock = threading.Lock()


def current() -> Runtime:
    """The active runtime: the context's, else the process default."""
    rt = _active.get()
    if rt is not None:
        return rt
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Runtime()
    return _default


def make_default(rt: Runtime | None) -> Runtime | None:
    """Make ``rt`` the process default (the ``comfyui`` command's one engine); returns the one
    it replaces (None: a fresh one would have been made on first use)."""
    global _default
    previous, _default = _default, rt
    return previous


def method_view(part: str, cls: type, name: str) -> Callable[..., Any]:
    """A module-level function calling ``cls.<name>`` on the active runtime's ``part``
    (``"folders"``, ``"memory"``): how ComfyUI's module APIs stay views onto the engine."""
    method = getattr(cls, name)

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        return method(getattr(current(), part), *args, **kwargs)

    return call


def attribute_view(module: str, part: str, names: frozenset[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that answers ``names`` from the active runtime's ``part`` at
    each access (ComfyUI's module globals such as ``folder_paths.models_dir``)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(getattr(current(), part), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
