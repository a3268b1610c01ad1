"""The HTTP side of the API nodes: where a call goes (the Comfy API proxy with the user's
account token or API key, or a vendor directly with the user's own key), retries on
transient errors, task polling with progress and interrupt, and result downloads.

Credentials only ever travel in request headers: they are registered with
:mod:`comfyui.redact` so no log line can show them, and never logged or stored here.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from .. import redact
from ..engine.progress import InterruptProcessingException, interrupt_requested, report_progress, report_text
from .models import UploadRequest, UploadResponse

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.comfy.org"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

UNAUTHORIZED = "Unauthorized: Please login first to use this node."
NO_CREDITS = "Payment Required: Please add credits to your account to use this node."

Model = TypeVar("Model", bound=BaseModel)


class ApiNodeError(Exception):
    """A refusal or failure of the service, worded for the user (shown on the node)."""


@dataclass(frozen=True)
class Vendor:
    """A vendor the nodes may call directly: the proxy's prefix for it, its own base URL,
    the environment variable of its key and how the key is sent."""
    name: str
    proxy_prefix: str
    direct_base: str
    key_env: str
    header: str = "Authorization"
    scheme: str = "Bearer "


# Vendors whose own API has the proxy's paths under the prefix (so one request model serves both).
VENDORS = {
    "openai": Vendor("openai", "/proxy/openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "stability": Vendor("stability", "/proxy/stability", "https://api.stability.ai", "STABILITY_API_KEY"),
}


def _config():
    from .. import config

    return config.current()


def api_base() -> str:
    """The proxy's base URL (--comfy-api-base)."""
    return (getattr(_config(), "comfy_api_base", None) or DEFAULT_API_BASE).rstrip("/")


def direct_key(vendor: Vendor) -> tuple[str, str] | None:
    """(key, base URL) for calling ``vendor`` directly, from --api-node-keys or the vendor's
    environment variable (base URL overridable as ``<NAME>_BASE_URL``); None: use the proxy."""
    path = getattr(_config(), "api_node_keys", None)
    entry: Any = None
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                entry = json.load(f).get(vendor.name)
        except (OSError, ValueError, AttributeError) as e:
            raise ApiNodeError(f"--api-node-keys {path}: cannot read the key file ({e})") from None
    if isinstance(entry, str):
        entry = {"api_key": entry}
    key = (entry or {}).get("api_key") or os.environ.get(vendor.key_env)
    if not key:
        return None
    base = (entry or {}).get("base_url") or os.environ.get(f"{vendor.name.upper()}_BASE_URL") or vendor.direct_base
    return key, base.rstrip("/")


def _vendor_of(path: str) -> Vendor | None:
    return next((v for v in VENDORS.values() if path.startswith(v.proxy_prefix + "/")), None)


