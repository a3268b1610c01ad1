"""``GET /openapi.json``: an OpenAPI 3.0 document of the whole HTTP API.

The API routes are described by hand below (``_ROUTES``); every one of them is answered both
at ``/x`` and ``/api/x`` except ``/internal/*``, ``/ws`` aside. Static trees of the frontend
(``/assets/...``, ``/scripts/...``) and routes that custom nodes add through
``PromptServer.instance.routes`` are appended from the live route table when the document is
served. ``tests/server/test_core_openapi.py`` checks that every route registered in the app
appears here, so a new route without documentation fails the test suite.
"""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from .context import ServerContext, add_route, json_response

_obj = {"type": "object"}
_arr_str = {"type": "array", "items": {"type": "string"}}
_any = {}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_EMPTY_OK = {"description": "OK (empty body)"}
_ERR = _json({"type": "object", "properties": {"error": {}}}, "Error: {\"error\": message}")

_ERROR_OBJECT = {"type": "object", "properties": {
    "type": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "string"},
    "extra_info": {"type": "object"}}}
_PROMPT_ERROR = {"type": "object", "properties": {"error": {"$ref": "#/components/schemas/PromptErrorObject"},
                                                 "node_errors": {"type": "object"}}}
_QUEUE_ITEM = {"type": "array", "description": "[number, prompt_id, prompt, extra_data, outputs_to_execute]",
               "items": {}}
_HISTORY_ENTRY = {"type": "object", "properties": {
    "prompt": _QUEUE_ITEM, "outputs": {"type": "object"},
    "status": {"type": "object", "properties": {
        "status_str": {"type": "string", "enum": ["success", "error"]},
        "completed": {"type": "boolean"}, "messages": {"type": "array", "items": {"type": "array"}}}},
    "meta": {"type": "object"}}}
_JOB = {"type": "object", "required": ["id", "status", "create_time"], "properties": {
    "id": {"type": "string"},
    "status": {"type": "string", "enum": ["pending", "in_progress", "completed", "failed", "cancelled"]},
    "create_time": {"type": "number"}, "priority": {"type": "number", "nullable": True},
    "execution_start_time": {"type": "number", "nullable": True},
    "execution_end_time": {"type": "number", "nullable": True},
    "outputs_count": {"type": "integer"}, "previewable_outputs_count": {"type": "integer"},
    "preview_output": {"type": "object", "nullable": True},
    "execution_error": {"type": "object", "nullable": True},
    "workflow_id": {"type": "string", "nullable": True}}}


def _p(name: str, where: str = "query", required: bool = False, schema: dict | None = None,
       description: str = "") -> dict:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema or {"type": "string"}, "description": description}


def _body(schema: dict, content_type: str = "application/json", required: bool = False) -> dict:
    return {"required": required, "content": {content_type: {"schema": schema}}}


