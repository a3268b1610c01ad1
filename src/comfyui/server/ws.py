"""WebSocket ``/ws``: client registry, per-client send queues, engine event routing.

Protocol (frontend contract §3):

* ``GET /ws?clientId=<sid>``: a known ``clientId`` replaces the socket stored under it and
  reuses the sid (reconnect); otherwise the server mints ``uuid4().hex``.
* First message: ``status`` with ``sid``. If that sid owns the running prompt and a node is
  executing, ``executing`` with that node follows (resume after reconnect).
* The client's first text message may be ``feature_flags``; the server stores the client's
  flags and answers with its own (the same dict as ``GET /features``). Later messages are
  ignored.

Routing of engine events ``(event, data, client_id)`` (the engine calls listeners on its
worker thread; we hop to the aiohttp loop with ``call_soon_threadsafe``, batched):

* ``status`` is broadcast, at most once per ``STATUS_INTERVAL`` (20 ms; the latest count
  wins and is always delivered). Bursts of queue changes become one message, and the
  frontend, which refetches ``/api/jobs`` on every ``status``, is not flooded. The final
  ``status`` of a run may therefore arrive just after ``executing`` null.
* With a ``client_id``: the event goes to that sid only (dropped if it is not connected).
* Without a ``client_id`` (API users): like upstream, ``execution_start``,
  ``execution_cached``, ``execution_success`` and ``execution_error`` are not sent;
  everything else (``executing``, ``progress``, ``progress_state``, ``executed``,
  ``execution_interrupted``, previews, custom events) is broadcast.
* ``preview_image`` becomes binary frames: type 4 (u32 meta length + JSON metadata + image)
  for clients that advertised ``supports_preview_metadata``, type 1 (u32 format + image)
  for the others. ``progress_text`` becomes type 3, with the prompt id layout for clients
  that advertised ``supports_progress_text_metadata``, the legacy layout otherwise.

Back-pressure: every socket has its own bounded queue and writer task, so a slow or dead
client never blocks the engine or other clients. Frames are built once per message and a
writer hands everything queued to the transport in one write (sockets are opened without
permessage-deflate, so pre-built frames are valid). When a queue is full (``QUEUE_LIMIT``
frames) every queued binary preview is dropped (then, if needed, every ``progress`` /
``progress_state``); if nothing can be dropped, or the peer has not read for
``SEND_TIMEOUT`` seconds while the transport buffer is full, the socket is closed (code
1013); the frontend reconnects with the same sid and resumes.
"""
from __future__ import annotations

import asyncio
import collections
import io
import logging
import struct
import sys
import threading
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from .context import ServerContext, add_route, dumps

log = logging.getLogger(__name__)

# Binary frame types (contract §3.5)
PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

QUEUE_LIMIT = 20000         # frames buffered per client before dropping previews / closing
SEND_TIMEOUT = 30.0          # seconds a client may refuse to read before it is dropped
WRITE_CHUNK = 1 << 20        # bytes handed to the transport per write
WRITE_HIGH = 1 << 20         # transport buffer size that makes the writer wait ...
WRITE_LOW = 256 << 10        # ... until it drains below this

_NOT_SENT_WITHOUT_CLIENT = frozenset({"execution_start", "execution_cached",
                                      "execution_success", "execution_error"})
_DROP_PREVIEW = 2   # droppable level: binary previews
_DROP_PROGRESS = 1  # droppable level: progress / progress_state
_KEEP = 0
_PROGRESS_EVENTS = frozenset({"progress", "progress_state"})
_TRACKED = frozenset({"execution_start", "executing", "execution_success", "execution_error",
                      "execution_interrupted"})
STATUS_INTERVAL = 0.02  # seconds; status broadcasts are throttled to one per interval (latest wins)
_u32 = struct.Struct(">I")


def text_frame(text: str) -> bytes:
    """A complete unmasked, uncompressed WebSocket text frame (server -> client)."""
    return _frame(0x81, text.encode("utf-8"))


def binary_frame(data: bytes) -> bytes:
    return _frame(0x82, data)


