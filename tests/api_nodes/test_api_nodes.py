"""API nodes end to end: each node runs through the engine against the contract server
(tests/api_nodes/contract_server.py), with polling, progress, interrupt, retries and errors."""
from __future__ import annotations

import asyncio
import json
import os

import pytest
from PIL import Image

from apinode_helpers import TOKEN, error_of, run_prompt, with_preview
from contract_server import RESULT_COLOR, RESULT_SIZE

NODES = {
    "FluxProUltraImageNode": {"prompt": "a lighthouse", "prompt_upsampling": False, "seed": 5, "aspect_ratio": "16:9",
                              "raw": False},
    "FluxKontextProImageNode": {"prompt": "make it night", "aspect_ratio": "1:1", "guidance": 3.0, "steps": 50,
                                "seed": 1, "prompt_upsampling": False},
    "FluxKontextMaxImageNode": {"prompt": "make it night", "aspect_ratio": "4:3", "guidance": 2.5, "steps": 28,
                                "seed": 1, "prompt_upsampling": False},
    "FluxProImageNode": {"prompt": "a cat", "prompt_upsampling": False, "width": 1024, "height": 768, "seed": 3},
    "OpenAIDalle2": {"prompt": "a fox", "seed": 0, "size": "512x512", "n": 2},
    "OpenAIDalle3": {"prompt": "a fox", "seed": 0, "quality": "hd", "style": "vivid", "size": "1024x1792"},
    "OpenAIGPTImage1": {"prompt": "a fox", "seed": 0, "quality": "low", "background": "opaque", "size": "auto", "n": 1},
    "StabilityStableImageUltraNode": {"prompt": "a fox", "aspect_ratio": "3:2", "style_preset": "anime", "seed": 9},
    "FluxProExpandNode": {"image": ["3", 0], "prompt": "more sky", "prompt_upsampling": False, "top": 64, "bottom": 0,
                          "left": 0, "right": 32, "guidance": 60, "steps": 50, "seed": 2},
    "FluxProFillNode": {"image": ["3", 0], "mask": ["4", 0], "prompt": "a window", "prompt_upsampling": False,
                        "guidance": 60, "steps": 30, "seed": 2},
    "FluxProCannyNode": {"control_image": ["3", 0], "prompt": "a house", "prompt_upsampling": False,
                         "canny_low_threshold": 0.1, "canny_high_threshold": 0.4, "skip_preprocessing": False,
                         "guidance": 30, "steps": 50, "seed": 2},
    "FluxProDepthNode": {"control_image": ["3", 0], "prompt": "a house", "prompt_upsampling": False,
                         "skip_preprocessing": True, "guidance": 15, "steps": 50, "seed": 2},
    "StabilityStableImageSD_3_5Node": {"prompt": "a fox", "model": "sd3.5-medium", "aspect_ratio": "16:9",
                                       "style_preset": "None", "cfg_scale": 4.0, "seed": 4},
    "StabilityUpscaleConservativeNode": {"image": ["3", 0], "prompt": "sharp", "creativity": 0.35, "seed": 1},
    "StabilityUpscaleCreativeNode": {"image": ["3", 0], "prompt": "sharp", "creativity": 0.3, "style_preset": "None",
                                     "seed": 1},
    "StabilityUpscaleFastNode": {"image": ["3", 0]},
    "IdeogramV1": {"prompt": "a poster", "turbo": True, "aspect_ratio": "16:9", "magic_prompt_option": "OFF",
                   "seed": 7, "negative_prompt": "", "num_images": 2},
    "IdeogramV2": {"prompt": "a poster", "turbo": False, "aspect_ratio": "1:1", "resolution": "1280 x 720",
                   "magic_prompt_option": "AUTO", "seed": 7, "style_type": "DESIGN", "negative_prompt": "blur",
                   "num_images": 1},
    "IdeogramV3": {"prompt": "a poster", "aspect_ratio": "1:1", "resolution": "Auto", "magic_prompt_option": "ON",
                   "seed": 0, "num_images": 3, "rendering_speed": "TURBO"},
    "LumaImageNode": {"prompt": "a lighthouse", "model": "photon-1", "aspect_ratio": "21:9", "seed": 0,
                      "style_image_weight": 0.5, "style_image": ["3", 0]},
    "LumaImageModifyNode": {"image": ["3", 0], "prompt": "at night", "image_weight": 0.3, "model": "photon-flash-1",
                            "seed": 0},
}
IMAGE = {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 24, "batch_size": 1, "color": 0xFF0000}}
MASK = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 20, "height": 12}}
ROUTES = {
    "FluxProUltraImageNode": "/proxy/bfl/flux-pro-1.1-ultra/generate",
    "FluxKontextProImageNode": "/proxy/bfl/flux-kontext-pro/generate",
    "FluxKontextMaxImageNode": "/proxy/bfl/flux-kontext-max/generate",
    "FluxProImageNode": "/proxy/bfl/flux-pro-1.1/generate",
    "OpenAIDalle2": "/proxy/openai/images/generations",
    "OpenAIDalle3": "/proxy/openai/images/generations",
    "OpenAIGPTImage1": "/proxy/openai/images/generations",
    "StabilityStableImageUltraNode": "/proxy/stability/v2beta/stable-image/generate/ultra",
    "FluxProExpandNode": "/proxy/bfl/flux-pro-1.0-expand/generate",
    "FluxProFillNode": "/proxy/bfl/flux-pro-1.0-fill/generate",
    "FluxProCannyNode": "/proxy/bfl/flux-pro-1.0-canny/generate",
    "FluxProDepthNode": "/proxy/bfl/flux-pro-1.0-depth/generate",
    "StabilityStableImageSD_3_5Node": "/proxy/stability/v2beta/stable-image/generate/sd3",
    "StabilityUpscaleConservativeNode": "/proxy/stability/v2beta/stable-image/upscale/conservative",
    "StabilityUpscaleCreativeNode": "/proxy/stability/v2beta/stable-image/upscale/creative",
    "StabilityUpscaleFastNode": "/proxy/stability/v2beta/stable-image/upscale/fast",
    "IdeogramV1": "/proxy/ideogram/generate",
    "IdeogramV2": "/proxy/ideogram/generate",
    "IdeogramV3": "/proxy/ideogram/ideogram-v3/generate",
    "LumaImageNode": "/proxy/luma/generations/image",
    "LumaImageModifyNode": "/proxy/luma/generations/image",
}


