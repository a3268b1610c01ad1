"""Deferred imports for the built-in node modules.

``torch = lazy("torch")`` binds a stand-in that imports the real module on first attribute
access (``torch.zeros``, ``F.interpolate``, ``sdm.load_checkpoint_guess_config``), so the
registry can import every built-in node module -- and the server start -- without torch,
numpy or comfyui.models / comfyui.sampling; they load when a node actually runs.
This module exports no nodes (the registry skips it).
"""
from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stand-in for a module; attribute get/set/delete go to the real one, imported on first use."""

    __slots__ = ("_lazy_name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_lazy_name", name)

    def _lazy_load(self) -> ModuleType:
        return importlib.import_module(object.__getattribute__(self, "_lazy_name"))

    def __getattr__(self, attr: str):
        return getattr(self._lazy_load(), attr)

    def __setattr__(self, attr: str, value) -> None:
        setattr(self._lazy_load(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._lazy_load(), attr)

    def __dir__(self):
        return dir(self._lazy_load())

    def __repr__(self) -> str:
        return f"<lazy module {object.__getattribute__(self, '_lazy_name')!r}>"


def lazy(name: str) -> LazyModule:
    return LazyModule(name)
