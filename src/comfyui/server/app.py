"""The aiohttp application: ``create_app(engine, config)`` and ``run_server(config)``.

Route modules are wired in this order (aiohttp matches resources in registration order, and
the frontend's static tree at ``/`` must come last): ``ws``, ``routes_prompt``, ``routes_queue``,
``routes_jobs``, ``routes_info``, ``routes_v1``, the custom
nodes' ``PromptServer.instance.routes``, ``openapi``, ``routes_user``, ``routes_files``,
``frontend``.
"""
from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import os
import signal
import ssl
import sys
import time
import warnings
from typing import Any

from aiohttp import web

from .. import process
from ..runtime import Runtime, make_default
from .context import ServerContext, config_get
from .security import (HostPolicy, cache_control_middleware, error_middleware, gzip_middleware,
                       make_limits_middleware, make_security_middleware)
from .ws import ClientRegistry

log = logging.getLogger(__name__)

ROUTE_MODULES = ("comfyui.server.ws", "comfyui.server.routes_prompt", "comfyui.server.routes_queue",
                 "comfyui.server.routes_jobs", "comfyui.server.routes_info", "comfyui.server.routes_v1",
                 "comfyui.server.routes_manager")
# Owned by the file/user routes area; each is optional (a module without ``setup`` is skipped).
LATE_ROUTE_MODULES = ("comfyui.server.openapi", "comfyui.server.logs", "comfyui.server.routes_user",
                      "comfyui.server.routes_files", "comfyui.server.frontend")


def _api_key(config: Any) -> str | None:
    key = config_get(config, "api_key") or os.environ.get("COMFYUI_API_KEY") or None
    if not key and config_get(config, "api_key_file"):
        from comfyui.config import read_api_key_file

        key = read_api_key_file(config_get(config, "api_key_file"))
    if key:
        from comfyui.redact import register_secret

        register_secret(str(key))
    return str(key) if key else None


def _allowed_hosts(config: Any) -> list[str]:
    hosts = config_get(config, "allowed_hosts") or os.environ.get("COMFYUI_ALLOWED_HOSTS") or []
    if isinstance(hosts, str):
        hosts = [h.strip() for h in hosts.split(",") if h.strip()]
    return list(hosts)


def runner_options(config: Any) -> dict:
    """aiohttp server settings from the config: ``--header-timeout`` is aiohttp's keep-alive
    timer, which also closes a connection whose request headers are not complete in time
    (a slow-loris sending half a request); ``--body-timeout`` is the limits middleware's."""
    return {"keepalive_timeout": float(config_get(config, "header_timeout", 75.0) or 75.0)}


def server_feature_flags(config: Any) -> dict:
    """The dict answered by ``GET /features`` and the WS ``feature_flags`` reply."""
    max_upload = int(float(config_get(config, "max_upload_size", 100.0)) * 1024 * 1024)
    flags: dict[str, Any] = {
        "supports_preview_metadata": True,
        "supports_progress_text_metadata": True,
        "max_upload_size": max_upload,
    }
    if config_get(config, "enable_manager", False):
        # the frontend shows its Manager dialog for a v4 Manager that takes POSTs for changes
        flags["extension"] = {"manager": {"supports_v4": True, "supports_csrf_post": True}}
    return flags


def _runtime_middleware(engine: Any):
    """Handlers (and the node code they call: INPUT_TYPES, custom routes) see the engine's
    runtime as the active one: its folders, config and models (see comfyui.runtime)."""
    rt = getattr(engine, "runtime", None)

    @web.middleware
    async def runtime_middleware(request: web.Request, handler):
        if rt is None:
            return await handler(request)
        with rt.active():
            return await handler(request)

    return runtime_middleware


def create_app(engine: Any, config: Any = None) -> web.Application:
    """Build the application for ``engine`` (a started or not-yet-started Engine).

    The engine listener is added when the app starts (it needs the running loop) and removed
    on cleanup; the engine's own lifecycle (start/stop) belongs to the caller."""
    max_upload = int(float(config_get(config, "max_upload_size", 100.0)) * 1024 * 1024)
    from comfyui.config import register_secrets

    register_secrets(config)
    ctx = ServerContext(engine=engine, config=config, api_key=_api_key(config),
                        max_upload_size=max_upload)
    ctx.feature_flags = server_feature_flags(config)
    from .context import process_logs

    if process_logs() is not None:  # the comfyui command's buffer: the log since the process started
        ctx.logs = process_logs()
    ctx.clients = ClientRegistry(ctx)
    policy = HostPolicy(config_get(config, "listen", "127.0.0.1"), _allowed_hosts(config))
    ctx.allowed_hosts = set(policy.names)
    cors = config_get(config, "enable_cors_header")
    body_timeout = float(config_get(config, "body_timeout", 30.0) or 0) or None
    middlewares = [_runtime_middleware(engine), error_middleware, make_limits_middleware(max_upload, body_timeout),
                   make_security_middleware(ctx, policy, cors), cache_control_middleware]
    if config_get(config, "enable_compress_response_body", False):
        middlewares.append(gzip_middleware)
    app = web.Application(client_max_size=max_upload, middlewares=middlewares)
    with warnings.catch_warnings():  # app["ctx"] is the documented key route modules use
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["ctx"] = ctx

    for name in ROUTE_MODULES:
        importlib.import_module(name).setup(app, ctx)
    add_compat_routes(app, ctx)
    for name in LATE_ROUTE_MODULES:
        if importlib.util.find_spec(name) is None:
            log.warning("server module %s is missing; its routes are not served", name)
            continue
        module = importlib.import_module(name)
        if hasattr(module, "setup"):
            module.setup(app, ctx)

    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


