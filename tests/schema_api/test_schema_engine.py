"""Schema-API nodes run end to end through the real Engine."""
import pytest

from comfyui.engine.engine import Engine
from comfyui.engine.validation import PromptError
from comfyui.nodes.registry import NodeRegistry

from . import nodes


@pytest.fixture
def engine():
    reg = NodeRegistry()
    reg.register_extension(nodes.Extension(), "custom_nodes.schema_pack")
    eng = Engine(reg)
    eng.events = []
    eng.add_listener(lambda event, data, client: eng.events.append((event, data)))
    eng.start()
    nodes.CALLS.clear()
    yield eng
    eng.stop()


def run(engine, prompt, **kwargs):
    submitted = engine.submit(prompt, **kwargs)
    return engine.wait(submitted.prompt_id).result(20)


def errors(entry):
    return [data for event, data in entry["status"]["messages"] if event == "execution_error"]


def test_expansion_async_hidden_and_ui_through_the_engine(engine):
    prompt = {
        "1": {"class_type": "T_Num", "inputs": {"value": 21}},
        "2": {"class_type": "T_Double", "inputs": {"x": ["1", 0]}},
        "3": {"class_type": "T_Show", "inputs": {"value": ["2", 0]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success", errors(entry)
    assert list(entry["outputs"]) == ["3"] and list(entry["outputs"]["3"]["text"]) == ["42@3"]
    assert nodes.CALLS == {"T_Num": 1, "T_Double": 1, "T_AsyncAdd": 1, "T_Show": 1}
    executed = [d for e, d in engine.events if e == "executed"]
    assert [d["node"] for d in executed] == ["3"]
    # Unchanged prompt: everything cached, the output node's ui is sent again.
    nodes.CALLS.clear()
    entry = run(engine, prompt)
    assert nodes.CALLS == {} and list(entry["outputs"]) == ["3"]


def test_lazy_inputs_only_run_the_selected_branch(engine):
    prompt = {
        "1": {"class_type": "T_Num", "inputs": {"value": 1}},
        "2": {"class_type": "T_AsyncAdd", "inputs": {"a": ["1", 0], "b": 100}},
        "3": {"class_type": "T_LazySwitch", "inputs": {"use_a": False, "a": ["2", 0], "b": ["1", 0]}},
        "4": {"class_type": "T_Show", "inputs": {"value": ["3", 0]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success", errors(entry)
    assert list(entry["outputs"]["4"]["text"]) == ["1@4"]
    assert "T_AsyncAdd" not in nodes.CALLS and nodes.CALLS["T_LazySwitch"] == 1


def test_validate_inputs_rejects_the_prompt(engine):
    bad = {
        "1": {"class_type": "T_Picky", "inputs": {"value": 3}},
        "2": {"class_type": "T_Show", "inputs": {"value": ["1", 0]}},
    }
    with pytest.raises(PromptError) as info:
        engine.submit(bad)
    messages = [e["details"] for e in info.value.node_errors["1"]["errors"]]
    assert any("value must be even, got 3 (node 1)" in m for m in messages), info.value.node_errors
    good = dict(bad, **{"1": {"class_type": "T_Picky", "inputs": {"value": 4}}})
    assert list(run(engine, good)["outputs"]["2"]["text"]) == ["4@2"]


def test_block_execution_stops_downstream(engine):
    prompt = {
        "1": {"class_type": "T_Gate", "inputs": {"value": "v", "open": False}},
        "2": {"class_type": "T_Show", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "T_Show", "inputs": {"value": "independent"}},
    }
    entry = run(engine, prompt)
    assert "T_Show" in nodes.CALLS and nodes.CALLS["T_Show"] == 1
    assert list(entry["outputs"]) == ["3"]
    assert any("gate closed" in e["exception_message"] for e in errors(entry))


def test_dynamic_inputs_through_the_engine(engine):
    prompt = {
        "1": {"class_type": "T_Num", "inputs": {"value": 5}},
        "2": {"class_type": "T_SumAll", "inputs": {"numbers.n0": ["1", 0], "numbers.n1": ["1", 0],
                                                   "numbers.n3": 7}},
        "3": {"class_type": "T_Show", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "T_Shape", "inputs": {"shape": "rect", "shape.w": 3, "shape.h": ["1", 0]}},
        "5": {"class_type": "T_Show", "inputs": {"value": ["4", 0]}},
        "6": {"class_type": "T_Show", "inputs": {"value": ["4", 1]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success", errors(entry)
    assert list(entry["outputs"]["3"]["text"]) == ["17@3"]
    assert list(entry["outputs"]["5"]["text"]) == ["15@5"]
    assert list(entry["outputs"]["6"]["text"]) == ["rect@6"]
    # A required autogrow slot that is missing is a validation error.
    with pytest.raises(PromptError) as info:
        engine.submit({"2": {"class_type": "T_SumAll", "inputs": {"numbers.n1": 1}},
                       "3": {"class_type": "T_Show", "inputs": {"value": ["2", 0]}}})
    assert "2" in info.value.node_errors
    # An unknown combo key is a validation error too.
    with pytest.raises(PromptError):
        engine.submit({"4": {"class_type": "T_Shape", "inputs": {"shape": "circle"}},
                       "5": {"class_type": "T_Show", "inputs": {"value": ["4", 0]}}})


def test_output_lists_and_input_lists(engine):
    prompt = {
        "1": {"class_type": "T_Fan", "inputs": {"count": 4}},
        "2": {"class_type": "T_AsyncAdd", "inputs": {"a": ["1", 0], "b": 10}},  # runs once per item
        "3": {"class_type": "T_Collect", "inputs": {"values": ["2", 0]}},  # gets the whole list
        "4": {"class_type": "T_Show", "inputs": {"value": ["3", 0]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success", errors(entry)
    assert list(entry["outputs"]["4"]["text"]) == ["10,11,12,13#3@4"]
    assert nodes.CALLS["T_AsyncAdd"] == 4 and nodes.CALLS["T_Collect"] == 1


def test_lazy_dynamic_inputs_use_flat_names(engine):
    prompt = {
        "1": {"class_type": "T_Num", "inputs": {"value": 8}},
        "2": {"class_type": "T_AsyncAdd", "inputs": {"a": ["1", 0], "b": 1}},
        "3": {"class_type": "T_FirstOf", "inputs": {"values.v0": ["1", 0], "values.v1": ["2", 0]}},
        "4": {"class_type": "T_Show", "inputs": {"value": ["3", 0]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success", errors(entry)
    assert list(entry["outputs"]["4"]["text"]) == ["8@4"]
    assert "T_AsyncAdd" not in nodes.CALLS  # values.v1 was never requested


def test_comfy_api_set_progress_reports_progress_and_previews(engine):
    prompt = {
        "1": {"class_type": "T_Steps", "inputs": {"steps": 3}},
        "2": {"class_type": "T_Show", "inputs": {"value": ["1", 0]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success", errors(entry)
    progress = [(d["value"], d["max"], d["node"]) for e, d in engine.events if e == "progress"]
    assert progress == [(1, 3, "1"), (2, 3, "1"), (3, 3, "1"), (3, 3, "1")]
    previews = [d for e, d in engine.events if e == "preview_image"]
    assert len(previews) == 1 and previews[0]["metadata"]["node_id"] == "1"
    assert previews[0]["image"].size == (4, 4)
