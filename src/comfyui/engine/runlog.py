"""The log lines of a prompt's life, as ComfyUI prints them (logger ``comfyui.prompt``):

* ``got prompt <id>`` when a prompt is queued;
* a validation failure: ``invalid prompt: <message>`` then, per failing output,
  ``Failed to validate prompt for output <id>:``, ``* <class_type> <node id>:`` and
  ``  - <message>: <details>`` for each error, ``Output will be ignored``;
* a failing node: ``!!! Exception during processing !!! <message>`` and its full traceback;
* ``Processing interrupted``; ``Prompt executed in N.NN seconds`` once a prompt is done.

:func:`format_node_errors` is the one text of a prompt's node errors (the log lines above and
``str(PromptError)``, which batch mode and the clients show). ``--panic-when`` (exception
class names) ends the process with status 1 when a node raises one of them.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Iterable

log = logging.getLogger("comfyui.prompt")


def format_node_errors(node_errors: Any) -> list[str]:
    """``["* KSampler 3:", "  - Value smaller than min: steps, 0 < 1", ...]`` (node order)."""
    lines: list[str] = []
    if not isinstance(node_errors, dict):
        return lines
    for node_id, entry in node_errors.items():
        if not isinstance(entry, dict):
            continue
        lines.append(f"* {entry.get('class_type', '?')} {node_id}:")
        for err in entry.get("errors") or []:
            if not isinstance(err, dict):
                continue
            message, details = err.get("message", ""), err.get("details", "")
            lines.append(f"  - {message}: {details}" if details else f"  - {message}")
    return lines


def describe_error(error: Any, node_errors: Any) -> str:
    """One text for a refused prompt: its message, details and every node error."""
    error = error if isinstance(error, dict) else {"message": str(error)}
    text = str(error.get("message") or "invalid prompt")
    lines = format_node_errors(node_errors)
    details = str(error.get("details") or "").strip()
    if details and not lines:
        text += f": {details}"
    if lines:
        text += "\n" + "\n".join(lines)
    return text


def log_validation(outputs: Iterable[str], node_errors: dict) -> None:
    """The lines of outputs that failed validation (the prompt may still run the others)."""
    if not node_errors:
        return
    failed: dict[str, list[str]] = {}
    for node_id, entry in node_errors.items():
        for output in (entry.get("dependent_outputs") or [node_id]) if isinstance(entry, dict) else []:
            failed.setdefault(str(output), []).append(node_id)
    for output, nodes in failed.items():
        log.error("Failed to validate prompt for output %s:", output)
        for line in format_node_errors({n: node_errors[n] for n in nodes}):
            log.error("%s", line)
        log.error("Output will be ignored")


def log_rejected(error: dict, node_errors: dict) -> None:
    """A prompt that validation refused as a whole."""
    log_validation((), node_errors or {})
    message = error.get("message") if isinstance(error, dict) else str(error)
    details = error.get("details") if isinstance(error, dict) else ""
    log.warning("invalid prompt: %s%s", message, f": {str(details).strip()}" if details and not node_errors else "")


def format_traceback(data: dict) -> str:
    frames = data.get("traceback") or []
    kind, message = data.get("exception_type") or "Exception", data.get("exception_message") or ""
    return "Traceback (most recent call last):\n" + "".join(frames) + f"{kind}: {message}"


class RunLog:
    """An engine event listener (called on the worker thread) that logs each run."""

    def __init__(self, panic_when: Iterable[str] = ()):
        self.panic_when = {p.strip() for p in panic_when if p and p.strip()}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, event: str, data: Any, client_id: str | None = None) -> None:
        if not isinstance(data, dict):
            return
        prompt_id = data.get("prompt_id")
        if event == "execution_start":
            with self._lock:
                self._started[prompt_id] = time.perf_counter()
        elif event == "execution_error":
            node = f" (node {data.get('node_id')}, {data.get('node_type')})" if data.get("node_id") else ""
            log.error("!!! Exception during processing !!! %s%s", data.get("exception_message", ""), node)
            log.error("%s", format_traceback(data))
            self._maybe_panic(data)
        elif event == "execution_interrupted":
            log.info("Processing interrupted")
        elif event == "executing" and data.get("node") is None and prompt_id is not None:
            with self._lock:
                started = self._started.pop(prompt_id, None)
            if started is not None:
                log.info("Prompt executed in %.2f seconds", time.perf_counter() - started)

    def _maybe_panic(self, data: dict) -> None:
        if not self.panic_when:
            return
        kind = str(data.get("exception_type") or "")
        short = kind.rsplit(".", 1)[-1]
        if kind in self.panic_when or short in self.panic_when or f"builtins.{kind}" in self.panic_when:
            log.critical("--panic-when: %s raised by node %s; exiting with status 1", kind, data.get("node_id"))
            for handler in logging.getLogger().handlers:
                try:
                    handler.flush()
                except Exception:  # noqa: BLE001
                    pass
            sys.stderr.flush()
            os._exit(1)
