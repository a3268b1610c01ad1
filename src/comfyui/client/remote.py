"""A client for a running ComfyUI server (ours or upstream), over HTTP + WebSocket.

    from comfyui.client.remote import RemoteComfy

    async with RemoteComfy("http://127.0.0.1:8188") as client:
        outputs = await client.queue_prompt(prompt)        # API or UI format
        png = await client.get_file(outputs["9"]["images"][0])
        async for event in client.queue_with_progress(prompt): ...

Only ``aiohttp`` is needed. ``queue_prompt`` opens the WebSocket (``/ws?clientId=``) first,
POSTs ``/api/prompt``, follows the events until the prompt ends (and polls
``/api/history/{id}`` as a fallback), then returns the history ``outputs`` with a ``url``
(``/api/view?...``) on every file entry.
"""
from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import aiohttp

from ..jobs.submission import PromptRejected
from .common import (
    TERMINAL_EVENTS, ExecutionError, ProgressEvent, PromptInterrupted, error_from_history, prepare_prompt,
)

__all__ = ["RemoteComfy", "RemotePromptError", "ProgressEvent", "ExecutionError", "PromptInterrupted"]

# Binary WebSocket frames: 4-byte big-endian event type, then the payload.
BINARY_PREVIEW_IMAGE = 1
BINARY_TEXT = 3
BINARY_PREVIEW_IMAGE_WITH_METADATA = 4


class RemotePromptError(PromptRejected):
    """The server refused the prompt: its HTTP ``status`` and ComfyUI's ``error`` and
    ``node_errors`` (the submission policy's own error, read back from the answer)."""


class RemoteComfy:
    def __init__(self, base_url: str = "http://127.0.0.1:8188", *, client_id: str | None = None,
                 headers: dict | None = None, poll_interval: float = 1.0, timeout: float | None = None):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.headers = headers or {}
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._own_session = False
        self._object_info: dict | None = None

    # ---- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> "RemoteComfy":
        self._ensure_session()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers)
            self._own_session = True
        return self._session

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @property
    def ws_url(self) -> str:
        base = self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/ws?clientId={self.client_id}"

    # ---- plain API calls ------------------------------------------------------------

    async def _get_json(self, path: str) -> Any:
        async with self._ensure_session().get(self.url(path)) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def object_info(self, refresh: bool = False) -> dict:
        if self._object_info is None or refresh:
            self._object_info = await self._get_json("/api/object_info")
        return self._object_info

    async def get_history(self, prompt_id: str) -> dict | None:
        data = await self._get_json(f"/api/history/{prompt_id}")
        return data.get(prompt_id) if isinstance(data, dict) else None

    async def get_queue(self) -> dict:
        return await self._get_json("/api/queue")

    async def interrupt(self, prompt_id: str | None = None) -> None:
        body = {"prompt_id": prompt_id} if prompt_id else {}
        async with self._ensure_session().post(self.url("/api/interrupt"), json=body) as resp:
            resp.raise_for_status()

    def view_url(self, file_entry: dict) -> str:
        query = urlencode({"filename": file_entry["filename"], "subfolder": file_entry.get("subfolder") or "",
                           "type": file_entry.get("type") or "output"})
        return self.url(f"/api/view?{query}")

    async def get_file(self, file_entry: dict) -> bytes:
        """The bytes of one output file entry (``{"filename", "subfolder", "type"}``)."""
        async with self._ensure_session().get(self.view_url(file_entry)) as resp:
            resp.raise_for_status()
            return await resp.read()

    async def post_prompt(self, prompt: Any, *, extra_data: dict | None = None, prompt_id: str | None = None,
                          front: bool = False, partial_execution_targets: list[str] | None = None) -> dict:
        """POST /api/prompt; -> ``{"prompt_id", "number", "node_errors"}``. UI workflows are
        converted first with the server's ``/api/object_info``."""
        info = None
        if isinstance(prompt, dict) and isinstance(prompt.get("nodes"), list):
            info = await self.object_info()
        prepared = prepare_prompt(prompt, info, extra_data)
        body: dict = {"prompt": prepared.prompt, "client_id": self.client_id, "extra_data": prepared.extra_data}
        if prompt_id:
            body["prompt_id"] = prompt_id
        if front:
            body["front"] = True
        if partial_execution_targets:
            body["partial_execution_targets"] = partial_execution_targets
        async with self._ensure_session().post(self.url("/api/prompt"), json=body) as resp:
            try:
                data = await resp.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                data = {"error": {"type": "http_error", "message": await resp.text(), "details": "",
                                  "extra_info": {}}}
            if resp.status >= 400:
                raise RemotePromptError.from_body(data, resp.status)
            return data

    # ---- running prompts -------------------------------------------------------------

    async def queue_prompt(self, prompt: Any, *, extra_data: dict | None = None,
                           partial_execution_targets: list[str] | None = None) -> dict:
        """Run a prompt on the server and return its outputs (each file with a ``url``)."""
        outputs = None
        async for event in self.queue_with_progress(prompt, extra_data=extra_data,
                                                    partial_execution_targets=partial_execution_targets):
            if event.event == "result":
                outputs = event.data["outputs"]
        assert outputs is not None
        return outputs

    async def queue_with_progress(self, prompt: Any, *, extra_data: dict | None = None,
                                  partial_execution_targets: list[str] | None = None) -> AsyncIterator[ProgressEvent]:
        """Stream the prompt's events (``preview_image`` frames decoded to PIL images) and end
        with ``result`` (``{"prompt_id", "outputs"}``); raises on failure."""
        session = self._ensure_session()
        ws = None
        try:
            ws = await session.ws_connect(self.ws_url, heartbeat=30)
        except (aiohttp.ClientError, OSError):
            ws = None  # no WebSocket: fall back to polling the history
        try:
            queued = await self.post_prompt(prompt, extra_data=extra_data,
                                            partial_execution_targets=partial_execution_targets)
            prompt_id = queued["prompt_id"]
            loop = asyncio.get_running_loop()
            deadline = None if self.timeout is None else loop.time() + self.timeout
            done = False
            while not done:
                if deadline is not None and loop.time() > deadline:
                    raise TimeoutError(f"prompt {prompt_id} did not finish in {self.timeout} s")
                event = None
                if ws is not None and not ws.closed:
                    try:
                        msg = await ws.receive(timeout=self.poll_interval)
                    except asyncio.TimeoutError:
                        msg = None
                    if msg is not None:
                        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                            ws = None
                        else:
                            event = _decode_ws_message(msg)
                else:
                    await asyncio.sleep(self.poll_interval)
                if event is not None:
                    if not _is_ours(event, prompt_id):
                        continue
                    yield event
                    if event.event in TERMINAL_EVENTS or (
                            event.event == "executing" and event.data.get("node") is None):
                        done = True
                        continue
                    continue
                # quiet period: did it finish without us seeing the end?
                entry = await self.get_history(prompt_id)
                if entry is not None and (entry.get("status") or {}).get("completed") is not None:
                    done = True
            entry = await self._wait_history(prompt_id)
            error = error_from_history(prompt_id, entry)
            if error is not None:
                raise error
            outputs = self.with_urls(entry.get("outputs") or {})
            yield ProgressEvent("result", {"prompt_id": prompt_id, "outputs": outputs})
        finally:
            if ws is not None:
                await ws.close()

    async def _wait_history(self, prompt_id: str) -> dict:
        for _ in range(200):
            entry = await self.get_history(prompt_id)
            if entry is not None:
                return entry
            await asyncio.sleep(0.05)
        raise TimeoutError(f"prompt {prompt_id} finished but has no history entry")

    def with_urls(self, outputs: dict) -> dict:
        result = json.loads(json.dumps(outputs))
        for node_output in result.values():
            if isinstance(node_output, dict):
                for items in node_output.values():
                    if isinstance(items, list):
                        for item in items:
                            if isinstance(item, dict) and isinstance(item.get("filename"), str):
                                item.setdefault("url", self.view_url(item))
        return result


