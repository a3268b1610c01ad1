"""Validation before execution, with ComfyUI's error shapes."""
import pytest

from comfyui.engine.validation import PromptError, types_compatible, validate_prompt


def errors_of(exc_info, node_id):
    return exc_info.value.node_errors[node_id]["errors"]


def validate(registry, prompt, **kw):
    return validate_prompt(prompt, registry, **kw)


def test_valid_prompt_returns_outputs(registry):
    prompt = {"1": {"class_type": "Const", "inputs": {"value": "a"}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}, "_meta": {"title": "Out"}}}
    outputs, node_errors = validate(registry, prompt)
    assert outputs == ["2"] and node_errors == {}


def test_not_a_dict_and_missing_class_type(registry):
    with pytest.raises(PromptError) as e:
        validate(registry, ["not", "a", "dict"])
    assert e.value.error["type"] == "invalid_prompt"
    with pytest.raises(PromptError) as e:
        validate(registry, {"1": {"inputs": {}}})
    assert e.value.error == {"type": "invalid_prompt",
                             "message": "Cannot execute because a node is missing the class_type property.",
                             "details": "Node ID '#1'", "extra_info": {}}


def test_unknown_class_type(registry):
    with pytest.raises(PromptError) as e:
        validate(registry, {"5": {"class_type": "NoSuchNode", "inputs": {}, "_meta": {"title": "My node"}}})
    assert e.value.error["type"] == "missing_node_type"
    assert e.value.error["message"] == "Cannot execute because node NoSuchNode does not exist."
    assert e.value.error["extra_info"] == {"node_id": "5", "class_type": "NoSuchNode", "node_title": "My node"}


def test_no_outputs(registry):
    with pytest.raises(PromptError) as e:
        validate(registry, {"1": {"class_type": "Const", "inputs": {"value": "a"}}})
    assert e.value.error == {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
                             "extra_info": {}}


def test_required_input_missing_shape(registry):
    prompt = {"1": {"class_type": "Concat", "inputs": {"b": "x"}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    with pytest.raises(PromptError) as e:
        validate(registry, prompt)
    assert e.value.error["type"] == "prompt_outputs_failed_validation"
    assert e.value.error["message"] == "Prompt outputs failed validation"
    entry = e.value.node_errors["1"]
    assert entry["class_type"] == "Concat" and entry["dependent_outputs"] == ["2"]
    assert entry["errors"] == [{"type": "required_input_missing", "message": "Required input is missing",
                                "details": "a", "extra_info": {"input_name": "a"}}]


def test_min_max_and_coercion(registry):
    def check(value):
        prompt = {"1": {"class_type": "IntConst", "inputs": {"value": value}}, "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
        try:
            validate(registry, prompt)
        except PromptError as ex:
            return [err["type"] for err in ex.node_errors["1"]["errors"]], prompt
        return [], prompt

    assert check(101)[0] == ["value_bigger_than_max"]
    assert check(-11)[0] == ["value_smaller_than_min"]
    assert check("abc")[0] == ["invalid_input_type"]
    types, prompt = check("42")
    assert types == [] and prompt["1"]["inputs"]["value"] == 42  # coerced in place


def test_wrapped_widget_values_are_unwrapped(registry):
    """The frontend sends a widget's list value as {"__value__": [...]}: the node gets the list."""
    class ListWidget:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"values": ("FLOATS", {}), "count": ("INT", {"min": 0, "max": 9})}}
        RETURN_TYPES = ()
        OUTPUT_NODE = True
        FUNCTION = "run"

        def run(self, values, count):
            return {}

    registry.register_classic("ListWidget", ListWidget)
    prompt = {"1": {"class_type": "ListWidget", "inputs": {"values": {"__value__": [0.5, 1.5]},
                                                          "count": {"__value__": "3"}}}}
    validate(registry, prompt)
    assert prompt["1"]["inputs"] == {"values": [0.5, 1.5], "count": 3}
    with pytest.raises(PromptError) as e:
        validate(registry, {"1": {"class_type": "ListWidget", "inputs": {"values": {"__value__": []},
                                                                         "count": {"__value__": 12}}}})
    assert [err["type"] for err in errors_of(e, "1")] == ["value_bigger_than_max"]


def test_value_not_in_list(registry):
    class Combo:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"choice": (["a", "b"],), "v3": ("COMBO", {"options": ["x", "y"]})}}
        RETURN_TYPES = ()
        OUTPUT_NODE = True
        FUNCTION = "run"

        def run(self, choice, v3):
            return {}

    registry.register_classic("Combo", Combo)
    with pytest.raises(PromptError) as e:
        validate(registry, {"1": {"class_type": "Combo", "inputs": {"choice": "c", "v3": "z"}}})
    errs = errors_of(e, "1")
    assert [err["type"] for err in errs] == ["value_not_in_list", "value_not_in_list"]
    assert errs[0]["message"] == "Value not in list" and errs[0]["details"] == "choice: 'c' not in ['a', 'b']"
    validate(registry, {"1": {"class_type": "Combo", "inputs": {"choice": "b", "v3": "x"}}})


