"""GET /prompt/{id}/events: a request's progress as Server-Sent Events, until the job ends."""
from __future__ import annotations

import asyncio
import json

from api_helpers import image_prompt


def steps_prompt(steps: int = 5, fail: bool = False) -> dict:
    prompt = image_prompt()
    prompt["2"]["inputs"]["images"] = ["4", 0]
    prompt["3"] = {"class_type": "ApiTestSlowImage", "inputs": {"images": ["1", 0], "seconds": 0.6}}
    prompt["4"] = {"class_type": "ApiTestStepsImage", "inputs": {"images": ["3", 0], "steps": steps,
                                                                 "step_seconds": 0.02}}
    if fail:
        prompt["5"] = {"class_type": "ApiTestFailImage", "inputs": {"images": ["4", 0], "fail": True,
                                                                    "message": "broken on purpose"}}
        prompt["2"]["inputs"]["images"] = ["5", 0]
    return prompt


async def read_events(resp) -> list[tuple[str, dict]]:
    """Every SSE event until the server ends the stream."""
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    text = (await asyncio.wait_for(resp.read(), 20)).decode()
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if lines:
            fields = dict(line.split(": ", 1) for line in lines)
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def _open_when_submitted(api, request_id: str):
    for _ in range(200):
        resp = await api.client.get(f"/prompt/{request_id}/events")
        if resp.status != 404:
            return resp
        await asyncio.sleep(0.01)
    raise AssertionError("the request never became known")


async def test_events_follow_a_multi_step_prompt_until_it_completes(api):
    run = asyncio.create_task(api.post({"id": "follow-me", "prompt": steps_prompt(5)}))
    events = await read_events(await _open_when_submitted(api, "follow-me"))
    status, answer = await run
    assert status == 200
    names = [name for name, _ in events]
    assert names[0] == "status" and events[0][1]["id"] == "follow-me"
    assert events[0][1]["status"] in ("queued", "running")
    assert events[0][1]["prompt_id"] == answer["prompt_id"]
    steps = [(data["value"], data["max"]) for name, data in events if name == "progress" and data["node"] == "4"]
    assert steps == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert ("executing", "4") in [(name, data.get("node")) for name, data in events]
    executed = [data for name, data in events if name == "executed"]
    assert executed and executed[-1]["node"] == "2" and executed[-1]["output"]["images"]
    assert all(data.get("prompt_id") == answer["prompt_id"] for name, data in events[1:-1])
    assert names[-1] == "complete" and names.index("complete") == len(names) - 1
    assert events[-1][1]["outputs"]["2"]["images"][0]["filename"] == answer["filenames"][0]


async def test_events_end_with_failed_and_the_error(api):
    run = asyncio.create_task(api.post({"id": "doomed", "prompt": steps_prompt(2, fail=True)}))
    events = await read_events(await _open_when_submitted(api, "doomed"))
    assert (await run)[0] == 500
    name, data = events[-1]
    assert name == "failed" and data["error"]["message"] == "broken on purpose"
    assert data["error"]["extra_info"]["node_id"] == "5"


async def test_events_of_a_finished_request_and_of_an_unknown_one(api):
    status, answer = await api.post({"id": "done-already", "prompt": image_prompt()})
    assert status == 200
    for key in ("done-already", answer["prompt_id"]):
        events = await read_events(await api.client.get(f"/prompt/{key}/events"))
        assert [name for name, _ in events] == ["status", "complete"]
        assert events[0][1]["status"] == "done" and events[1][1]["prompt_id"] == answer["prompt_id"]
    missing = await api.client.get("/prompt/nobody/events")
    assert missing.status == 404 and (await missing.json())["error"]["type"] == "not_found"
