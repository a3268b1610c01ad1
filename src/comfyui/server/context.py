"""Shared server state and the helpers every route module uses.

Route modules plug into the app built by :func:`comfyui.server.app.create_app` through one
function::

    def setup(app: aiohttp.web.Application, ctx: ServerContext) -> None:
        add_route(app, "GET", "/users", handle_users)          # -> /users and /api/users
        add_route(app, "GET", "/internal/logs", handle_logs)   # -> /internal/logs only

What a route module can rely on:

* ``app["ctx"]`` / ``request.app["ctx"]``: the :class:`ServerContext` (engine, config, the
  WebSocket client registry, the feature flags, the log buffer, security settings).
* :func:`add_route` registers a handler at ``/x`` **and** ``/api/x`` (paths under
  ``/internal`` are registered once, bare). :func:`add_static` registers a static tree once,
  bare, with ComfyUI's MIME types.
* :func:`read_json` parses a JSON request body whatever its content type, as ComfyUI does
  (Python's ``urllib`` sends JSON as ``application/x-www-form-urlencoded``); only a request
  that carries a browser marker (``Origin``, ``Referer``, ``Sec-Fetch-*``) must declare JSON,
  else 415. 400 with a message for malformed JSON, 413 past ``--max-upload-size``; an empty
  body gives ``default``.
* :func:`json_response` / :func:`error_response` produce the JSON bodies; error bodies are
  ``{"error": message}`` unless a route's contract says otherwise.
* ``request["user_authenticated"]`` is True when the request carried a valid API key
  (``--api-key``); multi-user code must not trust ``Comfy-User`` blindly when
  ``ctx.api_key`` is set and this is False (the security middleware already refuses such
  requests, so in practice every request that reaches a handler is authenticated then).
* ``ctx.send_json(event, data, sid=None)``: thread-safe; sends a WS JSON message to one
  client (``sid``) or to everyone (``sid=None``).
* ``ctx.logs``: :class:`LogBuffer` with ``entries()`` (``[{"t": iso, "m": text}]``),
  ``text()`` (the whole log as one string) and ``set_subscription(sid, enabled)`` for the
  ``/internal/logs/*`` routes; subscribed clients get ``logs`` WS messages.
* ``ctx.routes`` lists every ``(method, path)`` registered through :func:`add_route` /
  :func:`add_static`; ``/openapi.json`` is checked against it by a test.
"""
from __future__ import annotations

import collections
import datetime as _dt
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from ..jsonutil import dumps, loads  # noqa: F401 - dumps is the server's encoder (ws, routes)
from ..redact import RedactingFilter, redact_text

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Folders that are never duplicated under /api (upstream mounts them as a sub-app).
_NO_API_PREFIXES = ("/internal",)

JSON_CONTENT_TYPES = ("application/json",)

# Headers only browsers add on their own; scripts (urllib, requests, curl) send none of them.
BROWSER_MARKERS = ("Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest")


def config_get(config: Any, name: str, default: Any = None) -> Any:
    """Read a setting from a Config object, a dict or None (missing -> ``default``)."""
    if config is None:
        return default
    if isinstance(config, dict):
        value = config.get(name, default)
    else:
        value = getattr(config, name, default)
    return default if value is None else value


# --------------------------------------------------------------------------- routes


def add_route(app: web.Application, method: str, path: str, handler: Handler, *,
              api: bool | None = None, name: str | None = None) -> None:
    """Register ``handler`` for ``method`` at ``path`` and at ``/api`` + ``path``.

    ``api=None`` (default) duplicates every path except ``/internal/*``; pass ``api=False``
    to register the bare path only or ``api=True`` to force the duplicate. ``method`` may be
    ``"*"``. ``GET`` routes also answer ``HEAD`` (aiohttp's default)."""
    if not path.startswith("/"):
        raise ValueError(f"route path must start with '/': {path!r}")
    if api is None:
        api = not any(path == p or path.startswith(p + "/") for p in _NO_API_PREFIXES)
    ctx: ServerContext | None = app.get("ctx")  # type: ignore[assignment]
    app.router.add_route(method, path, handler, name=name)
    if ctx is not None:
        ctx.routes.append((method.upper(), path))
    if api:
        app.router.add_route(method, "/api" + path, handler)
        if ctx is not None:
            ctx.routes.append((method.upper(), "/api" + path))