def test_return_type_mismatch_and_bad_links(registry):
    prompt = {"1": {"class_type": "IntConst", "inputs": {"value": 1}},
              "2": {"class_type": "Concat", "inputs": {"a": ["1", 0], "b": ""}},
              "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    with pytest.raises(PromptError) as e:
        validate(registry, prompt)
    err = errors_of(e, "2")[0]
    assert err["type"] == "return_type_mismatch"
    assert err["details"] == "a, received_type(INT) mismatch input_type(STRING)"
    for bad in (["1", 5], ["missing", 0], ["1", 0, 3]):
        prompt["2"]["inputs"]["a"] = bad
        with pytest.raises(PromptError) as e:
            validate(registry, prompt)
        assert errors_of(e, "2")[0]["type"] == "bad_linked_input"


def test_multi_types_and_wildcard(registry):
    assert types_compatible("IMAGE", "IMAGE,MASK")
    assert types_compatible("IMAGE,LATENT", "LATENT")
    assert not types_compatible("IMAGE", "MASK")
    assert types_compatible("*", "MODEL") and types_compatible("MODEL", "*")
    from .testnodes import ANY
    assert types_compatible("ANYTHING", ANY)


def test_invalid_upstream_invalidates_output_without_own_error(registry):
    prompt = {"1": {"class_type": "IntConst", "inputs": {"value": 500}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    with pytest.raises(PromptError) as e:
        validate(registry, prompt)
    assert list(e.value.node_errors) == ["1"]
    assert e.value.node_errors["1"]["dependent_outputs"] == ["2"]


def test_partially_valid_prompt_runs_good_outputs(registry):
    prompt = {"1": {"class_type": "IntConst", "inputs": {"value": 500}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Output", "inputs": {"value": "fine"}}}
    outputs, node_errors = validate(registry, prompt)
    assert outputs == ["3"] and list(node_errors) == ["1"]


def test_validate_inputs_with_named_arguments_skips_default_checks(registry):
    def check(value, other=0):
        prompt = {"1": {"class_type": "ValidatedOnly", "inputs": {"value": value, "other": other}},
                  "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
        try:
            validate(registry, prompt)
            return []
        except PromptError as ex:
            return ex.node_errors["1"]["errors"]

    assert check(50) == []  # max 10 not enforced: VALIDATE_INPUTS asked for `value`
    assert [e["type"] for e in check(1, other=50)] == ["value_bigger_than_max"]  # `other` still checked
    errs = check(13)
    assert errs[0]["type"] == "custom_validation_failed"
    assert errs[0]["details"] == "value - 13 is unlucky"  # ComfyUI names the input it was given


def test_validate_inputs_with_input_types(registry):
    prompt = {"1": {"class_type": "Const", "inputs": {"value": "x"}},
              "2": {"class_type": "ValidatedTypes", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    validate(registry, prompt)  # STRING accepted by the custom check instead of the type check
    prompt["1"] = {"class_type": "ListOutput", "inputs": {"count": 1}}
    prompt["1"]["class_type"] = "Hidden"
    prompt["1"]["inputs"] = {}
    validate(registry, prompt)


def test_validate_inputs_with_kwargs_gets_everything(registry):
    seen = {}

    class Kw:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"a": ("INT", {"max": 1}), "b": ("STRING",)}}
        RETURN_TYPES = ()
        OUTPUT_NODE = True
        FUNCTION = "run"

        @classmethod
        def VALIDATE_INPUTS(cls, **kwargs):
            seen.update(kwargs)
            return True

        def run(self, a, b):
            return {}

    registry.register_classic("Kw", Kw)
    validate(registry, {"1": {"class_type": "Kw", "inputs": {"a": 99, "b": "s"}}})
    assert seen == {"a": 99, "b": "s"}


def test_dependency_cycle_is_reported(registry):
    prompt = {"1": {"class_type": "Concat", "inputs": {"a": ["2", 0], "b": ""}},
              "2": {"class_type": "Concat", "inputs": {"a": ["1", 0], "b": ""}},
              "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    with pytest.raises(PromptError) as e:
        validate(registry, prompt)
    types = {err["type"] for entry in e.value.node_errors.values() for err in entry["errors"]}
    assert "dependency_cycle" in types


def test_combo_file_lists_are_read_again_at_validation(registry, tmp_path):
    """A model file added after start-up validates without restarting (INPUT_TYPES re-run)."""
    folder = tmp_path / "models"
    folder.mkdir()

    class FilePicker:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"name": (sorted(p.name for p in folder.iterdir()),)}}
        RETURN_TYPES = ()
        OUTPUT_NODE = True
        FUNCTION = "run"

        def run(self, name):
            return {}

    registry.register_classic("FilePicker", FilePicker)
    prompt = {"1": {"class_type": "FilePicker", "inputs": {"name": "new.safetensors"}}}
    with pytest.raises(PromptError):
        validate(registry, prompt)
    version = registry.version
    (folder / "new.safetensors").write_bytes(b"x")
    validate(registry, prompt)
    assert registry.version > version  # object_info caches see the change
    assert registry.object_info()["FilePicker"]["input"]["required"]["name"][0] == ["new.safetensors"]


def test_async_validate_inputs_is_awaited(registry):
    prompt = lambda value: {"1": {"class_type": "AsyncValidated", "inputs": {"value": value}},  # noqa: E731
                            "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert validate(registry, prompt(5))[0] == ["2"]
    with pytest.raises(PromptError) as e:
        validate(registry, prompt(6))
    [error] = e.value.node_errors["1"]["errors"]
    assert error["type"] == "custom_validation_failed"
    assert error["details"] == "value - 6 is more than 5"


async def test_async_validate_inputs_on_an_event_loop(registry):
    from comfyui.engine.validation import validate_prompt_async

    prompt = {"1": {"class_type": "AsyncValidated", "inputs": {"value": 9}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    with pytest.raises(PromptError) as e:
        await validate_prompt_async(prompt, registry)
    assert e.value.node_errors["1"]["errors"][0]["details"] == "value - 9 is more than 5"
    # the sync entry point works from a thread whose loop is running, too
    with pytest.raises(PromptError):
        validate(registry, prompt)


def test_validate_inputs_gets_linked_inputs_as_none(registry):
    from . import testnodes

    testnodes.SEEN.clear()
    prompt = {"1": {"class_type": "Const", "inputs": {"value": "v"}},
              "2": {"class_type": "LinkedHooks", "inputs": {"a": ["1", 0], "b": "!"}},
              "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    assert validate(registry, prompt)[0] == ["3"]
    assert testnodes.SEEN["VALIDATE_INPUTS"] == {"a": None, "b": "!", "unique_id": "2"}