def saved_images(workspace, entry: dict) -> list[Image.Image]:
    return [Image.open(os.path.join(workspace, "temp", i["subfolder"], i["filename"]))
            for i in entry["outputs"]["2"]["images"]]


@pytest.mark.parametrize("class_type", list(NODES))
async def test_node_runs_end_to_end(class_type, make_engine, contract, workspace):
    engine = make_engine()
    prompt = with_preview({"class_type": class_type, "inputs": NODES[class_type]})
    prompt.update({"3": IMAGE, "4": MASK})
    entry = await run_prompt(engine, prompt)
    assert entry["status"]["status_str"] == "success", error_of(entry)
    images = saved_images(workspace, entry)
    assert len(images) == NODES[class_type].get("n", NODES[class_type].get("num_images", 1))
    assert images[0].size == RESULT_SIZE and images[0].convert("RGB").getpixel((3, 3)) == RESULT_COLOR
    call = next(r for r in contract.requests if r["path"] == ROUTES[class_type])
    assert call["headers"]["Authorization"] == f"Bearer {TOKEN}"
    sent = call["body"].model_dump(exclude_none=True)  # validated by the server with the route's model
    for key in ("prompt", "seed", "aspect_ratio", "steps", "width", "size", "quality", "style_preset", "top", "right"):
        if key in NODES[class_type] and key in sent:
            assert sent[key] == NODES[class_type][key]


def _png(b64: str) -> Image.Image:
    import base64
    import io

    return Image.open(io.BytesIO(base64.b64decode(b64)))


