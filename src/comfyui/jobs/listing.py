"""The Jobs API's view of jobs (``GET /api/jobs``, ``GET /api/jobs/{id}``; frontend contract §5.6).

A job is listed as a dict of the public fields (``id``, ``status``, ``create_time``,
``priority``, start/end times, output counts, ``preview_output``, ``execution_error``,
``workflow_id``); :func:`job_detail` adds ``outputs``, ``execution_status`` and ``workflow``.

Order: ``created_at`` sorts by (``create_time``, queue number); ``execution_duration`` by
(duration, ``create_time``, number), a job without both times counting as -1. Queued jobs
(pending, in progress) live in memory and finished ones in the store; :func:`merge_page`
puts one page of both together, reading only that page (plus at most the queued count) of
history.
"""
from __future__ import annotations

from typing import Any, Callable

from .schema import CANCELLED, COMPLETED, FAILED, STATUSES

SORTS = ("created_at", "execution_duration")
SECRET_KEYS = ("api_key_comfy_org", "auth_token_comfy_org")  # extra_data keys never shown or stored
_3D_EXT = (".obj", ".fbx", ".gltf", ".glb", ".usdz", ".ply", ".stl", ".spz", ".splat")


def without_secrets(extra_data: Any) -> dict:
    if not isinstance(extra_data, dict):
        return {}
    return {k: v for k, v in extra_data.items() if k not in SECRET_KEYS}


