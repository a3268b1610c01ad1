"""The production API's OpenAPI 3.0 document (``GET /openapi.json``) and Swagger UI at
``/docs``, served from the ``swagger-ui-bundle`` package (the ``api`` extra; no CDN: servers
often have no internet). Without the package ``/docs`` says how to get it; the document is
always served."""
from __future__ import annotations

import importlib.util
from typing import Any

from aiohttp import web

from .convert import JPEGOptions, WebPOptions


def _options_schema(model) -> dict:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


NODE = {"type": "object", "required": ["class_type", "inputs"],
        "properties": {"class_type": {"type": "string"}, "inputs": {"type": "object", "additionalProperties": True},
                       "_meta": {"type": "object", "additionalProperties": True}}}

ERROR_BODY = {"type": "object", "description": "ComfyUI's error shape",
              "properties": {"error": {"type": "object", "properties": {
                  "type": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "string"},
                  "extra_info": {"type": "object", "additionalProperties": True}}},
                  "node_errors": {"type": "object", "additionalProperties": True,
                                  "description": "node id -> {errors, dependent_outputs, class_type}"},
                  "id": {"type": "string", "nullable": True}}}


def _probe(ok: str, bad: str, bad_code: str) -> dict:
    def body(status: str) -> dict:
        return {"application/json": {"schema": {"type": "object", "properties": {
            "version": {"type": "string"}, "status": {"type": "string", "enum": [status]}}}}}
    return {"200": {"description": ok, "content": body(ok)}, bad_code: {"description": bad, "content": body(bad)}}


_CONVERSIONS = {"jpeg": "JPEGConversion", "jpg": "JPEGConversion", "webp": "WebPConversion",
                "png": "PNGConversion"}


def _conversion(name: str) -> dict:
    formats = sorted(fmt for fmt, n in _CONVERSIONS.items() if n == name)
    properties: dict[str, Any] = {"format": {"type": "string", "enum": formats}}
    if name != "PNGConversion":
        properties["options"] = {"$ref": f"#/components/schemas/{name.replace('Conversion', 'Options')}"}
    return {"type": "object", "required": ["format"], "properties": properties}


def openapi_30(schema: Any) -> Any:
    """pydantic's JSON schema in OpenAPI 3.0's dialect: ``const`` -> a one-value ``enum``,
    ``anyOf [X, null]`` -> X with ``nullable``, ``$defs`` refs -> components."""
    if isinstance(schema, list):
        return [openapi_30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: openapi_30(v) for k, v in schema.items() if k != "$defs"}
    if "const" in out:
        out["enum"] = [out.pop("const")]
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        out.pop("anyOf")
        out.update(rest[0] if len(rest) == 1 and "$ref" not in rest[0] else {"anyOf": rest})
        out["nullable"] = True
    return out


def workflow_schemas(endpoint) -> dict[str, Any]:
    """The components of a workflow endpoint's input: its model and the models it nests."""
    schema = endpoint.schema.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = schema.pop("$defs", {})
    return {endpoint.schema_name: openapi_30(schema), **{name: openapi_30(s) for name, s in nested.items()}}


def _workflow_path(endpoint, request_props: dict, response_props: dict) -> dict:
    ref = {"$ref": f"#/components/schemas/{endpoint.schema_name}"}
    body = {"type": "object", "required": ["input"],
            "properties": {**{k: v for k, v in request_props.items() if k != "prompt"}, "input": ref}}
    answer = {"type": "object", "properties": {**response_props, "input": ref}}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {"post": {
        "summary": endpoint.summary, "description": endpoint.description,
        "operationId": "workflow_" + endpoint.schema_name[len("Workflow_"):-len("_Input")],
        "tags": ["workflows"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {"description": "The outputs", "content": {"application/json": {"schema": answer}}},
            "202": {"description": "Accepted; outputs go to the webhook / S3",
                    "content": {"application/json": {"schema": answer}}},
            "400": {"description": "Invalid input (pydantic's errors in error.extra_info.errors) or prompt",
                    "content": error},
            "429": {"description": "Queue full", "content": error},
            "500": {"description": "The prompt failed while running", "content": error},
        }}}