# (method, path, tag, summary, extra operation fields)
_ROUTES: list[tuple[str, str, str, str, dict]] = [
    # --- core / queue (routes_prompt, routes_queue, routes_jobs, routes_info)
    ("GET", "/prompt", "queue", "Queue counter", {"responses": {"200": _json(
        {"type": "object", "properties": {"exec_info": {"type": "object", "properties": {
            "queue_remaining": {"type": "integer"}}}}})}}),
    ("GET", "/health", "queue", "Liveness (a cluster frontend adds its broker connection and workers)",
     {"responses": {"200": _json({"type": "object", "properties": {"status": {"type": "string"},
                                                                   "broker": {"type": "string"}}})}}),
    ("GET", "/ready", "queue", "Whether prompts are taken now (a cluster frontend: broker connected)",
     {"responses": {"200": _json({"type": "object", "properties": {"ready": {"type": "boolean"}}}),
                    "503": _json({"type": "object", "properties": {"ready": {"type": "boolean"}}}, "Not ready")}}),
    ("POST", "/prompt", "queue", "Queue a prompt (API-format graph)", {
        "description": "Body `{prompt, client_id?, prompt_id?, number?, front?, extra_data?, "
                       "partial_execution_targets?}`. Secrets in extra_data (`api_key_comfy_org`, "
                       "`auth_token_comfy_org`) are passed to the nodes but never stored. "
                       "429 when `--max-queue-size` prompts are already queued.",
        "requestBody": _body({"$ref": "#/components/schemas/PromptRequest"}, required=True),
        "responses": {"200": _json({"type": "object", "properties": {
            "prompt_id": {"type": "string"}, "number": {"type": "number"}, "node_errors": _obj}}),
            "400": _json(_PROMPT_ERROR, "Invalid prompt (ComfyUI error shape) or malformed JSON"),
            "415": _ERR, "429": _json(_PROMPT_ERROR, "Queue full")}}),
    ("GET", "/queue", "queue", "Running and pending prompts", {"responses": {"200": _json(
        {"type": "object", "properties": {"queue_running": {"type": "array", "items": _QUEUE_ITEM},
                                          "queue_pending": {"type": "array", "items": _QUEUE_ITEM}}})}}),
    ("POST", "/queue", "queue", "Delete pending prompts / clear the queue", {
        "requestBody": _body({"type": "object", "properties": {"delete": _arr_str, "clear": {"type": "boolean"}}}),
        "responses": {"200": _EMPTY_OK, "400": _ERR}}),
    ("POST", "/interrupt", "queue", "Interrupt the running prompt (optionally only if it is prompt_id)", {
        "requestBody": _body({"type": "object", "properties": {"prompt_id": {"type": "string"}}}),
        "responses": {"200": _EMPTY_OK, "400": _ERR}}),
    ("POST", "/free", "queue", "Unload models / free memory", {
        "requestBody": _body({"type": "object", "properties": {"unload_models": {"type": "boolean"},
                                                               "free_memory": {"type": "boolean"}}}),
        "responses": {"200": _EMPTY_OK}}),
    ("GET", "/history", "history", "Finished prompts (oldest first)", {
        "parameters": [_p("max_items", schema={"type": "integer"}), _p("offset", schema={"type": "integer"})],
        "responses": {"200": _json({"type": "object", "additionalProperties": _HISTORY_ENTRY}), "400": _ERR}}),
    ("GET", "/history/{prompt_id}", "history", "One history entry ({} when unknown)", {
        "parameters": [_p("prompt_id", "path")],
        "responses": {"200": _json({"type": "object", "additionalProperties": _HISTORY_ENTRY})}}),
    ("POST", "/history", "history", "Delete history entries / clear history", {
        "requestBody": _body({"type": "object", "properties": {"delete": _arr_str, "clear": {"type": "boolean"}}}),
        "responses": {"200": _EMPTY_OK, "400": _ERR}}),
    ("GET", "/jobs", "jobs", "Jobs (queue + history), newest first", {
        "parameters": [_p("status", description="comma list of pending,in_progress,completed,failed,cancelled"),
                       _p("limit", schema={"type": "integer"}), _p("offset", schema={"type": "integer"}),
                       _p("sort_by", schema={"type": "string", "enum": ["created_at", "execution_duration"]}),
                       _p("sort_order", schema={"type": "string", "enum": ["asc", "desc"]}),
                       _p("workflow_id")],
        "responses": {"200": _json({"type": "object", "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "pagination": {"type": "object", "properties": {
                "offset": {"type": "integer"}, "limit": {"type": "integer"}, "total": {"type": "integer"},
                "has_more": {"type": "boolean"}}}}}), "400": _ERR}}),
    ("GET", "/jobs/{job_id}", "jobs", "One job with outputs, execution_status and workflow", {
        "parameters": [_p("job_id", "path")],
        "responses": {"200": _json({"$ref": "#/components/schemas/Job"}), "404": _ERR}}),
    ("POST", "/jobs/{job_id}/cancel", "jobs", "Cancel a job", {
        "description": "Pending: removed from the queue and recorded as cancelled. Running: interrupted "
                       "(ends as cancelled). Finished: no-op (idempotent). Unknown: 404.",
        "parameters": [_p("job_id", "path")],
        "responses": {"200": _json({"type": "object", "properties": {
            "id": {"type": "string"}, "result": {"type": "string",
                                                 "enum": ["cancelled", "interrupted", "finished"]}}}),
            "404": _ERR}}),
    ("POST", "/jobs/cancel", "jobs", "Cancel several jobs", {
        "requestBody": _body({"type": "object", "required": ["job_ids"], "properties": {"job_ids": _arr_str}},
                             required=True),
        "responses": {"200": _json({"type": "object", "properties": {"cancelled": _arr_str,
                                                                     "not_found": _arr_str}}),
                      "400": _ERR}}),
    ("GET", "/object_info", "nodes", "All node definitions", {"responses": {"200": _json(
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/NodeDef"}})}}),
    ("GET", "/object_info/{node_class}", "nodes", "One node definition ({} when unknown)", {
        "parameters": [_p("node_class", "path")],
        "responses": {"200": _json({"type": "object", "additionalProperties": {"$ref": "#/components/schemas/NodeDef"}})}}),
    ("GET", "/features", "system", "Server feature flags (same dict as the WS feature_flags reply)",
     {"responses": {"200": _json(_obj)}}),
    ("GET", "/system_stats", "system", "Versions, argv, RAM and devices", {"responses": {"200": _json(
        {"type": "object", "properties": {"system": _obj, "devices": {"type": "array", "items": _obj}}})}}),
    ("GET", "/embeddings", "models", "Embedding names without extension", {"responses": {"200": _json(_arr_str)}}),
    ("GET", "/models", "models", "Model folder names", {"responses": {"200": _json(_arr_str)}}),
    ("GET", "/models/{folder}", "models", "Model files in a folder", {
        "parameters": [_p("folder", "path")], "responses": {"200": _json(_arr_str), "404": _ERR}}),
    ("GET", "/ws", "websocket", "WebSocket (query clientId); see the frontend contract §3", {
        "parameters": [_p("clientId"), _p("token", description="API key when --api-key is set")],
        "responses": {"101": {"description": "Switching protocols"}}}),
    ("GET", "/openapi.json", "system", "This document", {"responses": {"200": _json(_obj)}}),
    # --- files (routes_files)
    ("GET", "/view", "files", "Serve an input/output/temp file", {
        "parameters": [_p("filename", required=True), _p("type"), _p("subfolder"), _p("preview"),
                       _p("channel"), _p("token", description="API key when --api-key is set")],
        "responses": {"200": {"description": "file bytes"}, "400": _ERR, "403": _ERR, "404": _ERR}}),
    ("GET", "/view_metadata/{folder}", "files", "safetensors __metadata__ of a model file", {
        "parameters": [_p("folder", "path"), _p("filename", required=True)],
        "responses": {"200": _json(_obj), "404": _ERR}}),
    ("POST", "/upload/image", "files", "Upload an image (multipart: image, type, subfolder, overwrite)", {
        "requestBody": _body({"type": "object", "properties": {"image": {"type": "string", "format": "binary"},
                                                               "type": {"type": "string"},
                                                               "subfolder": {"type": "string"},
                                                               "overwrite": {"type": "string"}}},
                             "multipart/form-data", True),
        "responses": {"200": _json({"type": "object", "properties": {"name": {"type": "string"},
                                                                     "subfolder": {"type": "string"},
                                                                     "type": {"type": "string"}}}),
                      "400": _ERR, "403": _ERR, "413": _ERR}}),
    ("POST", "/upload/mask", "files", "Merge a mask into the alpha of an existing image", {
        "requestBody": _body({"type": "object", "properties": {"image": {"type": "string", "format": "binary"},
                                                               "original_ref": {"type": "string"}}},
                             "multipart/form-data", True),
        "responses": {"200": _json(_obj), "400": _ERR, "403": _ERR, "413": _ERR}}),
    ("GET", "/internal/files/{type}", "internal", "File names in input/output/temp, newest first", {
        "parameters": [_p("type", "path")], "responses": {"200": _json(_arr_str), "400": _ERR}}),
    ("GET", "/internal/folder_paths", "internal", "Model folder search paths", {"responses": {"200": _json(_obj)}}),
    ("GET", "/internal/logs", "internal", "The whole log as one JSON string",
     {"responses": {"200": _json({"type": "string"})}}),
    ("GET", "/internal/logs/raw", "internal", "Structured log entries", {"responses": {"200": _json(_obj)}}),
    ("PATCH", "/internal/logs/subscribe", "internal", "Toggle `logs` WebSocket messages for a client", {
        "requestBody": _body({"type": "object", "properties": {"clientId": {"type": "string"},
                                                               "enabled": {"type": "boolean"}}}, required=True),
        "responses": {"200": _EMPTY_OK, "400": _ERR}}),
    ("GET", "/experiment/models", "models", "Model folders with their paths", {"responses": {"200": _json(
        {"type": "array", "items": _obj})}}),
    ("GET", "/experiment/models/{folder}", "models", "Model files with size and times", {
        "parameters": [_p("folder", "path")], "responses": {"200": _json({"type": "array", "items": _obj}),
                                                             "404": _ERR}}),
    ("GET", "/experiment/models/preview/{folder}/{path_index}/{filename}", "models", "Model thumbnail (webp)", {
        "parameters": [_p("folder", "path"), _p("path_index", "path"), _p("filename", "path")],
        "responses": {"200": {"description": "image/webp"}, "404": _ERR}}),
    # --- users, settings, userdata (routes_user)
    ("GET", "/users", "users", "User mode / users", {"responses": {"200": _json(_obj)}}),
    ("POST", "/users", "users", "Create a user (multi-user)", {
        "requestBody": _body({"type": "object", "properties": {"username": {"type": "string"}}}, required=True),
        "responses": {"200": _json({"type": "string"}), "400": _ERR}}),
    ("GET", "/settings", "users", "All settings of the user", {"responses": {"200": _json(_obj), "401": _ERR}}),
    ("POST", "/settings", "users", "Merge settings", {"requestBody": _body(_obj, required=True),
                                                     "responses": {"200": _EMPTY_OK, "400": _ERR}}),
    ("GET", "/settings/{id}", "users", "One setting (null when unset)", {
        "parameters": [_p("id", "path")], "responses": {"200": _json(_any)}}),
    ("POST", "/settings/{id}", "users", "Set one setting (empty body deletes it)", {
        "parameters": [_p("id", "path")], "requestBody": _body(_any),
        "responses": {"200": _EMPTY_OK, "400": _ERR}}),
    ("GET", "/userdata", "userdata", "List a user directory", {
        "parameters": [_p("dir", required=True), _p("recurse"), _p("full_info"), _p("split")],
        "responses": {"200": _json({"type": "array", "items": {}}), "400": _ERR, "403": _ERR, "404": _ERR}}),
    ("GET", "/v2/userdata", "userdata", "Structured listing", {
        "parameters": [_p("path")], "responses": {"200": _json({"type": "array", "items": _obj}),
                                                  "400": _ERR, "403": _ERR, "404": _ERR}}),
    ("GET", "/userdata/{file}", "userdata", "Read a user file (path %2F-encoded in one segment)", {
        "parameters": [_p("file", "path")], "responses": {"200": {"description": "file"}, "403": _ERR, "404": _ERR}}),
    ("POST", "/userdata/{file}", "userdata", "Write a user file", {
        "parameters": [_p("file", "path"), _p("overwrite"), _p("full_info")],
        "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": _json(_any), "400": _ERR, "403": _ERR, "409": _ERR, "413": _ERR}}),
    ("DELETE", "/userdata/{file}", "userdata", "Delete a user file", {
        "parameters": [_p("file", "path")], "responses": {"204": {"description": "deleted"}, "404": _ERR}}),
    ("POST", "/userdata/{file}/move/{dest}", "userdata", "Rename a user file", {
        "parameters": [_p("file", "path"), _p("dest", "path"), _p("overwrite"), _p("full_info")],
        "responses": {"200": _json(_any), "403": _ERR, "404": _ERR, "409": _ERR}}),
    # --- frontend, extensions, templates, docs, i18n (frontend)
    ("GET", "/", "frontend", "index.html of the web frontend", {"responses": {"200": {"description": "text/html"}}}),
    ("GET", "/extensions", "frontend", "JS extension files to load", {"responses": {"200": _json(_arr_str)}}),
    ("GET", "/extensions/{path}", "frontend", "Custom node WEB_DIRECTORY files and core extensions", {
        "parameters": [_p("path", "path")], "responses": {"200": {"description": "file"}, "404": _ERR}}),
    ("GET", "/templates/{path}", "frontend", "Workflow templates (comfyui-workflow-templates)", {
        "parameters": [_p("path", "path")], "responses": {"200": {"description": "file"}, "404": _ERR}}),
    ("GET", "/docs/{path}", "frontend", "Node docs (comfyui-embedded-docs)", {
        "parameters": [_p("path", "path")], "responses": {"200": {"description": "file"}, "404": _ERR}}),
    ("GET", "/workflow_templates", "frontend", "Example workflows of custom nodes", {
        "responses": {"200": _json(_obj)}}),
    ("GET", "/api/workflow_templates/{module}/{path}", "frontend", "Files of custom node example workflows", {
        "parameters": [_p("module", "path"), _p("path", "path")],
        "responses": {"200": {"description": "file"}, "404": _ERR}}),
    ("GET", "/i18n", "frontend", "Custom node translations", {"responses": {"200": _json(_obj)}}),
    ("GET", "/global_subgraphs", "frontend", "Global subgraph blueprints", {"responses": {"200": _json(_obj)}}),
    ("GET", "/global_subgraphs/{id}", "frontend", "One blueprint with data", {
        "parameters": [_p("id", "path")], "responses": {"200": _json(_obj), "404": _ERR}}),
]

_COMPONENTS = {
    "schemas": {
        "PromptErrorObject": _ERROR_OBJECT,
        "PromptRequest": {"type": "object", "required": ["prompt"], "properties": {
            "prompt": {"type": "object", "description": "API-format graph {node_id: {class_type, inputs}}"},
            "client_id": {"type": "string"}, "prompt_id": {"type": "string"},
            "number": {"type": "number"}, "front": {"type": "boolean"},
            "extra_data": {"type": "object"}, "partial_execution_targets": _arr_str}},
        "Job": _JOB,
        "NodeDef": {"type": "object", "properties": {
            "input": _obj, "input_order": _obj, "output": {"type": "array"},
            "output_is_list": {"type": "array", "items": {"type": "boolean"}},
            "output_name": _arr_str, "name": {"type": "string"}, "display_name": {"type": "string"},
            "description": {"type": "string"}, "python_module": {"type": "string"},
            "category": {"type": "string"}, "output_node": {"type": "boolean"}}},
    },
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                   "description": "Only when the server runs with --api-key"}},
}

