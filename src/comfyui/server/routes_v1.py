"""The LTS API (``/api/v1/prompts``, ``/api/v1/images``) and output retention routes.

Routes (served under ``/api`` only, as in the LTS fork):

``POST /api/v1/prompts``
    Body: the API-format prompt itself, or ``{"prompt": {...}, "prompt_id"?, "extra_data"?}``,
    or a UI workflow (converted), as JSON; or ``multipart/form-data`` with one JSON part (a
    part with a JSON content type or named ``prompt``; wrapped or not) plus file parts. Files
    are saved into the input folder under their (sanitised) file names and the prompt refers
    to them by those names; when a different file already has that name, the upload is stored
    as ``<stem>_<sha256[:8]><ext>`` and string inputs equal to the original name are
    rewritten. Uploads are remembered as the job's inputs (for deletion below).

    * Waits for the job and answers 200 with ``{"urls", "outputs", "prompt_id", "files"}``
      (``Accept: application/json``, the default), or the bytes of the last saved image
      (``Accept: image/png`` or ``image/*``). Headers: ``Location: /api/v1/prompts/{id}``,
      ``Digest: SHA-256=<hex sha256 of the compact JSON of the prompt>`` (the LTS digest) and,
      for an image body or when the job saved exactly one image,
      ``Content-Disposition: filename="<name>"``. ``urls`` lists, for each output file, the
      ``/view`` URL (and the ``--external-address`` one when set) and the content-addressed
      ``/api/v1/images/<sha256 of the file bytes>`` URL. ``files`` gives each file's node id,
      name, subfolder, type and digest. Absolute server paths are never returned.
    * 204 when the job produced no files (LTS); 400 ``{"error", "node_errors"}`` for an
      invalid prompt; 406 for an ``Accept`` naming nothing we produce; 413 past
      ``--max-upload-size``; 415 for a body that is neither JSON nor multipart; 429 (with
      ``Retry-After``) when ``--max-queue-size`` jobs are queued; 500 with the execution
      status dict (``status_str``, ``completed``, ``messages``) when the job failed or was
      cancelled; 507 when an upload could not be written.
    * ``Prefer: respond-async`` (or ``?prefer=respond-async``, or a ``+respond-async`` suffix
      on ``Accept``/``Content-Type``) answers 202 ``{"prompt_id"}`` at once, with ``Location``
      and ``Retry-After``.
    * Idempotency: a client id from the ``Idempotency-Key`` header, ``?prompt_id=``, a
      wrapped body's ``prompt_id`` or a multipart ``prompt_id`` field (1..128 characters).
      Posting an id that is known already runs nothing new: the sync form waits for that job
      and answers its result, the async form answers 202 for it.

``GET /api/v1/prompts/{prompt_id}``
    204 while pending or running, 200 with the outputs dict when completed, 500 with the
    status dict when failed or cancelled, 404 when unknown.

``GET /api/v1/prompts``
    The API-format prompt of the most recently finished job (re-postable); 404 when the
    history is empty.

``GET /api/v1/images/{digest}``
    The output file whose bytes hash to ``digest`` (64 hex characters; 400 otherwise, 404
    when no indexed file has it). Outputs are indexed when every job finishes (from the
    ``executed`` events, cached results included) and by the sync response. Served with
    ``Digest`` and an immutable ``Cache-Control``.

``DELETE /api/v1/prompts/{prompt_id}/outputs``
    Deletes the job's output and temp files and the inputs uploaded with it; files another
    job also references are kept. 200 ``{"prompt_id", "deleted", "kept", "missing"}``; 404
    unknown; 409 while the job is pending or running (cancel it first:
    ``POST /api/jobs/{id}/cancel``). The history entry stays.

``DELETE /api/v1/prompts/{prompt_id}``
    The same, and the job's history record is deleted too (``"history_deleted": true``).

Output retention policy: with ``--output-retention-days D`` and/or ``--output-max-size-gb G``
the server deletes output files older than D days, then the oldest files while the output
folder is larger than G GiB, at start-up and every ``--output-retention-interval`` seconds
(:mod:`comfyui.jobs.retention`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import mimetypes
import os
import queue as _queue
import re
import tempfile
import threading
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ..jobs.submission import PromptRejected, PromptRequest, PromptSubmitter
from .context import (JSONBodyError, ServerContext, add_route, dumps, error_response, json_response,
                      parse_json_body)
from .routes_prompt import api_nodes_refusal, rejected_response

log = logging.getLogger(__name__)

_DIGEST_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
FINISHED = ("completed", "failed", "cancelled")


# ============================================================================ helpers


def prompt_digest(prompt: Any) -> str:
    """The LTS request digest: sha256 of the compact JSON of the prompt."""
    return hashlib.sha256(json.dumps(prompt, separators=(",", ":")).encode("utf-8")).hexdigest()


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return error_response(message, status=status, **extra)


def _media_ranges(header: str) -> list[tuple[str, float, bool]]:
    """``Accept`` -> [(media type, q, respond_async)] in header order."""
    out = []
    for raw in (header or "").split(","):
        parts = [p.strip() for p in raw.split(";")]
        media = parts[0].lower()
        if not media:
            continue
        q = 1.0
        for p in parts[1:]:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        is_async = media.endswith("+respond-async")
        if is_async:
            media = media[: -len("+respond-async")]
        out.append((media, q, is_async))
    return out


def negotiate(accept: str) -> tuple[str | None, bool]:
    """-> ("json" | "image" | None when nothing acceptable, respond_async)."""
    ranges = _media_ranges(accept)
    if not ranges:
        return "json", False
    is_async = any(r[2] for r in ranges)
    best, best_q = None, 0.0
    for media, q, _a in ranges:
        if media in ("application/json", "application/*", "*/*", "*"):
            kind = "json"
        elif media in ("image/png", "image/*") or media.startswith("image/"):
            kind = "image"
        else:
            continue
        if q > best_q:
            best, best_q = kind, q
    return best, is_async


def safe_upload_name(name: str) -> str | None:
    """A plain file name for an upload: the last path segment, no control characters, not
    hidden, not empty. None when nothing usable is left."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f").strip()
    name = name.lstrip(".").strip()
    if not name or name in (".", ".."):
        return None
    if len(name.encode("utf-8")) > 200:
        stem, ext = os.path.splitext(name)
        name = stem[:100] + ext[:20]
    return name


