"""A client generated from the OpenAPI document (openapi-python-client) runs a prompt."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from api_helpers import decode_image, image_prompt


@pytest.fixture
def generated_client(tmp_path, monkeypatch):
    from comfyui.api_server.openapi import document

    tool = shutil.which("openapi-python-client", path=os.path.dirname(sys.executable))
    assert tool, "openapi-python-client (dev extra) is needed"
    doc = tmp_path / "openapi.json"
    doc.write_text(json.dumps(document("http://127.0.0.1")))
    out = tmp_path / "gen" / "comfyui_api_client"
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run([tool, "generate", "--path", str(doc), "--output-path", str(out), "--meta", "none"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    monkeypatch.syspath_prepend(str(tmp_path / "gen"))
    yield importlib.import_module("comfyui_api_client")
    for name in [n for n in sys.modules if n.startswith("comfyui_api_client")]:
        del sys.modules[name]


async def test_generated_client_runs_a_prompt(api, generated_client):
    from comfyui_api_client.api.default import health, submit_prompt
    from comfyui_api_client.models import PromptRequest

    client = generated_client.Client(base_url=str(api.client.make_url("")).rstrip("/"))
    async with client as c:
        assert (await health.asyncio_detailed(client=c)).status_code == 200
        request = PromptRequest.from_dict({"id": "gen", "prompt": image_prompt(0xABCDEF),
                                           "convert_output": {"format": "webp", "options": {"lossless": True}}})
        answer = await submit_prompt.asyncio(client=c, body=request)
    assert answer.id == "gen" and answer.filenames == ["gen_00001_.webp"]
    assert decode_image(answer.images[0]).convert("RGB").getpixel((0, 0)) == (0xAB, 0xCD, 0xEF)
    assert answer.stats.additional_properties["total_time"] > 0

    async with generated_client.Client(base_url=str(api.client.make_url("")).rstrip("/")) as c:
        bad = PromptRequest.from_dict({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}})
        error = await submit_prompt.asyncio(client=c, body=bad)
    assert error.error.type_ == "invalid_request"
