"""``server.PromptServer`` for custom nodes: a process-wide event hub plus extra routes.

What custom nodes use::

    from server import PromptServer
    PromptServer.instance.send_sync("my.event", {"x": 1}, sid)   # -> frontend websocket
    @PromptServer.instance.routes.get("/my_pack/hello")          # extra HTTP routes
    async def hello(request): ...

Contract for the rest of comfyui:

* Engine (event producer side): ``add_sink(fn)`` registers ``fn(event: str, data, sid: str | None)``;
  every ``send_sync`` / ``send`` / ``send_json`` call is forwarded to every sink, in order.
  A failing sink is logged and does not stop the others.
* aiohttp server: at startup it calls ``PromptServer.instance.attach(app, loop)`` and adds
  ``PromptServer.instance.routes`` (an ``aiohttp.web.RouteTableDef``) to its app, *after*
  custom nodes were loaded (routes declared later are not served). It sets
  ``PromptServer.instance.client_id`` to the last websocket client id, and calls
  ``trigger_on_prompt(json)`` for each POST /prompt body (handlers registered by custom nodes
  with ``add_on_prompt_handler`` may rewrite it).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

from aiohttp import web

log = logging.getLogger(__name__)

Sink = Callable[[str, Any, "str | None"], None]

_sinks: list[Sink] = []
_sinks_lock = threading.Lock()


def add_sink(sink: Sink) -> None:
    with _sinks_lock:
        if sink not in _sinks:
            _sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    with _sinks_lock:
        if sink in _sinks:
            _sinks.remove(sink)


def sinks() -> list[Sink]:
    with _sinks_lock:
        return list(_sinks)


def _dispatch(event: str, data: Any, sid: str | None) -> None:
    for sink in sinks():
        try:
            sink(event, data, sid)
        except Exception:  # one broken listener must not break node code
            log.exception("PromptServer event sink %r failed for event %r", sink, event)


class PromptQueueView:
    """``PromptServer.instance.prompt_queue``: ComfyUI's PromptQueue API over the queue of the
    engine the server runs. Items are ComfyUI's tuples ``(number, prompt_id, prompt,
    extra_data, outputs_to_execute, sensitive)``; ``sensitive`` is always ``{}`` (secrets stay
    with the engine). Packs may take this object at import time, before a server exists: it
    finds the engine when used."""

    def __init__(self, server: "PromptServer"):
        self._server = server

    def _queue(self) -> Any:
        engine = self._server.engine
        if engine is None:
            raise RuntimeError("PromptServer.instance.prompt_queue is only usable while the comfyui server runs")
        return engine.queue

    @staticmethod
    def _tuple(item: Any) -> tuple:
        return (item.number, item.prompt_id, item.prompt, item.extra_data, item.outputs, {})

    @property
    def currently_running(self) -> dict[int, tuple]:
        return {i: self._tuple(item) for i, item in enumerate(self._queue().running_items())}

    @property
    def queue(self) -> list[tuple]:
        return [self._tuple(item) for item in self._queue().pending_items()]

    def put(self, item: tuple) -> None:
        """Queue a prompt as is (no validation, like ComfyUI's ``prompt_queue.put``)."""
        from comfyui.engine.queue import QueueItem

        number, prompt_id, prompt, extra_data, outputs = item[:5]
        extra_data = dict(extra_data or {})
        self._queue().put(QueueItem(number=number, prompt_id=prompt_id, prompt=prompt, extra_data=extra_data,
                                    outputs=list(outputs), client_id=extra_data.get("client_id"),
                                    created_at=time.time()), wait=True)
        self._server.queue_updated()

    def get_current_queue(self) -> tuple[list, list]:
        running, pending = self._queue().get_current_queue()
        return [r + [{}] for r in running], [p + [{}] for p in pending]

    def get_current_queue_volatile(self) -> tuple[list, list]:
        return self.get_current_queue()

    def get_tasks_remaining(self) -> int:
        return self._queue().remaining()

    def wipe_queue(self) -> None:
        self._server.engine.clear_pending()

    def delete_queue_item(self, function: Callable[[tuple], bool]) -> bool:
        """Delete the first pending item for which ``function(item_tuple)`` is true."""
        for item in self._queue().pending_items():
            if function(self._tuple(item)):
                self._server.engine.delete_pending([item.prompt_id])
                return True
        return False

    def get_history(self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1) -> dict:
        return self._queue().get_history(max_items, offset, prompt_id)

    def wipe_history(self) -> None:
        self._server.engine.clear_history()

    def delete_history_item(self, id_to_delete: str) -> None:
        self._server.engine.delete_history([id_to_delete])


class _PendingRouter:
    """``app.router`` before the server exists: routes added here go to ``PromptServer.routes``."""

    frozen = False

    def __init__(self, routes: web.RouteTableDef):
        self._routes = routes

    def add_route(self, method: str, path: str, handler: Callable, **kwargs: Any) -> None:
        self._routes.route(method, path, **kwargs)(handler)

    def add_get(self, path: str, handler: Callable, **kwargs: Any) -> None:
        self.add_route("GET", path, handler, **kwargs)

    def add_post(self, path: str, handler: Callable, **kwargs: Any) -> None:
        self.add_route("POST", path, handler, **kwargs)

    def add_static(self, prefix: str, path: Any, **kwargs: Any) -> None:
        self._routes.static(prefix, path, **kwargs)


class _PendingApp:
    """``PromptServer.instance.app`` while custom nodes load. In ComfyUI the aiohttp app exists
    by then and packs add routes to it at import; here the app is built after loading, so
    what they add is kept in ``PromptServer.routes``, which the server serves."""

    def __init__(self, routes: web.RouteTableDef):
        self.router = _PendingRouter(routes)

    def add_routes(self, routes) -> None:
        for route in routes:
            if isinstance(route, web.StaticDef):
                self.router.add_static(route.prefix, route.path, **route.kwargs)
            else:
                self.router.add_route(route.method, route.path, route.handler, **route.kwargs)


class PromptServer:
    """Singleton stand-in for ComfyUI's ``server.PromptServer`` (``PromptServer.instance``)."""

    instance: "PromptServer"

    def __init__(self) -> None:
        self.routes = web.RouteTableDef()
        self.app: web.Application | _PendingApp = _PendingApp(self.routes)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.engine: Any = None  # the running server's comfyui.engine.Engine
        self.prompt_queue = PromptQueueView(self)
        self.number = 0  # ComfyUI's counter for the numbers of queued prompts (packs requeue with it)
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.on_prompt_handlers: list[Callable[[dict], dict]] = []
        self.supports = ["custom_nodes_from_web"]

    # -- wiring (called by comfyui.server) --
    def attach(self, app: web.Application | None, loop: asyncio.AbstractEventLoop | None) -> None:
        self.app = app if app is not None else _PendingApp(self.routes)
        self.loop = loop
        ctx = app.get("ctx") if app is not None else None
        self.engine = getattr(ctx, "engine", None)

    # -- events --
    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        """Send an event to the frontend (all clients when ``sid`` is None). Thread-safe."""
        _dispatch(event, data, sid)

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        _dispatch(event, data, sid)

    async def send_json(self, event: str, data: Any, sid: str | None = None) -> None:
        _dispatch(event, data, sid)

    def queue_updated(self) -> None:
        _dispatch("status", {"status": {}}, None)

    # -- prompt hooks --
    def add_on_prompt_handler(self, handler: Callable[[dict], dict]) -> None:
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data: dict) -> dict:
        for handler in list(self.on_prompt_handlers):
            try:
                json_data = handler(json_data)
            except Exception:
                log.exception("on_prompt handler %r failed", handler)
        return json_data


PromptServer.instance = PromptServer()