_PARAM_RE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def normalize_path(path: str) -> str:
    """aiohttp route path -> OpenAPI path (``{name:regex}`` -> ``{name}``)."""
    return _PARAM_RE.sub(lambda m: "{" + m.group(1) + "}", path)


def _bare(path: str) -> bool:
    return path.startswith("/internal") or path in ("/",) or path.startswith(
        ("/extensions/", "/templates/", "/docs/", "/api/"))


def base_document() -> dict:
    paths: dict[str, dict] = {}
    for method, path, tag, summary, extra in _ROUTES:
        op = {"tags": [tag], "summary": summary, "operationId": f"{method.lower()}_{path}"}
        op.update(extra)
        op.setdefault("responses", {"200": {"description": "OK"}})
        variants = [path] if _bare(path) else [path, "/api" + path]
        for i, p in enumerate(variants):
            o = dict(op)
            o["operationId"] = re.sub(r"[^A-Za-z0-9_]+", "_", f"{method.lower()}{'_api' if i else ''}{path}").strip("_")
            paths.setdefault(p, {})[method.lower()] = o
    return {
        "openapi": "3.0.3",
        "info": {"title": "comfyui", "version": _version(),
                 "description": "ComfyUI-compatible HTTP API. Every route is served at /x and /api/x "
                                "except /internal/* and the static trees. With --api-key every route "
                                "needs `Authorization: Bearer <key>` (GET may use ?token=)."},
        "paths": paths,
        "components": _COMPONENTS,
    }