def add_static(app: web.Application, prefix: str, directory: str, *,
               follow_symlinks: bool = False, show_index: bool = False) -> None:
    """Register a static tree at ``prefix`` (bare only, never under /api).

    aiohttp's static resource resolves the path and refuses anything outside ``directory``;
    ``follow_symlinks=False`` also refuses symlinks that lead out of it."""
    app.router.add_static(prefix, directory, follow_symlinks=follow_symlinks, show_index=show_index)
    ctx: ServerContext | None = app.get("ctx")  # type: ignore[assignment]
    if ctx is not None:
        ctx.routes.append(("GET", prefix.rstrip("/") + "/{path}"))


# --------------------------------------------------------------------------- JSON helpers

def json_response(data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json",
                        headers=headers)


def error_response(message: str, status: int = 400, **extra: Any) -> web.Response:
    body = {"error": redact_text(message) if isinstance(message, str) else message}
    body.update(extra)
    return json_response(body, status=status)


class JSONBodyError(web.HTTPException):
    """Raised by :func:`read_json`; carries a JSON ``{"error": message}`` body."""

    def __init__(self, status: int, message: str):
        self.status_code = status
        super().__init__(text=dumps({"error": message}), content_type="application/json")


def is_json_content_type(content_type: str) -> bool:
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    return ct in JSON_CONTENT_TYPES or (ct.startswith("application/") and ct.endswith("+json"))


def is_browser_request(request: web.Request) -> bool:
    """True when the request carries a header that only browsers add (see BROWSER_MARKERS)."""
    return any(name in request.headers for name in BROWSER_MARKERS)


