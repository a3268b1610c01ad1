"""``POST /prompt`` of the production API, from request body to delivered outputs.

1. The body (comfyui-api's: ``prompt`` required; ``id``, ``webhook``, ``convert_output``,
   ``s3`` optional) is checked; a bad field is a 400 in ComfyUI's error shape.
2. The prompt is copied and every ``filename_prefix`` (a linked one too) becomes
   ``api/<prompt id>/<request id>``: each request saves into its own folder, so concurrent
   requests (even with the same ``id``) never collide. A prompt without one is refused (400),
   as in comfyui-api: it would produce nothing to return.
3. URL/base64 file inputs are fetched into the input folder (:mod:`.inputs`).
4. The prompt goes through :class:`~comfyui.jobs.submission.PromptSubmitter` (the policy
   behind ``/prompt`` and ``/api/v1/prompts``: validation errors are 400 with ``node_errors``,
   a full queue 429, a store fault 503) under a fresh prompt id; the request's ``id`` is a
   label echoed back (and stored in ``extra_data.api_request_id``).
5. The handler awaits the engine's completion future (:meth:`Engine.wait`; no polling) and
   reads the files named by the history entry's outputs (``type: output`` items only).
6. Delivery: base64 in the answer (default); uploaded to S3 (``s3``; the answer lists
   ``s3://`` URLs), Azure Blob (``azureBlobUpload``), a Hugging Face repository (``hfUpload``,
   one commit) or an HTTP endpoint (``http_upload``, PUT/POST per file): the answer lists their
   URLs; ``webhook`` (one ``output.complete`` per output, ``prompt.failed`` on failure) and an
   upload's ``async`` answer 202 at once and deliver in the background.
7. The request's output folder is removed once delivered. When an upload is not delivered
   after its retries, the files stay (the log names the folder); undelivered webhook messages
   are recorded (:mod:`.undelivered`), listed at ``GET /undelivered`` and resent at the next start.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import mimetypes
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from ..jobs.submission import PromptRejected, PromptRequest, PromptSubmitter
from ..jsonutil import dumps
from ..paths import safe_join
from .convert import OutputConversion, convert_image, convertible, converted_name, parse_conversion
from .inputs import InputFetcher
from .settings import ApiSettings
from .undelivered import UndeliveredStore, payloads
from .webhooks import WebhookSender

log = logging.getLogger(__name__)

OUTPUT_SUBFOLDER = "api"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def bad_request(message: str, details: str = "") -> PromptRejected:
    return PromptRejected.of("invalid_request", message, details or message)


class PromptFailed(Exception):
    """The prompt ran and did not succeed: ``error`` is ComfyUI's execution error dict."""

    def __init__(self, error: dict):
        super().__init__(error.get("message", "Prompt execution failed"))
        self.error = error


class UploadFailed(Exception):
    """An output could not be stored; the outputs stay in the request's output folder."""


@dataclass
class S3Target:
    bucket: str
    prefix: str = ""
    is_async: bool = False


@dataclass
class AzureTarget:
    container: str
    prefix: str = ""
    is_async: bool = False


@dataclass
class HfTarget:
    repo: str
    repo_type: str = "model"
    revision: str = "main"
    directory: str = ""
    is_async: bool = False

    @property
    def prefix(self) -> str:
        return self.directory


@dataclass
class HttpTarget:
    url_prefix: str
    method: str = "PUT"
    headers: dict[str, str] = field(default_factory=dict)
    is_async: bool = False
    prefix: str = ""  # the file name is appended to url_prefix


