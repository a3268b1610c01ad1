"""``comfy_extras``: upstream's extra node modules, as views of our built-in nodes.

``from comfy_extras.nodes_custom_sampler import SamplerCustom`` gives the class of our built-in
node of that name (upstream's class names are its node ids), taken from the registry that
custom nodes load into. Each module also has the helper functions and classes packs import
from it, where our layers have them.
"""
from __future__ import annotations

from typing import Any, Callable

from comfyui import compat as _compat
from comfyui.compat import _unsupported


def node_classes(module: str, node_ids: list[str], extra: dict[str, str] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` giving the built-in node classes ``node_ids`` (and the upstream
    names in ``extra``, mapped to our node ids) plus ``NODE_CLASS_MAPPINGS`` of those we have.
    A node of the upstream module that comfyui lacks is an unsupported class: packs can import
    and subclass it, and building it raises NotSupportedError."""
    aliases = {**{n: n for n in node_ids}, **(extra or {})}
    missing: dict[str, type] = {}

    def registry_nodes() -> dict:
        registry = _compat.get_registry()
        if registry is None:
            from comfyui.nodes.registry import NodeRegistry

            registry = NodeRegistry.with_builtins()
            _compat.set_registry(registry)
        return registry.nodes

    def __getattr__(name: str) -> Any:
        if name == "NODE_CLASS_MAPPINGS":
            nodes = registry_nodes()
            return {n: nodes[n].cls for n in node_ids if n in nodes}
        if name in aliases:
            node = registry_nodes().get(aliases[name])
            if node is not None:
                return node.cls
            if name not in missing:
                missing[name] = _unsupported.cls(f"{module}.{name}", f"comfyui has no built-in node {aliases[name]!r}")
            return missing[name]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