async def test_bfl_image_and_mask_encoding(make_engine, contract):
    """Fill sends the mask resized to the image as white-on-black PNG; Canny scales thresholds
    to BFL's 0..500; skip_preprocessing sends the image as preprocessed_image instead."""
    engine = make_engine()
    for class_type in ("FluxProFillNode", "FluxProCannyNode", "FluxProDepthNode"):
        prompt = with_preview({"class_type": class_type, "inputs": NODES[class_type]})
        prompt.update({"3": IMAGE, "4": MASK})
        assert (await run_prompt(engine, prompt))["status"]["status_str"] == "success"
    fill, canny, depth = (next(r["body"] for r in contract.requests if r["path"] == ROUTES[c])
                          for c in ("FluxProFillNode", "FluxProCannyNode", "FluxProDepthNode"))
    assert _png(fill.image).size == (40, 24) and _png(fill.image).getpixel((0, 0)) == (255, 0, 0)
    assert _png(fill.mask).size == (40, 24) and _png(fill.mask).convert("L").getpixel((5, 5)) == 255
    assert (canny.canny_low_threshold, canny.canny_high_threshold) == (50, 200) and canny.preprocessed_image is None
    assert depth.control_image is None and _png(depth.preprocessed_image).size == (40, 24)


async def test_image_inputs_travel(make_engine, contract):
    """Kontext sends its input image as base64 PNG; GPT Image 1 with an image goes to the
    multipart edits route; a wrong aspect ratio is refused when queued (node_errors)."""
    engine = make_engine()
    image = {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 24, "batch_size": 1, "color": 0xFF0000}}
    prompt = with_preview({"class_type": "FluxKontextProImageNode",
                           "inputs": {**NODES["FluxKontextProImageNode"], "input_image": ["3", 0]}})
    prompt["3"] = image
    assert (await run_prompt(engine, prompt))["status"]["status_str"] == "success"
    sent = next(r for r in contract.requests if r["path"].endswith("flux-kontext-pro/generate"))["body"]
    import base64
    import io
    assert Image.open(io.BytesIO(base64.b64decode(sent.input_image))).size == (40, 24)

    prompt = with_preview({"class_type": "OpenAIGPTImage1", "inputs": {**NODES["OpenAIGPTImage1"], "image": ["3", 0]}})
    prompt["3"] = image
    assert (await run_prompt(engine, prompt))["status"]["status_str"] == "success"
    edit = next(r for r in contract.requests if r["path"] == "/proxy/openai/images/edits")
    assert edit["body"].model == "gpt-image-1" and len(edit["files"]["image"]) == 1

    bad = with_preview({"class_type": "FluxProUltraImageNode", "inputs": {**NODES["FluxProUltraImageNode"],
                                                                        "aspect_ratio": "9:1"}})
    from comfyui.engine.validation import PromptError

    with pytest.raises(PromptError) as refused:
        engine.submit(bad, extra_data={"auth_token_comfy_org": TOKEN})
    error = refused.value.node_errors["1"]["errors"][0]
    assert error["type"] == "custom_validation_failed" and "between 1:4 and 4:1" in error["details"]


async def test_polling_reports_progress(make_engine, contract):
    contract.task_steps = 4
    engine = make_engine()
    events = []
    engine.add_listener(lambda event, data, sid: events.append((event, data)))
    entry = await run_prompt(engine, with_preview({"class_type": "FluxProImageNode",
                                                   "inputs": NODES["FluxProImageNode"]}))
    assert entry["status"]["status_str"] == "success"
    values = [d["value"] for e, d in events if e == "progress" and d.get("node") == "1"]
    assert values == [20.0, 40.0, 60.0, 80.0, 100]  # each poll's progress, then done
    assert any(e == "progress_text" and d["text"].startswith("Generating (") for e, d in events)
    assert contract.paths().count("/proxy/bfl/get_result") == 5


async def test_interrupt_stops_polling(make_engine, contract):
    contract.task_steps = 10_000
    engine = make_engine()
    result = engine.submit(with_preview({"class_type": "FluxProUltraImageNode", "inputs": NODES["FluxProUltraImageNode"]}),
                           extra_data={"auth_token_comfy_org": TOKEN})
    for _ in range(200):
        if contract.paths().count("/proxy/bfl/get_result") >= 3:
            break
        await asyncio.sleep(0.02)
    engine.interrupt(result.prompt_id)
    entry = await asyncio.wait_for(asyncio.wrap_future(engine.wait(result.prompt_id)), 10)
    assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"])
    polls = contract.paths().count("/proxy/bfl/get_result")
    await asyncio.sleep(0.3)
    assert contract.paths().count("/proxy/bfl/get_result") == polls  # nothing polls any more