@dataclass
class ApiRequest:
    body: dict
    id: str
    prompt: dict
    webhook: str | None = None
    conversion: OutputConversion | None = None
    s3: S3Target | None = None
    azure: AzureTarget | None = None
    hf: HfTarget | None = None
    http: HttpTarget | None = None

    @classmethod
    def from_body(cls, body: Any) -> "ApiRequest":
        if not isinstance(body, dict):
            raise bad_request("Invalid request", "The request body must be a JSON object")
        prompt = body.get("prompt")
        if not isinstance(prompt, dict) or not prompt:
            raise PromptRejected.of("no_prompt", "No prompt provided",
                                    "'prompt' must be a non-empty object of nodes")
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
                raise bad_request("Invalid prompt", f"node {node_id} must be an object with a 'class_type' string")
        request_id = body.get("id")
        if request_id is None:
            request_id = str(uuid.uuid4())
        elif not isinstance(request_id, str) or not request_id.strip():
            raise bad_request("Invalid id", "'id' must be a non-empty string")
        webhook = body.get("webhook")
        if webhook is not None and not _http_url(webhook):
            raise bad_request("Invalid webhook", "'webhook' must be an http(s) URL")
        conversion = None
        if body.get("convert_output") is not None:
            try:
                conversion = parse_conversion(body["convert_output"])
            except ValueError as e:
                raise bad_request("Invalid convert_output", str(e)) from None
        s3 = None
        if body.get("s3") is not None:
            raw = body["s3"]
            if not isinstance(raw, dict) or not isinstance(raw.get("bucket"), str) or not raw["bucket"]:
                raise bad_request("Invalid s3", "'s3' must be an object with a 'bucket' string")
            prefix = raw.get("prefix", "")
            if not isinstance(prefix, str) or not isinstance(raw.get("async", False), bool):
                raise bad_request("Invalid s3", "'s3.prefix' must be a string and 's3.async' a boolean")
            s3 = S3Target(raw["bucket"], prefix, raw.get("async", False))
        azure = None
        if body.get("azureBlobUpload") is not None:  # comfyui-api's key and fields
            raw = body["azureBlobUpload"]
            if not isinstance(raw, dict) or not isinstance(raw.get("container"), str) or not raw["container"]:
                raise bad_request("Invalid azureBlobUpload", "'azureBlobUpload' must be an object with a "
                                                             "'container' string")
            prefix = raw.get("blobPrefix", "")
            if not isinstance(prefix, str) or not isinstance(raw.get("async", False), bool):
                raise bad_request("Invalid azureBlobUpload", "'azureBlobUpload.blobPrefix' must be a string and "
                                                             "'azureBlobUpload.async' a boolean")
            azure = AzureTarget(raw["container"], prefix, raw.get("async", False))
        hf = _hf_target(body)
        http = _http_target(body)
        if sum(t is not None for t in (s3, azure, hf, http)) > 1:
            raise bad_request("Invalid request", "give one of 's3', 'azureBlobUpload', 'hfUpload' and 'http_upload'")
        return cls(body, request_id, prompt, webhook, conversion, s3, azure, hf, http)

    @property
    def target(self) -> S3Target | AzureTarget | HfTarget | HttpTarget | None:
        return self.s3 or self.azure or self.hf or self.http

    @property
    def in_background(self) -> bool:
        return self.webhook is not None or (self.target is not None and self.target.is_async)

    @property
    def uploads(self) -> bool:
        return self.target is not None


def _hf_target(body: dict) -> HfTarget | None:
    """``hfUpload`` (comfyui-api's key; its later ``hf_upload`` too): ``repo``, ``repo_type``,
    ``revision``, ``directory``, ``async``."""
    key = "hfUpload" if body.get("hfUpload") is not None else "hf_upload"
    raw = body.get(key)
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("repo"), str) or raw["repo"].count("/") > 1 \
            or not raw["repo"].strip("/"):
        raise bad_request(f"Invalid {key}", f"'{key}' must be an object with a 'repo' string ('owner/name')")
    repo_type = raw.get("repo_type", "model")
    if repo_type not in ("model", "dataset", "space"):
        raise bad_request(f"Invalid {key}", f"'{key}.repo_type' must be 'model', 'dataset' or 'space'")
    revision, directory = raw.get("revision", "main"), raw.get("directory", "")
    if not isinstance(revision, str) or not revision or not isinstance(directory, str) \
            or not isinstance(raw.get("async", False), bool):
        raise bad_request(f"Invalid {key}", f"'{key}.revision' and '{key}.directory' must be strings and "
                                            f"'{key}.async' a boolean")
    if ".." in directory.split("/"):
        raise bad_request(f"Invalid {key}", f"'{key}.directory' must not contain '..'")
    return HfTarget(raw["repo"].strip("/"), repo_type, revision, directory.strip("/"), raw.get("async", False))


