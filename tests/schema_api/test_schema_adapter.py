"""NodeDef behaviour of schema-API nodes: execute round-trip, NodeOutput conversion, hidden
values, lazy / validate / fingerprint mapping, dynamic inputs."""
import asyncio
import inspect

import pytest

from comfyui.engine.graph import ExecutionBlocker, GraphBuilder
from comfyui.nodes.io import io, node_def_from_schema, ui

from . import nodes


def call(node_def, **kwargs):
    return node_def.function(node_def.instance(), **kwargs)


def make(node_id, execute, outputs=1, **schema):
    """A one-off node class whose execute is ``execute(cls, **kwargs)``."""

    class Node(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id=node_id, inputs=[io.AnyType.Input("x", optional=True)],
                             outputs=[io.AnyType.Output(f"o{i}") for i in range(outputs)], **schema)

    Node.execute = classmethod(execute)
    return node_def_from_schema(Node)


def test_execute_round_trip_and_return_forms():
    assert call(node_def_from_schema(nodes.Num), value=4) == {"result": (4,)}
    assert call(make("Tup", lambda cls, x=None: (x, 2), outputs=2), x=1) == {"result": (1, 2)}
    assert call(make("Nothing", lambda cls, x=None: None, outputs=2)) == {"result": (None, None)}
    assert call(make("Empty", lambda cls, x=None: io.NodeOutput(), outputs=3)) == {"result": (None, None, None)}
    assert call(make("Dict", lambda cls, x=None: {"result": (x,), "ui": {"text": ["t"]}}), x=7) == \
        {"result": (7,), "ui": {"text": ["t"]}}
    with pytest.raises(TypeError, match="expected io.NodeOutput"):
        call(make("Bad", lambda cls, x=None: 42))


def test_ui_objects_and_dicts_become_ui_dicts():
    node = make("Ui", lambda cls, x=None: io.NodeOutput(x, ui=ui.PreviewText(f"got {x}")))
    assert call(node, x=3) == {"result": (3,), "ui": {"text": ("got 3",)}}
    raw = make("UiDict", lambda cls, x=None: io.NodeOutput(ui={"images": []}), outputs=0)
    assert call(raw) == {"result": (), "ui": {"images": []}}


def test_expand_needs_enable_expand_and_is_passed_through():
    def expanding(cls, x=None):
        graph = GraphBuilder(prefix="p.")
        n = graph.node("T_Num", value=x)
        return io.NodeOutput(n.out(0), expand=graph.finalize())

    node = make("Exp", expanding, enable_expand=True)
    assert call(node, x=5) == {"result": (["p.1", 0],),
                               "expand": {"p.1": {"class_type": "T_Num", "inputs": {"value": 5}}}}
    with pytest.raises(ValueError, match="enable_expand"):
        call(make("NoExp", expanding), x=5)


def test_block_execution_blocks_every_output():
    result = call(node_def_from_schema(nodes.Gate), value=1, open=False)
    assert list(result) == ["result"]
    assert len(result["result"]) == 2
    assert all(isinstance(b, ExecutionBlocker) and b.message == "gate closed" for b in result["result"])
    assert call(node_def_from_schema(nodes.Gate), value=1, open=True) == {"result": (1, "passed")}
    # An ExecutionBlocker returned directly means the same.
    direct = call(make("Blk", lambda cls, x=None: ExecutionBlocker(None), outputs=2))
    assert [b.message for b in direct["result"]] == [None, None]


def test_async_execute_returns_a_coroutine():
    node = node_def_from_schema(nodes.AsyncAdd)
    pending = call(node, a=2, b=3, unique_id="9")
    assert inspect.iscoroutine(pending)
    assert asyncio.run(pending) == {"result": (5,)}


def test_hidden_values_reach_cls_hidden_not_execute():
    seen = {}

    def execute(cls, x=None, **extra):
        seen.update(extra)
        seen["hidden"] = cls.hidden
        seen["cls"] = cls
        return io.NodeOutput(x)

    node = make("Hid", execute, hidden=[io.Hidden.unique_id, io.Hidden.prompt, io.Hidden.extra_pnginfo,
                                        io.Hidden.dynprompt, io.Hidden.auth_token_comfy_org,
                                        io.Hidden.api_key_comfy_org])
    assert set(node.hidden_kinds.values()) == {"UNIQUE_ID", "PROMPT", "EXTRA_PNGINFO", "DYNPROMPT",
                                               "AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"}
    prompt = {"1": {"class_type": "Hid", "inputs": {}}}
    call(node, x=1, unique_id="1", prompt=prompt, extra_pnginfo={"workflow": {}}, dynprompt="DP",
         auth_token_comfy_org="tok", api_key_comfy_org="key")
    hidden = seen.pop("hidden")
    assert seen.pop("cls") is not node.cls and issubclass(seen.pop("cls", node.cls), node.cls)
    assert seen == {}  # nothing hidden leaked into execute's kwargs
    assert (hidden.unique_id, hidden.prompt, hidden.extra_pnginfo, hidden.dynprompt) == \
        ("1", prompt, {"workflow": {}}, "DP")
    assert (hidden.auth_token_comfy_org, hidden.api_key_comfy_org, hidden.comfy_usage_source) == ("tok", "key", None)
    # The node class itself is untouched.
    assert node.cls.hidden.unique_id is None