def _frame(first: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack(">BBH", first, 126, n) + payload
    return struct.pack(">BBQ", first, 127, n) + payload


class WsClient:
    """One connected socket: a bounded deque of ready-made frames and a writer task.

    Frames are built once per message (shared by every recipient) and the writer hands
    everything queued to the transport in one ``write`` call, so a burst of events costs one
    syscall per client instead of one per message. Sockets are opened without
    permessage-deflate, which is what makes pre-built frames valid."""

    __slots__ = ("sid", "ws", "transport", "flags", "queue", "wakeup", "writer", "closed", "dropped",
                 "first_message_seen", "registry")

    def __init__(self, sid: str, ws: web.WebSocketResponse, registry: "ClientRegistry", transport: Any = None):
        self.sid = sid
        self.ws = ws
        self.transport = transport
        self.flags: dict = {}
        self.queue: collections.deque = collections.deque()
        self.wakeup = asyncio.Event()
        self.writer: asyncio.Task | None = None
        self.closed = False
        self.dropped = 0
        self.first_message_seen = False
        self.registry = registry

    # -- called on the loop thread only
    def enqueue(self, frame: bytes, level: int = _KEEP) -> None:
        if self.closed:
            return
        q = self.queue
        if len(q) >= QUEUE_LIMIT and not self._make_room():
            log.warning("websocket client %s is too far behind; closing it", self.sid)
            self.close(1013, b"client too slow")
            return
        q.append((frame, level))
        if len(q) == 1:
            self.wakeup.set()

    def _make_room(self) -> bool:
        """Drop every queued preview (then every progress message); False if nothing could go."""
        for level in (_DROP_PREVIEW, _DROP_PROGRESS):
            kept = collections.deque(item for item in self.queue if item[1] < level)
            dropped = len(self.queue) - len(kept)
            if dropped:
                self.dropped += dropped
                self.queue = kept
                return len(kept) < QUEUE_LIMIT
        return False

    def close(self, code: int = 1000, message: bytes = b"") -> None:
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        self.wakeup.set()
        if self.registry.clients.get(self.sid) is self:
            del self.registry.clients[self.sid]
        if not self.ws.closed:
            asyncio.ensure_future(self._close_ws(code, message))

    async def _close_ws(self, code: int, message: bytes) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message), 2)
        except Exception:  # noqa: BLE001
            pass
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.closed:
                q = self.queue
                if not q:
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                transport = self.transport
                if transport is None or transport.is_closing() or self.ws.closed:
                    break
                chunks = []
                size = 0
                while q and size < WRITE_CHUNK:
                    frame = q.popleft()[0]
                    chunks.append(frame)
                    size += len(frame)
                transport.write(b"".join(chunks) if len(chunks) > 1 else chunks[0])
                if transport.get_write_buffer_size() > WRITE_HIGH:
                    # the peer is not reading: wait (without blocking anyone else) until the
                    # kernel takes the data, or give up on the client after SEND_TIMEOUT
                    deadline = loop.time() + SEND_TIMEOUT
                    while transport.get_write_buffer_size() > WRITE_LOW:
                        if transport.is_closing() or self.closed:
                            return
                        if loop.time() > deadline:
                            log.warning("websocket client %s stalled; closing it", self.sid)
                            self.close(1013, b"client too slow")
                            return
                        await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, RuntimeError) as e:
            log.debug("websocket %s writer stopped: %s", self.sid, e)
        finally:
            self.closed = True
            self.queue.clear()