def _http_target(body: dict) -> HttpTarget | None:
    """``http_upload`` (comfyui-api's key): ``url_prefix``, ``async``; ours adds ``method``
    (PUT, as comfyui-api, or POST) and ``headers``."""
    raw = body.get("http_upload")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not _http_url(raw.get("url_prefix")):
        raise bad_request("Invalid http_upload", "'http_upload' must be an object with an http(s) 'url_prefix'")
    method = raw.get("method", "PUT")
    headers = raw.get("headers", {})
    if method not in ("PUT", "POST"):
        raise bad_request("Invalid http_upload", "'http_upload.method' must be 'PUT' or 'POST'")
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise bad_request("Invalid http_upload", "'http_upload.headers' must be an object of strings")
    if not isinstance(raw.get("async", False), bool):
        raise bad_request("Invalid http_upload", "'http_upload.async' must be a boolean")
    return HttpTarget(raw["url_prefix"], method, headers, raw.get("async", False))


def _http_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https") and bool(urlsplit(value).netloc)


def rewrite_prefixes(prompt: dict, prompt_id: str, request_id: str) -> dict:
    """A copy of ``prompt`` whose ``filename_prefix`` inputs (literal or linked) save under
    ``api/<prompt_id>/``; raises a 400 when there is none."""
    prefix = f"{OUTPUT_SUBFOLDER}/{prompt_id}/{_UNSAFE.sub('_', request_id)[:64] or 'output'}"
    out, found = {}, False
    for node_id, node in prompt.items():
        inputs = node.get("inputs")
        if isinstance(inputs, dict) and "filename_prefix" in inputs:  # a linked one too
            node = {**node, "inputs": {**inputs, "filename_prefix": prefix}}
            found = True
        out[node_id] = node
    if not found:
        raise bad_request("Prompt has no output",
                          'Prompt must contain a node with a "filename_prefix" input, such as "SaveImage"')
    return out


def output_items(entry: dict) -> list[tuple[str, str]]:
    """``(subfolder, filename)`` of each saved output file in a history entry, in node order."""
    items = []
    for node_output in (entry.get("outputs") or {}).values():
        for values in node_output.values():
            if not isinstance(values, list):
                continue
            for item in values:
                if isinstance(item, dict) and item.get("filename") and item.get("type", "output") == "output":
                    items.append((item.get("subfolder") or "", item["filename"]))
    return items


def execution_error(entry: dict) -> dict | None:
    """ComfyUI's error dict for a history entry that did not succeed, else None."""
    status = entry.get("status") or {}
    if status.get("status_str") == "success":
        return None
    for event, data in reversed(status.get("messages") or []):
        if event == "execution_error":
            return {"type": "execution_error", "message": data.get("exception_message", "Execution failed"),
                    "details": f"{data.get('node_type')} (node {data.get('node_id')}): "
                               f"{data.get('exception_type', '')}", "extra_info": {"node_id": data.get("node_id")}}
        if event == "execution_interrupted":
            return {"type": "execution_interrupted", "message": "Prompt execution was interrupted",
                    "details": "", "extra_info": {"node_id": data.get("node_id")}}
    return {"type": "execution_error", "message": f"Prompt finished with status {status.get('status_str')}",
            "details": "", "extra_info": {}}


@dataclass
class Outputs:
    filenames: list[str] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    folder: str | None = None  # the request's output folder, removed once delivered