def test_hidden_values_are_per_call_for_concurrent_async_nodes():
    seen = []

    class Slow(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Slow", inputs=[io.Float.Input("delay")], outputs=[io.String.Output()],
                             hidden=[io.Hidden.unique_id])

        @classmethod
        async def execute(cls, delay):
            before = cls.hidden.unique_id
            await asyncio.sleep(delay)
            seen.append((before, cls.hidden.unique_id))
            return io.NodeOutput(cls.hidden.unique_id)

    node = node_def_from_schema(Slow)

    async def both():
        # Both calls are made (hidden values bound) before either coroutine runs.
        first, second = call(node, delay=0.02, unique_id="A"), call(node, delay=0.0, unique_id="B")
        return await asyncio.gather(first, second)

    assert asyncio.run(both()) == [{"result": ("A",)}, {"result": ("B",)}]
    assert sorted(seen) == [("A", "A"), ("B", "B")]


def test_lazy_status_only_when_overridden_and_without_hidden():
    lazy = node_def_from_schema(nodes.LazySwitch)
    assert lazy.lazy_inputs == frozenset({"a", "b"})
    assert lazy.check_lazy_status(lazy.instance(), use_a=False, a=None, b=None) == ["b"]
    assert lazy.check_lazy_status(lazy.instance(), use_a=True, a=None, b=None) == ["a"]
    assert node_def_from_schema(nodes.Num).check_lazy_status is None

    seen = {}

    class LazyHidden(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="LH", inputs=[io.Int.Input("a", lazy=True)], hidden=[io.Hidden.unique_id])

        @classmethod
        def check_lazy_status(cls, **kwargs):
            seen.update(kwargs, uid=cls.hidden.unique_id)
            return []

        @classmethod
        def execute(cls, a):
            return io.NodeOutput()

    node = node_def_from_schema(LazyHidden)
    assert node.check_lazy_status(node.instance(), a=None, unique_id="5") == []
    assert seen == {"a": None, "uid": "5"}


def test_validate_inputs_and_fingerprint_mapping():
    picky = node_def_from_schema(nodes.Picky)
    assert picky.validate_inputs_params == frozenset({"value"})
    assert picky.validate_inputs(picky.cls, value=2) is True
    assert picky.validate_inputs(picky.cls, value=3, unique_id="7") == "value must be even, got 3 (node 7)"
    assert node_def_from_schema(nodes.Num).validate_inputs is None
    assert node_def_from_schema(nodes.Num).fingerprint is None

    class Changing(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Changing", inputs=[io.String.Input("path")], hidden=[io.Hidden.unique_id])

        @classmethod
        def validate_inputs(cls, **kwargs):
            return True

        @classmethod
        def fingerprint_inputs(cls, path):
            return f"{path}:{cls.hidden.unique_id}"

        @classmethod
        def execute(cls, path):
            return io.NodeOutput()

    node = node_def_from_schema(Changing)
    assert node.validate_inputs_params is None  # **kwargs: gets everything
    assert node.fingerprint_params == frozenset({"path"})
    assert node.fingerprint(node.cls, path="a.png", unique_id="3") == "a.png:3"


def test_dynamic_inputs_flat_views_and_nesting():
    summ = node_def_from_schema(nodes.SumAll)
    assert list(summ.required) == ["numbers.n0"]
    assert list(summ.optional) == ["numbers.n1", "numbers.n2", "numbers.n3", "numbers.n4"]
    assert summ.input_spec("numbers.n3") == ("optional", "INT", {"forceInput": True})
    assert summ.input_spec("numbers") is None
    assert call(summ, **{"numbers.n0": 1, "numbers.n2": 5}) == {"result": (6,)}

    shape = node_def_from_schema(nodes.Shape)
    assert shape.required == {"shape": ("COMBO", {"options": ["square", "rect"]})}
    assert set(shape.optional) == {"shape.side", "shape.w", "shape.h"}
    assert call(shape, shape="square", **{"shape.side": 3}) == {"result": (9, "square")}
    # Values of options that are not selected are dropped.
    assert call(shape, shape="rect", **{"shape.w": 2, "shape.h": 5, "shape.side": 100}) == {"result": (10, "rect")}
    # Validation cannot know the selected option, so execution reports its missing inputs.
    with pytest.raises(ValueError, match="'shape.h' of option 'rect' is missing"):
        call(shape, shape="rect", **{"shape.w": 2})


def test_accept_all_inputs_passes_unknown_inputs():
    class Open(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Open", accept_all_inputs=True, inputs=[io.Int.Input("a")],
                             outputs=[io.String.Output()])

        @classmethod
        def execute(cls, a, **rest):
            return io.NodeOutput(f"{a}:{sorted(rest)}")

    node = node_def_from_schema(Open)
    assert "anything" in node.optional
    assert node.input_spec("anything")[0] == "optional"
    assert call(node, a=1, zz=2, yy=3) == {"result": ("1:['yy', 'zz']",)}
