"""Users, settings and userdata: ``/users``, ``/settings[/{id}]``, ``/userdata[/{file}]``,
``/userdata/{file}/move/{dest}``, ``/v2/userdata``.

Storage: ``<user_dir>/users.json`` (multi-user names) and one directory per user,
``<user_dir>/<user_id>/`` holding ``comfy.settings.json``, ``workflows/`` and so on.

Who is the user?

* Single-user mode (default): always ``default``; the ``Comfy-User`` header is ignored.
* ``--multi-user``: the first of
    1. ``request["comfy_user"]`` when an authentication layer set it (a per-user identity);
    2. the ``Comfy-User`` header, but only when no ``--api-key`` is configured or the request
       was authenticated with it (``request["user_authenticated"]``): holding the key makes
       the caller trusted to choose among the registered users, an unauthenticated caller
       never chooses;
  and the id must be a registered user (``users.json``) that does not start with ``__``
  (reserved system users). Anything else - missing, empty, unknown - is an unknown user:
  **401** ``{"error": "Unknown user"}`` on every route of this module (the frontend reacts
  to 401 on ``/settings`` by forgetting the stored user).

Paths: file names arrive URL-encoded in one segment (``workflows%2Fa.json``); aiohttp decodes
them once and, like upstream, a value that still contains ``%`` is decoded a second time.
Every path goes through :func:`comfyui.paths.safe_join` under the user's directory; an
escape is 403. Listings never include dot-files (``workflows/.index.json``) or files whose
symlink leads outside the user's directory.

Settings POSTs: the frontend sends them without a Content-Type (so ``text/plain``) but with a
``Comfy-User`` header, which a cross-site form cannot add without a CORS preflight. A
settings body is therefore accepted when it is declared JSON *or* carries ``Comfy-User``;
other content types get 415.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from comfyui import paths
from comfyui.paths import PathEscapeError, safe_join

from .context import (
    JSONBodyError, ServerContext, add_route, error_response, is_json_content_type, json_response,
    parse_json_body, read_json,
)
from .routes_files import file_response, forbidden, make_temp_file

log = logging.getLogger(__name__)

SETTINGS_FILE = "comfy.settings.json"
USERS_FILE = "users.json"
DEFAULT_USER = "default"


class UnknownUser(Exception):
    pass


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp_file(path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class UserManager:
    """Resolves the request's user and their directory; owns users.json and settings files."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.lock = threading.RLock()

    @property
    def multi_user(self) -> bool:
        return bool(self.ctx.setting("multi_user", False))

    # ------------------------------------------------------------------ users

    def users_file(self) -> Path:
        return Path(paths.get_user_directory()) / USERS_FILE

    def users(self) -> dict[str, str]:
        try:
            with open(self.users_file(), encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("cannot read %s: %s", self.users_file(), e)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def add_user(self, name: str) -> str:
        with self.lock:
            users = self.users()
            if name in users.values():
                raise ValueError("Duplicate username.")
            base = re.sub(r"[^a-zA-Z0-9\-_]+", "-", name).lstrip("_") or "user"
            user_id = f"{base}_{uuid.uuid4()}"
            users[user_id] = name
            _atomic_write(self.users_file(), json.dumps(users, indent=2, ensure_ascii=False).encode())
            root = paths.get_public_user_directory(user_id)
            if root:
                os.makedirs(root, exist_ok=True)
            return user_id

    def user_id(self, request: web.Request) -> str:
        if not self.multi_user:
            return DEFAULT_USER
        uid = request.get("comfy_user")
        if not uid:
            if self.ctx.api_key and not request.get("user_authenticated"):
                raise UnknownUser()
            uid = request.headers.get("Comfy-User", "")
        if not uid or uid.startswith("__") or uid not in self.users():
            raise UnknownUser()
        return uid

    def user_root(self, request: web.Request, create: bool = True) -> Path:
        uid = self.user_id(request)
        root = paths.get_public_user_directory(uid)
        if root is None:
            raise UnknownUser()
        if create:
            os.makedirs(root, exist_ok=True)
        return Path(root).resolve()

    # ------------------------------------------------------------------ settings

    def settings_path(self, request: web.Request) -> Path:
        return self.user_root(request) / SETTINGS_FILE

    def load_settings(self, path: Path) -> dict:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("settings file %s unreadable (%s); starting from {}", path, e)
            return {}
        return data if isinstance(data, dict) else {}

    def save_settings(self, path: Path, settings: dict) -> None:
        _atomic_write(path, json.dumps(settings, indent=4, ensure_ascii=False).encode("utf-8"))


def _um(request: web.Request) -> UserManager:
    return request.app["ctx"].extra["user_manager"]


def _unknown_user() -> web.Response:
    return error_response("Unknown user", 401)


def _truthy(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.lower() not in ("false", "0", "no", "")


# --------------------------------------------------------------------------- /users


async def handle_get_users(request: web.Request) -> web.Response:
    um = _um(request)
    if um.multi_user:
        return json_response({"storage": "server", "users": um.users()})
    root = paths.get_public_user_directory(DEFAULT_USER)
    return json_response({"storage": "server", "migrated": bool(root and os.path.isdir(root))})


async def handle_post_users(request: web.Request) -> web.Response:
    um = _um(request)
    body = await read_json(request, default=None)
    if not isinstance(body, dict) or not isinstance(body.get("username"), str):
        return error_response("body must be {\"username\": string}", 400)
    name = body["username"].strip()
    if not name:
        return error_response("username not provided", 400)
    if len(name) > 256 or any(ord(c) < 32 for c in name):
        return error_response("invalid username", 400)
    if not um.multi_user:
        return error_response("multi-user mode is not enabled (--multi-user)", 400)
    try:
        user_id = await asyncio.to_thread(um.add_user, name)
    except ValueError as e:
        return error_response(str(e), 400)
    return json_response(user_id)


# --------------------------------------------------------------------------- /settings


async def _read_settings_body(request: web.Request) -> Any:
    """JSON body of a settings POST; ``_EMPTY`` for an empty body (see module docs)."""
    raw = await request.read()
    if not raw.strip():
        return _EMPTY
    ctype = request.headers.get("Content-Type", "")
    if not is_json_content_type(ctype) and "Comfy-User" not in request.headers:
        raise JSONBodyError(415, "Content-Type must be application/json")
    return parse_json_body(raw)


_EMPTY = object()


async def handle_get_settings(request: web.Request) -> web.Response:
    um = _um(request)
    try:
        path = um.settings_path(request)
    except UnknownUser:
        return _unknown_user()
    return json_response(await asyncio.to_thread(um.load_settings, path))


async def handle_get_setting(request: web.Request) -> web.Response:
    um = _um(request)
    try:
        path = um.settings_path(request)
    except UnknownUser:
        return _unknown_user()
    settings = await asyncio.to_thread(um.load_settings, path)
    return json_response(settings.get(request.match_info["id"]))


async def handle_post_settings(request: web.Request) -> web.Response:
    um = _um(request)
    try:
        path = um.settings_path(request)
    except UnknownUser:
        return _unknown_user()
    body = await _read_settings_body(request)
    if body is _EMPTY:
        body = {}
    if not isinstance(body, dict):
        return error_response("settings body must be a JSON object", 400)
    with um.lock:
        settings = um.load_settings(path)
        settings.update(body)
        um.save_settings(path, settings)
    return web.Response(status=200)


async def handle_post_setting(request: web.Request) -> web.Response:
    um = _um(request)
    try:
        path = um.settings_path(request)
    except UnknownUser:
        return _unknown_user()
    key = request.match_info["id"]
    body = await _read_settings_body(request)
    with um.lock:
        settings = um.load_settings(path)
        if body is _EMPTY:
            settings.pop(key, None)  # the frontend unsets migrated keys with an empty body
        else:
            settings[key] = body
        um.save_settings(path, settings)
    return web.Response(status=200)


# --------------------------------------------------------------------------- /userdata


def _decode(value: str) -> str:
    return urllib.parse.unquote(value) if "%" in value else value


class _Reject(Exception):
    def __init__(self, response: web.Response):
        self.response = response


def _user_path(request: web.Request, rel: str | None, *, allow_root: bool = False) -> tuple[Path, Path]:
    """(user root, resolved path of ``rel`` inside it). Raises _Reject with the answer."""
    um = _um(request)
    try:
        root = um.user_root(request)
    except UnknownUser:
        raise _Reject(_unknown_user())
    if rel is None:
        return root, root
    rel = _decode(rel)
    if not rel:
        raise _Reject(error_response("file name is required", 400))
    try:
        p = safe_join(root, rel)
    except PathEscapeError as e:
        raise _Reject(forbidden(e))
    if p == root and not allow_root:
        raise _Reject(error_response("a file name is required", 400))
    return root, p


def _rel(path: Path, root: Path) -> str:
    rel = os.path.relpath(path, root)
    return "" if rel == "." else rel.replace(os.sep, "/")


def _file_info(path: Path, root: Path) -> dict:
    st = path.stat()
    return {"path": _rel(path, root), "size": st.st_size, "modified": st.st_mtime,
            "created": st.st_ctime}


def _contained(path: Path, root: Path) -> bool:
    try:
        r = path.resolve()
    except OSError:
        return False
    return r == root or r.is_relative_to(root)


def _list_dir(root: Path, base: Path, recurse: bool, full_info: bool, split: bool) -> list:
    results: list[Path] = []
    if recurse:
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in filenames:
                if not f.startswith("."):
                    results.append(Path(dirpath) / f)
    else:
        for e in os.scandir(base):
            if not e.name.startswith(".") and e.is_file():
                results.append(Path(e.path))
    out: list = []
    for p in sorted(results, key=lambda x: _rel(x, base)):
        if not _contained(p, root) or not p.is_file():
            continue
        rel = _rel(p, base)
        if full_info:
            try:
                info = _file_info(p, base)
            except OSError:
                continue
            out.append(info)
        elif split:
            out.append([rel] + rel.split("/"))
        else:
            out.append(rel)
    return out


async def handle_list_userdata(request: web.Request) -> web.Response:
    q = request.rel_url.query
    directory = q.get("dir", "")
    if not directory:
        return error_response("dir is required", 400)
    try:
        root, base = _user_path(request, directory, allow_root=True)
    except _Reject as r:
        return r.response
    if not base.is_dir():
        return error_response("directory not found", 404)
    recurse = q.get("recurse", "").lower() == "true"
    full_info = q.get("full_info", "").lower() == "true"
    split = q.get("split", "").lower() == "true"
    return json_response(await asyncio.to_thread(_list_dir, root, base, recurse, full_info, split))


async def handle_list_userdata_v2(request: web.Request) -> web.Response:
    rel = request.rel_url.query.get("path", "")
    try:
        root, base = _user_path(request, rel or None, allow_root=True)
    except _Reject as r:
        return r.response
    if not base.exists():
        return error_response("path not found", 404)
    if not base.is_dir():
        return error_response("path is not a directory", 400)

    def scan() -> list[dict]:
        out = []
        for e in sorted(os.scandir(base), key=lambda e: e.name):
            if e.name.startswith("."):
                continue
            p = Path(e.path)
            if not _contained(p, root):
                continue
            try:
                if e.is_dir():
                    out.append({"name": e.name, "path": _rel(p, root), "type": "directory"})
                elif e.is_file():
                    st = e.stat()
                    out.append({"name": e.name, "path": _rel(p, root), "type": "file",
                                "size": st.st_size, "modified": st.st_mtime})
            except OSError:
                continue
        return out

    return json_response(await asyncio.to_thread(scan))


async def handle_get_userdata(request: web.Request) -> web.StreamResponse:
    try:
        _root, path = _user_path(request, request.match_info["file"])
    except _Reject as r:
        return r.response
    if not path.is_file():
        return error_response("file not found", 404)
    suffix = path.suffix.lower()
    if suffix == ".css":  # user.css is linked from index.html; CSS cannot run script
        return file_response(path, content_type="text/css")
    ctype = "application/json" if suffix == ".json" else None
    return file_response(path, content_type=ctype, neutralize=True)


async def handle_post_userdata(request: web.Request) -> web.Response:
    q = request.rel_url.query
    try:
        root, path = _user_path(request, request.match_info["file"])
    except _Reject as r:
        return r.response
    overwrite = q.get("overwrite", "true") != "false"
    full_info = q.get("full_info", "false").lower() == "true"
    if path.is_dir():
        return error_response("a directory with that name exists", 400)
    if path.exists() and not overwrite:
        return error_response("File already exists", 409)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response("Request body too large", 413)
    try:
        await asyncio.to_thread(_atomic_write, path, body)
    except OSError as e:
        return error_response(f"cannot write file: {e.strerror or type(e).__name__}", 400)
    return json_response(_file_info(path, root) if full_info else _rel(path, root))


async def handle_delete_userdata(request: web.Request) -> web.Response:
    try:
        _root, path = _user_path(request, request.match_info["file"])
    except _Reject as r:
        return r.response
    if not path.exists():
        return error_response("file not found", 404)
    if path.is_dir():
        return error_response("cannot delete a directory", 400)
    try:
        path.unlink()
    except OSError as e:
        return error_response(f"cannot delete: {e.strerror or type(e).__name__}", 400)
    return web.Response(status=204)


async def handle_move_userdata(request: web.Request) -> web.Response:
    q = request.rel_url.query
    try:
        root, src = _user_path(request, request.match_info["file"])
        _root, dest = _user_path(request, request.match_info["dest"])
    except _Reject as r:
        return r.response
    if not src.is_file():
        return error_response("source file not found", 404)
    overwrite = q.get("overwrite", "true") != "false"
    full_info = q.get("full_info", "false").lower() == "true"
    if dest.is_dir():
        return error_response("a directory with the destination name exists", 400)
    if dest.exists() and not overwrite:
        return error_response("File already exists", 409)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
    except OSError as e:
        return error_response(f"cannot move: {e.strerror or type(e).__name__}", 400)
    return json_response(_file_info(dest, root) if full_info else _rel(dest, root))


# --------------------------------------------------------------------------- setup


def setup(app: web.Application, ctx: ServerContext) -> None:
    ctx.extra.setdefault("user_manager", UserManager(ctx))
    add_route(app, "GET", "/users", handle_get_users)
    add_route(app, "POST", "/users", handle_post_users)
    add_route(app, "GET", "/settings", handle_get_settings)
    add_route(app, "POST", "/settings", handle_post_settings)
    add_route(app, "GET", "/settings/{id}", handle_get_setting)
    add_route(app, "POST", "/settings/{id}", handle_post_setting)
    add_route(app, "GET", "/userdata", handle_list_userdata)
    add_route(app, "GET", "/v2/userdata", handle_list_userdata_v2)
    add_route(app, "GET", "/userdata/{file}", handle_get_userdata)
    add_route(app, "POST", "/userdata/{file}", handle_post_userdata)
    add_route(app, "DELETE", "/userdata/{file}", handle_delete_userdata)
    add_route(app, "POST", "/userdata/{file}/move/{dest}", handle_move_userdata)
