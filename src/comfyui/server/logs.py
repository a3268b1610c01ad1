"""``/internal/logs`` (the whole log as one JSON string), ``/internal/logs/raw``
(``{"entries": [{"t", "m"}], "size": {"cols", "rows"}}``) and ``PATCH /internal/logs/subscribe``
(``{"clientId", "enabled"}``): subscribed WebSocket clients receive every new entry as a
``logs`` message ``{"entries": [entry], "size": {...}}``. The buffer is ``ctx.logs``
(:class:`comfyui.server.context.LogBuffer`); these routes exist only bare, never under /api.
"""
from __future__ import annotations

import shutil

from aiohttp import web

from .context import ServerContext, add_route, error_response, json_response, read_json


def terminal_size() -> dict:
    size = shutil.get_terminal_size(fallback=(80, 24))
    return {"cols": size.columns, "rows": size.lines}


async def handle_logs(request: web.Request) -> web.Response:
    ctx: ServerContext = request.app["ctx"]
    return json_response(ctx.logs.text())


async def handle_logs_raw(request: web.Request) -> web.Response:
    ctx: ServerContext = request.app["ctx"]
    return json_response({"entries": ctx.logs.entries(), "size": terminal_size()})


async def handle_logs_subscribe(request: web.Request) -> web.Response:
    ctx: ServerContext = request.app["ctx"]
    body = await read_json(request, default=None)
    if not isinstance(body, dict):
        return error_response("body must be {\"clientId\": string, \"enabled\": bool}", 400)
    sid, enabled = body.get("clientId"), body.get("enabled")
    if not isinstance(sid, str) or not sid or not isinstance(enabled, bool):
        return error_response("body must be {\"clientId\": string, \"enabled\": bool}", 400)
    ctx.logs.set_subscription(sid, enabled)
    return web.Response(status=200)


def setup(app: web.Application, ctx: ServerContext) -> None:
    logs = ctx.logs

    def on_entry(entry: dict) -> None:
        subscribers = list(logs.subscribers)
        if not subscribers:
            return
        data = {"entries": [entry], "size": terminal_size()}
        for sid in subscribers:
            ctx.send_json("logs", data, sid)

    if logs.on_entry is None:
        logs.on_entry = on_entry
    add_route(app, "GET", "/internal/logs", handle_logs)
    add_route(app, "GET", "/internal/logs/raw", handle_logs_raw)
    add_route(app, "PATCH", "/internal/logs/subscribe", handle_logs_subscribe)