class ApiClient:
    """One node's calls. ``auth_token`` / ``api_key`` are the hidden inputs
    AUTH_TOKEN_COMFY_ORG / API_KEY_COMFY_ORG (the frontend's login, from the prompt's extra_data)."""

    max_retries = 3
    retry_delay = 1.0  # seconds, doubled on each retry
    poll_interval = 1.0  # seconds between two status requests of a task
    timeout = aiohttp.ClientTimeout(total=600, sock_connect=30, sock_read=300)

    def __init__(self, auth_token: str | None, api_key: str | None):
        self.auth_token = auth_token or None
        self.api_key = api_key or None
        redact.register_secret(self.auth_token)
        redact.register_secret(self.api_key)

    # ---- routing ----
    def route(self, path: str) -> tuple[str, dict]:
        """(URL, headers) of a proxy path: direct to the vendor when the user has its key."""
        vendor = _vendor_of(path)
        direct = direct_key(vendor) if vendor is not None else None
        if direct is not None:
            key, base = direct
            redact.register_secret(key)
            return base + path[len(vendor.proxy_prefix):], {vendor.header: vendor.scheme + key}
        headers = self._proxy_headers()
        if not headers:
            raise ApiNodeError(UNAUTHORIZED)
        return api_base() + path, headers

    def _proxy_headers(self) -> dict:
        headers = {}
        if self.auth_token:
            headers["Authorization"] = f"Bearer {self.auth_token}"
        if self.api_key:
            headers["X-API-KEY"] = self.api_key
        return headers

    def _headers_for_url(self, url: str) -> dict:
        """Credentials go only to the proxy's own origin (a result URL may point anywhere)."""
        base = urllib.parse.urlsplit(api_base())
        target = urllib.parse.urlsplit(url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            return {}
        return self._proxy_headers()

    # ---- requests ----
    async def call(self, path: str, response_model: type[Model], *, method: str = "POST",
                   body: BaseModel | None = None, files: list[tuple[str, str, bytes, str]] | None = None) -> Model:
        """Send ``body`` (JSON, or multipart form fields when ``files`` are given) to ``path``
        and parse the answer as ``response_model``."""
        url, headers = self.route(path)
        return await self._send(method, url, headers, response_model, body, files)

    async def get_url(self, url: str, response_model: type[Model]) -> Model:
        return await self._send("GET", url, self._headers_for_url(url), response_model, None, None)

    async def download(self, url: str) -> bytes:
        return await self._send("GET", url, self._headers_for_url(url), None, None, None)

    async def upload(self, data: bytes, file_name: str, content_type: str) -> str:
        """Store ``data`` in the Comfy API's storage (for vendors that take input files by URL):
        ask ``/customers/storage`` for a signed upload URL, PUT the bytes; -> the download URL."""
        slot = await self.call("/customers/storage", UploadResponse,
                               body=UploadRequest(file_name=file_name, content_type=content_type))
        # the signed URL is its own authorisation: the login is not sent along
        await self._send("PUT", slot.upload_url, {"Content-Type": content_type}, None, None, None, raw=data)
        return slot.download_url

    async def _send(self, method, url, headers, response_model, body, files, raw: bytes | None = None):
        fields = body.model_dump(mode="json", exclude_none=True) if body is not None else None
        attempt = 0
        while True:
            throw_if_interrupted()
            try:
                status, payload, retry_after = await until_interrupted(
                    self._request_once(method, url, headers, response_model, fields, files, raw))
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
                if attempt >= self.max_retries:
                    raise ApiNodeError(f"Could not reach {_origin(url)}: {e or type(e).__name__} "
                                       f"(after {attempt} retries)") from None
                status, payload, retry_after = None, b"", None
            if status is not None and status < 400:
                if response_model is None:
                    return payload
                try:
                    return response_model.model_validate_json(payload)
                except ValidationError as e:
                    raise ApiNodeError(f"Unexpected answer from {_origin(url)}: {e.errors()[0]['msg']}") from None
            if status is not None and (status not in RETRY_STATUSES or attempt >= self.max_retries):
                raise ApiNodeError(_error_message(status, payload, attempt))
            delay = self.retry_delay * 2 ** attempt
            if retry_after and retry_after.isdigit():
                delay = max(delay, min(float(retry_after), 60.0))
            attempt += 1
            log.warning("API node: %s from %s, retry %d/%d in %.1fs", status or "connection error",
                        _origin(url), attempt, self.max_retries, delay)
            await interruptible_sleep(delay)

    async def _request_once(self, method, url, headers, response_model, fields, files,
                            raw) -> tuple[int, bytes, str | None]:
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            # JSON answers (Stability's own API sends raw image bytes without this)
            kwargs: dict[str, Any] = {"headers": headers if response_model is None
                                      else {**headers, "Accept": "application/json"}}
            if files is not None:
                form = aiohttp.FormData(default_to_multipart=True)
                for k, v in (fields or {}).items():
                    form.add_field(k, str(v).lower() if isinstance(v, bool) else str(v))
                for name, filename, data, content_type in files:
                    form.add_field(name, data, filename=filename, content_type=content_type)
                kwargs["data"] = form
            elif fields is not None:
                kwargs["json"] = fields
            elif raw is not None:
                kwargs["data"] = raw
            log.debug("API node request %s %s", method, url)
            async with session.request(method, url, **kwargs) as resp:
                return resp.status, await resp.read(), resp.headers.get("Retry-After")

    # ---- tasks ----
    async def poll(self, fetch: Callable[[], Any], *, state: Callable[[Any], str], progress: Callable[[Any], float | None],
                   timeout: float = 900.0) -> Any:
        """Ask for a task's status until ``state(status)`` is "done" (returns that status);
        ``fetch`` raises ApiNodeError for a failed task. Reports progress and elapsed time to the
        UI between polls and stops on interrupt."""
        started = time.monotonic()
        while True:
            status = await fetch()
            elapsed = time.monotonic() - started
            if state(status) == "done":
                report_progress(100, 100)
                return status
            fraction = progress(status)
            if fraction is not None:
                report_progress(round(fraction * 100, 1), 100)
            report_text(f"Generating ({elapsed:.0f}s)")
            if elapsed > timeout:
                raise ApiNodeError(f"The task did not finish within {timeout:.0f} seconds.")
            await interruptible_sleep(self.poll_interval)


def throw_if_interrupted() -> None:
    if interrupt_requested():
        raise InterruptProcessingException()


async def until_interrupted(coro):
    """Await ``coro``, abandoning it (and its connection) as soon as the user interrupts."""
    task = asyncio.ensure_future(coro)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                return task.result()
            throw_if_interrupted()
    finally:
        task.cancel()


async def interruptible_sleep(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        throw_if_interrupted()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, 0.1))


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _error_message(status: int, payload: bytes, retries: int) -> str:
    detail, code = _error_detail(payload)
    if status == 401:
        return UNAUTHORIZED
    if status == 402:
        return NO_CREDITS
    if status == 409:
        return "There is a problem with your account. Please contact support@comfy.org."
    if status == 429:
        return "Rate Limit Exceeded: Please try again later."
    if "moderation" in (code or "").lower() or "safety" in (code or "").lower():
        return f"The request was refused by the provider's content moderation: {detail}"
    if status in (400, 413, 422):
        return f"Bad request: {detail}" if detail else "Bad request."
    suffix = f" (after {retries} retries)" if retries else ""
    return f"The service answered {status}: {detail or 'no details'}{suffix}"


def _error_detail(payload: bytes) -> tuple[str, str | None]:
    try:
        data = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace")[:500], None
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        msg = err.get("message") or err.get("detail") or err.get("name") or json.dumps(err)[:500]
        return str(msg), err.get("code") or err.get("type")
    return str(err)[:500], None
