"""Webhook messages not delivered after their retries: kept on disk, listed, retried at start.

A request whose ``output.complete`` (or ``prompt.failed``) webhooks all failed gets a record
``output/api/<prompt id>/undelivered/record.json`` and, beside it, the exact bytes of each
undelivered output (after ``convert_output``); the request's other saved files are deleted. ``GET /undelivered`` lists the records of this
replica; when the API starts, each record is delivered again (same payloads, signed afresh,
with the usual retries). What is delivered leaves the record; a record with nothing left is
removed with its request's output folder.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import time
from typing import Any

from ..paths import safe_join

log = logging.getLogger(__name__)

FOLDER = "undelivered"
RECORD = "record.json"


class UndeliveredStore:
    def __init__(self, api_root: Any):
        self.api_root = api_root  # () -> output/api

    def _folder(self, prompt_id: str) -> str:
        return str(safe_join(self.api_root(), prompt_id, FOLDER))

    def save(self, record: dict, files: dict[str, bytes] | None = None) -> None:
        """Write ``record`` (``id``, ``prompt_id``, ``webhook``, ``event`` and its fields) and
        the undelivered outputs; blocking (call it in a thread)."""
        folder = self._folder(record["prompt_id"])
        os.makedirs(folder, exist_ok=True)
        for name, data in (files or {}).items():
            with open(safe_join(folder, name), "wb") as f:
                f.write(data)
        record = {**record, "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = os.path.join(folder, RECORD + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(folder, RECORD))

    def drop_originals(self, prompt_id: str) -> None:
        """Delete the request's saved outputs but its record (which holds what is owed); blocking."""
        folder = safe_join(self.api_root(), prompt_id)
        for entry in os.scandir(folder):
            if entry.name != FOLDER:
                shutil.rmtree(entry.path, ignore_errors=True) if entry.is_dir() else os.unlink(entry.path)

    def load(self) -> list[dict]:
        """Every record, oldest first; blocking."""
        root = self.api_root()
        records = []
        try:
            prompt_ids = os.listdir(root)
        except OSError:
            return []
        for prompt_id in prompt_ids:
            path = os.path.join(root, prompt_id, FOLDER, RECORD)
            try:
                with open(path, encoding="utf-8") as f:
                    records.append(json.load(f))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                log.error("undelivered record %s unreadable: %s", path, e)
        return sorted(records, key=lambda r: r.get("failed_at", ""))

    def read_output(self, prompt_id: str, filename: str) -> bytes:
        with open(safe_join(self._folder(prompt_id), filename), "rb") as f:
            return f.read()

    def remove(self, prompt_id: str) -> None:
        """Delete the request's whole output folder (its record included); blocking."""
        shutil.rmtree(safe_join(self.api_root(), prompt_id), ignore_errors=True)


def public(record: dict) -> dict:
    """A record as ``GET /undelivered`` shows it: no prompt, no file bytes."""
    return {k: v for k, v in record.items() if k not in ("prompt", "stats")}


def payloads(store: UndeliveredStore, record: dict) -> list[tuple[str | None, dict]]:
    """``(filename, webhook payload)`` of each message a record still owes; blocking."""
    base = {"id": record["id"], "prompt": record.get("prompt", {})}
    if record["event"] == "prompt.failed":
        return [(None, {"event": "prompt.failed", "error": record.get("error", ""), **base})]
    out = []
    for filename in record.get("filenames", []):
        data = store.read_output(record["prompt_id"], filename)
        payload = {"event": "output.complete", "image": base64.b64encode(data).decode(), **base,
                   "filename": filename, "stats": record.get("stats", {})}
        url = (record.get("urls") or {}).get(filename)
        if url:
            payload["url"] = url
        out.append((filename, payload))
    return out
