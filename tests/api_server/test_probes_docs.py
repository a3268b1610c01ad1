"""/health, /ready, /models, /openapi.json and /docs of the production API."""
from __future__ import annotations

import asyncio

from api_helpers import image_prompt


async def test_health_and_ready_when_idle(api):
    for path, status in (("/health", "healthy"), ("/ready", "ready")):
        resp = await api.client.get(path)
        assert resp.status == 200
        body = await resp.json()
        assert body["status"] == status and body["version"]


async def test_ready_is_503_while_the_engine_is_down(make_api):
    api = await make_api(start_engine=False)
    resp = await api.client.get("/ready")
    assert resp.status == 503 and (await resp.json())["status"] == "not ready"
    assert (await api.client.get("/health")).status == 200  # healthy: the server is up
    api.engine.start()
    assert (await api.client.get("/ready")).status == 200


async def test_ready_is_503_at_max_queue_depth(make_api):
    from comfyui.api_server.settings import ApiSettings

    api = await make_api(settings=ApiSettings(max_queue_depth=2))
    slow = image_prompt()
    slow["3"] = {"class_type": "ApiTestSlowImage", "inputs": {"images": ["1", 0], "seconds": 1.0}}
    slow["2"]["inputs"]["images"] = ["3", 0]
    first = api.engine.submit(slow)
    assert (await api.client.get("/ready")).status == 200  # one job: below the depth
    slow["3"]["inputs"]["seconds"] = 1.01  # not a cache hit
    api.engine.submit(slow)
    assert (await api.client.get("/ready")).status == 503
    await asyncio.wrap_future(api.engine.wait(first.prompt_id))
    for _ in range(100):
        if (await api.client.get("/ready")).status == 200:
            break
        await asyncio.sleep(0.05)
    assert (await api.client.get("/ready")).status == 200


async def test_models_lists_each_model_folder(api):
    ckpt = api.workspace / "models" / "checkpoints" / "tiny.safetensors"
    ckpt.write_bytes(b"0")
    lora = api.workspace / "models" / "loras" / "sub" / "l.safetensors"
    lora.parent.mkdir(parents=True)
    lora.write_bytes(b"0")
    resp = await api.client.get("/models")
    models = await resp.json()
    assert models["checkpoints"] == ["tiny.safetensors"]
    assert models["loras"] == ["sub/l.safetensors"]
    assert models["vae"] == []


async def test_openapi_document_validates_and_docs_serve_swagger_ui(api):
    from openapi_spec_validator import validate

    resp = await api.client.get("/openapi.json")
    doc = await resp.json()
    validate(doc)
    assert set(doc["paths"]) == {"/prompt", "/prompt/{id}/events", "/undelivered", "/health", "/ready", "/models"}
    request = doc["components"]["schemas"]["PromptRequest"]
    assert set(request["properties"]) == {"id", "prompt", "webhook", "convert_output", "s3", "azureBlobUpload",
                                            "hfUpload", "hf_upload", "http_upload"}
    assert doc["components"]["schemas"]["JPEGOptions"]["properties"]["quality"]["default"] == 80
    page = await api.client.get("/docs")
    assert page.status == 200 and "SwaggerUIBundle" in await page.text()
    js = await api.client.get("/docs/static/swagger-ui-bundle.js")
    assert js.status == 200 and len(await js.read()) > 100_000


async def test_api_key_guards_everything_but_the_probes_and_docs(make_api):
    from openapi_spec_validator import validate

    api = await make_api(api_key="sekrit")
    assert (await api.client.get("/ready")).status == 200
    assert (await api.client.get("/docs")).status == 200
    assert (await api.client.get("/docs/static/swagger-ui.css")).status == 200
    doc = await (await api.client.get("/openapi.json")).json()
    validate(doc)
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert doc["paths"]["/prompt"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in doc["paths"]["/ready"]["get"]
    assert (await api.client.get("/models")).status == 401
    assert (await api.client.post("/prompt", json={"prompt": image_prompt()})).status == 401
    resp = await api.client.post("/prompt", json={"prompt": image_prompt()},
                                 headers={"Authorization": "Bearer sekrit"})
    assert resp.status == 200