async def test_interrupt_abandons_a_slow_request(make_engine, contract):
    contract.delay = 30  # the proxy takes its time to answer
    engine = make_engine()
    result = engine.submit(with_preview({"class_type": "OpenAIDalle3", "inputs": NODES["OpenAIDalle3"]}),
                           extra_data={"auth_token_comfy_org": TOKEN})
    for _ in range(200):
        if contract.requests:
            break
        await asyncio.sleep(0.02)
    engine.interrupt(result.prompt_id)
    entry = await asyncio.wait_for(asyncio.wrap_future(engine.wait(result.prompt_id)), 3)
    assert any(kind == "execution_interrupted" for kind, _ in entry["status"]["messages"])
    assert len(contract.requests) == 1  # not retried


async def test_transient_errors_are_retried(make_engine, contract):
    route = ROUTES["OpenAIDalle3"]
    contract.answer_first[route] = [503, 429]
    engine = make_engine()
    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIDalle3", "inputs": NODES["OpenAIDalle3"]}))
    assert entry["status"]["status_str"] == "success"
    assert contract.paths().count(route) == 3

    contract.answer_first[route] = [503] * 10  # never recovers: the node fails after 3 retries
    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIDalle3",
                                                   "inputs": {**NODES["OpenAIDalle3"], "prompt": "again"}}))
    error = error_of(entry)
    assert error["node_id"] == "1" and "503" in error["exception_message"] and "after 3 retries" in error["exception_message"]


async def test_slow_answers_time_out_and_are_retried(make_engine, contract, monkeypatch):
    import aiohttp

    from comfyui.api_nodes.client import ApiClient

    monkeypatch.setattr(ApiClient, "timeout", aiohttp.ClientTimeout(total=0.3))
    engine = make_engine()
    contract.delay = 0.15  # slow, but within the timeout
    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIDalle3", "inputs": NODES["OpenAIDalle3"]}))
    assert entry["status"]["status_str"] == "success"
    contract.delay = 1.0  # every answer later than the timeout
    contract.requests.clear()
    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIDalle3",
                                                   "inputs": {**NODES["OpenAIDalle3"], "prompt": "slow"}}))
    message = error_of(entry)["exception_message"]
    assert message.startswith(f"Could not reach {contract.url}") and message.endswith("(after 3 retries)")
    assert len(contract.requests) == 4


@pytest.mark.parametrize("outcome", ["Content Moderated", "Request Moderated"])
async def test_bfl_moderation_is_shown_on_the_node(outcome, make_engine, contract):
    contract.task_outcome = outcome
    engine = make_engine()
    entry = await run_prompt(engine, with_preview({"class_type": "FluxKontextProImageNode",
                                                   "inputs": NODES["FluxKontextProImageNode"]}))
    error = error_of(entry)
    assert error["node_id"] == "1" and error["node_type"] == "FluxKontextProImageNode"
    assert error["exception_message"] == f"BFL API did not return an image due to: {outcome}."


async def test_vendor_refusals_are_worded_for_the_user(make_engine, contract):
    engine = make_engine()
    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIGPTImage1",
                                                   "inputs": {**NODES["OpenAIGPTImage1"], "prompt": "forbidden"}}))
    assert "content moderation: Your request was rejected by the safety system." in error_of(entry)["exception_message"]

    entry = await run_prompt(engine, with_preview({"class_type": "StabilityStableImageUltraNode",
                                                   "inputs": {**NODES["StabilityStableImageUltraNode"],
                                                              "prompt": "forbidden"}}))
    assert error_of(entry)["exception_message"] == "Stable Image Ultra generation failed: CONTENT_FILTERED."

    contract.answer_first[ROUTES["OpenAIDalle2"]] = [402]
    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIDalle2", "inputs": NODES["OpenAIDalle2"]}))
    assert error_of(entry)["exception_message"].startswith("Payment Required")

    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIDalle2", "inputs": NODES["OpenAIDalle2"]}),
                             extra_data={})  # not logged in, no key of its own
    assert error_of(entry)["exception_message"] == "Unauthorized: Please login first to use this node."

    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIDalle2", "inputs": NODES["OpenAIDalle2"]}),
                             extra_data={"auth_token_comfy_org": "someone-elses-token"})
    assert error_of(entry)["exception_message"] == "Unauthorized: Please login first to use this node."