class ClientRegistry:
    """sid -> :class:`WsClient`, plus the engine listener that feeds them."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.clients: dict[str, WsClient] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._status_latest: Any = None
        self._status_timer: asyncio.TimerHandle | None = None
        self._status_last = 0.0
        # Running prompt, tracked from the event stream (for reconnect resume).
        self.running_prompt_id: str | None = None
        self.running_client_id: str | None = None
        self.running_node: str | None = None

    # ------------------------------------------------------------ engine side (any thread)
    def engine_listener(self, event: str, data: Any, client_id: str | None) -> None:
        """Registered with ``engine.add_listener``; runs on the engine's worker thread."""
        if event in _TRACKED:
            self._track(event, data, client_id)
        if not self.clients:
            return  # nobody to tell (reads of a dict's size are atomic)
        if event == "preview_image":
            item = self._encode_preview(data, client_id)
            if item is None:
                return
            self._push(("__preview__", item, client_id))
            return
        self._push((event, data, client_id))

    def compat_sink(self, event: Any, data: Any, sid: str | None) -> None:
        """``PromptServer.instance.send_sync`` from custom nodes (any thread). Integer events
        are binary: ``UNENCODED_PREVIEW_IMAGE`` with ``(format, PIL.Image, max_size)`` is
        encoded like an engine preview, other types send ``data`` bytes as-is."""
        if isinstance(event, int):
            if event == UNENCODED_PREVIEW_IMAGE and isinstance(data, (tuple, list)) and len(data) >= 2:
                self.engine_listener("preview_image", {"format": data[0], "image": data[1],
                                                       "max_size": data[2] if len(data) > 2 else None,
                                                       "metadata": {}}, sid)
            elif isinstance(data, (bytes, bytearray, memoryview)):
                self.send_bytes_threadsafe(event, bytes(data), sid)
            return
        self.engine_listener(str(event), data, sid)

    def send_json_threadsafe(self, event: str, data: Any, sid: str | None) -> None:
        self._push(("__json__", (event, data), sid))

    def send_bytes_threadsafe(self, event_type: int, payload: bytes, sid: str | None) -> None:
        self._push(("__bytes__", _u32.pack(event_type) + payload, sid))

    def _push(self, item: tuple) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        self._pending.append(item)
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed
            with self._lock:
                self._scheduled = False

    def _wanted(self, client_id: str | None) -> bool:
        if client_id is not None:
            return client_id in self.clients
        return bool(self.clients)

    def _encode_preview(self, data: dict, client_id: str | None):
        if not self._wanted(client_id):
            return None
        try:
            image = data.get("image")
            fmt = str(data.get("format") or "JPEG").upper()
            max_size = data.get("max_size")
            metadata = dict(data.get("metadata") or {})
            if isinstance(image, (bytes, bytearray)):
                raw = bytes(image)
            else:
                if max_size and hasattr(image, "thumbnail"):
                    image = image.copy()
                    image.thumbnail((int(max_size), int(max_size)))
                buf = io.BytesIO()
                if fmt == "PNG":
                    image.save(buf, format="PNG", compress_level=1)
                else:
                    fmt = "JPEG"
                    if getattr(image, "mode", "RGB") not in ("RGB", "L"):
                        image = image.convert("RGB")
                    image.save(buf, format="JPEG", quality=95)
                raw = buf.getvalue()
        except Exception as e:  # noqa: BLE001
            log.debug("preview encoding failed: %s", e)
            return None
        mime = "image/png" if fmt == "PNG" else "image/jpeg"
        metadata.setdefault("image_type", mime)
        meta = dumps(metadata).encode()
        frame4 = binary_frame(_u32.pack(PREVIEW_IMAGE_WITH_METADATA) + _u32.pack(len(meta)) + meta + raw)
        frame1 = binary_frame(_u32.pack(PREVIEW_IMAGE) + _u32.pack(2 if fmt == "PNG" else 1) + raw)
        return frame1, frame4

    # ------------------------------------------------------------ loop side
    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
        pending = self._pending
        batch = []
        while pending:
            batch.append(pending.popleft())
        if not batch:
            return
        for event, data, client_id in batch:
            try:
                if event == "status":
                    self._status(data)
                else:
                    self._route(event, data, client_id)
            except Exception:  # noqa: BLE001
                log.exception("failed to route event %s", event)

    def _status(self, data: Any) -> None:
        """Broadcast ``status``, at most once per STATUS_INTERVAL: a burst of queue changes
        (10 clients submitting) becomes one message carrying the latest count, sent at the
        end of the interval. The frontend refetches /api/jobs on every status, so this also
        keeps browsers from hammering the server."""
        self._status_latest = data
        if self._status_timer is not None:
            return
        loop = self.loop
        if loop is None:
            return
        now = loop.time()
        due = self._status_last + STATUS_INTERVAL
        if now >= due:
            self._flush_status()
        else:
            self._status_timer = loop.call_at(due, self._flush_status)

    def _flush_status(self) -> None:
        self._status_timer = None
        data, self._status_latest = self._status_latest, None
        if data is None or self.loop is None:
            return
        self._status_last = self.loop.time()
        self._route("status", data, None)

    def _track(self, event: str, data: Any, client_id: str | None) -> None:
        if not isinstance(data, dict):
            return
        if event == "execution_start":
            self.running_prompt_id = data.get("prompt_id")
            self.running_client_id = client_id
            self.running_node = None
        elif event == "executing":
            if data.get("prompt_id") in (None, self.running_prompt_id):
                node = data.get("node")
                if node is None:
                    self.running_prompt_id = self.running_client_id = self.running_node = None
                else:
                    self.running_node = node
                    if self.running_prompt_id is None:
                        self.running_prompt_id = data.get("prompt_id")
                        self.running_client_id = client_id
                    compat = sys.modules.get("comfyui.compat.server")
                    if compat is not None:  # what custom nodes read to address the current node
                        instance = getattr(compat.PromptServer, "instance", None)
                        if instance is not None:
                            instance.last_node_id = node
                            instance.last_prompt_id = data.get("prompt_id")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            if data.get("prompt_id") == self.running_prompt_id:
                self.running_node = None

    def _route(self, event: str, data: Any, client_id: str | None) -> None:
        if event == "__json__":
            ev, payload = data
            self._send_to(client_id, dumps({"type": ev, "data": payload}), _KEEP)
            return
        if event == "__bytes__":
            self._send_to(client_id, data, _KEEP)
            return
        if event == "__preview__":
            frame1, frame4 = data
            targets = self._targets(client_id)
            for c in targets:
                c.enqueue(frame4 if c.flags.get("supports_preview_metadata") is True else frame1,
                          _DROP_PREVIEW)
            return
        if event == "status":
            if not isinstance(data, dict):
                data = {}
            status = data.get("status")
            if not isinstance(status, dict) or "exec_info" not in status:
                data = {**data, "status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}
            self._send_to(None, dumps({"type": "status", "data": data}), _KEEP)
            return
        if event == "progress_text":
            self._send_progress_text(data, client_id)
            return
        if client_id is None and event in _NOT_SENT_WITHOUT_CLIENT:
            return
        if client_id is not None and client_id not in self.clients:
            return
        level = _DROP_PROGRESS if event in _PROGRESS_EVENTS else _KEEP
        self._send_to(client_id, dumps({"type": event, "data": data}), level)

    def _send_progress_text(self, data: dict, client_id: str | None) -> None:
        node_id = str(data.get("node_id") or data.get("node") or "").encode()
        prompt_id = str(data.get("prompt_id") or "").encode()
        text = str(data.get("text") or "").encode()
        legacy = binary_frame(_u32.pack(TEXT) + _u32.pack(len(node_id)) + node_id + text)
        with_meta = binary_frame(_u32.pack(TEXT) + _u32.pack(len(prompt_id)) + prompt_id
                                 + _u32.pack(len(node_id)) + node_id + text)
        for c in self._targets(client_id):
            c.enqueue(with_meta if c.flags.get("supports_progress_text_metadata") is True else legacy,
                      _DROP_PROGRESS)

    def _targets(self, client_id: str | None) -> list[WsClient]:
        if client_id is None:
            return list(self.clients.values())
        c = self.clients.get(client_id)
        return [c] if c is not None else []

    def _send_to(self, client_id: str | None, payload: str | bytes, level: int) -> None:
        """Frame ``payload`` once (str -> text frame, bytes -> binary frame) and queue it for
        client ``client_id`` or, with None, for every client."""
        if client_id is None:
            targets = list(self.clients.values())
        else:
            c = self.clients.get(client_id)
            targets = [c] if c is not None else []
        if not targets:
            return
        frame = text_frame(payload) if isinstance(payload, str) else binary_frame(payload)
        for c in targets:
            c.enqueue(frame, level)

    # ------------------------------------------------------------ connections
    def queue_remaining(self) -> int:
        try:
            return int(self.ctx.engine.queue_remaining())
        except Exception:  # noqa: BLE001
            return 0

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # compress=False: frames are pre-built (see WsClient); events are small JSON anyway
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1024 * 1024, compress=False)
        await ws.prepare(request)
        sid = request.query.get("clientId") or ""
        if not sid or len(sid) > 128:
            sid = uuid.uuid4().hex
        old = self.clients.pop(sid, None)
        if old is not None:
            old.close(1000, b"replaced by a new connection")
        client = WsClient(sid, ws, self, request.transport)
        self.clients[sid] = client
        client.writer = asyncio.ensure_future(client.run_writer())
        compat = sys.modules.get("comfyui.compat.server")
        if compat is not None:
            try:
                compat.PromptServer.instance.client_id = sid
            except AttributeError:
                pass
        try:
            client.enqueue(text_frame(dumps({"type": "status", "data": {
                "status": {"exec_info": {"queue_remaining": self.queue_remaining()}}, "sid": sid}})))
            if self.running_client_id == sid and self.running_node is not None:
                client.enqueue(text_frame(dumps({"type": "executing", "data": {"node": self.running_node}})))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    if client.first_message_seen:
                        continue
                    client.first_message_seen = True
                    self._handle_first_message(client, msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        except Exception as e:  # noqa: BLE001
            log.debug("websocket %s error: %s", sid, e)
        finally:
            if self.clients.get(sid) is client:
                del self.clients[sid]
                self.ctx.logs.set_subscription(sid, False)
            client.closed = True
            client.wakeup.set()
            if client.writer is not None:
                client.writer.cancel()
        return ws

    def _handle_first_message(self, client: WsClient, text: str) -> None:
        try:
            import json
            msg = json.loads(text)
        except (ValueError, RecursionError):
            return
        if not isinstance(msg, dict) or msg.get("type") != "feature_flags":
            return
        flags = msg.get("data")
        if isinstance(flags, dict):
            client.flags = flags
        client.enqueue(text_frame(dumps({"type": "feature_flags", "data": self.ctx.feature_flags})))

    async def close_all(self) -> None:
        if self._status_timer is not None:
            self._status_timer.cancel()
            self._status_timer = None
        for c in list(self.clients.values()):
            c.close(1001, b"server shutdown")
            try:
                await asyncio.wait_for(c.ws.close(code=1001, message=b"server shutdown"), 2)
            except Exception:  # noqa: BLE001
                pass
        self.clients.clear()


def setup(app: web.Application, ctx: ServerContext) -> None:
    """``/ws`` (and ``/api/ws``). ``logs`` messages for subscribed clients are wired by
    ``comfyui.server.logs`` through ``ctx.logs.on_entry`` / ``ctx.send_json``."""
    add_route(app, "GET", "/ws", ctx.clients.handle)
