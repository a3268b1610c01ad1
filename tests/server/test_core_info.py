"""object_info, features, system_stats, embeddings, models."""
from __future__ import annotations

import os
import sys
import time

from PIL import Image


async def test_object_info_all_and_one(server):
    resp = await server.client.get("/api/object_info")
    assert resp.status == 200 and resp.content_type == "application/json"
    info = await resp.json()
    assert {"PrimitiveString", "PreviewAny", "LoadImage", "SaveImage", "ServerTestSleep"} <= set(info)
    node = info["PreviewAny"]
    for key in ("input", "input_order", "output", "output_is_list", "output_name", "name",
                "display_name", "description", "python_module", "category", "output_node"):
        assert key in node, key
    assert node["python_module"] == "nodes" and node["output_node"] is True
    assert info["ServerTestSleep"]["python_module"] == "custom_nodes.servertest"
    assert info["ServerTestSleep"]["input_order"]["required"] == ["value", "seconds"]
    one = await (await server.client.get("/object_info/PreviewAny")).json()
    assert one == {"PreviewAny": node}
    assert await (await server.client.get("/api/object_info/NoSuchNode")).json() == {}


async def test_object_info_is_cached_and_fast(server):
    await server.client.get("/api/object_info")
    t0 = time.perf_counter()
    n = 50
    for _ in range(n):
        resp = await server.client.get("/api/object_info")
        await resp.read()
    per_call_ms = (time.perf_counter() - t0) / n * 1000
    assert per_call_ms < 10, per_call_ms


async def test_object_info_sees_new_input_files_and_new_nodes(server, workspace):
    from comfyui import paths

    # a node registered later (custom node reload) shows up too
    class LateNode:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"
        CATEGORY = "testing"

        def run(self):
            return ("late",)

    server.engine.registry.register_classic("ServerTestLateNode", LateNode, python_module="custom_nodes.late")
    try:
        info = await (await server.client.get("/api/object_info")).json()
        assert "ServerTestLateNode" in info
    finally:
        server.engine.registry.nodes.pop("ServerTestLateNode", None)
        server.engine.registry.version += 1
    info = await (await server.client.get("/api/object_info")).json()
    options = info["LoadImage"]["input"]["required"]["image"][0]
    assert "fresh.png" not in options
    Image.new("RGB", (4, 4)).save(os.path.join(paths.get_input_directory(), "fresh.png"))
    info = await (await server.client.get("/api/object_info")).json()
    assert "fresh.png" in info["LoadImage"]["input"]["required"]["image"][0]


async def test_features_and_system_stats(server):
    features = await (await server.client.get("/features")).json()
    assert features["supports_preview_metadata"] is True
    assert isinstance(features["max_upload_size"], int)
    stats = await (await server.client.get("/api/system_stats")).json()
    system = stats["system"]
    for key in ("os", "ram_total", "ram_free", "comfyui_version", "required_frontend_version",
                "installed_templates_version", "required_templates_version", "python_version",
                "pytorch_version", "embedded_python", "argv"):
        assert key in system, key
    assert isinstance(system["argv"], list)
    assert system["required_frontend_version"] == "1.58.1"  # the pinned frontend package
    assert system["ram_total"] > system["ram_free"] > 0
    assert isinstance(stats["devices"], list) and stats["devices"]
    dev = stats["devices"][0]
    for key in ("name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"):
        assert key in dev, key


def test_argv_redaction():
    from comfyui.server.routes_info import redacted_argv

    assert redacted_argv(["comfyui", "--api-key", "k", "--port", "1"]) == ["comfyui", "--api-key", "***", "--port", "1"]
    assert redacted_argv(["comfyui", "--api-key=k"]) == ["comfyui", "--api-key=***"]


async def test_embeddings_and_models(server, workspace):
    from comfyui import paths

    emb_dir = paths.get_folder_paths("embeddings")[0]
    os.makedirs(emb_dir, exist_ok=True)
    for name in ("easyneg.safetensors", "sub/other.pt", "notes.txt"):
        full = os.path.join(emb_dir, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        open(full, "wb").close()
    emb = await (await server.client.get("/api/embeddings")).json()
    assert sorted(emb) == ["easyneg", "sub/other"]
    models = await (await server.client.get("/api/models")).json()
    assert "checkpoints" in models and "loras" in models
    ckpt_dir = paths.get_folder_paths("checkpoints")[0]
    open(os.path.join(ckpt_dir, "model.safetensors"), "wb").close()
    assert await (await server.client.get("/models/checkpoints")).json() == ["model.safetensors"]
    resp = await server.client.get("/api/models/not_a_folder")
    assert resp.status == 404


async def test_server_import_does_not_need_torch():
    """The server modules themselves never import torch (start-up time / RSS)."""
    import subprocess

    code = ("import sys, comfyui.server.app, comfyui.server.routes_prompt, comfyui.server.ws, "
            "comfyui.server.security, comfyui.server.openapi; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


async def test_gzip_and_cache_control(make_server):
    srv = await make_server(enable_compress_response_body=True)
    resp = await srv.client.get("/api/object_info", headers={"Accept-Encoding": "gzip"})
    assert resp.status == 200 and resp.headers.get("Content-Encoding") == "gzip"
    assert "PreviewAny" in await resp.json()  # the client decompresses
    resp = await srv.client.get("/api/features", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in resp.headers  # tiny bodies stay plain
    resp = await srv.client.get("/scripts/app.js")
    if resp.status == 200:  # the frontend package is installed
        assert resp.headers["Cache-Control"] == "no-cache"
    plain = await make_server()
    resp = await plain.client.get("/api/object_info", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in resp.headers


async def test_first_object_info_lists_model_files_added_after_start(server):
    """ComfyUI answers /object_info with fresh file lists, the first call included."""
    from comfyui import paths

    def ckpt_options(info):
        return info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]

    ckpt_dir = paths.get_folder_paths("checkpoints")[0]
    open(os.path.join(ckpt_dir, "added_later.safetensors"), "wb").close()
    info = await (await server.client.get("/api/object_info")).json()
    assert "added_later.safetensors" in ckpt_options(info)
    os.makedirs(os.path.join(ckpt_dir, "sub"))
    open(os.path.join(ckpt_dir, "sub", "nested.safetensors"), "wb").close()
    info = await (await server.client.get("/api/object_info")).json()
    assert "sub/nested.safetensors" in ckpt_options(info)
    os.remove(os.path.join(ckpt_dir, "added_later.safetensors"))
    info = await (await server.client.get("/api/object_info")).json()
    assert "added_later.safetensors" not in ckpt_options(info)
