"""ComfyUI's queue and history routes: ``GET``/``POST /queue``, ``GET``/``POST /history``,
``GET /history/{prompt_id}`` (frontend contract §2.1, §5.3).

Reads and edits of a durable store run on its own threads (``queue.call``), never on the
event loop; history answers are encoded there too. Queue items and history entries never
show secrets (``extra_data`` keys the engine already keeps out of the store; stripped again
here as a second line of defence).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from ..jobs.listing import without_secrets
from .context import ServerContext, add_route, dumps, error_response, read_json


def _shown(item: list) -> list:
    """A queue item as answered: ComfyUI's five fields, without secrets."""
    return [item[0], item[1], item[2], without_secrets(item[3]), item[4]]


# The largest count / offset a query may ask for: JavaScript's largest exact integer, far past
# any real queue, and small enough that offset + limit still fits a 64-bit SQL integer.
MAX_INT_PARAM = 2 ** 53 - 1


def int_param(request: web.Request, name: str, default: int | None, minimum: int | None = None,
              maximum: int = MAX_INT_PARAM) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=dumps({"error": f"{name} must be an integer"}), content_type="application/json")
    if minimum is not None and value < minimum:
        raise web.HTTPBadRequest(text=dumps({"error": f"{name} must be >= {minimum}"}), content_type="application/json")
    if value > maximum:
        raise web.HTTPBadRequest(text=dumps({"error": f"{name} must be <= {maximum}"}), content_type="application/json")
    return value


def id_list(body: Any, key: str) -> list[str] | None:
    ids = body.get(key)
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
        raise web.HTTPBadRequest(text=dumps({"error": f"'{key}' must be a list of ids"}),
                                 content_type="application/json")
    return [str(i) for i in ids]


def json_bytes(data: Any) -> bytes:
    return dumps(data).encode()


def json_body(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


class QueueRoutes:
    def __init__(self, ctx: ServerContext):
        self.engine = ctx.engine
        self.queue = ctx.engine.queue

    async def get_queue(self, request: web.Request) -> web.Response:
        if getattr(self.queue, "queue_in_database", False):  # a cluster frontend's (comfyui.distributed)
            running, pending = await self.queue.call(self.engine.get_queue)
        else:
            running, pending = self.engine.get_queue()  # in memory
        return json_body(json_bytes({"queue_running": [_shown(i) for i in running],
                                     "queue_pending": [_shown(i) for i in pending]}))

    async def post_queue(self, request: web.Request) -> web.Response:
        return await self._edit(request, self.engine.clear_pending, self.engine.delete_pending)

    async def _edit(self, request: web.Request, clear, delete) -> web.Response:
        """``{"clear": true}`` and/or ``{"delete": [ids]}``, off the event loop."""
        body = await read_json(request, default={})
        if not isinstance(body, dict):
            return error_response("Body must be a JSON object")
        ids = id_list(body, "delete")

        def edit() -> None:
            if body.get("clear"):
                clear()
            if ids:
                delete(ids)

        await self.queue.call(edit)
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        max_items = int_param(request, "max_items", None, minimum=0)
        offset = int_param(request, "offset", -1, minimum=-1)
        return json_body(await self.queue.call(lambda: json_bytes(self._shown_history(
            self.engine.get_history(max_items=max_items, offset=offset)))))

    async def get_history_item(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]

        def read() -> bytes:
            entry = self.engine.get_history_item(pid)
            return json_bytes(self._shown_history({pid: entry} if entry is not None else {}))

        return json_body(await self.queue.call(read))

    @staticmethod
    def _shown_history(history: dict) -> dict:
        shown = {}
        for pid, entry in history.items():
            item = entry.get("prompt")
            valid = isinstance(item, list) and len(item) >= 5 and isinstance(item[3], dict)
            shown[pid] = {**entry, "prompt": _shown(item)} if valid else entry
        return shown

    async def post_history(self, request: web.Request) -> web.Response:
        return await self._edit(request, self.engine.clear_history, self.engine.delete_history)


def setup(app: web.Application, ctx: ServerContext) -> None:
    r = QueueRoutes(ctx)
    add_route(app, "GET", "/queue", r.get_queue)
    add_route(app, "POST", "/queue", r.post_queue)
    add_route(app, "GET", "/history", r.get_history)
    add_route(app, "GET", "/history/{prompt_id}", r.get_history_item)
    add_route(app, "POST", "/history", r.post_history)
