"""Webhook delivery: signed per the Standard Webhooks spec (https://www.standardwebhooks.com),
retried with exponential backoff.

Headers: ``webhook-id`` (unique per message, the same on every retry of it),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` = ``v1,`` + base64 of
HMAC-SHA256 over ``"{id}.{timestamp}.{body}"``, keyed with the base64-decoded secret (the part
after ``whsec_``). Without ``WEBHOOK_SECRET`` messages go unsigned (ids and timestamps still
sent). A 2xx answer is delivery; anything else, or no answer, is retried
``PROMPT_WEBHOOK_RETRIES`` times, waiting 1, 2, 4 ... seconds between tries.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import uuid
from typing import Any

import aiohttp

from ..jsonutil import dumps

log = logging.getLogger(__name__)


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (a bare base64 string also works)."""
    encoded = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ValueError("WEBHOOK_SECRET must be base64 (optionally after 'whsec_')") from None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Any, body: bytes, tolerance_s: float = 300) -> bool:
    """A receiver's check (used by the tests and documented for users): any listed ``v1``
    signature matches and the timestamp is within ``tolerance_s`` of now."""
    msg_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    expected = sign(secret_key(secret), msg_id, ts, body)
    return any(hmac.compare_digest(expected, candidate)
               for candidate in headers.get("webhook-signature", "").split())


class WebhookSender:
    def __init__(self, session: aiohttp.ClientSession, *, secret: str | None, retries: int,
                 backoff_s: float = 1.0, timeout_s: float = 30.0):
        self.session = session
        self.key = secret_key(secret) if secret else None
        self.retries, self.backoff_s = retries, backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    def headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(timestamp)}
        if self.key is not None:
            headers["webhook-signature"] = sign(self.key, msg_id, timestamp, body)
        return headers

    async def send(self, url: str, payload: dict) -> bool:
        """Deliver ``payload`` to ``url``; -> whether a try got a 2xx answer."""
        body = dumps(payload).encode()
        msg_id = f"msg_{uuid.uuid4().hex}"
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:  # signed afresh per try: the timestamp is the send time
                async with self.session.post(url, data=body, headers=self.headers(msg_id, body),
                                             timeout=self.timeout) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                problem = f"{type(e).__name__}: {e}"
            if attempt < self.retries:
                log.warning("webhook %s to %s failed (%s); retry %d/%d in %.1f s", payload.get("event"),
                            url, problem, attempt + 1, self.retries, delay)
                await asyncio.sleep(delay)
                delay *= 2
        log.error("webhook %s to %s not delivered after %d tries (%s)", payload.get("event"), url,
                  self.retries + 1, problem)
        return False
