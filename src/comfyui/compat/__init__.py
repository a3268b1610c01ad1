"""Module names that ComfyUI custom nodes import, backed by this implementation.

``install()`` puts :data:`SHIM_DIR` (``comfyui/compat/toplevel``) on ``sys.path`` so custom
nodes can import the module names they import under ComfyUI: ``folder_paths``, ``nodes``,
``server``, ``execution``, ``node_helpers``, ``latent_preview``, ``comfy.*`` (a bare ``import
comfy`` reaches ``comfy.samplers``, ``comfy.model_management``, ``comfy.utils`` ... as in a
running ComfyUI), ``comfy_extras.nodes_*`` (views of our built-in nodes), ``comfy_execution.*``
and ``comfy_api.*``. Each is a thin facade over this implementation's layers, or an alias of
one of its modules; upstream names this implementation lacks are importable and raise
:class:`comfyui.compat._unsupported.NotSupportedError` when used. Until ``install()`` none of
those generic names is importable from this package.

It stays installed (custom nodes import these modules lazily inside their functions, at run
time); ``uninstall()`` / the ``installed()`` context manager exist for tests and embedding.

``set_registry()`` chooses the NodeRegistry that ``nodes.NODE_CLASS_MAPPINGS`` shows;
``comfyui.nodes.custom_nodes.load_custom_nodes`` sets it to the registry it loads into.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Iterator

SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toplevel")

# top-level names provided by SHIM_DIR (used by uninstall() to forget imported shims)
SHIM_MODULES = ("folder_paths", "server", "nodes", "node_helpers", "latent_preview", "execution", "comfy",
                "comfy_extras", "comfy_execution", "comfy_api")

_lock = threading.Lock()
_registry: Any = None


def is_installed() -> bool:
    return SHIM_DIR in sys.path


def install() -> str:
    """Make the compat module names importable (idempotent). Returns the directory added."""
    with _lock:
        if SHIM_DIR not in sys.path:
            sys.path.insert(0, SHIM_DIR)
    return SHIM_DIR


def uninstall() -> None:
    """Remove the shim directory from sys.path and forget the shim modules already imported."""
    with _lock:
        while SHIM_DIR in sys.path:
            sys.path.remove(SHIM_DIR)
        for name in list(sys.modules):
            top = name.split(".", 1)[0]
            if top in SHIM_MODULES:
                mod = sys.modules[name]
                origin = getattr(mod, "__file__", None) or ""
                # shims live under SHIM_DIR, are aliases of comfyui modules (folder_paths, comfy.samplers...)
                # or are made without a file (upstream's comfy.ldm modules of families we do not run)
                if (origin.startswith(SHIM_DIR) or getattr(mod, "__name__", name) != name
                        or getattr(mod, "_comfyui_unsupported_module", False)):
                    del sys.modules[name]


@contextlib.contextmanager
def installed() -> Iterator[str]:
    """``with installed():`` — install for the block, then undo if it wasn't installed before."""
    was = is_installed()
    install()
    try:
        yield SHIM_DIR
    finally:
        if not was:
            uninstall()


def set_registry(registry: Any) -> None:
    """The NodeRegistry behind ``nodes.NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS``."""
    global _registry
    _registry = registry


def get_registry() -> Any:
    return _registry
