"""The web frontend and the static trees around it.

* ``GET /``: ``index.html`` of the frontend (``Cache-Control: no-cache``, ``Pragma: no-cache``,
  ``Expires: 0``). The frontend root is ``--front-end-root`` when given, otherwise the
  ``static`` directory of the ``comfyui-frontend-package`` wheel.
* Every top-level entry of that root (``assets/``, ``scripts/``, ``fonts/``, ``cursor/``,
  ``index.html``, ``materialdesignicons.min.css`` ...) is served at the same path, once, bare
  (never under ``/api``). There is **no SPA catch-all**: unknown paths are 404, so ``/user.css``
  (linked by ``index.html``) is a harmless 404 unless the root ships one.
* ``GET /extensions``: the JS files to load: the frontend's own ``extensions/**.js`` plus
  ``/extensions/<pack>/<file>.js`` for every custom-node ``WEB_DIRECTORY``
  (``registry.web_directories``). ``/extensions/<pack>/...`` serves those trees;
  ``/extensions/core/...`` (and any name that is not a pack) comes from the frontend root.
* ``/templates/...`` from ``comfyui-workflow-templates`` (>= 0.3 via its manifest, older ones
  from their ``templates/`` directory) and ``/docs/...`` from ``comfyui-embedded-docs``;
  a 404 when the package is not installed.
* ``GET /workflow_templates`` ``{pack: [workflow names]}`` from custom nodes'
  ``example_workflows`` (or ``example``/``examples``/``workflow``/``workflows``) folders, the
  files under ``/api/workflow_templates/<pack>/<file>``.
* ``GET /i18n``: custom nodes' ``locales/<lang>/{main,nodeDefs,commands,settings}.json``.
* ``GET /global_subgraphs[/{id}]``: blueprints from custom nodes' ``subgraphs/*.json``.

All file lookups go through :func:`comfyui.paths.safe_join`; an escape is 403 (see
``routes_files``).
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.resources
import json
import logging
import os
import urllib.parse
from functools import lru_cache
from pathlib import Path

from aiohttp import web

from comfyui import paths
from comfyui.paths import PathEscapeError, safe_join

from .context import ServerContext, add_route, error_response, json_response
from .routes_files import file_response, forbidden

log = logging.getLogger(__name__)

NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "0"}
# top-level names of the frontend root that are not served from it
_RESERVED_TOP_LEVEL = frozenset({"extensions", "api", "internal", "ws", "templates", "docs"})
EXAMPLE_WORKFLOW_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")


# --------------------------------------------------------------------------- locations


def default_frontend_root() -> str | None:
    try:
        pkg = importlib.resources.files("comfyui_frontend_package")
    except ModuleNotFoundError:
        return None
    root = Path(str(pkg)) / "static"
    return str(root) if (root / "index.html").is_file() else None


def frontend_root(ctx: ServerContext) -> str | None:
    root = ctx.setting("front_end_root")
    if root:
        root = os.path.abspath(os.path.expanduser(str(root)))
        if not os.path.isfile(os.path.join(root, "index.html")):
            log.warning("--front-end-root %s has no index.html", root)
        return root
    return default_frontend_root()


def web_directories(ctx: ServerContext) -> dict[str, str]:
    registry = getattr(ctx.engine, "registry", None)
    dirs = getattr(registry, "web_directories", None) or {}
    out = {}
    for name, d in dirs.items():
        if isinstance(name, str) and name and "/" not in name and d and os.path.isdir(d):
            out[name] = str(d)
    return out


def custom_node_packs() -> list[Path]:
    """Every pack directory under the custom_nodes folders."""
    out = []
    for base in paths.get_custom_nodes_directories():
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.name.startswith((".", "__")) or not e.is_dir():
                continue
            out.append(Path(e.path))
    return out


def _serve_under(root: str | os.PathLike, rel: str, *, headers: dict | None = None) -> web.StreamResponse:
    """Serve ``root/rel``. Dot-files and dot-directories (``.env``, ``.git/``) are never served
    from these trees: a custom node's WEB_DIRECTORY is sometimes the pack itself."""
    if any(seg.startswith(".") and seg not in (".", "..") for seg in rel.replace("\\", "/").split("/")):
        return error_response("not found", 404)
    try:
        p = safe_join(root, rel)
    except PathEscapeError as e:
        return forbidden(e)
    if not p.is_file():
        return error_response("not found", 404)
    return file_response(p, headers=headers)


# --------------------------------------------------------------------------- frontend


def _index_handler(root: str):
    async def handle_index(request: web.Request) -> web.StreamResponse:
        p = os.path.join(root, "index.html")
        if not os.path.isfile(p):
            return error_response("frontend not installed (comfyui-frontend-package)", 404)
        return file_response(p, content_type="text/html", headers=NO_CACHE)
    return handle_index