def _is_ours(event: ProgressEvent, prompt_id: str) -> bool:
    data = event.data
    if isinstance(data, dict):
        pid = data.get("prompt_id")
        if pid is None and isinstance(data.get("metadata"), dict):
            pid = data["metadata"].get("prompt_id")
        if pid is not None:
            return pid == prompt_id
    # status broadcasts and prompt-less frames (legacy previews) belong to whoever listens
    return event.event != "status"


def _decode_ws_message(msg: aiohttp.WSMessage) -> ProgressEvent | None:
    if msg.type == aiohttp.WSMsgType.TEXT:
        try:
            payload = json.loads(msg.data)
        except json.JSONDecodeError:
            return None
        return ProgressEvent(payload.get("type", ""), payload.get("data") or {})
    if msg.type == aiohttp.WSMsgType.BINARY:
        return decode_binary_frame(msg.data)
    return None


def decode_binary_frame(data: bytes) -> ProgressEvent | None:
    if len(data) < 4:
        return None
    (kind,) = struct.unpack(">I", data[:4])
    body = data[4:]
    if kind == BINARY_PREVIEW_IMAGE and len(body) >= 4:
        (fmt,) = struct.unpack(">I", body[:4])
        return ProgressEvent("preview_image", {"image": _open_image(body[4:]),
                                               "format": "PNG" if fmt == 2 else "JPEG", "metadata": {}})
    if kind == BINARY_PREVIEW_IMAGE_WITH_METADATA and len(body) >= 4:
        (size,) = struct.unpack(">I", body[:4])
        metadata = json.loads(body[4:4 + size].decode() or "{}")
        image = body[4 + size:]
        return ProgressEvent("preview_image", {"image": _open_image(image), "metadata": metadata,
                                               "format": "PNG" if image.startswith(b"\x89PNG") else "JPEG"})
    if kind == BINARY_TEXT and len(body) >= 4:
        (size,) = struct.unpack(">I", body[:4])
        node_id = body[4:4 + size].decode(errors="replace")
        return ProgressEvent("progress_text", {"node_id": node_id, "text": body[4 + size:].decode(errors="replace")})
    return ProgressEvent("binary", {"type": kind, "data": body})


def _open_image(data: bytes) -> Any:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img