def create_time_of(extra_data: Any, created_at: float | None) -> float:
    """A job's ``create_time`` in milliseconds: the one in its extra_data (set when it was
    submitted), else its queueing time."""
    value = extra_data.get("create_time") if isinstance(extra_data, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return int((created_at or 0) * 1000)


def workflow_id_of(extra_data: Any) -> str | None:
    try:
        value = extra_data["extra_pnginfo"]["workflow"]["id"]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def _media_type(key: str, item: dict) -> str | None:
    if key in ("images", "video", "audio"):
        return key
    fmt = item.get("format")
    if isinstance(fmt, str) and fmt.startswith(("video/", "audio/")):
        return fmt.split("/", 1)[0]
    name = item.get("filename")
    if isinstance(name, str) and name.lower().endswith(_3D_EXT):
        return "3d"
    return None


def finished_status(entry: dict) -> str:
    """completed, failed or cancelled, from a history entry's status."""
    status = entry.get("status") or {}
    if status.get("status_str") == "success":
        return COMPLETED
    interrupted = any(isinstance(m, (list, tuple)) and m and m[0] == "execution_interrupted"
                      for m in status.get("messages") or [])
    return CANCELLED if entry.get("cancelled") or interrupted or status.get("status_str") == "cancelled" else FAILED


def _error_of(data: dict) -> dict:
    tb = data.get("traceback")
    return {"node_id": str(data["node_id"]) if data.get("node_id") is not None else "",
            "node_type": str(data.get("node_type") or ""),
            "exception_message": str(data.get("exception_message") or ""),
            "exception_type": str(data.get("exception_type") or ""),
            "traceback": tb if isinstance(tb, list) else ([str(tb)] if tb else []),
            "current_inputs": data.get("current_inputs") or {},
            "current_outputs": data.get("current_outputs") or []}


def finished_job(prompt_id: str, number: Any, create_time: Any, workflow_id: str | None, entry: dict) -> dict:
    """The list item of a finished job from its history entry."""
    start = end = error = None
    for message in (entry.get("status") or {}).get("messages") or []:
        if not isinstance(message, (list, tuple)) or len(message) < 2 or not isinstance(message[1], dict):
            continue
        event, data = message[0], message[1]
        if event == "execution_start":
            start = data.get("timestamp")
        elif event in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            if event == "execution_error":
                error = _error_of(data)
    count, previews = 0, []
    for node_id, ui in (entry.get("outputs") or {}).items():
        for key, items in (ui.items() if isinstance(ui, dict) else ()):
            if key == "animated" or not isinstance(items, list):
                continue
            for it in items:
                if isinstance(it, dict) and "filename" in it:
                    count += 1
                    media = _media_type(key, it)
                    if media is not None and it.get("type", "output") in ("input", "output", "temp"):
                        previews.append((it, node_id, media))
    preview = None
    if previews:
        it, node_id, media = next((p for p in previews if p[0].get("type") == "output"), previews[0])
        preview = {"filename": it.get("filename"), "subfolder": it.get("subfolder", ""),
                   "type": it.get("type", "output"), "nodeId": str(node_id), "mediaType": media}
    return {"id": prompt_id, "status": finished_status(entry), "create_time": create_time or start or 0,
            "priority": number, "execution_start_time": start, "execution_end_time": end,
            "outputs_count": count, "previewable_outputs_count": len(previews), "preview_output": preview,
            "execution_error": error, "workflow_id": workflow_id}


def queued_job(item: Any, status: str) -> dict:
    """The list item of a pending or running job from its ``QueueItem``."""
    extra = item.extra_data
    return {"id": item.prompt_id, "status": status, "create_time": item.list_key[0],
            "priority": item.number, "execution_start_time": None, "execution_end_time": None,
            "outputs_count": 0, "previewable_outputs_count": 0, "preview_output": None,
            "execution_error": None, "workflow_id": workflow_id_of(extra)}


def job_detail(job: dict, prompt: Any, extra_data: Any, entry: dict | None) -> dict:
    """``GET /api/jobs/{id}``: the list item plus outputs, raw status and the workflow."""
    return {**job, "outputs": (entry or {}).get("outputs") or {},
            "execution_status": (entry or {}).get("status") if entry is not None else None,
            "workflow": {"prompt": prompt, "extra_data": without_secrets(extra_data)}}


def duration(job: dict) -> float:
    start, end = job.get("execution_start_time"), job.get("execution_end_time")
    return end - start if start is not None and end is not None else -1


def sort_key(sort_by: str) -> Callable[[dict], tuple]:
    if sort_by == "created_at":
        return lambda job: (job["create_time"], job["priority"])
    return lambda job: (duration(job), job["create_time"], job["priority"])


Page = tuple[list[tuple[tuple, dict]], int]  # (sort key, job) pairs in order, and the total


def merge_page(first: list[tuple[tuple, dict]], rest_page: Callable[[int, int | None], Page], descending: bool,
               offset: int, limit: int | None, first_total: int | None = None) -> Page:
    """One page of the jobs of two sources, in sort key order.

    ``first`` holds (sort key, job) pairs in memory: at least the first ``offset + limit``
    of its source in that order (the rest cannot reach the page; ``first_total`` counts them
    all). ``rest_page(offset, limit)`` returns that slice of the other source in the same
    order, and its total. Only positions of the rest from ``offset - len(first)`` on can
    reach the page (at most ``len(first)`` of the first come before it), so at most
    ``limit + len(first)`` of the rest are read."""
    first = sorted(first, key=lambda p: p[0], reverse=descending)
    start = max(offset - len(first), 0)
    rows, rest_total = rest_page(start, None if limit is None else offset + limit - start)
    merged = sorted([(k, 0, j) for k, j in first] + [(k, 1, j) for k, j in rows],
                    key=lambda t: (t[0], t[1]), reverse=descending)
    if start and rows:  # jobs of the first source ordered before the first row read lie before the page
        head = (rows[0][0], 1)
        merged = [m for m in merged if m[1] == 1 or ((m[0], 0) < head if descending else (m[0], 0) > head)]
    skipped = start + (len(first) - sum(1 for m in merged if m[1] == 0))  # entries before merged[0]
    begin = offset - skipped
    page = [(m[0], m[2]) for m in merged[begin:None if limit is None else begin + limit]]
    return page, (len(first) if first_total is None else first_total) + rest_total


def parse_statuses(raw: str | None) -> set[str] | None:
    """``status=a,b`` -> a set, None for all; ValueError naming unknown values."""
    if not raw:
        return None
    statuses = {s.strip() for s in raw.split(",") if s.strip()}
    bad = statuses - set(STATUSES)
    if bad:
        raise ValueError(f"Invalid status value(s): {', '.join(sorted(bad))}; allowed: {', '.join(STATUSES)}")
    return statuses or None