def add_compat_routes(app: web.Application, ctx: ServerContext) -> None:
    """Add the routes custom nodes declared on ``PromptServer.instance.routes`` (bare and
    under /api). Only routes declared before the app is built are served."""
    mod = sys.modules.get("comfyui.compat.server")
    if mod is None:
        return
    try:
        table = mod.PromptServer.instance.routes
    except AttributeError:
        return
    for route in list(table):
        if not isinstance(route, web.RouteDef):
            continue  # static defs etc.: registered as-is below
        for prefix in ("", "/api"):
            if prefix and route.path.startswith("/internal"):
                continue
            try:
                app.router.add_route(route.method, prefix + route.path, route.handler, **route.kwargs)
                ctx.routes.append((route.method.upper(), prefix + route.path))
                ctx.extra.setdefault("compat_routes", []).append((route.method.upper(), prefix + route.path))
            except (RuntimeError, ValueError) as e:
                log.warning("custom node route %s %s not added: %s", route.method, route.path, e)
    for route in list(table):
        if isinstance(route, web.StaticDef):
            try:
                route.register(app.router)
                ctx.routes.append(("GET", route.prefix.rstrip("/") + "/{path}"))
            except (RuntimeError, ValueError) as e:
                log.warning("custom node static route %s not added: %s", route.prefix, e)


async def _on_startup(app: web.Application) -> None:
    ctx: ServerContext = app["ctx"]
    loop = asyncio.get_running_loop()
    ctx.loop = loop
    ctx.clients.loop = loop
    ctx.engine.add_listener(ctx.clients.engine_listener)
    ctx.logs.install()
    try:
        mod = importlib.import_module("comfyui.compat.server")
    except ImportError:
        return
    try:
        mod.PromptServer.instance.attach(app, loop)
    except Exception:  # noqa: BLE001
        log.exception("PromptServer.attach failed")
    # Custom events (PromptServer.instance.send_sync) reach us through the engine's listener
    # stream when the engine subscribes to the compat hub; otherwise subscribe directly.
    engine_sinks = [s for s in mod.sinks() if getattr(s, "__self__", None) is ctx.engine]
    if not engine_sinks:
        mod.add_sink(ctx.clients.compat_sink)
        ctx.extra["compat_sink"] = ctx.clients.compat_sink


async def _on_shutdown(app: web.Application) -> None:
    ctx: ServerContext = app["ctx"]
    await ctx.clients.close_all()


async def _on_cleanup(app: web.Application) -> None:
    ctx: ServerContext = app["ctx"]
    try:
        ctx.engine.remove_listener(ctx.clients.engine_listener)
    except Exception:  # noqa: BLE001
        pass
    ctx.logs.uninstall()
    sink = ctx.extra.pop("compat_sink", None)
    if sink is not None:
        mod = sys.modules.get("comfyui.compat.server")
        if mod is not None:
            mod.remove_sink(sink)
    ctx.clients.loop = None


# ============================================================================ run_server


