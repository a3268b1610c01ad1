"""The production API's aiohttp application and its listener.

``create_api_app(engine, config, settings)`` builds the app; ``start_api(...)`` serves it on
``--api-port`` next to the main server (``comfyui.server.app.serve`` calls it when
``--enable-api`` / ``COMFYUI_ENABLE_API`` is on). Both listeners share the process, the engine
and its queue: a prompt sent here is a job like any other (it shows in ``/queue``,
``/history``, ``/api/jobs``).

Routes: ``POST /prompt`` (:mod:`.service`), ``GET /prompt/{id}/events`` (:mod:`.progress`), ``GET /undelivered`` (:mod:`.undelivered`), ``POST /workflow/<path>`` (:mod:`.workflow_endpoints`), ``GET /health``, ``GET /ready``, ``GET /models``,
``GET /openapi.json``, ``GET /docs`` (Swagger UI). With ``--api-key`` set every route but the
probes and the docs needs ``Authorization: Bearer <key>``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from pydantic import ValidationError

from ..jobs.submission import PromptRequest
from ..jsonutil import dumps
from ..server.context import read_json
from ..server.security import _key_ok, error_middleware, make_limits_middleware
from .progress import ProgressStreams
from .undelivered import public
from .service import ApiService, rewrite_prefixes
from .settings import ApiSettings
from .system_events import SystemEvents
from .workflow_endpoints import WorkflowEndpoint, input_errors, load_workflows, warmup_checkpoint_of

log = logging.getLogger(__name__)

STATE = web.AppKey("api_state", "ApiState")
# open without the API key: the probes, and the docs (a browser cannot send a bearer token on
# a page load; Swagger UI's Authorize button sends it on the calls it makes)
PUBLIC = ("/health", "/ready", "/docs", "/openapi.json")


def version() -> str:
    from .. import __version__

    return __version__


class ApiState:
    def __init__(self, engine: Any, config: Any, settings: ApiSettings):
        self.engine, self.config, self.settings = engine, config, settings
        self.session: aiohttp.ClientSession | None = None
        self.service: ApiService | None = None
        self.events: SystemEvents | None = None
        self.progress: ProgressStreams | None = None
        self.warm = asyncio.Event()
        self.warmup_failed: str | None = None
        self.warmup_checkpoint: str | None = None
        self.warmup_task: asyncio.Task | None = None

    # ---- probes ----
    def ready(self) -> bool:
        depth = self.settings.max_queue_depth
        return (self.warm.is_set() and self.engine.running
                and (not depth or self.engine.queue_remaining() < depth))

    async def health(self, request: web.Request) -> web.Response:
        if self.warm.is_set():
            return web.json_response({"version": version(), "status": "healthy"})
        return web.json_response({"version": version(), "status": "not healthy"}, status=500)

    async def ready_probe(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.json_response({"version": version(), "status": "ready"})
        return web.json_response({"version": version(), "status": "not ready"}, status=503)

    async def models(self, request: web.Request) -> web.Response:
        folders = self.engine.runtime.folders
        names = [n for n in folders.folder_names_and_paths if n != "custom_nodes"]
        lists = await asyncio.to_thread(lambda: {n: folders.get_filename_list(n) for n in names})
        return web.json_response(lists)

    async def prompt(self, request: web.Request) -> web.Response:
        body = await read_json(request, default=None, require_content_type=False)
        return await self.service.handle(body)

    async def undelivered(self, request: web.Request) -> web.Response:
        """``GET /undelivered[?id=]``: webhook messages not delivered after their retries."""
        records = await asyncio.to_thread(self.service.undelivered.load)
        wanted = request.query.get("id")
        listed = [public(r) for r in records if wanted in (None, r.get("id"), r.get("prompt_id"))]
        return web.json_response({"undelivered": listed})

    async def prompt_events(self, request: web.Request) -> web.StreamResponse:
        return await self.progress.stream(request)

    def workflow_handler(self, endpoint: WorkflowEndpoint):
        """``POST /workflow/<path>``: ``input`` checked against the module's RequestSchema, its
        prompt built, the rest of the body run as ``POST /prompt``; the answer adds ``input``."""
        async def handle(request: web.Request) -> web.Response:
            body = await read_json(request, default=None, require_content_type=False)
            request_id = body.get("id") if isinstance(body, dict) else None
            if not isinstance(body, dict):
                return _refusal("invalid_request", "Invalid request", "The request body must be a JSON object",
                                request_id)
            try:
                data = endpoint.parse(body.get("input", {}))
            except ValidationError as e:
                errors = input_errors(e)
                details = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in errors)
                return _refusal("invalid_input", "Invalid workflow input", details, request_id, {"errors": errors})
            try:
                prompt = await endpoint.build_prompt(data)
            except Exception as e:  # noqa: BLE001 - the module's code: its failure is the request's
                log.warning("workflow %s could not build its prompt", endpoint.path, exc_info=True)
                return _refusal("workflow_failed", "Failed to generate workflow prompt", f"{type(e).__name__}: {e}",
                                request_id)
            rest = {k: v for k, v in body.items() if k != "input"}
            status, answer, headers = await self.service.respond({**rest, "prompt": prompt})
            if status in (200, 202):
                answer["input"] = data.model_dump(mode="json")
            return web.Response(text=dumps(answer), status=status, content_type="application/json",
                                headers=headers or None)

        return handle

    # ---- warmup ----
    async def run_warmup(self) -> None:
        path = self.settings.warmup_prompt_file
        try:
            if path:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
                prompt = data.get("prompt", data) if isinstance(data, dict) else data
                self.warmup_checkpoint = _checkpoint_of(prompt)
                log.info("production API: running the warmup prompt %s", path)
                prompt_id = str(uuid.uuid4())
                prompt = rewrite_prefixes(prompt, prompt_id, "warmup")
                await self.service.submitter.submit(PromptRequest(prompt, prompt_id=prompt_id))
                await self.service.run(prompt_id, None, {})
                await self.service.remove_outputs(prompt_id)
            self.warm.set()
        except Exception as e:  # noqa: BLE001 - unreadable, refused or failed: not ready, said once
            self.warmup_failed = f"{type(e).__name__}: {e}"
            log.error("production API: warmup prompt %s failed; /ready stays 503: %s", path, self.warmup_failed)


def _checkpoint_of(prompt: Any) -> str | None:
    """The warmup prompt's checkpoint (the default model of workflow endpoints)."""
    if isinstance(prompt, dict):
        for node in prompt.values():
            if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
                name = node["inputs"].get("ckpt_name")
                if isinstance(name, str):
                    return name
    return None


