"""POST /prompt of the production API: the synchronous route end to end on a real engine."""
from __future__ import annotations

import asyncio
import os

from api_helpers import decode_image, image_prompt


async def test_sync_prompt_returns_base64_outputs_in_comfyui_api_shape(api):
    body = {"id": "req-1", "prompt": image_prompt(0x102030, 8, 6, batch=2)}
    status, out = await api.post(body)
    assert status == 200, out
    assert out["id"] == "req-1"
    assert set(out) >= {"id", "prompt", "images", "filenames", "stats"}
    assert len(out["images"]) == len(out["filenames"]) == 2
    for b64, name in zip(out["images"], out["filenames"]):
        img = decode_image(b64)
        assert img.format == "PNG" and img.size == (8, 6)
        assert img.convert("RGB").getpixel((3, 3)) == (0x10, 0x20, 0x30)
        assert name.startswith("req-1_") and name.endswith(".png")
    # the prompt echoed is the one that ran: the saving node's prefix was rewritten
    prefix = out["prompt"]["2"]["inputs"]["filename_prefix"]
    assert prefix.startswith("api/") and prefix.endswith("/req-1")
    assert out["stats"]["total_time"] >= out["stats"]["comfy_round_trip_time"] >= 0
    # stateless: the request's output folder is gone once answered; the job is in history
    assert not os.listdir(os.path.join(api.workspace, "output", "api"))
    assert len(api.engine.get_history()) == 1


async def test_unknown_fields_round_trip_and_id_defaults_to_a_uuid(api):
    import uuid

    status, out = await api.post({"prompt": image_prompt(), "extra": {"k": [1, 2]}})
    assert status == 200, out
    assert out["extra"] == {"k": [1, 2]}
    uuid.UUID(out["id"])


async def test_concurrent_requests_with_the_same_id_never_mix_outputs(api):
    colors = [0x010203 * (i + 1) for i in range(8)]
    results = await asyncio.gather(*(api.post({"id": "same", "prompt": image_prompt(c)}) for c in colors))
    for color, (status, out) in zip(colors, results):
        assert status == 200, out
        assert len(out["images"]) == 1
        rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
        assert decode_image(out["images"][0]).convert("RGB").getpixel((0, 0)) == rgb


async def test_invalid_prompt_is_400_with_node_errors(api):
    prompt = image_prompt()
    prompt["1"]["inputs"]["width"] = "wide"
    status, out = await api.post({"id": "bad", "prompt": prompt})
    assert status == 400
    assert out["error"]["type"] == "prompt_outputs_failed_validation"
    assert "1" in out["node_errors"] and out["node_errors"]["1"]["class_type"] == "EmptyImage"
    assert out["id"] == "bad"

    status, out = await api.post({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}},
                                             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                                                          "filename_prefix": "x"}}}})
    assert status == 400 and out["error"]["type"] == "missing_node_type"


async def test_bad_request_fields_are_400(api):
    cases = [
        ({}, "no_prompt"),
        ({"prompt": []}, "no_prompt"),
        ({"prompt": {"1": {"inputs": {}}}}, "invalid_request"),
        ({"prompt": image_prompt(), "id": 5}, "invalid_request"),
        ({"prompt": image_prompt(), "webhook": "ftp://x"}, "invalid_request"),
        ({"prompt": image_prompt(), "convert_output": {"format": "gif"}}, "invalid_request"),
        ({"prompt": image_prompt(), "convert_output": {"format": "jpeg", "options": {"quality": 500}}},
         "invalid_request"),
        ({"prompt": image_prompt(), "s3": {"prefix": "x"}}, "invalid_request"),
    ]
    for body, kind in cases:
        status, out = await api.post(body)
        assert status == 400, (body, out)
        assert out["error"]["type"] == kind, (body, out)
        assert out["error"]["message"] and "node_errors" in out
    resp = await api.client.post("/prompt", data=b"{not json")
    assert resp.status == 400


async def test_prompt_without_a_saving_node_is_400(api):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    status, out = await api.post({"prompt": prompt})
    assert status == 400
    assert "filename_prefix" in out["error"]["details"]


async def test_execution_failure_is_500_with_the_node_error(api):
    prompt = image_prompt()
    prompt["3"] = {"class_type": "ApiTestFailImage", "inputs": {"images": ["1", 0], "fail": True,
                                                        "message": "kaboom"}}
    prompt["2"]["inputs"]["images"] = ["3", 0]
    status, out = await api.post({"id": "f", "prompt": prompt})
    assert status == 500, out
    assert out["error"]["type"] == "execution_error"
    assert "kaboom" in out["error"]["message"]
    assert out["id"] == "f"
    assert not os.path.exists(os.path.join(api.workspace, "output", "api", out["prompt_id"]))


async def test_linked_filename_prefix_is_replaced_too(api):
    prompt = image_prompt()
    prompt["9"] = {"class_type": "PrimitiveString", "inputs": {"value": "../../escape"}}
    prompt["2"]["inputs"]["filename_prefix"] = ["9", 0]
    status, out = await api.post({"id": "linked", "prompt": prompt})
    assert status == 200, out
    assert out["filenames"][0].startswith("linked_")
