"""Custom node discovery and import, with failure isolation.

Sources, in order:

1. every ``custom_nodes`` directory given (``paths.get_custom_nodes_directories()`` normally):
   each package (a directory with ``__init__.py``) and each single ``.py`` file, sorted by name.
   Skipped: names starting with ``.`` or ``__`` (``__pycache__``, ``__init__.py``), names ending
   in ``.disabled``, other files, directories without ``__init__.py``.
2. the ``comfyui.custom_nodes`` entry point group: each entry point loads a module exposing
   ``NODE_CLASS_MAPPINGS`` (+ ``NODE_DISPLAY_NAME_MAPPINGS``, ``WEB_DIRECTORY``) and/or
   ``comfy_entrypoint``, or is itself a ``comfy_entrypoint`` function / ComfyExtension.

Each pack is imported as ``custom_nodes.<entry name>`` (the directory name, or the file name
without ``.py``; suffixed with a hash of its path if a pack of another folder already uses that
name). ``custom_nodes`` is a package whose ``__path__`` lists the custom node directories, as
the namespace package ``custom_nodes`` is in a ComfyUI checkout: a pack's relative imports reach
sub-folders without ``__init__.py`` (namespace packages under the pack) and ``import
custom_nodes.<Pack>.<module>`` works. Like ComfyUI, the loader does not put a pack's directory on
``sys.path``; packs that want that do it themselves. An exception while importing or registering is logged with the traceback
and recorded in ``LoadResult.error``; other packs still load. Custom nodes cannot replace
nodes that were registered before loading started (the built-ins), like ComfyUI.

Selection (``--disable-all-custom-nodes``, ``--whitelist-custom-nodes``,
``--blacklist-custom-nodes``): with ``disable_all`` only whitelisted packs load; the blacklist
(shell globs) always wins. Pack names are the directory name, the file name with or without
``.py``, or the entry point name.
"""
from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import logging
import os
import sys
import time
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Iterable

from comfyui import compat

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "comfyui.custom_nodes"


@dataclass
class LoadResult:
    name: str                       # pack name: directory / file stem / entry point name
    source: str                     # "directory" | "file" | "entry_point"
    path: str | None = None         # pack directory or file (None for entry points)
    module_name: str | None = None  # key in sys.modules
    python_module: str | None = None  # what object_info reports ("custom_nodes.<Pack>")
    nodes: list[str] = field(default_factory=list)
    web_directory: str | None = None
    error: str | None = None        # traceback text when import/registration failed
    skipped: str | None = None      # why the pack was not imported
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None


# ------------------------------------------------------------------------------------------
# selection
# ------------------------------------------------------------------------------------------

def _matches(names: Iterable[str], patterns: Iterable[str] | None) -> bool:
    pats = [p for p in (patterns or []) if p]
    return any(fnmatch.fnmatchcase(n, p) or n == p for n in names for p in pats)


def _skip_reason(names: list[str], disable_all: bool, whitelist, blacklist) -> str | None:
    if _matches(names, blacklist):
        return "blacklisted"
    if disable_all and not _matches(names, whitelist):
        return "all custom nodes disabled"
    return None


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def _resolve(value: Any) -> Any:
    """Await coroutines from sync code, even when called inside a running event loop."""
    if not inspect.isawaitable(value):
        return value

    async def wait():
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wait()).result()


PARENT_PACKAGE = "custom_nodes"


def _parent_package(directories: list[str]) -> types.ModuleType:
    """The ``custom_nodes`` package in ``sys.modules``, its ``__path__`` extended by
    ``directories`` (a module of that name from elsewhere is replaced)."""
    parent = sys.modules.get(PARENT_PACKAGE)
    if parent is None or not getattr(parent, "_comfyui_custom_nodes", False):
        parent = types.ModuleType(PARENT_PACKAGE, "Custom node packs (each a sub-module).")
        parent.__path__ = []
        parent.__package__ = PARENT_PACKAGE
        parent.__spec__ = importlib.machinery.ModuleSpec(PARENT_PACKAGE, None, is_package=True)
        parent.__spec__.submodule_search_locations = parent.__path__
        parent._comfyui_custom_nodes = True
        sys.modules[PARENT_PACKAGE] = parent
    for directory in directories:
        if directory not in parent.__path__:
            parent.__path__.append(directory)
    return parent


def _unique_module_name(pack: str, path: str) -> str:
    name = f"{PARENT_PACKAGE}.{pack}"
    existing = sys.modules.get(name)
    if existing is None or _module_origin(existing) == os.path.abspath(path):
        return name
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    return f"{name}_{digest}"


def _module_origin(module: types.ModuleType) -> str | None:
    f = getattr(module, "__file__", None)
    if not f:
        return None
    f = os.path.abspath(f)
    return os.path.dirname(f) if os.path.basename(f) == "__init__.py" else f


