"""``comfyui --workflows FILE ... | -``: run workflows without a server.

Each source may be an API-format prompt, a UI-format workflow (0.4 or 1.0), a
``{"prompt": ..., "extra_data": ...}`` request body, several of those concatenated in one
file or on stdin, or a PNG carrying a ``prompt`` (preferred) or ``workflow`` text chunk.

stdout gets exactly one JSON line per workflow: its outputs (the history entry's
``outputs``, every file with an ``abs_path``), or, when it fails,
``{"error": {...}, "node_errors": {...}, "workflow": source}``. Everything else (logs,
node prints) goes to stderr; a progress bar is drawn on stderr when it is a terminal.
The exit status is 1 when any workflow failed.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterator, TextIO

log = logging.getLogger("comfyui.cli")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class WorkflowItem:
    source: str  # file name (with "#n" for the n-th object of a multi-object file) or "-"
    prompt: Any = None  # API prompt, UI workflow or request body
    extra_data: dict = field(default_factory=dict)
    error: str | None = None  # could not be read


class WorkflowLoadError(ValueError):
    pass


def iter_json_objects(text: str) -> Iterator[Any]:
    """Every JSON value in ``text`` (one, several concatenated, or one per line)."""
    decoder = json.JSONDecoder()
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n\ufeff":
            pos += 1
        if pos >= n:
            return
        obj, pos = decoder.raw_decode(text, pos)
        yield obj


def read_png_chunks(data: bytes) -> dict[str, str]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        text = dict(getattr(img, "text", None) or {})
        for key, value in (img.info or {}).items():
            if isinstance(value, str):
                text.setdefault(key, value)
    return text


def items_from_png(data: bytes, source: str) -> list[WorkflowItem]:
    chunks = read_png_chunks(data)
    workflow = None
    if chunks.get("workflow"):
        try:
            workflow = json.loads(chunks["workflow"])
        except json.JSONDecodeError:
            workflow = None
    if chunks.get("prompt"):
        try:
            prompt = json.loads(chunks["prompt"])
        except json.JSONDecodeError as exc:
            raise WorkflowLoadError(f"{source}: the 'prompt' text chunk is not JSON: {exc}") from exc
        extra = {"extra_pnginfo": {"workflow": workflow}} if isinstance(workflow, dict) else {}
        return [WorkflowItem(source, prompt, extra)]
    if isinstance(workflow, dict):
        return [WorkflowItem(source, workflow)]
    raise WorkflowLoadError(f"{source}: the PNG carries no 'prompt' or 'workflow' text chunk")


def items_from_bytes(data: bytes, source: str) -> list[WorkflowItem]:
    if data.startswith(PNG_MAGIC):
        return items_from_png(data, source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WorkflowLoadError(f"{source}: neither JSON text nor a PNG") from exc
    try:
        objects = list(iter_json_objects(text))
    except json.JSONDecodeError as exc:
        raise WorkflowLoadError(f"{source}: invalid JSON: {exc}") from exc
    if not objects:
        raise WorkflowLoadError(f"{source}: no workflow in it")
    if len(objects) == 1:
        return [WorkflowItem(source, objects[0])]
    return [WorkflowItem(f"{source}#{i + 1}", obj) for i, obj in enumerate(objects)]


def load_sources(sources: list[str], stdin: Any = None) -> Iterator[WorkflowItem]:
    for source in sources:
        try:
            if source == "-":
                stream = stdin if stdin is not None else sys.stdin.buffer
                data = stream.read()
                if isinstance(data, str):
                    data = data.encode()
            else:
                with open(os.path.expanduser(source), "rb") as f:
                    data = f.read()
            yield from items_from_bytes(data, source)
        except (OSError, WorkflowLoadError) as exc:
            yield WorkflowItem(source, error=str(exc))


# --------------------------------------------------------------------------- progress bar


class TerminalProgress:
    """A one-line progress bar on a terminal (stderr): nodes done / nodes, current node."""

    def __init__(self, stream: TextIO, total_nodes: int, title: str):
        self.stream = stream
        self.total = max(total_nodes, 1)
        self.done: set[str] = set()
        self.title = title
        self.node: str | None = None
        self.value: tuple[float, float] | None = None
        self._last = 0.0

    def on_event(self, event: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if event == "execution_cached":
            self.done.update(str(n) for n in data.get("nodes") or [])
        elif event == "executing":
            if self.node is not None:
                self.done.add(self.node)
            self.node = data.get("node")
            self.value = None
        elif event == "progress":
            self.value = (data.get("value", 0), data.get("max", 0))
        elif event == "executed":
            self.done.add(str(data.get("node")))
        else:
            return
        self.draw()

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.05:
            return
        self._last = now
        frac = min(len(self.done) / self.total, 1.0)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        detail = ""
        if self.node is not None:
            detail = f" node {self.node}"
            if self.value and self.value[1]:
                detail += f" {int(self.value[0])}/{int(self.value[1])}"
        line = f"\r{self.title[:30]} [{bar}] {len(self.done)}/{self.total}{detail}"
        self.stream.write(line[:120].ljust(80))
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + " " * 100 + "\r")
        self.stream.flush()


# --------------------------------------------------------------------------- running


def _error_line(source: str, error: Any) -> dict:
    """A failed workflow's line: the submission policy's error body (``PromptRejected``, or
    the ``PromptError`` it derives from) and the workflow's source."""
    return {"error": error.error, "node_errors": error.node_errors or {}, "workflow": source}


