"""The Jobs API: ``GET /jobs``, ``GET /jobs/{id}``, ``POST /jobs/{id}/cancel``,
``POST /jobs/cancel`` (frontend contract §5.6; items from :mod:`comfyui.jobs.listing`).

``GET /jobs`` takes ``status`` (comma-separated), ``sort_by`` (``created_at`` |
``execution_duration``), ``sort_order`` (``asc`` | ``desc``), ``limit``, ``offset`` and
``workflow_id``; 400 ``{"error"}`` for bad values. Queued jobs come from memory, finished
ones a page at a time from the store, on the store's threads (``queue.call``): the
frontend's polling after every ``status`` message costs a page, not the history.

Cancel: a pending job is removed from the queue and recorded in history as cancelled (an
``execution_interrupted`` message); the running job is interrupted (it ends ``cancelled``);
a finished job is left alone (idempotent). Unknown ids: 404 ``{"error": "Job not found"}``
for the single form; the batch form answers 200 ``{"cancelled": [...], "not_found": [...]}``.
"""
from __future__ import annotations

from aiohttp import web

from ..jobs.listing import SORTS, job_detail, merge_page, parse_statuses, queued_job, sort_key, workflow_id_of
from ..jobs.schema import FINISHED, IN_PROGRESS, PENDING, STATUSES
from .context import ServerContext, add_route, error_response, json_response, read_json
from .routes_queue import id_list, int_param, json_body, json_bytes


class JobRoutes:
    def __init__(self, ctx: ServerContext):
        self.engine = ctx.engine
        self.queue = ctx.engine.queue

    async def get_jobs(self, request: web.Request) -> web.Response:
        try:
            statuses = parse_statuses(request.query.get("status")) or set(STATUSES)
        except ValueError as e:
            return error_response(str(e))
        sort_by = request.query.get("sort_by", "created_at")
        if sort_by not in SORTS:
            return error_response("sort_by must be 'created_at' or 'execution_duration'")
        sort_order = request.query.get("sort_order", "desc")
        if sort_order not in ("asc", "desc"):
            return error_response("sort_order must be 'asc' or 'desc'")
        limit = int_param(request, "limit", None, minimum=0)
        offset = int_param(request, "offset", 0, minimum=0) or 0
        workflow_id = request.query.get("workflow_id")
        query = (frozenset(statuses), sort_by, sort_order == "desc", offset, limit, workflow_id)
        # equal pages asked for at once (every open tab after a status message) are read once
        return json_body(await self.queue.call(self._jobs_page, *query, key=("jobs", query)))

    def _jobs_page(self, statuses: set, sort_by: str, descending: bool, offset: int, limit: int | None,
                   workflow_id: str | None) -> bytes:
        # the queue before history: a job leaves the queue only once its history is written
        running, pending = self.queue.queued_items()
        items = (running if IN_PROGRESS in statuses else []) + (pending if PENDING in statuses else [])
        if workflow_id is not None:
            items = [i for i in items if workflow_id_of(i.extra_data) == workflow_id]
        running_ids = {i.prompt_id for i in running}
        # a queued job has no duration (-1): both orders are by QueueItem.list_key
        first = sorted(items, key=lambda i: i.list_key, reverse=descending)[:None if limit is None else offset + limit]
        key = sort_key(sort_by)
        queued = [(key(job), job) for job in (queued_job(i, IN_PROGRESS if i.prompt_id in running_ids else PENDING)
                                              for i in first)]
        finished = statuses & set(FINISHED)

        def history_page(offset: int, limit: int | None):
            if not finished:
                return [], 0
            return self.queue.jobs_page(finished, sort_by, descending, offset, limit, workflow_id)

        pairs, total = merge_page(queued, history_page, descending, offset, limit, len(items))
        # A job that finished between the two reads is in both: listed once, as finished (the
        # newer state), and counted once; a page that is the whole rest counts what it lists.
        finished_ids = {j["id"] for _k, j in pairs if j["status"] in FINISHED}
        seen: set = set()
        page = [j for _k, j in pairs if not ((j["status"] in (PENDING, IN_PROGRESS) and j["id"] in finished_ids)
                                             or j["id"] in seen or seen.add(j["id"]))]
        total = offset + len(page) if limit is None else max(total - (len(pairs) - len(page)), offset + len(page))
        return json_bytes({"jobs": page, "pagination": {
            "offset": offset, "limit": limit if limit is not None else max(total - offset, 0),
            "total": total, "has_more": offset + len(page) < total}})

    def _job(self, job_id: str) -> dict | None:
        item = self.queue.find(job_id)  # in memory: running or pending
        if item is not None:
            running = any(i.prompt_id == job_id for i in self.queue.running_items())
            status = IN_PROGRESS if running else PENDING
            return job_detail(queued_job(item, status), item.prompt, item.extra_data, None)
        return self.queue.finished_job(job_id)

    async def get_job(self, request: web.Request) -> web.Response:
        job = await self.queue.call(self._job, request.match_info["job_id"])
        if job is None:
            return error_response("Job not found", status=404)
        return json_response(job)

    def _cancel(self, job_id: str) -> str:
        """'cancelled' (was pending) | 'interrupted' (was running) | 'finished' | 'not_found'."""
        result = self.engine.cancel(job_id)
        if result == "pending":
            return "cancelled"
        if result == "running":
            return "interrupted"
        return "finished" if self.queue.job_status(job_id) is not None else "not_found"

    async def post_job_cancel(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        result = await self.queue.call(self._cancel, job_id)
        if result == "not_found":
            return error_response("Job not found", status=404)
        return json_response({"id": job_id, "result": result})

    async def post_jobs_cancel(self, request: web.Request) -> web.Response:
        body = await read_json(request, default=None)
        if not isinstance(body, dict):
            return error_response("Body must be a JSON object {\"job_ids\": [...]}")
        ids = id_list(body, "job_ids")
        if ids is None:
            return error_response("'job_ids' is required")
        results = await self.queue.call(lambda: [self._cancel(job_id) for job_id in ids])
        return json_response({"cancelled": [i for i, r in zip(ids, results) if r != "not_found"],
                              "not_found": [i for i, r in zip(ids, results) if r == "not_found"]})


def setup(app: web.Application, ctx: ServerContext) -> None:
    r = JobRoutes(ctx)
    add_route(app, "GET", "/jobs", r.get_jobs)
    add_route(app, "POST", "/jobs/cancel", r.post_jobs_cancel)
    add_route(app, "GET", "/jobs/{job_id}", r.get_job)
    add_route(app, "POST", "/jobs/{job_id}/cancel", r.post_job_cancel)