async def read_json(request: web.Request, default: Any = None, *, require_content_type: bool = True) -> Any:
    """Parse the request body as JSON.

    Empty body -> ``default``. Scripts may send the body with any content type (ComfyUI's
    example clients use urllib, which labels it ``application/x-www-form-urlencoded``). A
    request from a browser (one carrying a :data:`BROWSER_MARKERS` header) must send
    ``application/json`` (or ``*/*+json``) unless ``require_content_type=False``: 415
    otherwise. Cross-site browser requests are refused before this by the security
    middleware's Origin / Sec-Fetch-Site / Host checks; this rule keeps a same-site page's
    ``<form>`` (text/plain, urlencoded, multipart) from posting JSON as well. Malformed JSON
    -> 400 ``{"error": "Invalid JSON body: ..."}``. Oversized bodies -> 413 (aiohttp's
    ``client_max_size``)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise JSONBodyError(413, "Request body too large")
    if not raw or not raw.strip():
        return default
    if (require_content_type and is_browser_request(request)
            and not is_json_content_type(request.headers.get("Content-Type", ""))):
        raise JSONBodyError(415, "Content-Type must be application/json")
    return parse_json_body(raw)


# Deeper request JSON is refused (400): nothing ComfyUI sends comes near it (a workflow with
# nested subgraphs is ~30 levels), and code that walks a structure recursively (validation,
# caching, the settings file's encoder, the job store) must never meet what it cannot walk.
# 254 is also the most orjson encodes, so whatever is accepted is answered at full speed, and
# orjson's encoder doubles as a C-speed depth check.
MAX_JSON_DEPTH = 254


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _orjson_limit_is(depth: int) -> bool:
    import orjson

    try:
        orjson.dumps(_nested(depth))
    except TypeError:
        return False
    try:
        orjson.dumps(_nested(depth + 1))
    except TypeError:
        return True
    return False


_ORJSON_CHECKS_DEPTH = _orjson_limit_is(MAX_JSON_DEPTH)


def json_depth_exceeds(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``obj`` nests lists/dicts more than ``limit`` levels (never recursion)."""
    if limit == MAX_JSON_DEPTH and _ORJSON_CHECKS_DEPTH:
        import orjson

        try:
            orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
            return False
        except TypeError:  # too deep, or an integer past 64 bits: walk to know which
            pass
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in (node.values() if isinstance(node, dict) else node):
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def parse_json_body(raw: bytes | str, what: str = "JSON body") -> Any:
    """Parse request JSON: malformed, non-UTF-8 or nested deeper than :data:`MAX_JSON_DEPTH`
    -> :class:`JSONBodyError` 400 with a message."""
    try:
        value = loads(raw)
    except UnicodeDecodeError:
        raise JSONBodyError(400, f"Invalid {what}: not UTF-8")
    except RecursionError:
        raise JSONBodyError(400, f"Invalid {what}: nested too deeply")
    except ValueError as e:
        raise JSONBodyError(400, f"Invalid {what}: {e}")
    if isinstance(value, (dict, list)) and _may_be_deep(raw) and json_depth_exceeds(value):
        raise JSONBodyError(400, f"Invalid {what}: nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _may_be_deep(raw: bytes | str) -> bool:
    """Cheap pre-check (C-speed counts): fewer opening brackets than the limit cannot nest past it."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") > MAX_JSON_DEPTH
    return raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH


# --------------------------------------------------------------------------- logs


class LogBuffer(logging.Handler):
    """Ring buffer of log records for ``/internal/logs`` and the ``logs`` WS message.

    Install with ``install()`` (adds itself to the root logger). Entries are
    ``{"t": iso_time, "m": text}``. Credentials are masked (:mod:`comfyui.redact`) in every
    record and every raw text added."""

    def __init__(self, capacity: int = 10000):
        super().__init__(level=logging.INFO)
        self._entries: collections.deque[dict] = collections.deque(maxlen=capacity)
        self._lock_entries = threading.Lock()
        self.subscribers: set[str] = set()
        self.on_entry: Callable[[dict], None] | None = None
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(RedactingFilter())
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            logging.getLogger().addHandler(self)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            logging.getLogger().removeHandler(self)
            self._installed = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
        except Exception:  # noqa: BLE001
            return
        entry = {"t": _dt.datetime.fromtimestamp(record.created).isoformat(), "m": msg + "\n"}
        self.add(entry)

    def add(self, entry: dict) -> None:
        with self._lock_entries:
            self._entries.append(entry)
        cb = self.on_entry
        if cb is not None and self.subscribers:
            try:
                cb(entry)
            except Exception:  # noqa: BLE001
                pass

    def write(self, text: str) -> None:
        """Add raw text (e.g. captured stdout) as one entry."""
        if text:
            self.add({"t": _dt.datetime.now().isoformat(), "m": redact_text(text)})

    def entries(self) -> list[dict]:
        with self._lock_entries:
            return list(self._entries)

    def text(self) -> str:
        return "".join(f"{e['t']} - {e['m']}" for e in self.entries())

    def set_subscription(self, sid: str, enabled: bool) -> None:
        if enabled:
            self.subscribers.add(sid)
        else:
            self.subscribers.discard(sid)


_PROCESS_LOGS: LogBuffer | None = None


def capture_process_logs() -> LogBuffer:
    """Start the ``comfyui`` command's log buffer now (before config and node loading log),
    so the frontend's Logs panel shows the whole start-up, as ComfyUI's does; the server
    built afterwards in this process serves it (:func:`process_logs`)."""
    global _PROCESS_LOGS
    if _PROCESS_LOGS is None:
        _PROCESS_LOGS = LogBuffer()
        _PROCESS_LOGS.install()
    return _PROCESS_LOGS


def process_logs() -> LogBuffer | None:
    return _PROCESS_LOGS


# --------------------------------------------------------------------------- context


@dataclass
class ServerContext:
    """Everything the route modules share. Built by ``create_app`` and stored in ``app["ctx"]``.

    Attributes:
        engine: ``comfyui.engine.engine.Engine`` (submit/queue/history/registry/listeners).
        config: the ``comfyui.config.Config`` (or None): read with :func:`config_get`.
        clients: ``comfyui.server.ws.ClientRegistry`` (sid -> connected WebSocket client).
        feature_flags: the dict sent in the WS ``feature_flags`` reply and ``GET /features``.
        logs: :class:`LogBuffer`.
        api_key: required bearer token or None (``--api-key`` / ``COMFYUI_API_KEY``).
        allowed_hosts: host names accepted in the ``Host`` header (DNS-rebinding guard);
            an empty set means any (non-loopback bind without an explicit list).
        max_upload_size: bytes (``--max-upload-size`` MB).
        routes: every (method, path) registered through add_route/add_static.
    """

    engine: Any
    config: Any = None
    clients: Any = None
    feature_flags: dict = field(default_factory=dict)
    logs: LogBuffer = field(default_factory=LogBuffer)
    api_key: str | None = None
    allowed_hosts: set[str] = field(default_factory=set)
    max_upload_size: int = 100 * 1024 * 1024
    routes: list[tuple[str, str]] = field(default_factory=list)
    loop: Any = None
    extra: dict = field(default_factory=dict)

    def setting(self, name: str, default: Any = None) -> Any:
        return config_get(self.config, name, default)

    def send_json(self, event: str, data: Any, sid: str | None = None) -> None:
        """Send ``{"type": event, "data": data}`` to client ``sid`` (None = everyone).
        Safe to call from any thread."""
        if self.clients is not None:
            self.clients.send_json_threadsafe(event, data, sid)

    def send_bytes(self, event_type: int, payload: bytes, sid: str | None = None) -> None:
        """Send a binary frame (u32 big-endian ``event_type`` + payload). Any thread."""
        if self.clients is not None:
            self.clients.send_bytes_threadsafe(event_type, payload, sid)


def get_ctx(request: web.Request) -> ServerContext:
    return request.app["ctx"]
