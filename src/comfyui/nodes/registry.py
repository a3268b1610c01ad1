"""NodeRegistry: every node type the engine can run, from built-in packs, custom node
directories and entry points, as NodeDefs."""
from __future__ import annotations

import asyncio
import importlib
import json
import logging
import pkgutil
from typing import Any, Iterable

from .. import paths
from .classic import from_classic
from .model import NodeDef

log = logging.getLogger(__name__)


class NodeRegistry:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeDef] = {}
        # Pack name -> absolute path of its WEB_DIRECTORY (served at /extensions/<pack>/).
        self.web_directories: dict[str, str] = {}
        self.custom_node_results: list = []  # custom_nodes.LoadResult of each pack loaded
        # Bumped on every change so consumers (object_info JSON cache) can invalidate.
        self.version = 0
        # (version, paths.listing_generation(), object_info, its JSON)
        self._object_info_cache: tuple[int, int, dict, bytes] | None = None

    # ---- registration ----
    def register(self, node: NodeDef) -> None:
        self.nodes[node.name] = node
        self.version += 1

    def register_classic(self, name: str, cls: type, display_name: str | None = None, python_module: str = "nodes") -> NodeDef:
        node = from_classic(name, cls, display_name, python_module)
        self.register(node)
        return node

    def register_mappings(self, mappings: dict, display_names: dict | None = None, python_module: str = "nodes") -> list[str]:
        display_names = display_names or {}
        added = []
        for name, cls in mappings.items():
            if _is_schema_node(cls):
                self.register_schema_node(cls, python_module, name=name, display_name=display_names.get(name))
            else:
                self.register_classic(name, cls, display_names.get(name), python_module)
            added.append(name)
        return added

    def register_schema_node(self, cls: type, python_module: str = "nodes", name: str | None = None, display_name: str | None = None) -> NodeDef:
        from .io import node_def_from_schema  # schema API adapter

        node = node_def_from_schema(cls, python_module=python_module, name=name, display_name=display_name)
        self.register(node)
        return node

    def register_extension(self, extension: Any, python_module: str) -> list[str]:
        """A schema-API ComfyExtension: ``await extension.get_node_list()``."""
        on_load = getattr(extension, "on_load", None)
        if on_load is not None:  # upstream calls it before asking for the nodes
            _run(on_load())
        node_list = _run(extension.get_node_list())
        return [self.register_schema_node(cls, python_module).name for cls in node_list]

    def register_module(self, module: Any, python_module: str) -> list[str]:
        """A module exporting NODE_CLASS_MAPPINGS (+ NODE_DISPLAY_NAME_MAPPINGS) or comfy_entrypoint."""
        added: list[str] = []
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
        if mappings:
            added += self.register_mappings(mappings, getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None), python_module)
        entry = getattr(module, "comfy_entrypoint", None)
        if entry is not None:
            added += self.register_extension(_run(entry()), python_module)
        return added

    def load_builtins(self) -> None:
        """Load every module of comfyui.nodes.builtin that exports nodes."""
        from . import builtin

        for info in sorted(pkgutil.iter_modules(builtin.__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{builtin.__name__}.{info.name}")
            self.register_module(module, "nodes")

    def load_api_nodes(self) -> None:
        """Register the API nodes (comfyui.api_nodes): their own group, left out by --disable-api-nodes."""
        from ..api_nodes import node_classes

        for cls in node_classes():
            self.register_schema_node(cls, "comfy_api_nodes")

    # ---- queries ----
    def get(self, class_type: str) -> NodeDef | None:
        return self.nodes.get(class_type)

    def __contains__(self, class_type: str) -> bool:
        return class_type in self.nodes

    def class_mappings(self) -> dict[str, type]:
        return {name: node.cls for name, node in self.nodes.items()}

    def display_name_mappings(self) -> dict[str, str]:
        return {name: node.display_name for name, node in self.nodes.items() if node.display_name}

    def refresh_inputs(self, names: Iterable[str] | None = None) -> bool:
        """Re-evaluate INPUT_TYPES (all nodes, or ``names``); bumps the version on a change."""
        changed = False
        for name in (self.nodes if names is None else names):
            node = self.nodes.get(name)
            if node is None:
                continue
            try:
                changed |= node.refresh_inputs()
            except Exception:  # a custom node's INPUT_TYPES failing keeps its last good spec
                log.exception("INPUT_TYPES failed for node %s", name)
        if changed:
            self.version += 1
        return changed

    def object_info(self) -> dict:
        return self._object_info()[0]

    def object_info_json(self) -> bytes:
        """Serialized object_info with the file lists as they are on disk now (as ComfyUI,
        which calls every INPUT_TYPES per request); cached until a node is registered or a
        listed folder changes, so an unchanged call costs a few stat() calls."""
        return self._object_info()[1]

    def _object_info(self) -> tuple[dict, bytes]:
        # the folders' identity is part of the key: a registry may serve engines (runtimes)
        # with different folders one after another (tests share one registry)
        folders = paths.active_folders()
        generation = (id(folders), folders.listing_generation())
        cached = self._object_info_cache
        if cached is not None and cached[1] == generation and cached[0] == self.version:
            return cached[2], cached[3]
        if cached is None or cached[1] != generation:
            # INPUT_TYPES lists model and input files: ask again (the first time too, as files
            # may have changed since the nodes were registered); bumps the version on a change
            self.refresh_inputs()
        if cached is None or cached[0] != self.version:
            info = {}
            for name, node in self.nodes.items():
                try:
                    info[name] = node.object_info()
                except Exception:  # one broken custom node must not break the node library
                    log.exception("object_info failed for node %s", name)
            cached = (self.version, generation, info, json.dumps(info).encode())
        else:  # a folder was touched but no node's inputs changed
            cached = (self.version, generation, cached[2], cached[3])
        self._object_info_cache = cached
        return cached[2], cached[3]

    @classmethod
    def with_builtins(cls, api_nodes: bool = True) -> "NodeRegistry":
        registry = cls()
        registry.load_builtins()
        if api_nodes:
            registry.load_api_nodes()
        return registry

    def names(self) -> Iterable[str]:
        return self.nodes.keys()


def _is_schema_node(cls: Any) -> bool:
    return isinstance(cls, type) and hasattr(cls, "define_schema")


def _run(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(value)
        # Called from inside a running loop: run on a private loop in a helper thread.
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, value).result()
    return value