class ApiService:
    def __init__(self, engine: Any, settings: ApiSettings, session: Any):
        self.engine = engine
        self.settings = settings
        self.submitter = PromptSubmitter(engine)
        folders = engine.runtime.folders
        self.folders = folders
        self.fetcher = InputFetcher(session, folders.get_input_directory, max_bytes=settings.input_max_bytes,
                                    timeout_s=settings.input_timeout_s, s3=lambda: self.s3)
        self.webhooks = WebhookSender(session, secret=settings.webhook_secret, retries=settings.webhook_retries,
                                      backoff_s=settings.webhook_backoff_s, timeout_s=settings.webhook_timeout_s)
        self._s3 = None
        self._azure = None
        self._hf = None
        self._http = None
        self.session = session
        self.background: set[asyncio.Task] = set()
        self.progress = None  # the ProgressStreams that learn each request's prompt id
        self.undelivered = UndeliveredStore(lambda: safe_join(folders.get_output_directory(), OUTPUT_SUBFOLDER))

    @property
    def s3(self):
        if self._s3 is None:
            from .storage import S3Storage

            self._s3 = S3Storage()
        return self._s3

    @property
    def azure(self):
        if self._azure is None:
            from .storage import AzureBlobStorage

            self._azure = AzureBlobStorage()
        return self._azure

    @property
    def hf(self):
        if self._hf is None:
            from .storage import HuggingFaceStorage

            self._hf = HuggingFaceStorage()
        return self._hf

    @property
    def http(self):
        if self._http is None:
            from .storage import HttpStorage

            self._http = HttpStorage(self.session)
        return self._http

    # ---- the route ----
    async def handle(self, body: Any) -> web.Response:
        status, data, headers = await self.respond(body)
        return _json(data, status, headers)

    async def respond(self, body: Any) -> tuple[int, dict, dict | None]:
        """The answer to a request body: ``(status, JSON body, headers)``."""
        started = time.perf_counter()
        try:
            request = ApiRequest.from_body(body)
            if request.s3 is not None:
                self.s3.check_available()
            if request.azure is not None:
                self.azure.check_available()
            prompt_id = str(uuid.uuid4())
            prompt = rewrite_prefixes(request.prompt, prompt_id, request.id)
            await self.fetcher.resolve(prompt, self.engine.object_info())
            await self.submitter.submit(PromptRequest(prompt, prompt_id=prompt_id,
                                                      extra_data={"api_request_id": request.id}))
        except PromptRejected as e:
            return e.status, e.body() | {"id": body.get("id") if isinstance(body, dict) else None}, e.headers
        if self.progress is not None:
            self.progress.remember(request.id, prompt_id)
        stats = {"preprocess_time": _ms(started)}
        if request.in_background:
            task = asyncio.create_task(self._deliver_in_background(request, prompt, prompt_id, stats, started))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            return 202, {**request.body, "id": request.id, "prompt": prompt, "status": "ok",
                         "prompt_id": prompt_id}, None
        try:
            outputs = await self.run(prompt_id, request.conversion, stats)
            images = await self._upload(request, outputs) if request.uploads else \
                [base64.b64encode(d).decode() for d in outputs.data]
        except PromptFailed as e:
            await self.remove_outputs(prompt_id)
            return 500, {"error": e.error, "node_errors": {}, "id": request.id, "prompt_id": prompt_id}, None
        except UploadFailed as e:
            log.error("request %s: outputs kept in output/%s/%s (%s)", request.id, OUTPUT_SUBFOLDER, prompt_id, e)
            error = {"type": "upload_failed", "message": "The outputs could not be uploaded", "details": str(e),
                     "extra_info": {}}
            return 502, {"error": error, "node_errors": {}, "id": request.id, "prompt_id": prompt_id}, None
        await self._remove(outputs)
        stats["total_time"] = _ms(started)
        return 200, {**request.body, "id": request.id, "prompt": prompt, "images": images,
                     "filenames": outputs.filenames, "stats": stats, "prompt_id": prompt_id}, None

    # ---- steps ----
    async def run(self, prompt_id: str, conversion: OutputConversion | None, stats: dict) -> Outputs:
        """Wait for a queued prompt and read (and convert) its output files."""
        queued = time.perf_counter()
        entry = await asyncio.wrap_future(self.engine.wait(prompt_id))
        stats["comfy_round_trip_time"] = _ms(queued)
        error = execution_error(entry)
        if error is not None:
            raise PromptFailed(error)
        collected = time.perf_counter()
        outputs = await asyncio.to_thread(self._read_outputs, prompt_id, output_items(entry), conversion)
        stats["postprocess_time"] = _ms(collected)
        return outputs

    def _read_outputs(self, prompt_id: str, items: list[tuple[str, str]],
                      conversion: OutputConversion | None) -> Outputs:
        root = self.folders.get_output_directory()
        outputs = Outputs(folder=str(safe_join(root, OUTPUT_SUBFOLDER, prompt_id)))
        for subfolder, filename in items:
            try:
                with open(safe_join(root, subfolder, filename), "rb") as f:
                    data = f.read()
            except OSError as e:  # an optional output a node did not write
                log.warning("output %s/%s of prompt %s not readable: %s", subfolder, filename, prompt_id, e)
                continue
            if conversion is not None and conversion.format != "png" and convertible(filename):
                try:
                    converted = convert_image(data, conversion)
                    if converted is not None:
                        data, filename = converted, converted_name(filename, conversion)
                except (OSError, ValueError) as e:  # as comfyui-api: the original file, and a warning
                    log.warning("output %s not converted to %s: %s", filename, conversion.format, e)
            outputs.filenames.append(filename)
            outputs.data.append(data)
        return outputs

    async def _upload(self, request: ApiRequest, outputs: Outputs) -> list[str]:
        """Upload each output to S3, Azure Blob, a Hugging Face repository or an HTTP URL;
        -> their URLs."""
        target = request.target
        keys = [f"{target.prefix.strip('/')}/{name}".lstrip("/") if target.prefix else name
                for name in outputs.filenames]
        try:
            if request.s3 is not None:
                await asyncio.gather(*(self.s3.upload(target.bucket, key, data, _content_type(key))
                                       for key, data in zip(keys, outputs.data)))
                return [f"s3://{target.bucket}/{key}" for key in keys]
            if request.hf is not None:
                return await self.hf.upload(target.repo, target.repo_type, target.revision,
                                            dict(zip(keys, outputs.data)), f"comfyui api request {request.id}")
            if request.http is not None:
                base = target.url_prefix.rstrip("/")
                return list(await asyncio.gather(*(
                    self.http.upload(f"{base}/{quote(key)}", data, _content_type(key), target.method, target.headers)
                    for key, data in zip(keys, outputs.data))))
            return list(await asyncio.gather(*(self.azure.upload(target.container, key, data, _content_type(key))
                                               for key, data in zip(keys, outputs.data))))
        except Exception as e:  # noqa: BLE001 - the SDKs' errors: no bucket/container/repo, access denied, no network
            raise UploadFailed(f"{_where(request)}: {type(e).__name__}: {e}") from e

    async def _deliver_in_background(self, request: ApiRequest, prompt: dict, prompt_id: str, stats: dict,
                                     started: float) -> None:
        try:
            outputs = await self.run(prompt_id, request.conversion, stats)
            urls = await self._upload(request, outputs) if request.uploads else None
        except Exception as e:  # noqa: BLE001 - every failure is reported to the webhook
            error = e.error["message"] if isinstance(e, PromptFailed) else f"{type(e).__name__}: {e}"
            log.warning("prompt %s (request %s) failed: %s", prompt_id, request.id, error)
            if isinstance(e, PromptFailed):
                await self.remove_outputs(prompt_id)
            else:  # the outputs exist; the upload failed: keep them
                log.error("request %s: outputs kept in output/%s/%s", request.id, OUTPUT_SUBFOLDER, prompt_id)
            if request.webhook and not await self.webhooks.send(
                    request.webhook, {"event": "prompt.failed", "error": error, "id": request.id, "prompt": prompt}):
                await asyncio.to_thread(self.undelivered.save, {
                    "id": request.id, "prompt_id": prompt_id, "webhook": request.webhook, "event": "prompt.failed",
                    "error": error, "prompt": prompt, "attempts": self.settings.webhook_retries + 1})
            return
        stats["total_time"] = _ms(started)
        delivered = True
        if request.webhook:
            sends = []
            for i, (filename, data) in enumerate(zip(outputs.filenames, outputs.data)):
                payload = {"event": "output.complete", "image": base64.b64encode(data).decode(), "id": request.id,
                           "filename": filename, "prompt": prompt, "stats": stats}
                if urls:
                    payload["url"] = urls[i]
                sends.append(self.webhooks.send(request.webhook, payload))
            results = await asyncio.gather(*sends)
            missed = [i for i, ok in enumerate(results) if not ok]
            if missed:
                delivered = False
                names = [outputs.filenames[i] for i in missed]
                await asyncio.to_thread(self.undelivered.save, {
                    "id": request.id, "prompt_id": prompt_id, "webhook": request.webhook,
                    "event": "output.complete", "filenames": names,
                    "urls": {outputs.filenames[i]: urls[i] for i in missed} if urls else {},
                    "delivered": len(results) - len(missed), "attempts": self.settings.webhook_retries + 1,
                    "prompt": prompt, "stats": stats}, {name: outputs.data[i] for name, i in zip(names, missed)})
                await asyncio.to_thread(self.undelivered.drop_originals, prompt_id)
        if delivered:
            await self._remove(outputs)
        else:
            log.error("request %s: outputs kept in %s (webhook not delivered; listed at GET /undelivered, "
                      "retried at the next start)", request.id, outputs.folder)

    async def redeliver(self) -> None:
        """Send the webhook messages that earlier runs could not deliver (records on disk)."""
        for record in await asyncio.to_thread(self.undelivered.load):
            try:
                messages = await asyncio.to_thread(payloads, self.undelivered, record)
            except (OSError, KeyError) as e:
                log.error("undelivered request %s of prompt %s cannot be resent: %s", record.get("id"),
                          record.get("prompt_id"), e)
                continue
            results = await asyncio.gather(*(self.webhooks.send(record["webhook"], payload)
                                             for _, payload in messages))
            left = [filename for (filename, _), ok in zip(messages, results) if not ok]
            if not left:
                log.info("request %s: undelivered webhooks delivered", record["id"])
                await asyncio.to_thread(self.undelivered.remove, record["prompt_id"])
                continue
            record = {**record, "attempts": record.get("attempts", 0) + self.settings.webhook_retries + 1}
            if record["event"] == "output.complete":
                record["delivered"] = record.get("delivered", 0) + len(messages) - len(left)
                record["filenames"] = left
            await asyncio.to_thread(self.undelivered.save, record)

    async def _remove(self, outputs: Outputs) -> None:
        if outputs.folder:
            await asyncio.to_thread(shutil.rmtree, outputs.folder, True)

    async def remove_outputs(self, prompt_id: str) -> None:
        """Delete the output folder of the request that ran as ``prompt_id``."""
        folder = safe_join(self.folders.get_output_directory(), OUTPUT_SUBFOLDER, prompt_id)
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def close(self, timeout: float = 30) -> None:
        """Let background deliveries finish (up to ``timeout``), then cancel the rest."""
        if self.background:
            done, pending = await asyncio.wait(set(self.background), timeout=timeout)
            for task in pending:
                task.cancel()


def _where(request: ApiRequest) -> str:
    if request.s3 is not None:
        return f"s3://{request.s3.bucket}"
    if request.hf is not None:
        return f"Hugging Face {request.hf.repo_type} {request.hf.repo}@{request.hf.revision}"
    if request.http is not None:
        return f"HTTP {request.http.method} {_without_credentials(request.http.url_prefix)}"
    return f"azure container {request.azure.container}"


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _json(data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", headers=headers or None)

