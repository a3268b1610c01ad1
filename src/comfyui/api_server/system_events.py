"""The system webhook: the engine's events (what ComfyUI sends on its WebSocket) posted to
``SYSTEM_WEBHOOK_URL``, for the names in ``SYSTEM_WEBHOOK_EVENTS``, as comfyui-api does:
``{"event": "comfy.<name>", "data": {"type", "data", "sid"}, "metadata": {SYSTEM_META_*}}``,
signed and retried like every webhook. The engine calls listeners on its worker thread; the
event is handed to the server's loop and sent from there, so execution never waits on it."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from .settings import ApiSettings
from .webhooks import WebhookSender

log = logging.getLogger(__name__)


class SystemEvents:
    def __init__(self, sender: WebhookSender, settings: ApiSettings, loop: asyncio.AbstractEventLoop):
        self.sender, self.loop = sender, loop
        self.url = settings.system_webhook_url
        self.events = frozenset(settings.system_webhook_events)
        self.metadata = dict(settings.system_meta)
        self.tasks: set[asyncio.Task] = set()

    def listener(self, event: str, data: dict, client_id: str | None) -> None:
        if event not in self.events or self.loop.is_closed():
            return
        payload = {"event": f"comfy.{event}", "data": {"type": event, "data": data, "sid": client_id},
                   "metadata": self.metadata}
        self.loop.call_soon_threadsafe(self._send, payload)

    def _send(self, payload: dict[str, Any]) -> None:
        task = self.loop.create_task(self.sender.send(self.url, payload))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self, timeout: float = 10) -> None:
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