def _import_path(module_name: str, path: str) -> types.ModuleType:
    """Import a package directory or a single .py file under ``module_name``."""
    is_pkg = os.path.isdir(path)
    init = os.path.join(path, "__init__.py") if is_pkg else path
    spec = importlib.util.spec_from_file_location(
        module_name, init, submodule_search_locations=[path] if is_pkg else None)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot create an import spec for {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    parent, _, child = module_name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


def _is_extension(obj: Any) -> bool:
    return hasattr(obj, "get_node_list") and callable(getattr(obj, "get_node_list"))


class _Registrar:
    """Registers what a module exports, skipping names that existed before loading started."""

    def __init__(self, registry: Any):
        self.registry = registry
        self.protected = set(registry.nodes.keys())

    def _mappings(self, mappings: dict, display: dict | None, python_module: str,
                  result: LoadResult, errors: list[str]) -> None:
        for name, cls in mappings.items():
            if name in self.protected:
                log.warning("custom node pack %s: not replacing built-in node %s", result.name, name)
                continue
            try:
                self.registry.register_mappings({name: cls}, {name: display[name]} if display and name in display else None,
                                                python_module=python_module)
                result.nodes.append(name)
            except Exception:
                errors.append(f"node {name}: {traceback.format_exc()}")

    def _extension(self, extension: Any, python_module: str, result: LoadResult, errors: list[str]) -> None:
        if inspect.isclass(extension):
            extension = extension()
        if not _is_extension(extension):
            raise TypeError(f"comfy_entrypoint must return a ComfyExtension, got {type(extension).__name__}")
        on_load = getattr(extension, "on_load", None)
        if on_load is not None:
            _resolve(on_load())
        for cls in _resolve(extension.get_node_list()):
            name = _schema_node_id(cls)
            if name in self.protected:
                log.warning("custom node pack %s: not replacing built-in node %s", result.name, name)
                continue
            try:
                node = self.registry.register_schema_node(cls, python_module)
                result.nodes.append(node.name)
            except Exception:
                errors.append(f"node {name or cls!r}: {traceback.format_exc()}")

    def module(self, module: Any, python_module: str, result: LoadResult, base_dir: str | None) -> None:
        errors: list[str] = []
        web = getattr(module, "WEB_DIRECTORY", None)
        if web and base_dir:
            web_dir = os.path.abspath(os.path.join(base_dir, str(web)))
            if os.path.isdir(web_dir):
                self.registry.web_directories[result.name] = web_dir
                result.web_directory = web_dir
            else:
                log.warning("custom node pack %s: WEB_DIRECTORY %s is not a directory", result.name, web_dir)
        found = False
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
        if isinstance(mappings, dict):
            found = True
            self._mappings(mappings, getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None), python_module, result, errors)
        entry = getattr(module, "comfy_entrypoint", None)
        if entry is not None:
            found = True
            self._extension(_resolve(entry()) if callable(entry) else entry, python_module, result, errors)
        if not found and _is_extension(module):
            found = True
            self._extension(module, python_module, result, errors)
        if not found:
            if callable(module) and not isinstance(module, types.ModuleType):
                # an entry point naming a comfy_entrypoint function directly
                self._extension(_resolve(module()), python_module, result, errors)
            elif result.web_directory is None:
                log.warning("custom node pack %s has no NODE_CLASS_MAPPINGS or comfy_entrypoint", result.name)
        if errors:
            raise _RegistrationErrors("\n".join(errors))


class _RegistrationErrors(Exception):
    pass


def _schema_node_id(cls: Any) -> str | None:
    try:
        schema = cls.GET_SCHEMA() if hasattr(cls, "GET_SCHEMA") else cls.define_schema()
        return getattr(schema, "node_id", None)
    except Exception:
        return None


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------

def _candidates(directory: str) -> list[tuple[str, str, str | None]]:
    """(pack name, path, skip reason) for every entry of a custom_nodes directory."""
    out = []
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return out
    except OSError as e:
        log.warning("cannot list custom nodes directory %s: %s", directory, e)
        return out
    for entry in entries:
        path = os.path.join(directory, entry)
        if entry.startswith(".") or entry.startswith("__"):
            continue
        if entry.endswith(".disabled"):
            out.append((entry, path, "disabled (.disabled suffix)"))
            continue
        if os.path.isdir(path):
            if os.path.isfile(os.path.join(path, "__init__.py")):
                out.append((entry, path, None))
            else:
                out.append((entry, path, "not a package (no __init__.py)"))
        elif entry.endswith(".py") and os.path.isfile(path):
            out.append((entry[:-3], path, None))
    return out