def document(server_url: str | None = None, bearer_auth: bool = False, workflows=()) -> dict[str, Any]:
    """The OpenAPI document; ``bearer_auth``: the server has an API key (``--api-key``);
    ``workflows``: the mounted :class:`~.workflow_endpoints.WorkflowEndpoint` s."""
    from . import app as api_app

    request_props = {
        "id": {"type": "string", "description": "Your id for this request; a UUID when omitted. Echoed back "
                                                "and used as the output file names' prefix."},
        "prompt": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/ComfyNode"},
                   "description": "A ComfyUI prompt in API format; it must contain a saving node "
                                  "(a node with a filename_prefix input). File inputs may be http(s) URLs "
                                  "or base64."},
        "webhook": {"type": "string", "format": "uri",
                    "description": "Answer 202 at once; send each output to this URL (output.complete) or the "
                                   "failure (prompt.failed), signed per the Standard Webhooks spec."},
        "convert_output": {"$ref": "#/components/schemas/OutputConversion"},
        "s3": {"$ref": "#/components/schemas/S3Target"},
        "azureBlobUpload": {"$ref": "#/components/schemas/AzureBlobTarget"},
        "hfUpload": {"$ref": "#/components/schemas/HfTarget"},
        "hf_upload": {"$ref": "#/components/schemas/HfTarget"},
        "http_upload": {"$ref": "#/components/schemas/HttpTarget"},
    }
    response_props = {**request_props,
                      "images": {"type": "array", "items": {"type": "string"},
                                 "description": "base64 of each output file, or its s3:// URL with 's3', "
                                                "its blob URL with 'azureBlobUpload', its resolve URL with "
                                                "'hfUpload', its URL with 'http_upload'"},
                      "filenames": {"type": "array", "items": {"type": "string"}},
                      "status": {"type": "string", "enum": ["ok"], "description": "202 answers only"},
                      "prompt_id": {"type": "string", "description": "the job's id (main port's /history); "
                                                                      "follow it at /prompt/{id}/events"},
                      "stats": {"type": "object", "additionalProperties": {"type": "number"},
                                "description": "milliseconds: preprocess_time, comfy_round_trip_time, "
                                               "postprocess_time, total_time"}}
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "ComfyUI production API", "version": api_app.version(),
                 "description": "A stateless request API in the style of comfyui-api, served by the engine "
                                "itself (docs/production-api.md)."},
        "servers": [{"url": server_url or "/"}],
        "paths": {
            "/prompt": {"post": {
                "summary": "Submit Prompt", "operationId": "submitPrompt",
                "description": "Run an API-format prompt. Without webhook or async s3 the answer waits for the "
                               "outputs and carries them (base64, or s3:// URLs).",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PromptRequest"}}}},
                "responses": {
                    "200": {"description": "The outputs", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/PromptResponse"}}}},
                    "202": {"description": "Accepted; outputs go to the webhook / S3", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/PromptResponse"}}}},
                    "400": {"description": "Invalid request or prompt", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}},
                    "429": {"description": "Queue full", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}},
                    "500": {"description": "The prompt failed while running", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}},
                }}},
            "/prompt/{id}/events": {"get": {
                "summary": "Follow Prompt", "operationId": "promptEvents",
                "description": "Server-Sent Events of one request (by its id or prompt_id): status, the engine's "
                               "events for it (progress, executing, executed ...), then complete or failed; "
                               "the stream ends with the job.",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "the event stream", "content": {"text/event-stream": {
                        "schema": {"type": "string"}}}},
                    "404": {"description": "No such request on this server", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}}}},
                }}},
            "/undelivered": {"get": {
                "summary": "Undelivered Webhooks", "operationId": "listUndelivered",
                "description": "Webhook messages of this server not delivered after their retries; their outputs "
                               "are kept and resent when the server starts.",
                "parameters": [{"name": "id", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "only this request id or prompt_id"}],
                "responses": {"200": {"description": "the records", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"undelivered": {"type": "array", "items": {
                        "$ref": "#/components/schemas/UndeliveredRecord"}}}}}}}}}},
            "/health": {"get": {"summary": "Health Probe", "operationId": "health",
                                "responses": _probe("healthy", "not healthy", "500")}},
            "/ready": {"get": {"summary": "Readiness Probe", "operationId": "ready",
                               "description": "503 before the warmup prompt finished, when the engine is down "
                                              "or the queue is at MAX_QUEUE_DEPTH.",
                               "responses": _probe("ready", "not ready", "503")}},
            "/models": {"get": {"summary": "List Models", "operationId": "listModels", "responses": {"200": {
                "description": "model folder -> file names", "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}}}}}}},
        },
        "components": {"schemas": {
            "ComfyNode": NODE,
            "PromptRequest": {"type": "object", "required": ["prompt"], "properties": request_props},
            "PromptResponse": {"type": "object", "properties": response_props},
            # one schema per format, told apart by "format", so that generated clients keep
            # each format's options (an undiscriminated oneOf of the two option sets is not)
            "OutputConversion": {
                "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in _CONVERSIONS.values()],
                "discriminator": {"propertyName": "format", "mapping": {
                    fmt: f"#/components/schemas/{name}" for fmt, name in _CONVERSIONS.items()}}},
            **{name: _conversion(name) for name in set(_CONVERSIONS.values())},
            "JPEGOptions": _options_schema(JPEGOptions),
            "WebPOptions": _options_schema(WebPOptions),
            "S3Target": {"type": "object", "required": ["bucket"], "properties": {
                "bucket": {"type": "string"}, "prefix": {"type": "string", "default": ""},
                "async": {"type": "boolean", "default": False,
                          "description": "answer 202 at once and upload in the background"}}},
            "AzureBlobTarget": {"type": "object", "required": ["container"], "properties": {
                "container": {"type": "string", "description": "Azure Blob Storage container name"},
                "blobPrefix": {"type": "string", "default": "", "description": "path in the container"},
                "async": {"type": "boolean", "default": False,
                          "description": "answer 202 at once and upload in the background"}}},
            "HfTarget": {"type": "object", "required": ["repo"], "properties": {
                "repo": {"type": "string", "description": "Hugging Face repository id, owner/name"},
                "repo_type": {"type": "string", "enum": ["model", "dataset", "space"], "default": "model"},
                "revision": {"type": "string", "default": "main", "description": "branch to commit to"},
                "directory": {"type": "string", "default": "", "description": "folder in the repository"},
                "async": {"type": "boolean", "default": False,
                          "description": "answer 202 at once and upload in the background"}}},
            "HttpTarget": {"type": "object", "required": ["url_prefix"], "properties": {
                "url_prefix": {"type": "string", "format": "uri",
                               "description": "each output is sent to <url_prefix>/<filename>"},
                "method": {"type": "string", "enum": ["PUT", "POST"], "default": "PUT"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"},
                            "description": "sent with each upload (e.g. Authorization)"},
                "async": {"type": "boolean", "default": False,
                          "description": "answer 202 at once and upload in the background"}}},
            "Error": ERROR_BODY,
            "UndeliveredRecord": {"type": "object", "properties": {
                "id": {"type": "string"}, "prompt_id": {"type": "string"}, "webhook": {"type": "string"},
                "event": {"type": "string", "enum": ["output.complete", "prompt.failed"]},
                "filenames": {"type": "array", "items": {"type": "string"}, "description": "outputs still owed"},
                "urls": {"type": "object", "additionalProperties": {"type": "string"}},
                "error": {"type": "string", "description": "prompt.failed only"},
                "delivered": {"type": "integer", "description": "outputs of the request delivered so far"},
                "attempts": {"type": "integer"}, "failed_at": {"type": "string", "format": "date-time"}}},
        }},
    }
    for endpoint in workflows:
        doc["paths"][endpoint.route] = _workflow_path(endpoint, request_props, response_props)
        doc["components"]["schemas"].update(workflow_schemas(endpoint))
    if bearer_auth:
        doc["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
        for path, item in doc["paths"].items():
            if path not in ("/health", "/ready"):
                for operation in item.values():
                    operation["security"] = [{"apiKey": []}]
    return doc


_DOCS_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ComfyUI production API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});</script>
</body></html>
"""


def setup_docs(app: web.Application, bearer_auth: bool = False, workflows=()) -> None:
    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document(f"{request.scheme}://{request.host}", bearer_auth, workflows))

    async def docs(request: web.Request) -> web.Response:
        if importlib.util.find_spec("swagger_ui_bundle") is None:
            return web.Response(status=404, text="Swagger UI needs the swagger-ui-bundle package "
                                                 "(pip install 'comfyui[api]'); the document is at /openapi.json")
        return web.Response(text=_DOCS_PAGE, content_type="text/html")

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    if importlib.util.find_spec("swagger_ui_bundle") is not None:
        from swagger_ui_bundle import swagger_ui_path

        app.router.add_static("/docs/static", str(swagger_ui_path), follow_symlinks=False)
