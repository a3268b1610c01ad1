"""``import nodes`` for custom nodes.

``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS`` / ``EXTENSION_WEB_DIRS`` are live views
of the registry chosen with :func:`comfyui.compat.set_registry` (assigning a node class or a web
directory registers it, as in ComfyUI); ``nodes.<NodeName>`` (e.g.
``nodes.CLIPTextEncode``) returns that node's class.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Iterator

from comfyui import compat as _compat
from comfyui.engine import progress as _progress

MAX_RESOLUTION = 16384


class _RegistryView(MutableMapping):
    """A live view of the registry's nodes (or web directories). Writing to it registers, as
    writing to ComfyUI's module-level dicts does; deleting is not supported."""

    def __init__(self, getter, setter=None):
        self._getter = getter
        self._setter = setter

    def _registry(self) -> Any:
        reg = _compat.get_registry()
        if reg is None:
            raise RuntimeError("no node registry yet: custom nodes are not being loaded")
        return reg

    def _data(self) -> dict:
        reg = _compat.get_registry()
        return self._getter(reg) if reg is not None else {}

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if self._setter is None:
            raise TypeError("this mapping is read-only in comfyui")
        self._setter(self._registry(), key, value)

    def __delitem__(self, key: str) -> None:
        raise TypeError("removing entries is not supported in comfyui")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return f"<live view of {len(self)} entries>"


def _register_node(registry: Any, name: str, cls: type) -> None:
    registry.register_mappings({name: cls}, python_module=getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"))


def _set_web_directory(registry: Any, name: str, path: str) -> None:
    registry.web_directories[name] = str(path)


NODE_CLASS_MAPPINGS: MutableMapping[str, type] = _RegistryView(
    lambda r: {n: d.cls for n, d in r.nodes.items()}, _register_node)
NODE_DISPLAY_NAME_MAPPINGS: MutableMapping[str, str] = _RegistryView(
    lambda r: {n: d.display_name for n, d in r.nodes.items() if getattr(d, "display_name", None)})
EXTENSION_WEB_DIRS: MutableMapping[str, str] = _RegistryView(lambda r: dict(r.web_directories), _set_web_directory)


def interrupt_processing(value: bool = True) -> None:
    _progress.request_global_interrupt(value)


def before_node_execution() -> None:
    _progress.throw_if_interrupted()


def common_ksampler(*args: Any, **kwargs: Any) -> Any:
    """What the KSampler node runs: ``(model, seed, steps, cfg, sampler_name, scheduler, positive,
    negative, latent, denoise=1.0, ...) -> ({"samples": ...},)``."""
    from comfyui.sampling.samplers import common_ksampler as impl

    return impl(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # `from nodes import KSampler` / `nodes.VAEDecode`: classes of registered nodes
    reg = _compat.get_registry()
    if reg is not None and not name.startswith("__"):
        node = reg.nodes.get(name)
        if node is not None:
            return node.cls
    raise AttributeError(f"module 'nodes' has no attribute {name!r}")
