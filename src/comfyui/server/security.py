"""Middlewares: errors, host/origin checks (closed by default), API key, CORS, cache control, gzip.

Security model (documented in docs/server.md as well):

* **Host check (DNS rebinding).** The ``Host`` header must name this server: ``localhost``,
  a loopback IP, the ``--listen`` address, a name in ``--allowed-hosts`` (config
  ``allowed_hosts``; ``*`` disables the check) or, when listening on all interfaces, any IP
  literal or this machine's host name. A rebinding attack needs a foreign DNS *name*, so it
  is refused with 403.
* **Cross-site requests.** Unless ``--enable-cors-header`` is given, every state-changing
  request (POST/PUT/PATCH/DELETE) and every WebSocket upgrade is refused with 403 when it
  carries ``Origin: null``, an ``Origin`` whose host (and port, when the Origin names one)
  differs from ``Host`` (or ``X-Forwarded-Host``), or ``Sec-Fetch-Site: cross-site``.
  JSON routes take a JSON body with any content type from scripts (ComfyUI's clients use
  urllib, which labels it urlencoded), but a browser request (``Origin``, ``Referer`` or
  ``Sec-Fetch-*`` present) must declare JSON (``read_json`` answers 415), so a ``<form>``
  posting text/plain JSON is refused even from the same site.
* **CORS mode** (``--enable-cors-header [ORIGIN]``): adds ``Access-Control-Allow-*`` headers
  (origin ``*`` by default), answers preflights, and skips the origin check.
* **API key** (``--api-key`` or env ``COMFYUI_API_KEY``): every route, ``/ws`` included,
  requires ``Authorization: Bearer <key>``. Browsers cannot set headers on page loads,
  ``<img>`` or WebSocket requests, so a GET may carry ``?token=<key>`` instead; a valid
  token also sets an ``HttpOnly; SameSite=Strict`` cookie ``comfyui_token`` that is accepted
  afterwards (open ``http://host:8188/?token=KEY`` once). Failures get 401.
* **Upload size**: ``client_max_size`` = ``--max-upload-size`` MB, so bigger bodies get 413.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import warnings
from typing import Iterable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from .context import JSONBodyError, ServerContext, dumps

log = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_COOKIE = "comfyui_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _json_error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.Response(text=dumps({"error": message}), status=status,
                        content_type="application/json", headers=headers)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None]:
    """``"[::1]:8188"`` -> ``("::1", 8188)``; ``"Example.com"`` -> ``("example.com", None)``."""
    value = (value or "").strip().lower()
    if not value:
        return "", None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        host, rest = value[1:end], value[end + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port = value.split(":", 1)
    elif value.count(":") > 1:  # bare IPv6 without brackets
        return value, None
    else:
        host, port = value, ""
    try:
        return host.rstrip("."), int(port) if port else None
    except ValueError:
        return host.rstrip("."), -1


def listen_addresses(listen: str | Iterable[str] | None) -> list[str]:
    if not listen:
        return ["127.0.0.1"]
    if isinstance(listen, str):
        return [a.strip() for a in listen.split(",") if a.strip()] or ["0.0.0.0", "::"]
    return list(listen)


class HostPolicy:
    """Decides which ``Host`` header names are accepted."""

    def __init__(self, listen: str | Iterable[str] | None, extra: Iterable[str] = ()):
        self.addresses = [a.strip("[]").lower() for a in listen_addresses(listen)]
        self.any_interface = any(a in ("0.0.0.0", "::", "") for a in self.addresses)
        self.allow_all = False
        names = set(LOOPBACK_NAMES)
        for a in self.addresses:
            if a not in ("0.0.0.0", "::", ""):
                names.add(a)
        for h in extra or ():
            h = str(h).strip().lower()
            if h == "*":
                self.allow_all = True
            elif h:
                names.add(split_host(h)[0] if not h.startswith("[") else split_host(h)[0])
        if self.any_interface:
            try:
                hn = socket.gethostname().lower()
                names.update({hn, hn + ".local"})
                names.add(socket.getfqdn().lower())
            except OSError:
                pass
        self.names = names

    def allowed(self, host_header: str) -> bool:
        if self.allow_all:
            return True
        host, port = split_host(host_header)
        if not host or port == -1:
            return False
        if host in self.names or _is_loopback(host):
            return True
        if self.any_interface and _is_ip(host):
            return True
        return False


def _origin_matches(origin: str, request: web.Request) -> bool:
    try:
        parts = urlsplit(origin)
        o_host = (parts.hostname or "").lower()
        o_port = parts.port
    except ValueError:
        return False
    if not o_host:
        return False
    candidates = [request.headers.get(hdrs.HOST, "")]
    fwd = request.headers.get("X-Forwarded-Host")
    if fwd:
        candidates.append(fwd.split(",")[0].strip())
    for cand in candidates:
        h_host, h_port = split_host(cand)
        if h_host != o_host:
            continue
        if o_port is None:
            return True
        if h_port is None:
            h_port = 443 if parts.scheme in ("https", "wss") else 80
        if h_port == o_port:
            return True
    return False


def _check_cross_site(request: web.Request) -> str | None:
    """Reason string when the request must be refused as cross-site, else None."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None:
        if origin.strip().lower() == "null":
            return "Origin 'null' is not allowed"
        if not _origin_matches(origin, request):
            return "Origin does not match Host"
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return "Cross-site request refused"
    return None


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get(hdrs.AUTHORIZATION, "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def _key_ok(given: str | None, key: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())


def make_security_middleware(ctx: ServerContext, host_policy: HostPolicy, cors_origin: str | None):
    api_key = ctx.api_key

    @web.middleware
    async def security_middleware(request: web.Request, handler):
        # 1. Host header (DNS rebinding)
        if not host_policy.allowed(request.headers.get(hdrs.HOST, "")):
            return _json_error(403, "Host not allowed")
        is_ws = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        # 2. CORS preflight / cross-site protection
        if cors_origin is not None:
            if request.method == "OPTIONS":
                return web.Response(headers=_cors_headers(cors_origin))
        elif request.method in STATE_CHANGING or is_ws:
            reason = _check_cross_site(request)
            if reason is not None:
                return _json_error(403, reason)
        # 3. API key
        _mark(request, api_key is None)
        set_cookie = None
        if api_key is not None:
            ok = _key_ok(_bearer(request), api_key) or _key_ok(request.cookies.get(TOKEN_COOKIE), api_key)
            if not ok and request.method in ("GET", "HEAD"):
                token = request.query.get("token")
                if _key_ok(token, api_key):
                    ok = True
                    set_cookie = token
            if not ok:
                return _json_error(401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="comfyui"'})
            _mark(request, True)
        response = await handler(request)
        if set_cookie is not None and not is_ws and not response.prepared:
            response.set_cookie(TOKEN_COOKIE, set_cookie, httponly=True, samesite="Strict", path="/")
        if cors_origin is not None and not response.prepared:
            response.headers.update(_cors_headers(cors_origin))
        return response

    return security_middleware


def _mark(request: web.Request, authenticated: bool) -> None:
    with warnings.catch_warnings():  # the documented string key route modules read
        warnings.simplefilter("ignore")
        request["user_authenticated"] = authenticated


def _cors_headers(origin: str) -> dict:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "POST, GET, DELETE, PUT, PATCH, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization, Comfy-User",
    }


@web.middleware
async def error_middleware(request: web.Request, handler):
    """Turn exceptions into JSON answers; a handler bug is a logged 500, never a traceback page."""
    try:
        return await handler(request)
    except JSONBodyError:
        raise
    except web.HTTPException as e:
        if e.status == 413 and not e.text.startswith("{"):
            return _json_error(413, "Request body too large")
        raise
    except Exception as e:  # noqa: BLE001
        log.exception("error handling %s %s", request.method, request.path)
        return _json_error(500, f"Internal server error: {type(e).__name__}")


_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".gif", ".svg", ".ico", ".avif")


@web.middleware
async def cache_control_middleware(request: web.Request, handler):
    """Upstream cache policy: js/css/index*.json no-cache; images 1 day (404: 1 hour)."""
    response = await handler(request)
    path = request.path.lower()
    if response.prepared or "Cache-Control" in response.headers:
        return response
    if path.endswith((".js", ".css")) or (path.rsplit("/", 1)[-1].startswith("index") and path.endswith(".json")):
        response.headers["Cache-Control"] = "no-cache"
    elif path.endswith(_IMAGE_EXT):
        if response.status == 200:
            response.headers["Cache-Control"] = "public, max-age=86400"
        elif response.status == 404:
            response.headers["Cache-Control"] = "public, max-age=3600"
    return response


_COMPRESSIBLE = ("application/json", "text/", "application/javascript", "image/svg+xml")


@web.middleware
async def gzip_middleware(request: web.Request, handler):
    """Gzip JSON/text answers when the client accepts it (``--enable-compress-response-body``)."""
    response = await handler(request)
    if (isinstance(response, web.Response) and not response.prepared
            and "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "")
            and response.content_type.startswith(_COMPRESSIBLE)
            and response.body is not None and len(response.body) > 1024):
        response.enable_compression(web.ContentCoding.gzip)
    return response