def _ssl_context(config: Any) -> ssl.SSLContext | None:
    keyfile, certfile = config_get(config, "tls_keyfile"), config_get(config, "tls_certfile")
    if not keyfile and not certfile:
        return None
    if not (keyfile and certfile):
        raise ValueError("--tls-keyfile and --tls-certfile must be given together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile=certfile, keyfile=keyfile)
    return ctx


def bind_addresses(listen: str | None) -> list[str]:
    """``--listen`` -> the addresses to bind. Bare ``--listen`` (``0.0.0.0``) binds IPv4 and,
    when available, IPv6 too."""
    addrs = [a.strip().strip("[]") for a in (listen or "127.0.0.1").split(",") if a.strip()]
    if not addrs:
        addrs = ["127.0.0.1"]
    if addrs == ["0.0.0.0"]:
        import socket
        if socket.has_ipv6:
            addrs = ["0.0.0.0", "::"]
    return addrs


def _unbindable(addresses: list[str], port: int) -> str | None:
    """``"addr:port: reason"`` when the first address cannot be bound now, else None."""
    import socket

    if port == 0 or not addresses:
        return None
    addr = addresses[0]
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
    except OSError as e:
        return f"{addr}:{port}: {e.strerror or e}"
    return None


def build_engine(config: Any, runtime: Any = None):
    """An Engine for ``config``: paths applied, built-in and custom nodes loaded (custom nodes
    may register routes on ``PromptServer.instance.routes`` while they import)."""
    from comfyui.engine.engine import Engine

    from .routes_manager import start_comfyui_manager

    start_comfyui_manager(config, runtime)
    if config_get(config, "distributed_queue_frontend", False):
        if not config_get(config, "distributed_queue_connection_uri"):
            raise ValueError("--distributed-queue-frontend needs --distributed-queue-connection-uri amqp://...")
        from comfyui.distributed.frontend import FrontendEngine

        return FrontendEngine.for_cluster(config, runtime=runtime)
    return Engine.from_config(config, durable=True, runtime=runtime)


async def serve(config: Any, engine: Any = None, *, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None, runtime: Any = None) -> int:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM). Returns an exit code. Without an
    ``engine`` one is built for ``config``, in ``runtime`` when given (else a new one)."""
    t0 = time.perf_counter()
    port = int(config_get(config, "port", 8188))
    addresses = bind_addresses(config_get(config, "listen", "127.0.0.1"))
    problem = _unbindable(addresses, port)
    if problem is not None:  # fail fast, before the (slow) node loading
        log.error("cannot listen on %s", problem)
        return 1
    try:
        sslctx = _ssl_context(config)
    except (OSError, ssl.SSLError, ValueError) as e:
        log.error("cannot load the TLS key/certificate: %s", e)
        return 1
    own_engine = engine is None
    if engine is None:
        from comfyui.redact import redact_url

        url = config_get(config, "database_url")
        store = redact_url(str(url)) if url else "sqlite (comfyui.db in the user directory)"
        try:
            engine = await asyncio.to_thread(build_engine, config, runtime)
        except Exception as e:  # noqa: BLE001 - one clear line (credentials masked), exit 1
            log.error("cannot start (job store %s): %s: %s", store, type(e).__name__, e)
            log.debug("start-up failure", exc_info=True)
            return 1
    else:
        store = None
    app = create_app(engine, config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **runner_options(config))
    await runner.setup()
    if store is not None:
        log.info("job store: %s", store)  # after setup: /internal/logs holds it too
    sites = []
    for addr in addresses:
        site = web.TCPSite(runner, addr, port, ssl_context=sslctx, reuse_address=True)
        try:
            await site.start()
            sites.append(site)
        except OSError as e:
            if addr == "::" and sites:
                log.info("IPv6 bind failed (%s); serving IPv4 only", e)
                continue
            await runner.cleanup()
            if own_engine:
                engine.stop()
            log.error("cannot listen on %s:%s: %s", addr, port, e)
            return 1
    api_runner = None
    if config_get(config, "enable_api", False):
        from ..api_server.app import start_api
        from ..api_server.settings import SettingsError

        try:
            api_runner = await start_api(engine, config, addresses, sslctx)
        except (OSError, SettingsError) as e:
            await runner.cleanup()
            if own_engine:
                engine.stop()
            log.error("cannot start the production API: %s", e)
            return 1
    engine.start()  # no-op when the caller started it already
    scheme = "https" if sslctx else "http"
    actual_port = port
    try:
        sock = sites[0]._server.sockets[0]  # type: ignore[union-attr]
        actual_port = sock.getsockname()[1]
    except Exception:  # noqa: BLE001
        pass
    app["ctx"].extra["port"] = actual_port
    host = sites[0].name.split("//", 1)[-1].rsplit(":", 1)[0] if sites else "127.0.0.1"
    if host in ("0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    url = f"{scheme}://{host}:{actual_port}"
    process.startup_complete()
    log.info("server ready in %.2f s at %s", time.perf_counter() - t0, url)
    if not config_get(config, "dont_print_server", False):
        print(f"Starting server\n\nTo see the GUI go to: {url}", flush=True)
    if config_get(config, "auto_launch", False) and not config_get(config, "disable_auto_launch", False):
        import webbrowser
        webbrowser.open(url)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        if api_runner is not None:
            await api_runner.cleanup()
        await runner.cleanup()
        if own_engine:
            engine.stop()
            close = getattr(engine.queue, "close", None)
            if close is not None:  # the last writes committed, the SQLite log checkpointed
                await asyncio.to_thread(close)
    return 0


def run_server(config: Any = None) -> int:
    """What the ``comfyui`` command runs: engine + nodes + HTTP/WS server until Ctrl-C. The
    engine's runtime is the process default, so threads custom nodes start see it too."""
    if config is None:
        from comfyui.config import load_config
        config = load_config()
    rt = Runtime(config)
    make_default(rt)
    try:
        return asyncio.run(serve(config, runtime=rt))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # python -m comfyui.server.app [flags]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(run_server())
