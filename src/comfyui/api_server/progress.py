"""``GET /prompt/{id}/events``: a request's progress as Server-Sent Events.

``id`` is the request's ``id`` (the latest request with that id on this replica) or the
``prompt_id`` the answers carry. The stream opens with ``event: status`` (``queued``,
``running`` or ``done``), forwards the engine's events for that prompt (``execution_start``,
``execution_cached``, ``executing``, ``progress``, ``progress_state``, ``progress_text``,
``executed``; each ``data:`` is the event's JSON, as on ComfyUI's WebSocket) and ends with
``event: complete`` (``{"id", "prompt_id", "outputs"}``) or ``event: failed`` (``{"id",
"prompt_id", "error"}``) when the job ends. Events come from the engine's listener on its
worker thread, handed to the server's loop; the end comes from :meth:`Engine.wait`.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from aiohttp import web

from ..jsonutil import dumps
from .service import execution_error

log = logging.getLogger(__name__)

FORWARDED = frozenset({"execution_start", "execution_cached", "executing", "progress", "progress_state",
                       "progress_text", "executed"})
KEEPALIVE_S = 15.0
REMEMBERED = 10_000  # request ids kept for lookup (oldest forgotten first)


class ProgressStreams:
    def __init__(self, engine: Any, loop: asyncio.AbstractEventLoop):
        self.engine, self.loop = engine, loop
        self.subscribers: dict[str, set[asyncio.Queue]] = {}
        self.requests: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id or prompt id -> (id, prompt id)

    def remember(self, request_id: str, prompt_id: str) -> None:
        for key in (request_id, prompt_id):
            self.requests[key] = (request_id, prompt_id)
            self.requests.move_to_end(key)
        while len(self.requests) > REMEMBERED:
            self.requests.popitem(last=False)

    def listener(self, event: str, data: Any, client_id: str | None) -> None:
        """The engine's listener (worker thread): hand this prompt's events to its streams."""
        if event not in FORWARDED or not isinstance(data, dict) or self.loop.is_closed():
            return
        prompt_id = data.get("prompt_id")
        if prompt_id in self.subscribers:
            self.loop.call_soon_threadsafe(self._put, prompt_id, event, data)

    def _put(self, prompt_id: str, event: str, data: dict) -> None:
        for queue in self.subscribers.get(prompt_id, ()):
            queue.put_nowait((event, data))

    def _state(self, prompt_id: str) -> str:
        if self.engine.running_prompt_id == prompt_id:
            return "running"
        return "done" if self.engine.get_history_item(prompt_id) is not None else "queued"

    async def stream(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["id"]
        request_id, prompt_id = self.requests.get(key, (None, key))
        if request_id is None and self.engine.get_history_item(key) is None:
            return web.json_response({"error": {"type": "not_found", "message": f"No request {key!r} on this server",
                                                "details": "", "extra_info": {}}, "node_errors": {}, "id": key},
                                     status=404)
        queue: asyncio.Queue = asyncio.Queue()
        self.subscribers.setdefault(prompt_id, set()).add(queue)  # before the state is read: no event lost
        finished = asyncio.ensure_future(asyncio.wrap_future(self.engine.wait(prompt_id)))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await _send(response, "status", {"id": request_id, "prompt_id": prompt_id,
                                              "status": self._state(prompt_id)})
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, finished}, timeout=KEEPALIVE_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await _send(response, *getter.result())
                    continue
                getter.cancel()
                if finished in done:
                    while not queue.empty():  # events handed over before the end
                        await _send(response, *queue.get_nowait())
                    await self._send_end(response, request_id, prompt_id, finished.result())
                    break
                await response.write(b": keepalive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away
        finally:
            finished.cancel()
            subscribers = self.subscribers.get(prompt_id)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self.subscribers[prompt_id]
        return response

    @staticmethod
    async def _send_end(response: web.StreamResponse, request_id: str | None, prompt_id: str, entry: dict) -> None:
        error = execution_error(entry)
        if error is None:
            await _send(response, "complete", {"id": request_id, "prompt_id": prompt_id,
                                                "outputs": entry.get("outputs") or {}})
        else:
            await _send(response, "failed", {"id": request_id, "prompt_id": prompt_id, "error": error})


async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
    await response.write(f"event: {event}\ndata: {dumps(data)}\n\n".encode())