async def test_comfy_api_key_is_sent_as_x_api_key(make_engine, contract):
    contract.api_key = "comfyui-key-0123456789"
    engine = make_engine()
    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIDalle2", "inputs": NODES["OpenAIDalle2"]}),
                             extra_data={"api_key_comfy_org": contract.api_key})
    assert entry["status"]["status_str"] == "success"
    assert contract.requests[-1]["headers"]["X-API-KEY"] == contract.api_key


async def test_openai_direct_with_own_key(make_engine, contract, tmp_path):
    """With an OpenAI key in --api-node-keys the node calls OpenAI's API (here the contract
    server's /v1) with that key and needs no Comfy login."""
    contract.openai_key = "sk-own-key-4d2c"
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"openai": {"api_key": contract.openai_key, "base_url": contract.url + "/v1"}}))
    engine = make_engine(api_node_keys=str(keys))
    entry = await run_prompt(engine, with_preview({"class_type": "OpenAIDalle2", "inputs": NODES["OpenAIDalle2"]}),
                             extra_data={})
    assert entry["status"]["status_str"] == "success", error_of(entry)
    assert contract.paths() == ["/v1/images/generations"]
    assert contract.requests[0]["headers"]["Authorization"] == f"Bearer {contract.openai_key}"


async def test_stability_creative_upscale_is_a_polled_task(make_engine, contract):
    contract.task_steps = 2
    engine = make_engine()
    prompt = with_preview({"class_type": "StabilityUpscaleCreativeNode", "inputs": NODES["StabilityUpscaleCreativeNode"]})
    prompt["3"] = IMAGE
    assert (await run_prompt(engine, prompt))["status"]["status_str"] == "success"
    submit = next(r for r in contract.requests if r["path"] == ROUTES["StabilityUpscaleCreativeNode"])
    assert Image.open(__import__("io").BytesIO(submit["files"]["image"][0])).size == (40, 24)
    assert submit["headers"]["Authorization"] == f"Bearer {TOKEN}"
    polls = [r for r in contract.requests if r["path"].startswith("/proxy/stability/v2beta/results/")]
    assert len(polls) == 3 and all(r["headers"]["Authorization"] == f"Bearer {TOKEN}" for r in polls)

    contract.task_outcome = "Content Moderated"
    entry = await run_prompt(engine, {**prompt, "1": {**prompt["1"], "inputs": {**prompt["1"]["inputs"], "seed": 2}}})
    assert error_of(entry)["exception_message"] == ("Stability Upscale Creative failed: content_moderation "
                                                    "Your request was flagged by our content moderation system")


async def test_ideogram_request_mapping_and_unsafe_images(make_engine, contract):
    engine = make_engine()
    for class_type in ("IdeogramV1", "IdeogramV2"):
        entry = await run_prompt(engine, with_preview({"class_type": class_type, "inputs": NODES[class_type]}))
        assert entry["status"]["status_str"] == "success", error_of(entry)
    v1, v2 = (r["body"].image_request for r in contract.requests if r["path"] == "/proxy/ideogram/generate")
    assert (v1.model, v1.aspect_ratio, v1.magic_prompt_option, v1.resolution) == ("V_1_TURBO", "ASPECT_16_9", "OFF", None)
    assert (v2.model, v2.resolution, v2.aspect_ratio, v2.style_type, v2.negative_prompt, v2.magic_prompt_option) == (
        "V_2", "RESOLUTION_1280_720", None, "DESIGN", "blur", None)
    entry = await run_prompt(engine, with_preview({"class_type": "IdeogramV3",
                                                   "inputs": {**NODES["IdeogramV3"], "aspect_ratio": "16:10"}}))
    assert entry["status"]["status_str"] == "success", error_of(entry)
    v3 = contract.requests[-4]["body"]  # then the three downloads
    assert (v3.aspect_ratio, v3.resolution, v3.num_images, v3.seed, v3.style_type) == ("16x10", None, 3, None, None)
    entry = await run_prompt(engine, with_preview({"class_type": "IdeogramV1",
                                                   "inputs": {**NODES["IdeogramV1"], "prompt": "forbidden"}}))
    assert error_of(entry)["exception_message"] == "Ideogram withheld the images: they were flagged as unsafe."


