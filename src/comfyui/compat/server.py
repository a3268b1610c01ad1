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


class PromptServer:
    """Singleton stand-in for ComfyUI's ``server.PromptServer`` (``PromptServer.instance``)."""

    instance: "PromptServer"

    def __init__(self) -> None:
        self.routes = web.RouteTableDef()
        self.app: web.Application | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.on_prompt_handlers: list[Callable[[dict], dict]] = []
        self.supports = ["custom_nodes_from_web"]

    # -- wiring (called by comfyui.server) --
    def attach(self, app: web.Application | None, loop: asyncio.AbstractEventLoop | None) -> None:
        self.app = app
        self.loop = loop

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