def _load_one_path(registrar: _Registrar, name: str, path: str, source: str,
                   disable_all: bool, whitelist, blacklist) -> LoadResult:
    result = LoadResult(name=name, source=source, path=os.path.abspath(path))
    select_names = [name, os.path.basename(path)]
    reason = _skip_reason(select_names, disable_all, whitelist, blacklist)
    if reason:
        result.skipped = reason
        log.info("skipping custom node pack %s: %s", name, reason)
        return result
    result.python_module = f"custom_nodes.{name}"
    result.module_name = _unique_module_name(name, path)
    t0 = time.perf_counter()
    try:
        module = _import_path(result.module_name, result.path)
        base_dir = result.path if source == "directory" else os.path.dirname(result.path)
        registrar.module(module, result.python_module, result, base_dir)
    except (Exception, SystemExit) as e:
        result.error = "".join(traceback.format_exception(e)) if not isinstance(e, _RegistrationErrors) else str(e)
        log.error("Cannot import custom node pack %s (%s, module %s):\n%s",
                  name, result.path, result.module_name, result.error)
    result.seconds = time.perf_counter() - t0
    return result


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen = set()
    out = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            out.append(ep)
    return sorted(out, key=lambda e: e.name)


def _load_entry_point(registrar: _Registrar, ep: importlib.metadata.EntryPoint,
                      disable_all: bool, whitelist, blacklist) -> LoadResult:
    result = LoadResult(name=ep.name, source="entry_point", module_name=ep.module)
    dist = getattr(getattr(ep, "dist", None), "name", None)
    reason = _skip_reason([ep.name, ep.module] + ([dist] if dist else []), disable_all, whitelist, blacklist)
    if reason:
        result.skipped = reason
        log.info("skipping custom node entry point %s: %s", ep.name, reason)
        return result
    result.python_module = f"custom_nodes.{ep.name}"
    t0 = time.perf_counter()
    try:
        obj = ep.load()
        module = sys.modules.get(ep.module)
        base_dir = None
        if module is not None and getattr(module, "__file__", None):
            base_dir = os.path.dirname(os.path.abspath(module.__file__))
            result.path = base_dir if os.path.basename(module.__file__) == "__init__.py" else os.path.abspath(module.__file__)
        registrar.module(obj, result.python_module, result, base_dir)
    except (Exception, SystemExit) as e:
        result.error = "".join(traceback.format_exception(e)) if not isinstance(e, _RegistrationErrors) else str(e)
        log.error("Cannot load custom node entry point %s (%s):\n%s", ep.name, ep.value, result.error)
    result.seconds = time.perf_counter() - t0
    return result


def load_custom_nodes(registry: Any, directories: Iterable[str | os.PathLike] | None = None, *,
                      disable_all: bool = False, whitelist: Iterable[str] | None = None,
                      blacklist: Iterable[str] | None = None, entry_points: bool = True) -> list[LoadResult]:
    """Import custom node packs into ``registry``; returns one LoadResult per pack found.

    ``directories=None`` means ``comfyui.paths.get_custom_nodes_directories()``. Installs the
    compat module names (``folder_paths``, ``comfy.*``, ``server``, ``nodes`` ...) first and
    points ``nodes.NODE_CLASS_MAPPINGS`` at ``registry``.
    """
    from comfyui import paths

    if directories is None:
        directories = paths.get_custom_nodes_directories()
    # ComfyUI creates the input directory before custom nodes load (folder_paths does at
    # import); packs list it at import time or in INPUT_TYPES
    os.makedirs(paths.get_input_directory(), exist_ok=True)
    directories = [os.path.abspath(os.fspath(d)) for d in directories]
    compat.install()
    compat.set_registry(registry)
    _parent_package(directories)
    whitelist = list(whitelist or [])
    blacklist = list(blacklist or [])
    registrar = _Registrar(registry)
    results: list[LoadResult] = []
    seen_dirs: set[str] = set()
    for directory in directories:
        if directory in seen_dirs:
            continue
        seen_dirs.add(directory)
        for name, path, skip in _candidates(directory):
            if skip:
                results.append(LoadResult(name=name, source="directory" if os.path.isdir(path) else "file",
                                          path=os.path.abspath(path), skipped=skip))
                continue
            source = "directory" if os.path.isdir(path) else "file"
            results.append(_load_one_path(registrar, name, path, source, disable_all, whitelist, blacklist))
    if entry_points:
        try:
            eps = _entry_points()
        except Exception:  # broken metadata of some installed distribution
            log.exception("cannot enumerate %s entry points", ENTRY_POINT_GROUP)
            eps = []
        for ep in eps:
            results.append(_load_entry_point(registrar, ep, disable_all, whitelist, blacklist))
    _log_summary(results)
    return results


def _log_summary(results: list[LoadResult]) -> None:
    loaded = [r for r in results if r.skipped is None]
    if not loaded:
        return
    lines = ["Import times for custom nodes:"]
    for r in sorted(loaded, key=lambda r: r.seconds):
        lines.append(f"  {r.seconds:6.1f} seconds{' (IMPORT FAILED)' if r.error else ''}: {r.path or r.name}")
    log.info("\n".join(lines))
