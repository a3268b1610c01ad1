"""Middlewares: errors, limits (early 413, stalled bodies, framing headers), host/origin checks
(closed by default), API key, CORS, cache control, gzip.

Security model (docs/security.md has the whole threat model and the tests of each guarantee):

* **Host check (DNS rebinding).** The ``Host`` header must name this server: ``localhost``,
  a loopback IP, the ``--listen`` address, a name in ``--allowed-hosts`` (config
  ``allowed_hosts``; ``*`` disables the check) or, when listening on all interfaces, any IP
  literal or this machine's host name. A rebinding attack needs a foreign DNS *name*, so it
  is refused with 403.
* **Cross-site requests.** Unless ``--enable-cors-header`` is given, every state-changing
  request (POST/PUT/PATCH/DELETE) and every WebSocket upgrade is refused with 403 when it
  carries ``Origin: null``, an ``Origin`` whose scheme, host or effective port (no port: 80
  for http, 443 for https) differs from ours (``Host`` or ``X-Forwarded-Host``; our scheme
  when we know it: TLS or ``X-Forwarded-Proto``), or ``Sec-Fetch-Site: cross-site``.
  JSON routes take a JSON body with any content type from scripts (ComfyUI's clients use
  urllib, which labels it urlencoded), but a browser request (``Origin``, ``Referer`` or
  ``Sec-Fetch-*`` present) must declare JSON (``read_json`` answers 415), so a ``<form>``
  posting text/plain JSON is refused even from the same site.
* **CORS mode** (``--enable-cors-header [ORIGIN]``): adds ``Access-Control-Allow-*`` headers
  (origin ``*`` by default), answers preflights, and skips the origin check.
* **API key** (``--api-key``, ``--api-key-file`` or env ``COMFYUI_API_KEY``): every route, ``/ws`` included,
  requires ``Authorization: Bearer <key>``. Browsers cannot set headers on page loads,
  ``<img>`` or WebSocket requests, so a GET may carry ``?token=<key>`` instead; a valid
  token also sets an ``HttpOnly; SameSite=Strict`` cookie ``comfyui_token`` that is accepted
  afterwards (open ``http://host:8188/?token=KEY`` once). Failures get 401.
* **Upload size**: ``client_max_size`` = ``--max-upload-size`` MB, so bigger bodies get 413;
  a declared ``Content-Length`` beyond it gets 413 before the body is read.
* **Slow clients**: ``--header-timeout`` (aiohttp's keep-alive timer, see ``app.runner_options``)
  closes half-sent headers; ``--body-timeout`` answers 408 and closes a body that stalls or
  trickles (under 1 KiB in that many seconds).
* **Framing**: ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors 'self'``.
"""
from __future__ import annotations

