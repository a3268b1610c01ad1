"""``import nodes`` for custom nodes.

``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS`` are live read-only views of the
registry chosen with :func:`comfyui.compat.set_registry`; ``nodes.<NodeName>`` (e.g.
``nodes.CLIPTextEncode``) returns that node's class.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

from comfyui import compat as _compat
from comfyui.engine import progress as _progress

MAX_RESOLUTION = 16384


class _RegistryView(Mapping):
    def __init__(self, getter):
        self._getter = getter

    def _data(self) -> dict:
        reg = _compat.get_registry()
        return self._getter(reg) if reg is not None else {}

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return f"<live view of {len(self)} nodes>"


NODE_CLASS_MAPPINGS: Mapping[str, type] = _RegistryView(lambda r: {n: d.cls for n, d in r.nodes.items()})
NODE_DISPLAY_NAME_MAPPINGS: Mapping[str, str] = _RegistryView(
    lambda r: {n: d.display_name for n, d in r.nodes.items() if getattr(d, "display_name", None)})
EXTENSION_WEB_DIRS: Mapping[str, str] = _RegistryView(lambda r: dict(r.web_directories))


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
