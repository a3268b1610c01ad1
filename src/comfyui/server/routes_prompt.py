"""Prompt, queue, history, interrupt, free, Jobs API, object_info, features, system_stats,
embeddings and models routes (frontend contract §2.1, §2.2, §5).

Documented choices:

* ``POST /prompt`` with a full queue (``--max-queue-size`` pending+running prompts) answers
  **429** with the ComfyUI error shape ``{"error": {"type": "queue_full", ...},
  "node_errors": {}}`` and ``Retry-After: 1``.
* A client-supplied ``prompt_id`` must be a non-empty string of at most 128 characters
  (400 ``invalid_prompt`` otherwise). Submitting an id that is already queued, running or in
  history is idempotent: 200 with that id and nothing new is queued (safe retries).
* Secrets (``extra_data.api_key_comfy_org`` / ``auth_token_comfy_org``) are popped out of
  ``extra_data`` by ``Engine.submit`` before anything is stored (queue, history, logs) and
  handed to the nodes only while the prompt runs; queue/jobs/history views strip them again
  as a second line of defence.
* Jobs cancel (``POST /jobs/{id}/cancel``, ``POST /jobs/cancel`` ``{"job_ids": [...]}``):
  a pending job is removed from the queue and recorded in history as cancelled (status
  ``cancelled``, an ``execution_interrupted`` message); the running job is interrupted (it
  ends as ``cancelled``); a finished job is left alone (idempotent no-op). Unknown ids: 404
  ``{"error": "Job not found"}`` for the single form; the batch form answers 200 with
  ``{"cancelled": [...], "not_found": [...]}``.
"""
from __future__ import annotations

import importlib.metadata as md
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from aiohttp import web

from .context import ServerContext, add_route, dumps, error_response, json_response, read_json

log = logging.getLogger(__name__)

SECRET_KEYS = ("api_key_comfy_org", "auth_token_comfy_org")
MAX_PROMPT_ID_LEN = 128
JOB_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")


# ============================================================================ helpers


def prompt_error(type_: str, message: str, details: str = "", status: int = 400,
                 node_errors: dict | None = None, headers: dict | None = None) -> web.Response:
    return json_response({"error": {"type": type_, "message": message, "details": details,
                                    "extra_info": {}},
                          "node_errors": node_errors or {}}, status=status, headers=headers)


def redact_extra_data(extra_data: Any) -> tuple[dict, dict]:
    """(extra_data without secrets, secrets)."""
    if not isinstance(extra_data, dict):
        return {}, {}
    clean = dict(extra_data)
    secrets = {k: clean.pop(k) for k in SECRET_KEYS if k in clean}
    return clean, secrets


def _strip_item(item: Any) -> Any:
    """A queue item with any secret removed from its extra_data (defence in depth)."""
    if isinstance(item, (list, tuple)) and len(item) >= 4 and isinstance(item[3], dict) \
            and any(k in item[3] for k in SECRET_KEYS):
        item = list(item)
        item[3] = redact_extra_data(item[3])[0]
    if isinstance(item, (list, tuple)) and len(item) > 5:
        item = list(item[:5])
    return item


def _int_param(request: web.Request, name: str, default: int | None, minimum: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=dumps({"error": f"{name} must be an integer"}),
                                 content_type="application/json")
    if minimum is not None and value < minimum:
        raise web.HTTPBadRequest(text=dumps({"error": f"{name} must be >= {minimum}"}),
                                 content_type="application/json")
    return value


def _id_list(body: Any, key: str) -> list[str] | None:
    ids = body.get(key)
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
        raise web.HTTPBadRequest(text=dumps({"error": f"'{key}' must be a list of ids"}),
                                 content_type="application/json")
    return [str(i) for i in ids]


# ============================================================================ handlers