async def _run_one(client: Any, item: WorkflowItem, show_progress: bool) -> tuple[dict, bool]:
    from ..client.common import ExecutionError, PromptInterrupted
    from ..engine.validation import PromptError
    from ..jobs.submission import PromptRejected
    from ..workflows.convert import WorkflowConversionError

    if item.error is not None:
        return _error_line(item.source, PromptRejected.of("invalid_workflow_file", item.error)), False
    try:
        if show_progress:
            prepared = client.prepare(item.prompt, item.extra_data)
            bar = TerminalProgress(sys.stderr, len(prepared.prompt), os.path.basename(item.source))
            outputs = None
            try:
                async for ev in client.queue_with_progress(prepared.prompt, extra_data=prepared.extra_data):
                    if ev.event == "result":
                        outputs = ev.data["outputs"]
                    else:
                        bar.on_event(ev.event, ev.data)
            finally:
                bar.close()
        else:
            outputs = await client.queue_prompt(item.prompt, extra_data=item.extra_data)
        return outputs, True
    except PromptError as exc:  # refused by the submission policy (PromptRejected)
        return _error_line(item.source, exc), False
    except PromptInterrupted as exc:
        return _error_line(item.source, PromptRejected.of("execution_interrupted", str(exc),
                                                          extra_info=_jsonable(exc.data))), False
    except ExecutionError as exc:
        return _error_line(item.source, PromptRejected.of("execution_error", str(exc),
                                                          exc.data.get("exception_message", ""),
                                                          extra_info=_jsonable(exc.data))), False
    except (WorkflowConversionError, TypeError, ValueError, KeyError) as exc:
        log.debug("conversion failed", exc_info=True)
        return _error_line(item.source, PromptRejected.of("invalid_workflow", f"{type(exc).__name__}: {exc}")), False


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=repr))


async def run_workflows(config: Any, sources: list[str], out: TextIO, stdin: Any = None,
                        show_progress: bool | None = None) -> int:
    """Run every workflow in ``sources``; write one JSON line each to ``out``; -> exit status."""
    from ..client.embedded import Comfy

    if show_progress is None:
        show_progress = _stderr_is_terminal() and not getattr(config, "disable_progress", False)
    failed = 0
    async with Comfy(config) as client:
        for item in load_sources(sources, stdin):
            log.info("running workflow %s", item.source)
            try:
                line, ok = await _run_one(client, item, show_progress)
            except Exception as exc:  # an unexpected failure still gets its line
                log.error("workflow %s failed:\n%s", item.source, traceback.format_exc())
                from ..jobs.submission import PromptRejected

                line, ok = _error_line(item.source, PromptRejected.of(type(exc).__name__, str(exc))), False
            if not ok:
                failed += 1
                from ..engine.runlog import describe_error

                log.error("workflow %s failed: %s", item.source, describe_error(line["error"], line["node_errors"]))
            out.write(json.dumps(_jsonable(line)) + "\n")
            out.flush()
    return 1 if failed else 0


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def main_workflows(config: Any, sources: list[str]) -> int:
    """Batch mode entry: keeps stdout for the JSON lines only (anything else printed while
    the workflows run, e.g. by node code, goes to stderr)."""
    out = sys.stdout
    stdin = sys.stdin.buffer if "-" in sources else None
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        return asyncio.run(run_workflows(config, sources, out, stdin))
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout = saved