def _tree_handler(root: str, prefix: str):
    async def handle_tree(request: web.Request) -> web.StreamResponse:
        return _serve_under(root, prefix + "/" + request.match_info["path"])
    return handle_tree


def _file_handler(root: str, name: str):
    async def handle_file(request: web.Request) -> web.StreamResponse:
        headers = NO_CACHE if name == "index.html" else None
        return _serve_under(root, name, headers=headers)
    return handle_file


def _register_frontend(app: web.Application, ctx: ServerContext, root: str | None) -> None:
    add_route(app, "GET", "/", _index_handler(root or ""), api=False)
    if not root or not os.path.isdir(root):
        log.warning("no web frontend found; only the API is served")
        return
    for e in sorted(os.scandir(root), key=lambda e: e.name):
        # /extensions has its own handler; API names never collide with frontend files
        if e.name.startswith(".") or e.name in _RESERVED_TOP_LEVEL:
            continue
        if e.is_dir():
            add_route(app, "GET", f"/{e.name}/{{path:.*}}", _tree_handler(root, e.name), api=False)
        elif e.is_file():
            add_route(app, "GET", f"/{e.name}", _file_handler(root, e.name), api=False)


# --------------------------------------------------------------------------- extensions


def _js_files(base: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "node_modules")
        for f in sorted(filenames):
            if f.endswith(".js"):
                out.append(os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/"))
    return out


@lru_cache(maxsize=8)
def _core_extensions(root: str) -> tuple[str, ...]:
    ext_dir = os.path.join(root, "extensions")
    if not os.path.isdir(ext_dir):
        return ()
    return tuple("/extensions/" + rel for rel in _js_files(ext_dir))


async def handle_extensions(request: web.Request) -> web.Response:
    ctx: ServerContext = request.app["ctx"]
    root = frontend_root(ctx)

    def collect() -> list[str]:
        out = list(_core_extensions(root)) if root else []
        for name, d in sorted(web_directories(ctx).items()):
            for rel in _js_files(d):
                try:
                    safe_join(d, rel)  # skip files whose symlink leads outside the pack
                except PathEscapeError:
                    continue
                out.append(f"/extensions/{urllib.parse.quote(name)}/{urllib.parse.quote(rel)}")
        return out

    return json_response(await asyncio.to_thread(collect))


async def handle_extension_file(request: web.Request) -> web.StreamResponse:
    ctx: ServerContext = request.app["ctx"]
    rel = request.match_info["path"]
    pack, _, rest = rel.partition("/")
    dirs = web_directories(ctx)
    if pack != "core" and pack in dirs:
        return _serve_under(dirs[pack], rest)
    root = frontend_root(ctx)
    if not root:
        return error_response("not found", 404)
    return _serve_under(os.path.join(root, "extensions"), rel)


# --------------------------------------------------------------------------- templates & docs


@lru_cache(maxsize=1)
def _templates_source():
    """("manifest", module, {filename: template_id}) | ("dir", path) | None."""
    for modname in ("comfyui_workflow_templates_core", "comfyui_workflow_templates"):
        try:
            mod = importlib.import_module(modname)
        except Exception:  # noqa: BLE001 - not installed or broken
            continue
        if hasattr(mod, "iter_templates") and hasattr(mod, "get_asset_path"):
            try:
                index = {}
                for entry in mod.iter_templates():
                    for asset in entry.assets:
                        index.setdefault(asset.filename, entry.template_id)
                return ("manifest", mod, index)
            except Exception as e:  # noqa: BLE001
                log.warning("cannot read the workflow templates manifest: %s", e)
                continue
        d = Path(str(importlib.resources.files(modname))) / "templates"
        if d.is_dir():
            return ("dir", str(d))
    return None


async def handle_templates(request: web.Request) -> web.StreamResponse:
    rel = request.match_info["path"]
    src = _templates_source()
    if src is None:
        return error_response("workflow templates are not installed (comfyui-workflow-templates)", 404)
    if src[0] == "dir":
        return _serve_under(src[1], rel)
    _kind, mod, index = src
    template_id = index.get(rel)
    if template_id is None:
        return error_response("template file not found", 404)
    try:
        asset = Path(mod.get_asset_path(template_id, rel))
    except (FileNotFoundError, KeyError) as e:
        return error_response(f"template file not available: {e}", 404)
    base = asset
    for _ in [p for p in rel.split("/") if p]:
        base = base.parent
    return _serve_under(base, rel)


@lru_cache(maxsize=1)
def _docs_root() -> str | None:
    try:
        d = Path(str(importlib.resources.files("comfyui_embedded_docs"))) / "docs"
    except Exception:  # noqa: BLE001
        return None
    return str(d) if d.is_dir() else None


async def handle_docs(request: web.Request) -> web.StreamResponse:
    root = _docs_root()
    if root is None:
        return error_response("node docs are not installed (comfyui-embedded-docs)", 404)
    return _serve_under(root, request.match_info["path"])


# --------------------------------------------------------------------------- custom-node data


def _example_folder(pack: Path) -> Path | None:
    for name in EXAMPLE_WORKFLOW_FOLDERS:
        d = pack / name
        if d.is_dir():
            return d
    return None


def _workflow_templates() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pack in custom_node_packs():
        d = _example_folder(pack)
        if d is None:
            continue
        names = sorted(p.stem for p in d.glob("*.json") if p.is_file() and not p.name.startswith("."))
        if names:
            out[pack.name] = names
    return out


async def handle_workflow_templates(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(_workflow_templates))


async def handle_workflow_template_file(request: web.Request) -> web.StreamResponse:
    module = request.match_info["module"]
    for pack in custom_node_packs():
        if pack.name == module:
            d = _example_folder(pack)
            if d is None:
                break
            return _serve_under(d, request.match_info["path"])
    return error_response("not found", 404)


def _deep_merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def _read_json_file(root: Path, *parts: str):
    """JSON content of ``root/parts`` (None when missing, unreadable or outside ``root``)."""
    try:
        p = safe_join(root, *parts)
    except PathEscapeError:
        return None
    if not p.is_file():
        return None
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s: %s", p, e)
        return None


def _i18n() -> dict:
    out: dict = {}
    for pack in custom_node_packs():
        locales = pack / "locales"
        if not locales.is_dir():
            continue
        for lang_dir in sorted(locales.iterdir()):
            if not lang_dir.is_dir() or lang_dir.name.startswith("."):
                continue
            data: dict = {}
            main = _read_json_file(pack, "locales", lang_dir.name, "main.json")
            if isinstance(main, dict):
                data.update(main)
            for fname, key in (("nodeDefs.json", "nodeDefs"), ("commands.json", "commands"),
                               ("settings.json", "settings")):
                v = _read_json_file(pack, "locales", lang_dir.name, fname)
                if isinstance(v, dict):
                    data[key] = _deep_merge(data.get(key, {}) if isinstance(data.get(key), dict) else {}, v)
            if data:
                _deep_merge(out.setdefault(lang_dir.name, {}), data)
    return out


async def handle_i18n(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(_i18n))


def _subgraph_id(pack: str, rel: str) -> str:
    return hashlib.sha256(f"custom_node:{pack}/{rel}".encode()).hexdigest()


def _global_subgraphs(with_data: str | None = None) -> dict:
    out: dict = {}
    for pack in custom_node_packs():
        d = pack / "subgraphs"
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.json")):
            if p.name.startswith(".") or not p.is_file():
                continue
            try:
                safe_join(d, p.name)
            except PathEscapeError:
                continue
            sid = _subgraph_id(pack.name, p.name)
            if with_data is not None and sid != with_data:
                continue
            entry = {"name": p.stem, "info": {"node_pack": pack.name}}
            if with_data is not None:
                try:
                    entry["data"] = p.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
            out[sid] = entry
    return out


async def handle_global_subgraphs(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(_global_subgraphs))


async def handle_global_subgraph(request: web.Request) -> web.Response:
    sid = request.match_info["id"]
    found = await asyncio.to_thread(_global_subgraphs, sid)
    if sid not in found:
        return error_response("subgraph not found", 404)
    return json_response(found[sid])


# --------------------------------------------------------------------------- setup


def setup(app: web.Application, ctx: ServerContext) -> None:
    root = frontend_root(ctx)
    add_route(app, "GET", "/extensions", handle_extensions)
    add_route(app, "GET", "/extensions/{path:.*}", handle_extension_file, api=False)
    add_route(app, "GET", "/templates/{path:.*}", handle_templates, api=False)
    add_route(app, "GET", "/docs/{path:.*}", handle_docs, api=False)
    add_route(app, "GET", "/workflow_templates", handle_workflow_templates)
    app.router.add_route("GET", "/api/workflow_templates/{module}/{path:.*}", handle_workflow_template_file)
    ctx.routes.append(("GET", "/api/workflow_templates/{module}/{path}"))
    add_route(app, "GET", "/i18n", handle_i18n)
    add_route(app, "GET", "/global_subgraphs", handle_global_subgraphs)
    add_route(app, "GET", "/global_subgraphs/{id}", handle_global_subgraph)
    _register_frontend(app, ctx, root)