def _rewrite_refs(prompt: dict, renames: dict[str, str]) -> None:
    """Replace string inputs equal to an uploaded file's original name (optionally with an
    `` [input]`` annotation) by its stored name."""
    if not renames:
        return
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for key, value in list(inputs.items()):
            if not isinstance(value, str):
                continue
            base, suffix = value, ""
            if value.endswith(" [input]"):
                base, suffix = value[: -len(" [input]")], " [input]"
            if base in renames:
                inputs[key] = renames[base] + suffix


def _is_json_type(content_type: str) -> bool:
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct.endswith("+respond-async"):
        ct = ct[: -len("+respond-async")]
    return ct in ("", "application/json") or (ct.startswith("application/") and ct.endswith("+json"))


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# ============================================================================ indexer


class OutputIndexer:
    """Collects each job's file outputs from the engine's ``executed`` events and indexes
    them (hashes + job_files rows) on a background thread once the job has finished."""

    def __init__(self, index: Any):
        self.index = index
        self._refs: dict[str, list[dict]] = {}
        self._lock = threading.Lock()
        self._queue: _queue.Queue = _queue.Queue()
        self._thread: threading.Thread | None = None
        self.durations: list[float] = []  # recent job wall times (for Retry-After)
        self._started: dict[str, float] = {}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="comfyui-output-index", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def listener(self, event: str, data: dict, _client_id: Any) -> None:
        if event == "executed":
            from comfyui.jobs.retention import iter_file_refs

            refs = [r for r in iter_file_refs({"n": data.get("output")}) if r["type"] in ("output", "temp")]
            if refs:
                with self._lock:
                    self._refs.setdefault(data.get("prompt_id"), []).extend(refs)
        elif event == "execution_start":
            self._started[data.get("prompt_id")] = time.monotonic()
        elif event == "executing" and data.get("node") is None:
            pid = data.get("prompt_id")
            t0 = self._started.pop(pid, None)
            if t0 is not None:
                self.durations = (self.durations + [time.monotonic() - t0])[-20:]
            with self._lock:
                refs = self._refs.pop(pid, None)
            if refs:
                self._queue.put((pid, refs))

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self.index.add(job[0], job[1], kind="output")
            except Exception:  # noqa: BLE001 - indexing must never break the server
                log.exception("indexing the outputs of %s failed", job[0])
            finally:
                self._queue.task_done()

    def mean_duration(self) -> float:
        d = self.durations
        return sum(d) / len(d) if d else 1.0


