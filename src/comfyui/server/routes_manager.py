"""``--enable-manager``: the ``comfyui-manager`` package when it is installed (the ``manager``
extra; :func:`start_comfyui_manager` starts it as ComfyUI does), otherwise the built-in routes
below, which the frontend's Manager dialog calls, served over
:class:`comfyui.nodes.packs.PackManager` (the code behind ``comfyui node``).

The dialog lists packs from the registry itself (the frontend asks ``api.comfy.org``); the
server answers what is installed and runs the changes as a task queue, as ComfyUI-Manager 4
does (same paths under ``/v2``, same JSON and WebSocket shapes):

* ``POST /v2/manager/queue/task`` ``{kind, params, ui_id, client_id}`` queues install /
  uninstall / update / disable / enable; ``POST /v2/manager/queue/update_all`` queues an update
  of every registry and git pack; ``POST /v2/manager/queue/start`` runs the queue;
* each task sends ``cm-task-started`` and ``cm-task-completed`` (``{ui_id, kind, timestamp,
  result, status: {status_str, completed, messages}, state}``) on the WebSocket;
* ``GET /v2/manager/queue/status``, ``/v2/manager/queue/history``,
  ``GET /v2/customnode/installed`` (``{key: {ver, cnr_id, aux_id, enabled}}``),
  ``POST /v2/customnode/import_fail_info[_bulk]`` (the tracebacks of packs that failed to load),
  ``GET /v2/manager/is_legacy_manager_ui``, ``GET /v2/manager/version``;
* ``POST /v2/manager/reboot`` restarts the process with its original command line.

With ``--block-runtime-package-installation`` the tasks never pip install (requirements are
reported, not installed). Changes take effect after a restart, as with ComfyUI-Manager.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import os
import sys
from typing import Any

from aiohttp import web

from .context import ServerContext, add_route, config_get, error_response, json_response

log = logging.getLogger(__name__)

MANAGER_VERSION = "4.3-comfyui"
KINDS = ("install", "uninstall", "update", "disable", "enable", "update_all")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class ManagerRoutes:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.pending: list[dict] = []
        self.running: list[dict] = []
        self.history: dict[str, dict] = {}
        self.worker: asyncio.Task | None = None

    # -- packs -----------------------------------------------------------------------------
    def _manager(self, messages: list[str] | None = None):
        from .. import paths
        from ..nodes.packs import DEFAULT_REGISTRY_URL, PackManager

        echo = (lambda msg: (messages.append(msg), log.info("[Manager] %s", msg))) if messages is not None else None
        registry_url = config_get(self.ctx.config, "registry_url", None) or DEFAULT_REGISTRY_URL
        return PackManager(paths.get_custom_nodes_directories()[0], registry_url, echo=echo)

    def installed(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for p in self._manager().folder_packs():  # pip packs are not folders the dialog can manage
            key = p.id or p.name
            if key in out and out[key]["enabled"]:
                continue  # an enabled copy wins over a disabled one
            out[key] = {"ver": p.version or "unknown", "cnr_id": p.id or "", "aux_id": None if p.id else p.name,
                        "enabled": p.enabled}
        return out

    def state(self) -> dict:
        return {"history": self.history, "running_queue": self.running, "pending_queue": self.pending,
                "installed_packs": self.installed()}

    def _send(self, event: str, data: dict) -> None:
        self.ctx.clients.send_json_threadsafe(event, data, None)

    # -- running a task (in a worker thread: pip and git block) -----------------------------
    def _run(self, task: dict, messages: list[str]) -> str:
        from ..nodes.packs import PackError

        kind, params = task["kind"], task.get("params") or {}
        no_deps = bool(config_get(self.ctx.config, "block_runtime_package_installation", False))
        if no_deps:
            messages.append("--block-runtime-package-installation: requirements are not installed")
        manager = self._manager(messages)

        def name_of(*keys: str) -> str:
            for key in keys:
                if params.get(key):
                    return str(params[key])
            raise PackError(f"the {kind} task names no pack (params {sorted(params)})")

        if kind == "install":
            node_id = name_of("id", "cnr_id", "node_name")
            wanted = params.get("selected_version") or params.get("version")
            wanted = None if wanted in (None, "", "latest") else str(wanted)
            installed = self.installed().get(node_id)
            if wanted == "nightly":
                repository = params.get("repository")
                if not repository:
                    raise PackError(f"{node_id} has no repository for a nightly install")
                if installed:
                    raise PackError(f"{node_id} is already installed; uninstall it before switching to nightly")
                return manager.install(repository, no_deps=no_deps).name
            if installed is None:
                return manager.install(node_id, version=wanted, no_deps=no_deps).name
            if not installed["enabled"]:
                manager.enable(node_id)
            if wanted and wanted != installed["ver"]:
                manager.update(node_id, version=wanted, no_deps=no_deps)
            return node_id
        if kind == "uninstall":
            return manager.uninstall(name_of("node_name", "id", "cnr_id")).name
        if kind == "disable":
            return manager.disable(name_of("node_name", "id", "cnr_id")).name
        if kind == "enable":
            return manager.enable(name_of("cnr_id", "node_name", "id")).name
        if kind == "update":
            version = params.get("node_ver") or None
            now, before = manager.update(name_of("node_name", "id", "cnr_id"),
                                         version=None if version in ("latest", "unknown") else version,
                                         no_deps=no_deps)
            if before is None:
                messages.append(f"{now.name} is up to date ({now.version})")
            return now.name
        if kind == "update_all":
            failed = []
            for pack in manager.folder_packs():
                if pack.enabled and pack.source in ("registry", "git"):
                    try:
                        manager.update(pack.name, no_deps=no_deps)
                    except PackError as e:
                        messages.append(f"error: {e}")
                        failed.append(pack.name)
            if failed:
                raise PackError(f"could not update {', '.join(failed)}")
            return "all packs"
        raise PackError(f"the Manager task kind {kind!r} is not supported here (one of {', '.join(KINDS)})")

    async def _work(self) -> None:
        from ..nodes.packs import PackError

        loop = asyncio.get_running_loop()
        rt = getattr(self.ctx.engine, "runtime", None)
        while self.pending:
            task = self.pending.pop(0)
            self.running.append(task)
            self._send("cm-task-started", {"ui_id": task["ui_id"], "kind": task["kind"], "timestamp": _now(),
                                           "state": self.state()})
            messages: list[str] = []

            def run(task=task, messages=messages):
                if rt is None:
                    return self._run(task, messages)
                with rt.active():
                    return self._run(task, messages)

            try:
                name = await loop.run_in_executor(None, run)
                status, result = "success", f"{task['kind']} {name}: done"
            except PackError as e:
                status, result = "failed", str(e)
                messages.append(f"error: {e}")
                log.error("[Manager] %s task failed: %s", task["kind"], e)
            except Exception as e:  # noqa: BLE001 - the dialog shows it; the log has the traceback
                status, result = "error", f"{type(e).__name__}: {e}"
                messages.append(result)
                log.exception("[Manager] %s task failed", task["kind"])
            self.running.remove(task)
            item = {"ui_id": task["ui_id"], "client_id": task["client_id"], "kind": task["kind"],
                    "timestamp": _now(), "result": result, "params": task.get("params"),
                    "status": {"status_str": status, "completed": status == "success", "messages": messages}}
            self.history[task["ui_id"]] = item
            self._send("cm-task-completed", {**{k: item[k] for k in ("ui_id", "kind", "timestamp", "result",
                                                                       "status")}, "state": self.state()})
        self._send("cm-queue-status", {"status": "all-done", "timestamp": _now()})

    # -- handlers --------------------------------------------------------------------------
    def _queue(self, kind: Any, params: Any, ui_id: Any, client_id: Any) -> web.Response | None:
        if kind not in KINDS:
            return error_response(f"unknown task kind {kind!r}; one of {', '.join(KINDS)}")
        if not isinstance(params, dict) or not ui_id:
            return error_response("a task needs 'params' (an object) and 'ui_id'")
        self.pending.append({"kind": kind, "params": params, "ui_id": str(ui_id),
                             "client_id": str(client_id or "unknown")})
        return None

    async def queue_task(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return error_response("the task must be a JSON object")
        if not isinstance(body, dict):
            return error_response("the task must be a JSON object")
        problem = self._queue(body.get("kind"), body.get("params"), body.get("ui_id"), body.get("client_id"))
        return problem or web.Response(status=200)

    async def update_all(self, request: web.Request) -> web.Response:
        q = request.query
        problem = self._queue("update_all", {"mode": q.get("mode") or "cache"}, q.get("ui_id"), q.get("client_id"))
        return problem or web.Response(status=200)

    async def start(self, request: web.Request) -> web.Response:
        if self.worker is not None and not self.worker.done():
            return web.Response(status=201)  # already running (ComfyUI-Manager's answer)
        self.worker = asyncio.create_task(self._work())
        return web.Response(status=200)

    async def status(self, request: web.Request) -> web.Response:
        client_id = request.query.get("client_id")

        def mine(tasks):
            return [t for t in tasks if client_id is None or t["client_id"] == client_id]

        running, pending = mine(self.running), mine(self.pending)
        done = mine(self.history.values())
        body = {"total_count": len(running) + len(pending), "done_count": len(done),
                "in_progress_count": len(running), "pending_count": len(pending),
                "is_processing": bool(running)}
        if client_id is not None:
            body["client_id"] = client_id
        return json_response(body)

    async def get_history(self, request: web.Request) -> web.Response:
        q = request.query
        items = [h for h in self.history.values()
                 if (not q.get("client_id") or h["client_id"] == q["client_id"])
                 and (not q.get("ui_id") or h["ui_id"] == q["ui_id"])]
        try:
            offset = max(int(q.get("offset", 0) or 0), 0)
            limit = int(q["max_items"]) if q.get("max_items") else None
        except ValueError:
            return error_response("offset and max_items must be integers")
        items = items[offset:offset + limit if limit is not None else None]
        return json_response({"history": {h["ui_id"]: h for h in items}})

    async def get_installed(self, request: web.Request) -> web.Response:
        return json_response(await asyncio.get_running_loop().run_in_executor(None, self.installed))

    def _load_errors(self) -> dict[str, str]:
        results = getattr(self.ctx.engine.registry, "custom_node_results", None) or []
        return {r.name: r.error for r in results if r.error}

    async def import_fail_info(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if body is None:
            return error_response("send {\"cnr_id\": ...} or {\"url\": ...}")
        key = body.get("cnr_id") or _url_name(body.get("url"))
        error = self._load_errors().get(key or "")
        if error is None:
            return web.Response(status=400, text=f"no import failure recorded for {key}")
        return json_response({"msg": error, "name": key, "path": key})

    async def import_fail_info_bulk(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if body is None or not (body.get("cnr_ids") or body.get("urls")):
            return error_response("Either 'cnr_ids' or 'urls' field is required")
        errors = self._load_errors()
        out: dict[str, Any] = {}
        for key in list(body.get("cnr_ids") or []) + list(body.get("urls") or []):
            error = errors.get(_url_name(key) if "/" in str(key) else str(key))
            out[str(key)] = {"error": error.strip().splitlines()[-1], "traceback": error} if error else None
        return json_response(out)

    async def is_legacy(self, request: web.Request) -> web.Response:
        return json_response({"is_legacy_manager_ui": False})

    async def version(self, request: web.Request) -> web.Response:
        return web.Response(text=MANAGER_VERSION)

    async def reboot(self, request: web.Request) -> web.Response:
        if self.running or self.pending:
            return error_response("the Manager is still running tasks; restart when they are done", 409)
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
        log.info("[Manager] restarting: %s", " ".join(argv))
        asyncio.get_running_loop().call_later(0.5, _restart, argv)
        return web.Response(status=200)


def _restart(argv: list[str]) -> None:
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *argv[1:]])


def _url_name(url: Any) -> str | None:
    if not url:
        return None
    name = str(url).rstrip("/").rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".git") else name


async def _json_object(request: web.Request) -> dict | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def start_comfyui_manager(config: Any, runtime: Any = None) -> bool:
    """With ``--enable-manager`` and the ``comfyui-manager`` package installed, start it as
    ComfyUI does (prestartup before the custom nodes load, then start: it declares its /v2 routes
    on ``PromptServer.instance.routes``); -> whether it runs. It installs from ``--registry-url``.
    Without the package, or when it fails to start, :func:`setup` serves the built-in routes."""
    global _PACKAGE_RUNS
    if not config_get(config, "enable_manager", False):
        return False
    from contextlib import nullcontext

    from .. import compat

    with runtime.active() if runtime is not None else nullcontext():
        compat.install()
        try:
            import comfyui_manager
            from comfyui_manager.common import cnr_utils
        except ImportError as e:
            log.info("--enable-manager: the comfyui-manager package is not installed (%s); serving the built-in "
                     "Manager routes (pip install 'comfyui[manager]' for the full ComfyUI-Manager)", e)
            for flag in ("enable_manager_legacy_ui", "disable_manager_ui"):
                if config_get(config, flag, False):
                    log.warning("--%s has no effect without the comfyui-manager package", flag.replace("_", "-"))
            return False
        try:
            cnr_utils.base_url = config_get(config, "registry_url", None) or cnr_utils.base_url
            comfyui_manager.prestartup()
            comfyui_manager.start()
        except Exception:  # noqa: BLE001 - a broken Manager must not stop the server
            log.exception("--enable-manager: comfyui-manager failed to start; serving the built-in Manager routes")
            return False
    _PACKAGE_RUNS = True
    log.info("--enable-manager: running the comfyui-manager package")
    return True


_PACKAGE_RUNS = False  # the package's routes are declared: the built-in ones stay off


def setup(app: web.Application, ctx: ServerContext) -> None:
    if not config_get(ctx.config, "enable_manager", False) or _PACKAGE_RUNS:
        return
    routes = ManagerRoutes(ctx)
    ctx.extra["manager"] = routes
    for method, path, handler in (
        ("POST", "/v2/manager/queue/task", routes.queue_task),
        ("POST", "/v2/manager/queue/update_all", routes.update_all),
        ("POST", "/v2/manager/queue/start", routes.start),
        ("GET", "/v2/manager/queue/status", routes.status),
        ("GET", "/v2/manager/queue/history", routes.get_history),
        ("GET", "/v2/customnode/installed", routes.get_installed),
        ("POST", "/v2/customnode/import_fail_info", routes.import_fail_info),
        ("POST", "/v2/customnode/import_fail_info_bulk", routes.import_fail_info_bulk),
        ("GET", "/v2/manager/is_legacy_manager_ui", routes.is_legacy),
        ("GET", "/v2/manager/version", routes.version),
        ("POST", "/v2/manager/reboot", routes.reboot),
    ):
        add_route(app, method, path, handler)
