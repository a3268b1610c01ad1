"""Prompt submission and execution control: ``GET``/``POST /prompt``, ``/interrupt``, ``/free``
(frontend contract §2.1).

``POST /prompt`` goes through :class:`comfyui.jobs.submission.PromptSubmitter`, the policy
every way in shares (id checks, queue limit, secrets, create_time); a refusal answers with
its status and ComfyUI's error body ``{"error": {...}, "node_errors": {...}}``: 400 for a bad
request or an invalid prompt, 429 ``queue_full`` with ``Retry-After`` when
``--max-queue-size`` prompts are queued. A client-chosen ``prompt_id`` that is already known
answers 200 with that id and queues nothing (safe retries). Custom nodes'
``PromptServer.instance.add_on_prompt_handler`` hooks may rewrite the body first (as upstream).
A prompt with API nodes (paid services, the user's Comfy login) is refused over plain HTTP
unless the client is on loopback (docs/api-nodes.md): the login must not cross a network in clear.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from aiohttp import web

from ..jobs.submission import PromptRejected, PromptRequest, PromptSubmitter
from .security import _is_loopback
from .context import ServerContext, add_route, error_response, json_response, read_json

log = logging.getLogger(__name__)


def rejected_response(error: PromptRejected) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers or None)


def on_prompt_hooks(body: Any) -> Any:
    """The body as custom nodes' on-prompt handlers rewrite it (when any are registered)."""
    mod = sys.modules.get("comfyui.compat.server")
    if mod is None or not isinstance(body, dict):
        return body
    try:
        instance = mod.PromptServer.instance
        if not getattr(instance, "on_prompt_handlers", None):
            return body
        new = instance.trigger_on_prompt(body)
        if isinstance(new, dict):
            return new
    except Exception:  # noqa: BLE001
        log.exception("on_prompt handler failed")
    return body


def api_nodes_refusal(request: web.Request, prompt: Any, registry: Any) -> PromptRejected | None:
    """The refusal of a prompt with API nodes sent over plain HTTP from another machine."""
    if request.secure or _is_loopback(request.remote or "") or not isinstance(prompt, dict):
        return None
    api_nodes = {}
    for node_id, node in prompt.items():
        node_def = registry.get(node.get("class_type")) if isinstance(node, dict) else None
        if node_def is not None and node_def.api_node:
            api_nodes[str(node_id)] = node_def.name
    if not api_nodes:
        return None
    message = "API nodes need a secure connection: use HTTPS, or run the browser on this machine (localhost)"
    error = {"type": "api_nodes_need_secure_context", "message": message, "details": "", "extra_info": {}}
    node_errors = {node_id: {"errors": [dict(error)], "dependent_outputs": [], "class_type": class_type}
                   for node_id, class_type in api_nodes.items()}
    return PromptRejected(error, node_errors)


class PromptRoutes:
    def __init__(self, ctx: ServerContext):
        self.engine = ctx.engine
        self.submitter = PromptSubmitter(ctx.engine)

    async def get_prompt(self, request: web.Request) -> web.Response:
        return json_response({"exec_info": {"queue_remaining": self.engine.queue_remaining()}})

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await read_json(request, default=None)
        refusal = api_nodes_refusal(request, body.get("prompt") if isinstance(body, dict) else None,
                                    self.engine.registry)
        if refusal is not None:
            return rejected_response(refusal)
        try:
            result = await self.submitter.submit(PromptRequest.from_body(on_prompt_hooks(body)))
        except PromptRejected as e:
            return rejected_response(e)
        return json_response({"prompt_id": result.prompt_id, "number": result.number,
                              "node_errors": result.node_errors or {}})

    async def post_interrupt(self, request: web.Request) -> web.Response:
        body = await read_json(request, default={})
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if prompt_id is not None and not isinstance(prompt_id, str):
            return error_response("prompt_id must be a string")
        self.engine.interrupt(prompt_id or None)
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        body = await read_json(request, default={})
        if not isinstance(body, dict):
            return error_response("Body must be a JSON object")
        self.engine.free(unload_models=bool(body.get("unload_models", False)),
                         free_memory=bool(body.get("free_memory", False)))
        return web.Response(status=200)


    async def get_health(self, request: web.Request) -> web.Response:
        """Liveness, plus what the engine says of itself (a cluster frontend: its broker
        connection and the workers it hears from)."""
        health = getattr(self.engine, "health", None)
        return json_response({"status": "ok", **(health() if health is not None else {})})

    async def get_ready(self, request: web.Request) -> web.Response:
        """200 when prompts can be taken now (a cluster frontend: connected to its broker), else 503."""
        ready = getattr(self.engine, "ready", None)
        ok = ready() if ready is not None else self.engine.running
        return json_response({"ready": bool(ok)}, status=200 if ok else 503)


def setup(app: web.Application, ctx: ServerContext) -> None:
    r = PromptRoutes(ctx)
    add_route(app, "GET", "/prompt", r.get_prompt)
    add_route(app, "POST", "/prompt", r.post_prompt)
    add_route(app, "POST", "/interrupt", r.post_interrupt)
    add_route(app, "POST", "/free", r.post_free)
    add_route(app, "GET", "/health", r.get_health)
    add_route(app, "GET", "/ready", r.get_ready)