class PromptRoutes:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.engine = ctx.engine
        self.max_queue = int(ctx.setting("max_queue_size", 65536) or 65536)
        self._versions_cache: dict | None = None
        self._gpu_cache: tuple[float, list] | None = None
        self._job_cache: dict[str, tuple[dict, dict]] = {}
        self._history_jobs_cache: tuple[tuple, list[dict]] | None = None
        self.history_generation = 0

    # ------------------------------------------------------------------ /prompt
    async def get_prompt(self, request: web.Request) -> web.Response:
        return json_response({"exec_info": {"queue_remaining": self.engine.queue_remaining()}})

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await read_json(request, default=None)
        if not isinstance(body, dict):
            return prompt_error("invalid_prompt", "Invalid prompt request",
                                "The request body must be a JSON object")
        body = self._on_prompt_hooks(body)
        prompt = body.get("prompt")
        if prompt is None:
            return prompt_error("no_prompt", "No prompt provided", "No prompt provided")
        if not isinstance(prompt, dict):
            return prompt_error("invalid_prompt", "Invalid prompt", "'prompt' must be a JSON object")
        prompt_id = body.get("prompt_id")
        if prompt_id is not None:
            if not isinstance(prompt_id, str) or not prompt_id.strip() or len(prompt_id) > MAX_PROMPT_ID_LEN:
                return prompt_error("invalid_prompt", "Invalid prompt_id",
                                    f"prompt_id must be a non-empty string of at most {MAX_PROMPT_ID_LEN} characters")
        number = body.get("number")
        if number is not None:
            if isinstance(number, bool) or not isinstance(number, (int, float, str)):
                return prompt_error("invalid_prompt", "Invalid number", "'number' must be a number")
            try:
                number = float(number)
            except ValueError:
                return prompt_error("invalid_prompt", "Invalid number", "'number' must be a number")
            if number != number or number in (float("inf"), float("-inf")):
                return prompt_error("invalid_prompt", "Invalid number", "'number' must be finite")
        front = bool(body.get("front", False))
        client_id = body.get("client_id")
        if client_id is not None and not isinstance(client_id, str):
            client_id = str(client_id)
        client_id = client_id or None
        targets = body.get("partial_execution_targets")
        if targets is not None:
            if not isinstance(targets, list) or not all(isinstance(t, (str, int)) for t in targets):
                return prompt_error("invalid_prompt", "Invalid partial_execution_targets",
                                    "'partial_execution_targets' must be a list of node ids")
            targets = [str(t) for t in targets]
        extra_data = body.get("extra_data")
        if extra_data is None:
            extra_data = {}
        if not isinstance(extra_data, dict):
            return prompt_error("invalid_prompt", "Invalid extra_data", "'extra_data' must be a JSON object")
        # The engine pops the secrets (SECRET_KEYS) out of extra_data before anything is stored
        # and hands them to the nodes only while the prompt runs.
        extra_data = dict(extra_data)
        if client_id is not None:
            extra_data["client_id"] = client_id
        extra_data.setdefault("create_time", int(time.time() * 1000))

        if self.engine.queue_remaining() >= self.max_queue:
            return self._queue_full()

        kwargs: dict[str, Any] = {"client_id": client_id, "extra_data": extra_data, "front": front}
        if prompt_id is not None:
            kwargs["prompt_id"] = prompt_id
        if number is not None:
            kwargs["number"] = number
        if targets is not None:
            kwargs["partial_execution_targets"] = targets
        from comfyui.engine.engine import PromptError, QueueFull

        try:
            result = await self.engine.submit_async(prompt, **kwargs)
        except PromptError as e:
            return json_response({"error": e.error, "node_errors": e.node_errors}, status=400)
        except QueueFull:
            return self._queue_full()
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # a malformed graph the validator did not catch must still be a 400, never a 500
            log.info("prompt rejected: %s: %s", type(e).__name__, e)
            return prompt_error("invalid_prompt", "Invalid prompt", f"{type(e).__name__}: {e}")
        return json_response({"prompt_id": result.prompt_id, "number": result.number,
                              "node_errors": result.node_errors or {}})

    def _queue_full(self) -> web.Response:
        return prompt_error("queue_full", "The queue is full",
                            f"The queue already holds {self.max_queue} prompts (--max-queue-size)",
                            status=429, headers={"Retry-After": "1"})

    def _on_prompt_hooks(self, body: dict) -> dict:
        """Custom nodes' ``PromptServer.instance.add_on_prompt_handler`` hooks may rewrite the
        whole request body before it is read (as upstream)."""
        mod = sys.modules.get("comfyui.compat.server")
        if mod is None:
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

    # ------------------------------------------------------------------ /queue
    async def get_queue(self, request: web.Request) -> web.Response:
        running, pending = self.engine.get_queue()
        return json_response({"queue_running": [_strip_item(i) for i in running],
                              "queue_pending": [_strip_item(i) for i in pending]})

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await read_json(request, default={})
        if not isinstance(body, dict):
            return error_response("Body must be a JSON object")
        ids = _id_list(body, "delete")
        if body.get("clear"):
            self.engine.clear_pending()
        if ids:
            self.engine.delete_pending(ids)
        return web.Response(status=200)

    # ------------------------------------------------------------------ /interrupt, /free
    async def post_interrupt(self, request: web.Request) -> web.Response:
        body = await read_json(request, default={})
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if prompt_id is not None and not isinstance(prompt_id, str):
            return error_response("prompt_id must be a string")
        if prompt_id:
            self.engine.interrupt(prompt_id)
        else:
            self.engine.interrupt()
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        body = await read_json(request, default={})
        if not isinstance(body, dict):
            return error_response("Body must be a JSON object")
        self.engine.free(unload_models=bool(body.get("unload_models", False)),
                         free_memory=bool(body.get("free_memory", False)))
        return web.Response(status=200)

    # ------------------------------------------------------------------ /history
    async def get_history(self, request: web.Request) -> web.Response:
        max_items = _int_param(request, "max_items", None, minimum=0)
        offset = _int_param(request, "offset", -1, minimum=-1)
        return json_response(self.engine.get_history(max_items=max_items, offset=offset))

    async def get_history_item(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        entry = self.engine.get_history_item(pid)
        return json_response({pid: entry} if entry is not None else {})

    async def post_history(self, request: web.Request) -> web.Response:
        body = await read_json(request, default={})
        if not isinstance(body, dict):
            return error_response("Body must be a JSON object")
        ids = _id_list(body, "delete")
        if body.get("clear"):
            self.engine.clear_history()
        if ids:
            self.engine.delete_history(ids)
        self.history_generation += 1
        return web.Response(status=200)

    # ------------------------------------------------------------------ Jobs API
    def _queue_jobs(self) -> list[dict]:
        running, pending = self.engine.get_queue()
        out = [job_from_queue_item(i, "in_progress") for i in running]
        out += [job_from_queue_item(i, "pending") for i in pending]
        return out

    def _history_signature(self) -> tuple:
        """Changes whenever history may have changed: its length plus a generation counter
        bumped by every ``status`` event (the engine sends one on every queue change: put,
        start, done, cancel, delete) and by this server's own history deletions."""
        queue = getattr(self.engine, "queue", None)
        if hasattr(queue, "history_len"):
            return queue.history_len(), self.history_generation
        hist = self.engine.get_history()
        return len(hist), next(reversed(hist), None), self.history_generation

    def on_engine_event(self, event: str, data: Any, client_id: str | None) -> None:
        """Engine listener (worker thread)."""
        if event == "status":
            self.history_generation += 1

    def _history_jobs(self) -> list[dict]:
        """History jobs, newest first. Rebuilt only when history changed (entries never change
        once recorded; per-entry results are reused), so the frontend's polling on every
        ``status`` message stays cheap with thousands of entries."""
        sig = self._history_signature()
        if self._history_jobs_cache is not None and self._history_jobs_cache[0] == sig:
            return self._history_jobs_cache[1]
        cache = self._job_cache
        fresh: dict[str, tuple[dict, dict]] = {}
        jobs = []
        for pid, entry in self.engine.get_history().items():
            hit = cache.get(pid)
            if hit is None or hit[0] is not entry:
                hit = (entry, job_from_history(pid, entry))
            fresh[pid] = hit
            jobs.append(hit[1])
        self._job_cache = fresh
        jobs.sort(key=_created, reverse=True)
        self._history_jobs_cache = (sig, jobs)
        return jobs

    async def get_jobs(self, request: web.Request) -> web.Response:
        statuses_raw = request.query.get("status")
        statuses = None
        if statuses_raw:
            statuses = {s.strip() for s in statuses_raw.split(",") if s.strip()}
            bad = statuses - set(JOB_STATUSES)
            if bad:
                return error_response(f"Invalid status value(s): {', '.join(sorted(bad))}; "
                                      f"allowed: {', '.join(JOB_STATUSES)}")
        sort_by = request.query.get("sort_by", "created_at")
        if sort_by not in ("created_at", "execution_duration"):
            return error_response("sort_by must be 'created_at' or 'execution_duration'")
        sort_order = request.query.get("sort_order", "desc")
        if sort_order not in ("asc", "desc"):
            return error_response("sort_order must be 'asc' or 'desc'")
        limit = _int_param(request, "limit", None, minimum=0)
        offset = _int_param(request, "offset", 0, minimum=0) or 0
        workflow_id = request.query.get("workflow_id")

        wanted_queue = statuses is None or bool(statuses & {"pending", "in_progress"})
        wanted_history = statuses is None or bool(statuses & {"completed", "failed", "cancelled"})
        source = self._queue_jobs() if wanted_queue else []
        if wanted_history:
            source = source + self._history_jobs()
        jobs = [j for j in source
                if (statuses is None or j["status"] in statuses)
                and (workflow_id is None or j.get("workflow_id") == workflow_id)]
        reverse = sort_order == "desc"
        if sort_by == "created_at":
            if not (wanted_history and not wanted_queue and reverse):  # else already in order
                jobs.sort(key=_created, reverse=reverse)
        else:
            def dur(j):
                s, e = j.get("execution_start_time"), j.get("execution_end_time")
                return (e - s) if (s is not None and e is not None) else -1
            jobs.sort(key=dur, reverse=reverse)
        total = len(jobs)
        page = jobs[offset:offset + limit] if limit is not None else jobs[offset:]
        page = [{k: v for k, v in j.items() if not k.startswith("_")} for j in page]
        eff_limit = limit if limit is not None else max(total - offset, 0)
        return json_response({"jobs": page, "pagination": {
            "offset": offset, "limit": eff_limit, "total": total,
            "has_more": offset + len(page) < total}})

    def _find_job(self, job_id: str) -> dict | None:
        # The queue is read before history: a job leaves the queue only after its history entry
        # is recorded, so a job finishing between the two reads is still found.
        running, pending = self.engine.get_queue()
        for item in running:
            if _item_id(item) == job_id:
                return job_from_queue_item(item, "in_progress")
        for item in pending:
            if _item_id(item) == job_id:
                return job_from_queue_item(item, "pending")
        entry = self.engine.get_history_item(job_id)
        return job_from_history(job_id, entry) if entry is not None else None

    async def get_job(self, request: web.Request) -> web.Response:
        job = self._find_job(request.match_info["job_id"])
        if job is None:
            return error_response("Job not found", status=404)
        job["outputs"] = job.pop("_outputs", {})
        job["execution_status"] = job.pop("_execution_status", None)
        job["workflow"] = job.pop("_workflow", None)
        return json_response(job)

    def _cancel(self, job_id: str) -> str:
        """'cancelled' (was pending) | 'interrupted' (was running) | 'finished' | 'not_found'."""
        result = self.engine.cancel(job_id)
        if result == "pending":
            return "cancelled"
        if result == "running":
            return "interrupted"
        if self.engine.get_history_item(job_id) is not None:
            return "finished"
        return "not_found"

    async def post_job_cancel(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        result = self._cancel(job_id)
        if result == "not_found":
            return error_response("Job not found", status=404)
        return json_response({"id": job_id, "result": result})

    async def post_jobs_cancel(self, request: web.Request) -> web.Response:
        body = await read_json(request, default=None)
        if not isinstance(body, dict):
            return error_response("Body must be a JSON object {\"job_ids\": [...]}")
        ids = _id_list(body, "job_ids")
        if ids is None:
            return error_response("'job_ids' is required")
        done, missing = [], []
        for job_id in ids:
            (missing if self._cancel(job_id) == "not_found" else done).append(job_id)
        return json_response({"cancelled": done, "not_found": missing})

    # ------------------------------------------------------------------ object_info
    async def get_object_info(self, request: web.Request) -> web.Response:
        return web.Response(body=self.engine.registry.object_info_json(), content_type="application/json")

    async def get_object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        node = self.engine.registry.get(name)
        if node is None:
            return json_response({})
        try:
            info = node.object_info()
        except Exception:  # noqa: BLE001
            log.exception("object_info failed for %s", name)
            return json_response({})
        return json_response({name: info})

    # ------------------------------------------------------------------ misc
    async def get_features(self, request: web.Request) -> web.Response:
        return json_response(self.ctx.feature_flags)

    async def get_embeddings(self, request: web.Request) -> web.Response:
        from comfyui import paths
        names = paths.get_filename_list("embeddings")
        return json_response([os.path.splitext(n)[0] for n in names])

    async def get_models(self, request: web.Request) -> web.Response:
        from comfyui import paths
        return json_response(list(paths.folder_names_and_paths.keys()))

    async def get_models_folder(self, request: web.Request) -> web.Response:
        from comfyui import paths
        folder = request.match_info["folder"]
        if folder not in paths.folder_names_and_paths:
            return error_response(f"Unknown model folder: {folder}", status=404)
        return json_response(paths.get_filename_list(folder))

    async def get_system_stats(self, request: web.Request) -> web.Response:
        return json_response(self.system_stats())

    def system_stats(self) -> dict:
        import psutil
        vm = psutil.virtual_memory()
        versions = self._versions()
        return {
            "system": {
                "os": sys.platform,
                "ram_total": vm.total,
                "ram_free": vm.available,
                "comfyui_version": versions["comfyui"],
                "required_frontend_version": versions["required_frontend"],
                "installed_frontend_version": versions["installed_frontend"],
                "installed_templates_version": versions["installed_templates"],
                "required_templates_version": versions["required_templates"],
                "python_version": sys.version,
                "pytorch_version": versions["torch"],
                "embedded_python": os.path.split(os.path.split(sys.executable)[0])[1] == "python_embeded",
                "argv": redacted_argv(sys.argv),
                "comfy_package_versions": versions["packages"],
            },
            "devices": self._devices(),
        }

    def _versions(self) -> dict:
        if self._versions_cache is not None:
            return self._versions_cache

        def version(dist: str) -> str | None:
            try:
                return md.version(dist)
            except md.PackageNotFoundError:
                return None

        required: dict[str, str] = {}
        try:
            for req in md.requires("comfyui") or []:
                m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:==|>=|~=)\s*([0-9][^;,\s]*)", req)
                if m and ";" not in req.split(m.group(2), 1)[1][:1]:
                    required[m.group(1).lower().replace("_", "-")] = m.group(2)
        except md.PackageNotFoundError:
            pass
        import comfyui
        frontend_installed = version("comfyui-frontend-package")
        packages = []
        for dist in ("comfyui-frontend-package", "comfyui-workflow-templates", "comfyui-embedded-docs"):
            inst = version(dist)
            req = required.get(dist)
            if inst is not None or req is not None:
                packages.append({"name": dist, "installed": inst or "", "required": req or inst or ""})
        self._versions_cache = {
            "comfyui": getattr(comfyui, "__version__", "0.0.0"),
            "required_frontend": required.get("comfyui-frontend-package") or frontend_installed or "",
            "installed_frontend": frontend_installed or "",
            "installed_templates": version("comfyui-workflow-templates") or "",
            "required_templates": required.get("comfyui-workflow-templates") or "",
            "torch": version("torch") or "",
            "packages": packages,
        }
        return self._versions_cache

    def _devices(self) -> list[dict]:
        torch = sys.modules.get("torch")
        if torch is not None:
            try:
                return _torch_devices(torch)
            except Exception:  # noqa: BLE001
                pass
        now = time.monotonic()
        if self._gpu_cache is None or now - self._gpu_cache[0] > 5.0:
            self._gpu_cache = (now, _nvidia_smi_devices())
        if self._gpu_cache[1]:
            return self._gpu_cache[1]
        import psutil
        vm = psutil.virtual_memory()
        return [{"name": "cpu", "type": "cpu", "index": None, "vram_total": vm.total,
                 "vram_free": vm.available, "torch_vram_total": 0, "torch_vram_free": 0}]


def redacted_argv(argv: list[str]) -> list[str]:
    out, hide = [], False
    for a in argv:
        if hide:
            out.append("***")
            hide = False
            continue
        if a == "--api-key":
            hide = True
        elif a.startswith("--api-key="):
            a = "--api-key=***"
        out.append(a)
    return out


def _torch_devices(torch) -> list[dict]:
    if torch.cuda.is_available():
        out = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            stats = torch.cuda.memory_stats(i)
            reserved = stats.get("reserved_bytes.all.current", 0)
            active = stats.get("active_bytes.all.current", 0)
            out.append({"name": f"cuda:{i} {torch.cuda.get_device_name(i)}", "type": "cuda", "index": i,
                        "vram_total": total, "vram_free": free, "torch_vram_total": reserved,
                        "torch_vram_free": reserved - active})
        return out
    raise RuntimeError("no cuda")


def _nvidia_smi_devices() -> list[dict]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        res = subprocess.run([exe, "--query-gpu=index,name,memory.total,memory.free",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return []
    out = []
    for line in res.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            idx, total, free = int(parts[0]), int(parts[2]) * 1024 * 1024, int(parts[3]) * 1024 * 1024
        except ValueError:
            continue
        out.append({"name": f"cuda:{idx} {parts[1]}", "type": "cuda", "index": idx, "vram_total": total,
                    "vram_free": free, "torch_vram_total": 0, "torch_vram_free": 0})
    return out


# ============================================================================ jobs mapping

_3D_EXT = (".obj", ".fbx", ".gltf", ".glb", ".usdz", ".ply", ".stl", ".spz", ".splat")


def _item_id(item: Any) -> str | None:
    try:
        return item[1]
    except (IndexError, TypeError, KeyError):
        return None


def _workflow_id(extra_data: dict) -> str | None:
    try:
        wid = extra_data["extra_pnginfo"]["workflow"]["id"]
        return wid if isinstance(wid, str) else None
    except (KeyError, TypeError):
        return None


def _created(job: dict) -> tuple:
    """Sort key for creation order: create_time has millisecond resolution, so jobs submitted
    within one millisecond are told apart by their queue number."""
    return job.get("create_time") or 0, job.get("priority") or 0


def job_from_queue_item(item: Any, status: str) -> dict:
    number, prompt_id = item[0], item[1]
    prompt = item[2] if len(item) > 2 else {}
    extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
    extra = redact_extra_data(extra)[0]
    return {
        "id": prompt_id, "status": status,
        "create_time": extra.get("create_time") or 0,
        "priority": number,
        "execution_start_time": None, "execution_end_time": None,
        "outputs_count": 0, "previewable_outputs_count": 0,
        "preview_output": None, "execution_error": None,
        "workflow_id": _workflow_id(extra),
        "_outputs": {}, "_execution_status": None,
        "_workflow": {"prompt": prompt, "extra_data": extra},
    }


def _media_type(key: str, item: dict) -> str | None:
    if key in ("images", "video", "audio"):
        return key
    fmt = item.get("format") if isinstance(item, dict) else None
    if isinstance(fmt, str):
        if fmt.startswith("video/"):
            return "video"
        if fmt.startswith("audio/"):
            return "audio"
    fn = item.get("filename") if isinstance(item, dict) else None
    if isinstance(fn, str) and fn.lower().endswith(_3D_EXT):
        return "3d"
    return None


def job_from_history(prompt_id: str, entry: dict) -> dict:
    item = entry.get("prompt") or []
    number = item[0] if len(item) > 0 else None
    prompt = item[2] if len(item) > 2 else {}
    extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
    extra = redact_extra_data(extra)[0]
    status = entry.get("status") or {}
    messages = status.get("messages") or []
    start = end = None
    error = None
    interrupted = False
    for msg in messages:
        if not isinstance(msg, (list, tuple)) or len(msg) < 2 or not isinstance(msg[1], dict):
            continue
        ev, data = msg[0], msg[1]
        if ev == "execution_start":
            start = data.get("timestamp")
        elif ev in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            if ev == "execution_interrupted":
                interrupted = True
            elif ev == "execution_error":
                tb = data.get("traceback")
                error = {
                    "node_id": str(data.get("node_id") if data.get("node_id") is not None else ""),
                    "node_type": str(data.get("node_type") or ""),
                    "exception_message": str(data.get("exception_message") or ""),
                    "exception_type": str(data.get("exception_type") or ""),
                    "traceback": tb if isinstance(tb, list) else ([str(tb)] if tb else []),
                    "current_inputs": data.get("current_inputs") or {},
                    "current_outputs": data.get("current_outputs") or [],
                }
    status_str = status.get("status_str")
    if status_str == "success":
        job_status = "completed"
    elif interrupted or status_str == "cancelled":
        job_status = "cancelled"
    else:
        job_status = "failed"
    outputs = entry.get("outputs") or {}
    count = 0
    previews = []
    for node_id, ui in outputs.items():
        if not isinstance(ui, dict):
            continue
        for key, items in ui.items():
            if key == "animated" or not isinstance(items, list):
                continue
            for it in items:
                if isinstance(it, dict) and "filename" in it:
                    count += 1
                    mt = _media_type(key, it)
                    if mt is not None and it.get("type", "output") in ("input", "output", "temp"):
                        previews.append((it, node_id, mt))
    preview = None
    if previews:
        best = next((p for p in previews if p[0].get("type") == "output"), previews[0])
        it, node_id, mt = best
        preview = {"filename": it.get("filename"), "subfolder": it.get("subfolder", ""),
                   "type": it.get("type", "output"), "nodeId": str(node_id), "mediaType": mt}
    return {
        "id": prompt_id, "status": job_status,
        "create_time": extra.get("create_time") or start or 0,
        "priority": number,
        "execution_start_time": start, "execution_end_time": end,
        "outputs_count": count, "previewable_outputs_count": len(previews),
        "preview_output": preview, "execution_error": error,
        "workflow_id": _workflow_id(extra),
        "_outputs": outputs, "_execution_status": status,
        "_workflow": {"prompt": prompt, "extra_data": extra},
    }


# ============================================================================ setup


def setup(app: web.Application, ctx: ServerContext) -> None:
    r = PromptRoutes(ctx)
    ctx.extra["prompt_routes"] = r

    async def listen(app: web.Application) -> None:
        ctx.engine.add_listener(r.on_engine_event)

    async def unlisten(app: web.Application) -> None:
        try:
            ctx.engine.remove_listener(r.on_engine_event)
        except Exception:  # noqa: BLE001
            pass

    app.on_startup.append(listen)
    app.on_cleanup.append(unlisten)
    add_route(app, "GET", "/prompt", r.get_prompt)
    add_route(app, "POST", "/prompt", r.post_prompt)
    add_route(app, "GET", "/queue", r.get_queue)
    add_route(app, "POST", "/queue", r.post_queue)
    add_route(app, "POST", "/interrupt", r.post_interrupt)
    add_route(app, "POST", "/free", r.post_free)
    add_route(app, "GET", "/history", r.get_history)
    add_route(app, "GET", "/history/{prompt_id}", r.get_history_item)
    add_route(app, "POST", "/history", r.post_history)
    add_route(app, "GET", "/jobs", r.get_jobs)
    add_route(app, "POST", "/jobs/cancel", r.post_jobs_cancel)
    add_route(app, "GET", "/jobs/{job_id}", r.get_job)
    add_route(app, "POST", "/jobs/{job_id}/cancel", r.post_job_cancel)
    add_route(app, "GET", "/object_info", r.get_object_info)
    add_route(app, "GET", "/object_info/{node_class}", r.get_object_info_node)
    add_route(app, "GET", "/features", r.get_features)
    add_route(app, "GET", "/system_stats", r.get_system_stats)
    add_route(app, "GET", "/embeddings", r.get_embeddings)
    add_route(app, "GET", "/models", r.get_models)
    add_route(app, "GET", "/models/{folder}", r.get_models_folder)