def _refusal(type_: str, message: str, details: str, request_id: Any, extra_info: dict | None = None) -> web.Response:
    error = {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}
    return web.Response(text=dumps({"error": error, "node_errors": {}, "id": request_id}), status=400,
                        content_type="application/json")


def _auth_middleware(api_key: str | None):
    @web.middleware
    async def auth(request: web.Request, handler):
        if api_key is not None and request.path not in PUBLIC and not request.path.startswith("/docs/"):
            auth_header = request.headers.get("Authorization", "")
            given = auth_header[7:].strip() if auth_header[:7].lower() == "bearer " else None
            if not _key_ok(given, api_key):
                return web.json_response({"error": "Unauthorized"}, status=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="comfyui"'})
        return await handler(request)

    return auth


def create_api_app(engine: Any, config: Any = None, settings: ApiSettings | None = None) -> web.Application:
    from ..server.app import _api_key, _runtime_middleware
    from .openapi import setup_docs

    settings = settings or ApiSettings.from_env(config)
    state = ApiState(engine, config, settings)
    body_timeout = float(getattr(config, "body_timeout", 30.0) or 0) or None  # --body-timeout, as the main port
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[_runtime_middleware(engine), error_middleware,
                                       make_limits_middleware(settings.max_body_bytes, body_timeout),
                                       _auth_middleware(_api_key(config))])
    app[STATE] = state
    app.router.add_post("/prompt", state.prompt)
    app.router.add_get("/prompt/{id}/events", state.prompt_events)
    app.router.add_get("/health", state.health)
    app.router.add_get("/ready", state.ready_probe)
    app.router.add_get("/models", state.models)
    app.router.add_get("/undelivered", state.undelivered)
    workflows = load_workflows(settings.workflow_dir, warmup_checkpoint_of(settings.warmup_prompt_file))
    for endpoint in workflows:
        app.router.add_post(endpoint.route, state.workflow_handler(endpoint))
    setup_docs(app, bearer_auth=_api_key(config) is not None, workflows=workflows)

    async def on_startup(app: web.Application) -> None:
        state.session = aiohttp.ClientSession()
        state.service = ApiService(engine, settings, state.session)
        state.progress = state.service.progress = ProgressStreams(engine, asyncio.get_running_loop())
        engine.add_listener(state.progress.listener)
        if settings.system_webhook_url and settings.system_webhook_events:
            state.events = SystemEvents(state.service.webhooks, settings, asyncio.get_running_loop())
            engine.add_listener(state.events.listener)
        state.warmup_task = asyncio.create_task(state.run_warmup())
        redelivery = asyncio.create_task(state.service.redeliver())
        state.service.background.add(redelivery)
        redelivery.add_done_callback(state.service.background.discard)

    async def on_cleanup(app: web.Application) -> None:
        if state.warmup_task is not None and not state.warmup_task.done():
            state.warmup_task.cancel()
        if state.progress is not None:
            engine.remove_listener(state.progress.listener)
        if state.events is not None:
            engine.remove_listener(state.events.listener)
            await state.events.close()
        if state.service is not None:
            await state.service.close()
        if state.session is not None:
            await state.session.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def start_api(engine: Any, config: Any, addresses: list[str], ssl_context: Any = None) -> web.AppRunner:
    """Serve the production API on ``--api-port`` at ``addresses``; -> its runner (clean it
    up to stop). Raises OSError when the port cannot be bound."""
    from ..server.app import runner_options

    settings = ApiSettings.from_env(config)
    runner = web.AppRunner(create_api_app(engine, config, settings), access_log=None, handle_signals=False,
                           **runner_options(config))
    await runner.setup()
    try:
        for addr in addresses:
            site = web.TCPSite(runner, addr, settings.port, ssl_context=ssl_context, reuse_address=True)
            try:
                await site.start()
            except OSError:
                if addr == "::" and len(addresses) > 1:
                    continue
                raise
    except BaseException:
        await runner.cleanup()
        raise
    scheme = "https" if ssl_context else "http"
    log.info("production API at %s://%s:%s (docs at /docs)", scheme, addresses[0], settings.port)
    return runner

