"""Execution semantics: only what outputs need, lazy inputs, expansion, lists, blockers,
async nodes, hidden inputs, events, errors and interrupts."""
import time

from . import testnodes
from .conftest import run


def out(entry, node):
    return entry["outputs"][node]["text"]


def test_only_needed_nodes_run_and_outputs_in_history(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "a"}},
        "2": {"class_type": "Concat", "inputs": {"a": ["1", 0], "b": "b"}},
        "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "Const", "inputs": {"value": "unused"}},  # not needed by any output
    }
    entry = run(engine, prompt)
    assert entry["status"] == {"status_str": "success", "completed": True, "messages": entry["status"]["messages"]}
    assert out(entry, "3") == ["ab"]
    assert testnodes.CALLS == {"Const": 1, "Concat": 1, "Output": 1}
    assert entry["prompt"][1] and entry["prompt"][4] == ["3"]


def test_partial_execution_targets_run_only_named_outputs(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "a"}},
        "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Output", "inputs": {"value": "other"}},
    }
    entry = run(engine, prompt, partial_execution_targets=["3"])
    assert list(entry["outputs"]) == ["3"]


def test_event_sequence_and_client_routing(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "a"}},
        "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}},
    }
    run(engine, prompt, client_id="c1")
    rec = engine.recorder
    names = rec.names("status", "execution_start", "execution_cached", "executing", "executed", "execution_success")
    assert names[0] == "status"
    core = [n for n in names if n != "status"]
    assert core == ["execution_start", "execution_cached", "executing", "executing", "executed",
                    "execution_success", "executing"]
    # the last executing is node None, after the final status broadcast
    assert rec.of("executing")[-1]["node"] is None
    last_status = max(i for i, (e, _, _) in enumerate(rec.events) if e == "status")
    last_exec = max(i for i, (e, _, _) in enumerate(rec.events) if e == "executing")
    assert last_status < last_exec
    for event, data, client in rec.events:
        if event == "status":
            assert client is None
            assert "queue_remaining" in data["status"]["exec_info"]
        else:
            assert client == "c1"
    executed = rec.of("executed")[0]
    assert executed == {"node": "2", "display_node": "2", "output": {"text": ["a"]},
                        "prompt_id": executed["prompt_id"]}


def test_classic_cache_reuses_unchanged_and_reports_cached(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "a"}},
        "2": {"class_type": "Concat", "inputs": {"a": ["1", 0], "b": "b"}},
        "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}},
    }
    run(engine, prompt)
    engine.recorder.clear()
    entry = run(engine, prompt)
    assert sorted(engine.recorder.of("execution_cached")[0]["nodes"]) == ["1", "2", "3"]
    assert testnodes.CALLS == {"Const": 1, "Concat": 1, "Output": 1}
    # cached output nodes still report their UI
    assert out(entry, "3") == ["ab"]
    assert engine.recorder.of("executed")[0]["output"] == {"text": ["ab"]}
    # change the middle: upstream stays cached, downstream reruns
    prompt["2"]["inputs"]["b"] = "c"
    entry = run(engine, prompt)
    assert out(entry, "3") == ["ac"]
    assert testnodes.CALLS == {"Const": 1, "Concat": 2, "Output": 2}