def _version() -> str:
    try:
        import comfyui
        return str(comfyui.__version__)
    except Exception:  # noqa: BLE001
        return "0"


def document_for(app: web.Application) -> dict:
    """The base document plus the live static trees and custom node routes."""
    doc = base_document()
    ctx: ServerContext = app["ctx"]
    for p, ops in ctx.extra.get("openapi_paths", {}).items():  # documented by their route module
        doc["paths"].setdefault(p, {}).update(ops)
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    for method, path in ctx.routes:
        p = normalize_path(path)
        m = method.lower()
        if m == "*" or (m, p) in documented or (m == "head"):
            continue
        if (method, path) in set(ctx.extra.get("compat_routes", [])):
            doc["paths"].setdefault(p, {})[m] = {
                "tags": ["custom_nodes"], "summary": "Route added by a custom node",
                "responses": {"200": {"description": "defined by the custom node"}}}
        elif _is_frontend_static(p, ctx):
            doc["paths"].setdefault(p, {})[m] = {
                "tags": ["frontend"], "summary": "Static file(s) of the web frontend",
                "responses": {"200": {"description": "file"}, "404": {"description": "not found"}}}
    return doc


def _is_frontend_static(path: str, ctx: ServerContext) -> bool:
    """Top-level entries of the frontend root, served by comfyui.server.frontend at
    ``/<file>`` and ``/<dir>/{path}``."""
    parts = path.strip("/").split("/")
    names = _frontend_entries(ctx)
    if len(parts) == 1:
        return parts[0] in names
    return len(parts) == 2 and parts[1] == "{path}" and parts[0] in names


def _frontend_entries(ctx: ServerContext) -> set[str]:
    try:
        import os
        from .frontend import frontend_root
        root = frontend_root(ctx)
        return set(os.listdir(root)) if root and os.path.isdir(root) else set()
    except Exception:  # noqa: BLE001
        return set()


def setup(app: web.Application, ctx: ServerContext) -> None:
    cache: dict[str, Any] = {}

    async def handle_openapi(request: web.Request) -> web.Response:
        if "doc" not in cache:
            cache["doc"] = document_for(request.app)
        return json_response(cache["doc"])

    add_route(app, "GET", "/openapi.json", handle_openapi)