# ============================================================================ routes


class V1Routes:
    def __init__(self, ctx: ServerContext):
        from comfyui.jobs.retention import FileIndex, RetentionPolicy

        self.ctx = ctx
        self.engine = ctx.engine
        self.submitter = PromptSubmitter(ctx.engine)
        self.index = FileIndex.for_engine(self.engine)
        self.indexer = OutputIndexer(self.index)
        self.policy = RetentionPolicy.from_config(ctx.config or {})
        try:
            self.policy_interval = max(float(ctx.setting("output_retention_interval", 600.0)), 1.0)
        except (TypeError, ValueError):
            self.policy_interval = 600.0
        self._policy_task: asyncio.Task | None = None
        self._upload_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def on_startup(self, app: web.Application) -> None:
        self.indexer.start()
        self.engine.add_listener(self.indexer.listener)
        if self.policy.enabled:
            self._policy_task = asyncio.get_running_loop().create_task(self._policy_loop())

    async def on_cleanup(self, app: web.Application) -> None:
        try:
            self.engine.remove_listener(self.indexer.listener)
        except Exception:  # noqa: BLE001
            pass
        if self._policy_task is not None:
            self._policy_task.cancel()
            try:
                await self._policy_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._policy_task = None
        await asyncio.to_thread(self.indexer.stop)
        self.index.close()

    async def _policy_loop(self) -> None:
        from comfyui.jobs.retention import apply_policy

        while True:
            try:
                await asyncio.to_thread(apply_policy, self.policy, None, index=self.index)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("output retention pass failed")
            await asyncio.sleep(self.policy_interval)

    # ------------------------------------------------------------------ request parsing
    async def _read_request(self, request: web.Request) -> tuple[Any, dict, list[tuple[str, bytes]]]:
        """-> (body object, form fields, [(file name, bytes)])."""
        content_type = request.headers.get("Content-Type", "")
        ct = content_type.split(";", 1)[0].strip().lower()
        if ct.startswith("multipart/"):
            return await self._read_multipart(request)
        if not _is_json_type(content_type):
            raise _BadRequest(415, "Content-Type must be application/json or multipart/form-data")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _BadRequest(413, "Request body too large")
        if not raw.strip():
            raise _BadRequest(400, "no prompt was specified")
        try:
            return parse_json_body(raw), {}, []
        except JSONBodyError as e:
            raise _BadRequest(400, json.loads(e.text)["error"])

    async def _read_multipart(self, request: web.Request) -> tuple[Any, dict, list[tuple[str, bytes]]]:
        limit = self.ctx.max_upload_size
        total = 0
        body: Any = None
        fields: dict[str, str] = {}
        files: list[tuple[str, bytes]] = []
        try:
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not hasattr(part, "read_chunk"):  # nested multipart: not supported
                    raise _BadRequest(400, "nested multipart bodies are not supported")
                chunks = []
                while True:
                    chunk = await part.read_chunk(1 << 16)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > limit:
                        raise _BadRequest(413, "Request body too large")
                    chunks.append(chunk)
                data = part.decode(b"".join(chunks))
                part_ct = (part.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
                if part.filename and not (part_ct == "application/json" and part.name == "prompt"):
                    files.append((part.filename, data))
                elif part_ct == "application/json" or part.name == "prompt":
                    if body is not None:
                        raise _BadRequest(400, "more than one prompt part")
                    try:
                        body = parse_json_body(data, "JSON in the prompt part")
                    except JSONBodyError as e:
                        raise _BadRequest(400, json.loads(e.text)["error"])
                elif part.name:
                    try:
                        fields[part.name] = data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise _BadRequest(400, f"form field {part.name!r} is not UTF-8")
        except _BadRequest:
            raise
        except Exception as e:  # noqa: BLE001 - a malformed multipart body is bad input
            raise _BadRequest(400, f"Invalid multipart body: {e}")
        if body is None:
            raise _BadRequest(400, "no prompt was specified (send a JSON part named 'prompt')")
        return body, fields, files

    def _unwrap(self, body: Any) -> tuple[dict, dict]:
        """-> (API prompt, wrapper options)."""
        if not isinstance(body, dict) or not body:
            raise _BadRequest(400, "the prompt must be a non-empty JSON object")
        options: dict = {}
        if isinstance(body.get("prompt"), dict) and "class_type" not in body["prompt"]:
            options = {k: v for k, v in body.items() if k != "prompt"}
            body = body["prompt"]
        from comfyui.workflows.convert import convert_ui_to_api, is_ui_workflow

        if is_ui_workflow(body):
            try:
                body = convert_ui_to_api(body, self.engine.registry)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
                raise _BadRequest(400, f"could not convert the UI workflow: {e}")
        if not isinstance(body, dict) or not body:
            raise _BadRequest(400, "the prompt must be a non-empty JSON object")
        return body, options

    # ------------------------------------------------------------------ uploads
    def _save_uploads(self, files: list[tuple[str, bytes]]) -> tuple[dict[str, str], list[dict], list[str]]:
        """Save uploads into the input folder. -> (renames, refs, paths created)."""
        from comfyui import paths

        root = paths.get_input_directory()
        os.makedirs(root, exist_ok=True)
        renames: dict[str, str] = {}
        refs: list[dict] = []
        created: list[str] = []
        with self._upload_lock:
            for original, data in files:
                name = safe_upload_name(original)
                if name is None:
                    raise _BadRequest(400, f"unusable upload file name {original!r}")
                sha = hashlib.sha256(data).hexdigest()
                stem, ext = os.path.splitext(name)
                final = None
                for candidate in (name, f"{stem}_{sha[:8]}{ext}", f"{stem}_{sha[:16]}{ext}"):
                    try:
                        path = paths.safe_join(root, candidate)
                    except ValueError:
                        raise _BadRequest(400, f"unusable upload file name {original!r}")
                    if path.is_file():
                        from comfyui.jobs.retention import file_sha256
                        if file_sha256(path) == sha:
                            final = candidate
                            break
                        continue
                    if path.exists():
                        continue
                    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=root)
                    try:
                        with os.fdopen(fd, "wb") as f:
                            f.write(data)
                        os.replace(tmp, path)
                    except BaseException:
                        try:
                            os.unlink(tmp)
                        except OSError:
                            pass
                        raise
                    created.append(str(path))
                    final = candidate
                    break
                if final is None:
                    raise _BadRequest(409, f"cannot store upload {original!r}: the name is taken")
                if final != original:
                    renames[original] = final
                if name != original:
                    renames.setdefault(name, final)
                refs.append({"type": "input", "subfolder": "", "filename": final, "sha256": sha})
        return renames, refs, created

    # ------------------------------------------------------------------ POST /api/v1/prompts
    async def post_prompts(self, request: web.Request) -> web.StreamResponse:
        kind, async_accept = negotiate(request.headers.get("Accept", ""))
        if kind is None:
            return _error(406, "Accept must allow application/json or image/png")
        prefer = (request.headers.get("Prefer", "") + "," + request.query.get("prefer", "")).lower()
        respond_async = (async_accept or "respond-async" in prefer
                         or "+respond-async" in request.headers.get("Content-Type", "").lower())
        try:
            body, fields, files = await self._read_request(request)
            prompt, options = self._unwrap(body)
        except _BadRequest as e:
            return _error(e.status, e.message)
        prompt_id = (request.headers.get("Idempotency-Key") or request.query.get("prompt_id")
                     or options.get("prompt_id") or fields.get("prompt_id"))
        try:
            submission = PromptRequest(prompt, prompt_id=prompt_id, extra_data=options.get("extra_data"))
        except PromptRejected as e:
            return rejected_response(e)
        refusal = api_nodes_refusal(request, prompt, self.engine.registry)
        if refusal is not None:
            return rejected_response(refusal)
        if prompt_id is not None and await self.submitter.known(prompt_id):
            return await self._respond(request, prompt_id, prompt, kind, respond_async)

        created: list[str] = []
        input_refs: list[dict] = []
        if files:
            try:
                renames, input_refs, created = await asyncio.to_thread(self._save_uploads, files)
            except _BadRequest as e:
                return _error(e.status, e.message)
            except OSError as e:
                return _error(507, f"could not store the uploaded files: {e.strerror or e}")
            _rewrite_refs(prompt, renames)
        try:
            result = await self.submitter.submit(submission)
        except PromptRejected as e:
            self._discard(created)
            return rejected_response(e)
        if input_refs:
            await asyncio.to_thread(self.index.add, result.prompt_id, input_refs, "input")
        return await self._respond(request, result.prompt_id, prompt, kind, respond_async)

    @staticmethod
    def _discard(created: list[str]) -> None:
        for path in created:
            try:
                os.remove(path)
            except OSError:
                pass

    def _retry_after(self) -> int:
        remaining = max(self.engine.queue_remaining(), 1)
        return max(1, min(3600, math.ceil(remaining * self.indexer.mean_duration())))

    async def _respond(self, request: web.Request, prompt_id: str, prompt: dict, kind: str,
                       respond_async: bool) -> web.StreamResponse:
        location = f"/api/v1/prompts/{prompt_id}"
        if respond_async:
            return json_response({"prompt_id": prompt_id}, status=202,
                                 headers={"Location": location, "Retry-After": str(self._retry_after())})
        waiting = await self.engine.queue.call(self.engine.wait, prompt_id)  # may read history
        entry = await asyncio.wrap_future(waiting)
        headers = {"Location": location, "Digest": f"SHA-256={prompt_digest(prompt)}"}
        status = entry.get("status") or {}
        if status.get("status_str") != "success":
            return json_response(status, status=500, headers=headers)
        from comfyui.jobs.retention import iter_file_refs

        files = []
        for node_id, node_out in (entry.get("outputs") or {}).items():
            for ref in iter_file_refs({node_id: node_out}):
                ref["node_id"] = node_id
                files.append(ref)
        if not files:
            return web.Response(status=204, headers=headers)
        digests = await asyncio.to_thread(
            self.index.add, prompt_id, [r for r in files if r["type"] in ("output", "temp")], "output")
        images = [r for r in files if r["key"] == "images"
                  or os.path.splitext(r["filename"])[1].lower() in _IMAGE_EXTS]
        saved = [r for r in images if r["type"] == "output"]
        main = (saved or images or [None])[-1]
        if kind == "image":
            if main is None:
                return web.Response(status=204, headers=headers)
            from comfyui.jobs.retention import resolve_ref

            path = resolve_ref(main["type"], main["subfolder"], main["filename"])
            if path is None or not os.path.isfile(path):
                return _error(410, "the output image was deleted", prompt_id=prompt_id)
            headers["Content-Disposition"] = f'filename="{_quote_filename(main["filename"])}"'
            ctype = mimetypes.guess_type(main["filename"])[0] or "application/octet-stream"
            return web.FileResponse(path, headers={**headers, "Content-Type": ctype})
        if len(images) == 1:
            headers["Content-Disposition"] = f'filename="{_quote_filename(images[0]["filename"])}"'
        urls: list[str] = []
        out_files = []
        bases = [str(request.url.origin())]
        external = self.ctx.setting("external_address")
        if external and str(external).rstrip("/") not in bases:
            bases.append(str(external).rstrip("/"))
        for ref in files:
            query = {"filename": ref["filename"], "type": ref["type"]}
            if ref["subfolder"]:
                query["subfolder"] = ref["subfolder"]
            for base in bases:
                urls.append(f"{base}/view?{urlencode(query)}")
            sha = digests.get((ref["type"], ref["subfolder"], ref["filename"]))
            if sha:
                urls.append(f"{bases[0]}/api/v1/images/{sha}")
            out_files.append({"node_id": ref["node_id"], "filename": ref["filename"],
                              "subfolder": ref["subfolder"], "type": ref["type"], "digest": sha})
        return web.Response(text=dumps({"urls": urls, "outputs": entry.get("outputs") or {},
                                        "prompt_id": prompt_id, "files": out_files}),
                            status=200, content_type="application/json", headers=headers)

    # ------------------------------------------------------------------ GET
    async def get_prompt(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        queue = self.engine.queue
        status = await queue.call(queue.job_status, prompt_id)
        if status is None:
            return _error(404, "prompt not found")
        if status in ("pending", "in_progress"):
            return web.Response(status=204, headers={"Retry-After": str(self._retry_after())})
        entry = await queue.call(self.engine.get_history_item, prompt_id)
        if entry is None:  # finished a moment ago and being written, or removed meanwhile
            return _error(404, "prompt not found")
        if status != "completed":
            return json_response(entry.get("status") or {}, status=500)
        return json_response(entry.get("outputs") or {})

    async def get_last_prompt(self, request: web.Request) -> web.Response:
        history = await self.engine.queue.call(self.engine.get_history, 1)
        if not history:
            return _error(404, "there are no prompts in the history")
        entry = list(history.values())[-1]
        try:
            prompt = entry["prompt"][2]
        except (KeyError, IndexError, TypeError):
            return _error(404, "there are no prompts in the history")
        return json_response(prompt)

    async def get_image(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        if not _DIGEST_RE.match(digest):
            return _error(400, "digest must be 64 hexadecimal characters (sha256)")
        digest = digest.lower()
        found = await asyncio.to_thread(self.index.lookup, digest)
        if found is None:
            return _error(404, "no image with this digest")
        path, row = found
        ctype = mimetypes.guess_type(row["filename"])[0] or "application/octet-stream"
        return web.FileResponse(path, headers={
            "Content-Type": ctype, "Digest": f"SHA-256={digest}",
            "Cache-Control": "public, max-age=31536000, immutable",
            "Content-Disposition": f'filename="{_quote_filename(row["filename"])}"'})

    # ------------------------------------------------------------------ DELETE
    async def delete_outputs(self, request: web.Request) -> web.Response:
        return await self._delete(request, drop_history=False)

    async def delete_prompt(self, request: web.Request) -> web.Response:
        return await self._delete(request, drop_history=True)

    async def _delete(self, request: web.Request, drop_history: bool) -> web.Response:
        from comfyui.jobs.retention import delete_job_files

        prompt_id = request.match_info["prompt_id"]
        queue = self.engine.queue
        status = await queue.call(queue.job_status, prompt_id)
        if status is None:
            return _error(404, "prompt not found")
        if status not in FINISHED:
            return _error(409, f"the job is {status}; cancel it first (POST /api/jobs/{prompt_id}/cancel)")
        entry = await queue.call(self.engine.get_history_item, prompt_id)
        report = await asyncio.to_thread(delete_job_files, self.index, prompt_id, entry)
        body = {"prompt_id": prompt_id, **dataclasses.asdict(report)}
        if drop_history:
            await queue.call(self.engine.delete_history, [prompt_id])
            body["history_deleted"] = True
        return json_response(body)


def _quote_filename(name: str) -> str:
    return name.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")


# ============================================================================ OpenAPI

def _resp(description: str, content: dict | None = None, headers: dict | None = None) -> dict:
    out: dict = {"description": description}
    if content:
        out["content"] = content
    if headers:
        out["headers"] = headers
    return out


_JSON_OBJ = {"application/json": {"schema": {"type": "object"}}}
_ID_PARAM = {"name": "prompt_id", "in": "path", "required": True, "schema": {"type": "string"}}
_HDR = {"schema": {"type": "string"}}

OPENAPI_PATHS: dict[str, dict] = {
    "/api/v1/prompts": {
        "post": {
            "tags": ["v1"], "operationId": "post_api_v1_prompts", "summary": "Run a prompt and return its result",
            "parameters": [
                {"name": "Accept", "in": "header", "schema": {"type": "string", "enum": [
                    "application/json", "image/png", "application/json+respond-async"]}},
                {"name": "Prefer", "in": "header", "schema": {"type": "string", "enum": ["respond-async", ""]}},
                {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 128}},
                {"name": "prefer", "in": "query", "schema": {"type": "string"}},
                {"name": "prompt_id", "in": "query", "schema": {"type": "string", "maxLength": 128}}],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}},
                                        "multipart/form-data": {"schema": {"type": "object", "properties": {
                                            "prompt": {"type": "object"},
                                            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}},
            "responses": {
                "200": _resp("The result: JSON {urls, outputs, prompt_id, files} or the last saved image",
                             {**_JSON_OBJ, "image/png": {"schema": {"type": "string", "format": "binary"}}},
                             {"Location": _HDR, "Digest": _HDR, "Content-Disposition": _HDR}),
                "202": _resp("Queued (respond-async)", _JSON_OBJ, {"Location": _HDR, "Retry-After": _HDR}),
                "204": _resp("The job produced no files"),
                "400": _resp("Invalid prompt: {error, node_errors}", _JSON_OBJ),
                "406": _resp("Unsupported Accept"), "413": _resp("Body too large"),
                "415": _resp("Unsupported Content-Type"), "429": _resp("Queue full"),
                "500": _resp("Execution failed or was cancelled: the status dict", _JSON_OBJ),
                "507": _resp("Uploads could not be stored")}},
        "get": {"tags": ["v1"], "operationId": "get_api_v1_prompts", "summary": "The last prompt run",
                "responses": {"200": _resp("API-format prompt", _JSON_OBJ), "404": _resp("History is empty")}},
    },
    "/api/v1/prompts/{prompt_id}": {
        "get": {"tags": ["v1"], "operationId": "get_api_v1_prompt", "summary": "Status/outputs of a prompt",
                "parameters": [_ID_PARAM],
                "responses": {"200": _resp("Outputs", _JSON_OBJ), "204": _resp("Pending or running"),
                              "404": _resp("Unknown"), "500": _resp("Failed or cancelled: status dict", _JSON_OBJ)}},
        "delete": {"tags": ["v1"], "operationId": "delete_api_v1_prompt",
                   "summary": "Delete a finished job's files and its history record", "parameters": [_ID_PARAM],
                   "responses": {"200": _resp("Deleted", _JSON_OBJ), "404": _resp("Unknown"),
                                 "409": _resp("Pending or running")}},
    },
    "/api/v1/prompts/{prompt_id}/outputs": {
        "delete": {"tags": ["v1"], "operationId": "delete_api_v1_prompt_outputs",
                   "summary": "Delete a finished job's output files and uploaded inputs", "parameters": [_ID_PARAM],
                   "responses": {"200": _resp("Deleted", _JSON_OBJ), "404": _resp("Unknown"),
                                 "409": _resp("Pending or running")}},
    },
    "/api/v1/images/{digest}": {
        "get": {"tags": ["v1"], "operationId": "get_api_v1_image", "summary": "Output file by sha256 of its bytes",
                "parameters": [{"name": "digest", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}],
                "responses": {"200": _resp("The file", {"image/png": {"schema": {"type": "string", "format": "binary"}}}),
                              "400": _resp("Not a sha256 digest"), "404": _resp("Not found")}},
    },
}


def setup(app: web.Application, ctx: ServerContext) -> None:
    r = V1Routes(ctx)
    ctx.extra["v1"] = r
    ctx.extra.setdefault("openapi_paths", {}).update(OPENAPI_PATHS)
    add_route(app, "POST", "/api/v1/prompts", r.post_prompts, api=False)
    add_route(app, "GET", "/api/v1/prompts", r.get_last_prompt, api=False)
    add_route(app, "GET", "/api/v1/prompts/{prompt_id}", r.get_prompt, api=False)
    add_route(app, "DELETE", "/api/v1/prompts/{prompt_id}", r.delete_prompt, api=False)
    add_route(app, "DELETE", "/api/v1/prompts/{prompt_id}/outputs", r.delete_outputs, api=False)
    add_route(app, "GET", "/api/v1/images/{digest}", r.get_image, api=False)
    app.on_startup.append(r.on_startup)
    app.on_cleanup.append(r.on_cleanup)
