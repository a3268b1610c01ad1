"""ComfyMathExpression (a formula over its growing a, b, c... inputs, evaluated by an AST walker,
never by Python's eval) and ComfySwitchNode (lazy if/else), through the engine as a queued
prompt would run them, and the evaluator alone on what the official templates write and on
what it must refuse."""
import importlib
import math
import re

import pytest

from comfyui.nodes.builtin.math_expression import evaluate


@pytest.fixture
def engine(workspace):
    from comfyui.engine.engine import Engine
    from comfyui.nodes.registry import NodeRegistry

    registry = NodeRegistry()
    for name in ["math_expression", "logic", "primitives", "preview"]:
        registry.register_module(importlib.import_module(f"comfyui.nodes.builtin.{name}"), "nodes")
    eng = Engine(registry)
    eng.start()
    yield eng
    eng.stop()


def _run(engine, prompt):
    sub = engine.submit(prompt)
    assert sub.node_errors == {}, sub.node_errors
    return engine.wait(sub.prompt_id).result(60)


# expressions of the official templates (comfyui-workflow-templates), with a=5.0, b=16, c=3
TEMPLATE_EXPRESSIONS = {
    "floor(a * b) + 1": 81, "floor (a * b + 1)": 81, "a/2": 2.5, "a * b + 1": 81,
    "max(5, round(a * 24)) + (5 - (max(5, round(a * 24)) % 17)) % 17": 124,
    "b & -8": 16, "int(b) & ~1": 16, "min(a,b)": 5, "ceil(1.5 * log2(max(a, b))) + 2": 8,
    "a % b if b > 0 else 0": 5, "(a % 4 == 1) and ((b - 1) % 4 == 0)": False, "a > 2048": False,
    "max(((b + 15) // 16) * 16, 256)": 256, "4 * ceil((a - b * c + c - 1) / 4) + 1": -39,
    "round (a * 24)": 120, "sum(values)": 24, "sum(a, b)": 21, "pow(2, c)": 8, "2 ** c": 8,
    "values[1]": 16, "b in values": True, "-a + +b": 11, "not a": False, "a >= 5 > c": True,
}


@pytest.mark.parametrize("expression", sorted(TEMPLATE_EXPRESSIONS))
def test_template_expressions(expression):
    names = {"a": 5.0, "b": 16, "c": 3}
    names["values"] = list(names.values())
    assert evaluate(expression, names) == TEMPLATE_EXPRESSIONS[expression]


@pytest.mark.parametrize("expression, message", [
    ("__import__('os')", "Unknown function '__import__'"),
    ("__import__('os').system('true')", "Unknown function '__import__('os').system'"),
    ("a.__class__", "'Attribute' is not allowed"),
    ("'x' * 10", "Only numbers"),
    ("[a] * 10 ** 9", "Operators work on numbers"),
    ("(lambda: 1)()", "Unknown function"),
    ("[x for x in values]", "'ListComp' is not allowed"),
    ("9 ** 9 ** 9", "exceeds the maximum"),
    ("pow(10, 5000)", "exceeds the maximum"),
    ("1 << 10 ** 9", "too large"),
    ("(2 ** 4000) ** 20", "too large"),
    ("a +", "Invalid math expression"),
    ("d + 1", "Unknown name 'd'"),
    ("a / 0", "division by zero"),
    ("sqrt(-a)", "math domain error"),
    ("max(a, key=abs)", "positional arguments only"),
    ("a " * 3000, "longer than"),
    ("-" * 2000 + "a", "too deeply nested"),
])
def test_refused(expression, message):
    names = {"a": 5.0, "b": 16, "c": 3}
    names["values"] = list(names.values())
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate(expression, names)


def test_boolean_operators_short_circuit():
    assert evaluate("b > 0 and a / b", {"a": 1, "b": 0}) is False
    assert evaluate("b == 0 or a / b", {"a": 1, "b": 0}) is True


def test_math_expression_node_outputs_float_int_bool(workspace, engine):
    prompt = {
        "1": {"class_type": "PrimitiveFloat", "inputs": {"value": 5.0}},
        "2": {"class_type": "PrimitiveInt", "inputs": {"value": 16}},
        "3": {"class_type": "ComfyMathExpression", "inputs": {"expression": "a * b / 3",
                                                              "values.a": ["1", 0], "values.b": ["2", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["3", 1]}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["3", 2]}},
    }
    out = _run(engine, prompt)["outputs"]
    assert float(out["4"]["text"][0]) == pytest.approx(80 / 3)
    assert out["5"]["text"] == ["26"] and out["6"]["text"] == ["True"]


def test_math_expression_errors_reach_the_history(workspace, engine):
    prompt = {
        "1": {"class_type": "PrimitiveFloat", "inputs": {"value": 5.0}},
        "2": {"class_type": "ComfyMathExpression", "inputs": {"expression": "a.__class__", "values.a": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    history = _run(engine, prompt)
    assert history["status"]["status_str"] == "error"
    error = [m for kind, m in history["status"]["messages"] if kind == "execution_error"][0]
    assert error["node_type"] == "ComfyMathExpression" and "not allowed" in error["exception_message"]


@pytest.mark.parametrize("switch", [False, True])
def test_switch_runs_only_the_branch_it_picks(workspace, engine, switch):
    """The branch not taken would fail (a division by zero); lazy inputs never run it."""
    prompt = {
        "1": {"class_type": "PrimitiveBoolean", "inputs": {"value": switch}},
        "2": {"class_type": "PrimitiveFloat", "inputs": {"value": 5.0}},
        "3": {"class_type": "ComfyMathExpression", "inputs": {"expression": "a + 1" if switch else "a / 0",
                                                              "values.a": ["2", 0]}},
        "4": {"class_type": "ComfyMathExpression", "inputs": {"expression": "a / 0" if switch else "a - 1",
                                                              "values.a": ["2", 0]}},
        "5": {"class_type": "ComfySwitchNode", "inputs": {"switch": ["1", 0], "on_true": ["3", 1],
                                                          "on_false": ["4", 1]}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
    }
    history = _run(engine, prompt)
    assert history["status"]["status_str"] == "success", history["status"]
    assert history["outputs"]["6"]["text"] == ["6" if switch else "4"]


def test_node_specs(workspace):
    from comfyui.nodes.registry import NodeRegistry
    info = NodeRegistry.with_builtins().object_info()
    math_node, switch = info["ComfyMathExpression"], info["ComfySwitchNode"]
    assert math_node["output"] == ["FLOAT", "INT", "BOOLEAN"] and math_node["category"] == "utilities"
    assert math_node["input"]["required"]["expression"][0] == "STRING"
    assert switch["category"] == "utilities/logic" and switch["input"]["required"]["switch"][0] == "BOOLEAN"
    assert switch["input"]["optional"]["on_true"][1]["lazy"] is True
    assert math.isfinite(evaluate("log10(b)", {"b": 16}))