def test_classic_cache_keeps_only_last_prompt(engine):
    p1 = {"1": {"class_type": "Const", "inputs": {"value": "one"}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    p2 = {"1": {"class_type": "Const", "inputs": {"value": "two"}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    run(engine, p1)
    run(engine, p2)
    run(engine, p1)
    assert testnodes.CALLS["Const"] == 3


def test_lru_cache_keeps_older_prompts(make_engine):
    engine = make_engine(cache="lru", cache_size=10)
    p1 = {"1": {"class_type": "Const", "inputs": {"value": "one"}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    p2 = {"1": {"class_type": "Const", "inputs": {"value": "two"}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    run(engine, p1)
    run(engine, p2)
    run(engine, p1)
    assert testnodes.CALLS["Const"] == 2


def test_lru_cache_evicts_beyond_size(make_engine):
    engine = make_engine(cache="lru", cache_size=2)
    prompts = [{"1": {"class_type": "Const", "inputs": {"value": v}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
               for v in ("a", "b", "c")]
    for p in prompts:
        run(engine, p)
    run(engine, prompts[0])
    assert testnodes.CALLS["Const"] == 4


def test_cache_none_reruns_everything(make_engine):
    engine = make_engine(cache="none")
    p = {"1": {"class_type": "Const", "inputs": {"value": "a"}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    run(engine, p)
    run(engine, p)
    assert testnodes.CALLS["Const"] == 2


def test_is_changed_nan_always_reruns(engine):
    p = {"1": {"class_type": "AlwaysChanged", "inputs": {"value": "a"}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    run(engine, p)
    run(engine, p)
    assert testnodes.CALLS["AlwaysChanged"] == 2
    assert testnodes.CALLS["Output"] == 2


def test_lazy_inputs_only_evaluate_what_is_requested(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "A"}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},  # would fail if evaluated
        "3": {"class_type": "LazyMix", "inputs": {"a": ["1", 0], "b": ["2", 0], "use_a": True}},
        "4": {"class_type": "Output", "inputs": {"value": ["3", 0]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success"
    assert out(entry, "4") == ["A"]
    assert testnodes.CALLS["check_lazy_status"] >= 2  # asked again after `a` arrived


def test_lazy_input_requested_failure_is_reported(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "A"}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "LazyMix", "inputs": {"a": ["1", 0], "b": ["2", 0], "use_a": False}},
        "4": {"class_type": "Output", "inputs": {"value": ["3", 0]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "error"
    err = engine.recorder.of("execution_error")[0]
    assert err["node_id"] == "2" and err["node_type"] == "Fail"


def test_node_expansion_runs_subgraph_and_caches_each_node(engine):
    prompt = {
        "1": {"class_type": "Expand", "inputs": {"text": "x", "suffix": "!"}},
        "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}},
    }
    entry = run(engine, prompt)
    assert out(entry, "2") == ["x!"]
    assert testnodes.CALLS == {"Expand": 1, "Const": 1, "Concat": 1, "Output": 1}
    executing = [d["node"] for d in engine.recorder.of("executing") if d["node"]]
    # deterministic ids: <parent>.<call index>.<graph index>.<local id>
    assert "1.0.0.1" in executing and "1.0.0.2" in executing
    displays = {d["node"]: d["display_node"] for d in engine.recorder.of("executing") if d["node"]}
    assert displays["1.0.0.2"] == "1"
    # change only the suffix: the expanding node reruns, the inner Const stays cached
    prompt["1"]["inputs"]["suffix"] = "?"
    entry = run(engine, prompt)
    assert out(entry, "2") == ["x?"]
    assert testnodes.CALLS["Expand"] == 2 and testnodes.CALLS["Const"] == 1 and testnodes.CALLS["Concat"] == 2


def test_list_outputs_map_and_input_is_list(engine):
    prompt = {
        "1": {"class_type": "ListOutput", "inputs": {"count": 3}},
        "2": {"class_type": "Concat", "inputs": {"a": ["1", 0], "b": "-x"}},
        "3": {"class_type": "JoinList", "inputs": {"values": ["2", 0], "sep": "+"}},
        "4": {"class_type": "Output", "inputs": {"value": ["3", 0]}},
        "5": {"class_type": "Output", "inputs": {"value": ["2", 0]}},
    }
    entry = run(engine, prompt)
    assert out(entry, "4") == ["item0-x+item1-x+item2-x"]
    # a non-list output node runs once per item; its UI lists merge
    assert out(entry, "5") == ["item0-x", "item1-x", "item2-x"]


def test_shorter_list_repeats_last_item(engine):
    prompt = {
        "1": {"class_type": "ListOutput", "inputs": {"count": 3}},
        "2": {"class_type": "ListOutput", "inputs": {"count": 1}},
        "3": {"class_type": "Concat", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Output", "inputs": {"value": ["3", 0]}},
    }
    entry = run(engine, prompt)
    assert out(entry, "4") == ["item0item0", "item1item0", "item2item0"]


def test_silent_execution_blocker_skips_downstream(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "a"}},
        "2": {"class_type": "Blocker", "inputs": {"value": ["1", 0], "block": True, "message": ""}},
        "3": {"class_type": "Concat", "inputs": {"a": ["2", 0], "b": "b"}},
        "4": {"class_type": "Output", "inputs": {"value": ["3", 0]}},
        "5": {"class_type": "Output", "inputs": {"value": ["1", 0]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success"
    assert "4" not in entry["outputs"] and out(entry, "5") == ["a"]
    assert "Concat" not in testnodes.CALLS
    assert engine.recorder.of("execution_error") == []


def test_execution_blocker_with_message_reports_error(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "a"}},
        "2": {"class_type": "Blocker", "inputs": {"value": ["1", 0], "block": True, "message": "no VAE in model"}},
        "3": {"class_type": "Concat", "inputs": {"a": ["2", 0], "b": "b"}},
        "4": {"class_type": "Output", "inputs": {"value": ["3", 0]}},
    }
    run(engine, prompt)
    errors = engine.recorder.of("execution_error")
    assert len(errors) == 1
    assert errors[0]["node_id"] == "3"
    assert errors[0]["exception_message"] == "Execution Blocked: no VAE in model"
    assert errors[0]["exception_type"] == "ExecutionBlocked"
    assert "Concat" not in testnodes.CALLS


def test_async_nodes_run_concurrently(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "a"}},
        "2": {"class_type": "Sleep", "inputs": {"value": ["1", 0], "seconds": 0.4}},
        "3": {"class_type": "Sleep", "inputs": {"value": ["1", 0], "seconds": 0.4}},
        "4": {"class_type": "Concat", "inputs": {"a": ["2", 0], "b": ["3", 0]}},
        "5": {"class_type": "Output", "inputs": {"value": ["4", 0]}},
    }
    start = time.perf_counter()
    entry = run(engine, prompt)
    elapsed = time.perf_counter() - start
    assert out(entry, "5") == ["aa"]
    assert elapsed < 0.75, f"two 0.4 s async nodes took {elapsed:.2f} s: not concurrent"


def test_hidden_inputs(engine):
    prompt = {"7": {"class_type": "Hidden", "inputs": {}}, "8": {"class_type": "Output", "inputs": {"value": ["7", 0]}}}
    entry = run(engine, prompt, extra_data={"extra_pnginfo": {"workflow": 1}})
    assert out(entry, "8") == ["7|['7', '8']|{'workflow': 1}|DynamicPrompt"]


def test_dynamic_optional_inputs_and_raw_link(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "v"}},
        "2": {"class_type": "DynamicInputs", "inputs": {"anything": ["1", 0], "more": 5}},
        "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "RawLink", "inputs": {"link": ["1", 0]}},
        "5": {"class_type": "Output", "inputs": {"value": ["4", 0]}},
    }
    entry = run(engine, prompt)
    assert out(entry, "3") == ["anything=v,more=5"]
    assert out(entry, "5") == ["['1', 0]"]
    assert "Const" not in testnodes.CALLS or testnodes.CALLS["Const"] == 1


def test_error_payload_and_cache_not_poisoned(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "a"}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}},
    }
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    err = engine.recorder.of("execution_error")[0]
    assert err["node_id"] == "2" and err["node_type"] == "Fail"
    assert err["exception_message"] == "boom a" and err["exception_type"] == "ValueError"
    assert err["executed"] == ["1"] and err["current_inputs"] == {"value": ["a"]}
    assert any("raise ValueError" in line for line in err["traceback"])
    assert ["execution_error", err] in entry["status"]["messages"]
    engine.recorder.clear()
    run(engine, prompt)  # the failed node runs again; its upstream is cached
    assert engine.recorder.of("execution_cached")[0]["nodes"] == ["1"]
    assert len(engine.recorder.of("execution_error")) == 1


def test_progress_events_and_interrupt(engine):
    prompt = {
        "1": {"class_type": "Const", "inputs": {"value": "a"}},
        "2": {"class_type": "Slow", "inputs": {"value": ["1", 0], "steps": 200, "delay": 0.01}},
        "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}},
    }
    result = engine.submit(prompt)
    deadline = time.time() + 5
    while not engine.recorder.of("progress") and time.time() < deadline:
        time.sleep(0.01)
    progress = engine.recorder.of("progress")[0]
    assert progress["node"] == "2" and progress["max"] == 200 and progress["prompt_id"] == result.prompt_id
    assert engine.interrupt("not-this-prompt") is False
    assert engine.interrupt(result.prompt_id) is True
    entry = engine.wait(result.prompt_id).result(5)
    interrupted = engine.recorder.of("execution_interrupted")[0]
    assert interrupted["node_id"] == "2" and interrupted["node_type"] == "Slow" and interrupted["executed"] == ["1"]
    assert entry["status"]["status_str"] == "error"
    assert engine.recorder.of("execution_success") == []


def test_queue_priority_front_and_delete(engine):
    blocker = {"1": {"class_type": "Const", "inputs": {"value": "a"}},
               "2": {"class_type": "Slow", "inputs": {"value": ["1", 0], "steps": 30, "delay": 0.01}},
               "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    first = engine.submit(blocker)
    deadline = time.time() + 5
    while engine.running_prompt_id != first.prompt_id and time.time() < deadline:
        time.sleep(0.005)
    order = []
    engine.add_listener(lambda e, d, c: order.append(d["prompt_id"]) if e == "execution_start" else None)
    p = lambda v: {"1": {"class_type": "Output", "inputs": {"value": v}}}  # noqa: E731
    a = engine.submit(p("a"))
    b = engine.submit(p("b"))
    c = engine.submit(p("c"), front=True)
    running, pending = engine.get_queue()
    assert [i[1] for i in pending] == [c.prompt_id, a.prompt_id, b.prompt_id]
    assert c.number < 0 < a.number < b.number
    engine.delete_pending([b.prompt_id])
    for r in (first, a, c):
        engine.wait(r.prompt_id).result(10)
    assert [i for i in order if i != first.prompt_id] == [c.prompt_id, a.prompt_id]
    assert b.prompt_id not in engine.get_history()
    assert engine.queue_remaining() == 0


def test_history_views(engine):
    ids = []
    for v in "abc":
        ids.append(engine.submit({"1": {"class_type": "Output", "inputs": {"value": v}}}).prompt_id)
    for i in ids:
        engine.wait(i).result(5)
    assert list(engine.get_history()) == ids
    assert list(engine.get_history(max_items=2)) == ids[1:]
    assert list(engine.get_history(max_items=1, offset=0)) == ids[:1]
    assert engine.get_history_item(ids[0])["outputs"]["1"] == {"text": ["a"]}
    engine.delete_history([ids[0]])
    assert engine.get_history_item(ids[0]) is None
    engine.clear_history()
    assert engine.get_history() == {}


def test_client_prompt_id_is_idempotent(engine):
    p = {"1": {"class_type": "Const", "inputs": {"value": "a"}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    r1 = engine.submit(p, prompt_id="my-id")
    engine.wait("my-id").result(5)
    r2 = engine.submit(p, prompt_id="my-id")
    assert r1.prompt_id == r2.prompt_id == "my-id" and r2.duplicate
    time.sleep(0.1)
    assert testnodes.CALLS["Output"] == 1


def test_secrets_are_not_stored(engine):
    class Capture:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}, "hidden": {"key": "API_KEY_COMFY_ORG"}}
        RETURN_TYPES = ()
        OUTPUT_NODE = True
        FUNCTION = "run"

        def run(self, key):
            return {"ui": {"text": [key]}}

    engine.registry.register_classic("Capture", Capture)
    entry = run(engine, {"1": {"class_type": "Capture", "inputs": {}}},
                extra_data={"api_key_comfy_org": "sekrit", "other": 1})
    assert entry["outputs"]["1"] == {"text": ["sekrit"]}  # the node received it
    assert "sekrit" not in repr(entry["prompt"])  # history did not keep it
    assert entry["prompt"][3]["other"] == 1


def test_deep_chain_does_not_hit_recursion_limit(engine):
    n = 3000
    prompt = {"0": {"class_type": "Const", "inputs": {"value": "x"}}}
    for i in range(1, n + 1):
        prompt[str(i)] = {"class_type": "Concat", "inputs": {"a": [str(i - 1), 0], "b": ""}}
    prompt["out"] = {"class_type": "Output", "inputs": {"value": [str(n), 0]}}
    entry = run(engine, prompt, timeout=60)
    assert out(entry, "out") == ["x"]


def test_finished_prompts_leave_nothing_for_the_cyclic_collector(engine):
    """A run's objects (node outputs included) are freed as soon as it ends, by reference
    counting, not whenever Python's cyclic collector next runs."""
    import gc

    prompt = lambda i: {"1": {"class_type": "Const", "inputs": {"value": f"v{i}"}},  # noqa: E731
                        "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    run(engine, prompt(-1))
    gc.collect()
    gc.disable()
    try:
        for i in range(20):
            run(engine, prompt(i))
        assert gc.collect() < 20  # was ~30 objects per prompt while a run held a cycle
    finally:
        gc.enable()


def errors(entry):
    return [data for event, data in entry["status"]["messages"] if event == "execution_error"]


def test_async_check_lazy_status_is_awaited(engine):
    prompt = {"1": {"class_type": "Const", "inputs": {"value": "A"}},
              "2": {"class_type": "Const", "inputs": {"value": "B"}},
              "3": {"class_type": "AsyncLazy", "inputs": {"a": ["1", 0], "b": ["2", 0], "use_a": False}},
              "4": {"class_type": "Output", "inputs": {"value": ["3", 0]}}}
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success", errors(entry)
    assert out(entry, "4") == ["B"]
    assert testnodes.CALLS["Const"] == 1  # "A" was never asked for


def test_expansion_that_forms_a_cycle_fails_on_the_expanding_node(engine):
    """ComfyUI blames the node whose expansion made the cycle; the engine keeps serving."""
    prompt = {"1": {"class_type": "Const", "inputs": {"value": "x"}},
              "2": {"class_type": "ExpandCycle", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    entry = run(engine, prompt, timeout=10)
    assert entry["status"]["status_str"] == "error"
    [error] = errors(entry)
    assert error["node_id"] == "2" and error["node_type"] == "ExpandCycle"
    assert "Dependency cycle" in error["exception_message"]
    assert error["exception_type"].endswith("DependencyCycleError")
    after = {"1": {"class_type": "Const", "inputs": {"value": "next"}},
             "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert out(run(engine, after, timeout=10), "2") == ["next"]


def test_raw_link_inputs_are_part_of_the_cache_signature(engine):
    """A node handed a raw link reads what the linked node is in this prompt: when that node
    changes, the cached output of the previous run must not be reused (for-loops)."""
    def prompt(value):
        return {"1": {"class_type": "Const", "inputs": {"value": value}},
                "2": {"class_type": "RawLinkExpand", "inputs": {"link": ["1", 0]}},
                "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}

    assert out(run(engine, prompt("first")), "3") == ["first"]
    assert out(run(engine, prompt("second")), "3") == ["second"]
    assert testnodes.CALLS["RawLinkExpand"] == 2
    run(engine, prompt("second"))  # unchanged: cached
    assert testnodes.CALLS["RawLinkExpand"] == 2


def test_raw_link_cycle_still_gets_a_signature(engine):
    """A raw link may point back at its own node (validation ignores raw links for cycles)."""
    prompt = {"1": {"class_type": "RawLink", "inputs": {"link": ["1", 0]}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert out(run(engine, prompt, timeout=10), "2") == ["['1', 0]"]


def test_is_changed_gets_linked_inputs_as_none(engine):
    testnodes.SEEN.clear()
    prompt = {"1": {"class_type": "Const", "inputs": {"value": "v"}},
              "2": {"class_type": "LinkedHooks", "inputs": {"a": ["1", 0], "b": "!"}},
              "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    entry = run(engine, prompt)
    assert entry["status"]["status_str"] == "success", errors(entry)
    assert out(entry, "3") == ["v!"]
    assert testnodes.SEEN["IS_CHANGED"] == {"a": None, "b": "!"}


def test_cyclic_garbage_is_collected_while_a_prompt_runs(engine):
    entry = run(engine, {"1": {"class_type": "CyclicGarbage", "inputs": {"count": 20000}},
                         "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}})
    assert out(entry, "2") == ["gc enabled=True first freed=True"]