async def test_ideogram_v3_edit_sends_image_and_inverted_mask(make_engine, contract):
    import io

    engine = make_engine()
    half = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 20, "height": 12}}  # white = replace
    prompt = with_preview({"class_type": "IdeogramV3", "inputs": {
        **NODES["IdeogramV3"], "num_images": 1, "image": ["3", 0], "mask": ["4", 0], "character_image": ["3", 0]}})
    prompt.update({"3": IMAGE, "4": half})
    entry = await run_prompt(engine, prompt)
    assert entry["status"]["status_str"] == "success", error_of(entry)
    call = next(r for r in contract.requests if r["path"] == "/proxy/ideogram/ideogram-v3/edit")
    assert (call["body"].rendering_speed, call["body"].magic_prompt, call["body"].num_images) == ("TURBO", "ON", None)
    mask = Image.open(io.BytesIO(call["files"]["mask"][0])).convert("L")
    assert mask.size == (40, 24) and mask.getpixel((5, 5)) == 0  # Ideogram edits the black areas
    assert Image.open(io.BytesIO(call["files"]["image"][0])).size == (40, 24)
    assert len(call["files"]["character_reference_images"]) == 1

    del prompt["1"]["inputs"]["mask"]
    entry = await run_prompt(engine, prompt)
    assert error_of(entry)["exception_message"] == "Ideogram V3 image editing requires both an image AND a mask"


async def test_luma_uploads_inputs_and_polls_states(make_engine, contract):
    """Input images go to the Comfy storage first (a signed PUT, no login attached) and reach
    Luma as URLs; a LUMA_REF chain carries (image, weight) pairs; a failed generation shows
    its reason on the node."""
    import io

    engine = make_engine()
    prompt = with_preview({"class_type": "LumaImageNode", "inputs": {
        **NODES["LumaImageNode"], "image_luma_ref": ["6", 0], "character_image": ["3", 0]}})
    prompt.update({"3": IMAGE,
                   "5": {"class_type": "LumaReferenceNode", "inputs": {"image": ["3", 0], "weight": 0.25}},
                   "6": {"class_type": "LumaReferenceNode", "inputs": {"image": ["3", 0], "weight": 0.75,
                                                                        "luma_ref": ["5", 0]}}})
    entry = await run_prompt(engine, prompt)
    assert entry["status"]["status_str"] == "success", error_of(entry)
    body = next(r["body"] for r in contract.requests if r["path"] == "/proxy/luma/generations/image")
    assert [r.weight for r in body.image_ref] == [0.25, 0.75] and body.style_ref[0].weight == 0.5
    assert len(body.character_ref.identity0.images) == 1 and body.aspect_ratio == "21:9"
    assert len(contract.stored) == 4
    assert all(Image.open(io.BytesIO(b)).size == (40, 24) for b in contract.stored.values())
    puts = [r for r in contract.requests if r["method"] == "PUT"]
    assert puts and all("Authorization" not in r["headers"] for r in puts)
    polls = [r for r in contract.requests if r["path"].startswith("/proxy/luma/generations/luma-")]
    assert len(polls) == contract.task_steps + 1

    modify = with_preview({"class_type": "LumaImageModifyNode", "inputs": NODES["LumaImageModifyNode"]})
    modify["3"] = IMAGE
    contract.task_outcome = "failed"
    entry = await run_prompt(engine, modify)
    assert error_of(entry)["exception_message"] == "Luma generation failed: prompt not allowed"
    body = [r["body"] for r in contract.requests if r["path"] == "/proxy/luma/generations/image"][-1]
    assert body.modify_image_ref.weight == 0.7 and body.model == "photon-flash-1"