import asyncio
import errno
import hmac
import ipaddress
import logging
import socket
import warnings
from typing import Iterable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from ..engine.queue import StoreUnavailable
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


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _server_scheme(request: web.Request) -> str | None:
    """The scheme the browser used to reach us: ``https`` when we terminate TLS, else what a
    proxy says in ``X-Forwarded-Proto``; None when unknown (plain http, maybe behind a
    TLS-terminating proxy that does not say so)."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if proto in ("http", "https"):
        return proto
    if request.secure:
        return "https"
    return None


def _origin_matches(origin: str, request: web.Request) -> bool:
    """Same origin as the browser sees it: scheme, host and *effective* port (an Origin or a
    Host without a port means its scheme's default one: http 80, https 443)."""
    try:
        parts = urlsplit(origin.strip())
        o_scheme = parts.scheme.lower()
        o_host = (parts.hostname or "").lower().rstrip(".")
        o_port = parts.port
    except ValueError:
        return False
    if not o_host or o_scheme not in ("http", "https"):
        return False
    if o_port is None:
        o_port = _DEFAULT_PORTS[o_scheme]
    server_scheme = _server_scheme(request)
    if server_scheme is not None and server_scheme != o_scheme:
        return False
    candidates = [request.headers.get(hdrs.HOST, "")]
    fwd = request.headers.get("X-Forwarded-Host")
    if fwd:
        candidates.append(fwd.split(",")[0].strip())
    for cand in candidates:
        h_host, h_port = split_host(cand)
        if h_host != o_host or h_port == -1:
            continue
        if h_port is None:
            # The browser left the port out of Host, so it used its scheme's default: ours when
            # known, else the Origin's (http on 80 or https on 443 through a proxy).
            h_port = _DEFAULT_PORTS[server_scheme or o_scheme]
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
    """Constant-time comparison; any header bytes (non-ASCII ones arrive as surrogates) just
    fail to match."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), key.encode("utf-8", "surrogateescape"))


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
    """Turn exceptions into JSON answers; a handler bug is a logged 500, never a traceback page.
    Input the handler could not cope with is still the client's fault: a structure nested
    past the recursion limit is 400, a file name longer than the file system allows is 400."""
    try:
        return await handler(request)
    except JSONBodyError:
        raise
    except web.HTTPException as e:
        if e.status == 413 and not e.text.startswith("{"):
            return _json_error(413, "Request body too large")
        raise
    except RecursionError:
        return _json_error(400, "Input nested too deeply")
    except StoreUnavailable as e:  # the job database is down, full or read-only: try again later
        log.warning("%s %s: %s", request.method, request.path, e.reason)
        return _json_error(503, e.reason, headers={"Retry-After": "5"})
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return _json_error(400, "File name too long")
        log.exception("error handling %s %s", request.method, request.path)
        return _json_error(500, f"Internal server error: {type(e).__name__}")
    except Exception as e:  # noqa: BLE001
        log.exception("error handling %s %s", request.method, request.path)
        return _json_error(500, f"Internal server error: {type(e).__name__}")


# Framing: the UI may only be framed by itself (clickjacking). X-Frame-Options for old
# browsers; CSP frame-ancestors (which wins where both are understood) allows same-origin
# frames the frontend or extensions may use.
FRAME_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'self'"}


# A body must keep coming: at least this many bytes every --body-timeout seconds while the
# handler waits for it (so a client trickling a byte now and then is cut off as well).
MIN_BODY_PROGRESS = 1024


class BodyTimeout(Exception):
    """Set on a request's body stream when the client stopped sending it."""


def make_limits_middleware(max_body: int, body_timeout: float | None):
    """Early 413 for a declared ``Content-Length`` beyond ``max_body`` (nothing of the body is
    read), 408 and a closed connection for a body that delivers less than
    :data:`MIN_BODY_PROGRESS` bytes in ``body_timeout`` seconds while the handler waits for it
    (stalled or trickled), and the framing headers on every answer."""

    @web.middleware
    async def limits_middleware(request: web.Request, handler):
        length = request.content_length
        if length is not None and length > max_body:
            response = _json_error(413, f"Request body too large: {length} bytes declared, "
                                        f"the limit is {max_body} (--max-upload-size)")
            response.force_close()
            response.headers.update(FRAME_HEADERS)
            return response
        payload = request.content
        if body_timeout and request.body_exists and not payload.is_eof():
            response = await _with_body_watchdog(request, handler, payload, body_timeout)
        else:
            response = await handler(request)
        if not response.prepared:
            for name, value in FRAME_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    return limits_middleware


async def _with_body_watchdog(request: web.Request, handler, payload, timeout: float):
    loop = asyncio.get_running_loop()
    state = {"bytes": payload.total_bytes, "since": loop.time(), "stalled": False, "handle": None}
    period = max(min(timeout / 4, 1.0), 0.05)

    def check() -> None:
        if payload.is_eof():
            return
        now = loop.time()
        waiting = getattr(payload, "_waiter", True) is not None  # the handler waits for bytes
        if payload.total_bytes - state["bytes"] >= MIN_BODY_PROGRESS or not waiting:
            state["bytes"], state["since"] = payload.total_bytes, now
        elif now - state["since"] >= timeout:
            state["stalled"] = True
            payload.set_exception(BodyTimeout())
            return
        state["handle"] = loop.call_later(period, check)

    state["handle"] = loop.call_later(period, check)
    try:
        response = await handler(request)
    except Exception:
        if not state["stalled"]:
            raise
        response = None
    finally:
        if state["handle"] is not None:
            state["handle"].cancel()
    if state["stalled"]:
        log.info("closed %s %s from %s: its body stalled (under %d bytes in %g s, --body-timeout)",
                 request.method, request.path, request.remote, MIN_BODY_PROGRESS, timeout)
        payload.feed_eof()  # nothing more is read (no lingering on the rest of the body)
        response = _json_error(408, f"Request body timed out: under {MIN_BODY_PROGRESS} bytes "
                                    f"received in {timeout:g} s")
        response.force_close()
    return response


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
