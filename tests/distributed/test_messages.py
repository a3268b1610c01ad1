"""The broker's message schema: versioned JSON, validated, with a published JSON schema."""
import json

import pytest

from comfyui.distributed import messages as m


def _prompt(**over):
    body = {"v": 1, "kind": "prompt", "prompt_id": "p1", "number": 3,
            "prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}}}}
    body.update(over)
    return json.dumps(body).encode()


def test_published_schema_is_the_models_schema():
    assert json.loads(m.SCHEMA_PATH.read_text()) == json.loads(json.dumps(m.json_schema())), \
        "run python -m comfyui.distributed.messages to publish the changed schema"


def test_every_kind_round_trips():
    samples = [
        m.PromptMessage(prompt_id="a", prompt={"1": m.Node(class_type="X", inputs={"n": [1, 2]})}, number=-2.5,
                        client_id="c", extra_data={"create_time": 5}, outputs=["1"], checkpoints=["a.safetensors"]),
        m.EventMessage(prompt_id="a", event="progress", data={"value": 1, "max": 4}, worker_id="w"),
        m.ResultMessage(prompt_id="a", status="completed", worker_id="w"),
        m.ControlMessage(action="interrupt"),
        m.WorkerMessage(worker_id="w", state="ready", running=["a"], checkpoints=["b.safetensors"]),
    ]
    for message in samples:
        assert m.decode(m.encode(message)) == message


@pytest.mark.parametrize("body, reason", [
    (b"\x80garbage", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (_prompt(v=2), "unsupported message version 2"),
    (b'{"kind": "prompt"}', "unsupported message version None"),
    (_prompt(kind="pickle"), "does not match any of the expected tags"),
    (_prompt(prompt_id=""), "prompt_id"),
    (_prompt(number="3"), "number"),
    (_prompt(prompt={"1": {"inputs": {}}}), "class_type"),
    (_prompt(prompt=[]), "prompt"),
    (_prompt(extra="field"), "extra"),
    (json.dumps({"v": 1, "kind": "control", "action": "format_disk"}).encode(), "action"),
])
def test_bad_messages_are_refused_with_a_reason(body, reason):
    with pytest.raises(m.BadMessage) as e:
        m.decode(body)
    assert reason in e.value.reason


def test_the_schema_forbids_unknown_fields_and_names_every_kind():
    schema = m.json_schema()
    kinds = {d["properties"]["kind"]["const"] for d in schema["$defs"].values() if "kind" in d.get("properties", {})}
    assert kinds == {"prompt", "event", "result", "control", "worker"}
    assert all(d.get("additionalProperties") is False for name, d in schema["$defs"].items() if name != "Node")
