"""The production API: comfyui-api's stateless request API (``POST /prompt`` with base64 /
webhook / S3 delivery, probes, ``/models``, ``/docs``) served by the engine's own process on
a second port (``--enable-api``, ``--api-port``). See docs/production-api.md.

Modules: settings (flags and comfyui-api's environment variables), service (the request
pipeline), inputs (URL/base64 inputs), convert (convert_output), webhooks (Standard Webhooks
signing and retries), storage (S3), system_events (the system webhook), openapi (the document
and Swagger UI), app (the aiohttp app and its listener)."""
