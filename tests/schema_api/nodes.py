"""Schema-API (io.ComfyNode) test nodes shared by the schema_api tests."""
from __future__ import annotations

import asyncio
import threading
from enum import Enum

from comfyui.engine.graph import GraphBuilder
from comfyui.nodes.io import ComfyAPI, ComfyAPISync, ComfyExtension, io, ui

CALLS: dict[str, int] = {}
_lock = threading.Lock()


def _count(name: str) -> None:
    with _lock:
        CALLS[name] = CALLS.get(name, 0) + 1


class Color(Enum):
    red = "red"
    green = "green"


class Num(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_Num", display_name="Number", category="testing",
                         inputs=[io.Int.Input("value", default=1, min=-100, max=100)],
                         outputs=[io.Int.Output(tooltip="the number")])

    @classmethod
    def execute(cls, value):
        _count("T_Num")
        return io.NodeOutput(value)


class AsyncAdd(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_AsyncAdd", category="testing",
                         inputs=[io.Int.Input("a", force_input=True), io.Int.Input("b", default=0)],
                         outputs=[io.Int.Output("sum")], hidden=[io.Hidden.unique_id])

    @classmethod
    async def execute(cls, a, b):
        _count("T_AsyncAdd")
        seen = cls.hidden.unique_id
        await asyncio.sleep(0.01)
        assert cls.hidden.unique_id == seen
        return io.NodeOutput(a + b)


class Double(io.ComfyNode):
    """Expands into a T_AsyncAdd of its input with itself."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_Double", category="testing", enable_expand=True,
                         inputs=[io.Int.Input("x", force_input=True)], outputs=[io.Int.Output()])

    @classmethod
    def execute(cls, x):
        _count("T_Double")
        graph = GraphBuilder()
        add = graph.node("T_AsyncAdd", a=x, b=x)
        return io.NodeOutput(add.out(0), expand=graph.finalize())


class Show(io.ComfyNode):
    """Output node: shows "<value>@<unique_id>" as text."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_Show", category="testing", is_output_node=True,
                         inputs=[io.AnyType.Input("value")], outputs=[], hidden=[io.Hidden.unique_id])

    @classmethod
    def execute(cls, value):
        _count("T_Show")
        return io.NodeOutput(ui=ui.PreviewText(f"{value}@{cls.hidden.unique_id}"))


class LazySwitch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_LazySwitch", category="testing",
                         inputs=[io.Boolean.Input("use_a", default=True),
                                 io.AnyType.Input("a", lazy=True), io.AnyType.Input("b", lazy=True)],
                         outputs=[io.AnyType.Output()])

    @classmethod
    def check_lazy_status(cls, use_a, a=None, b=None):
        return ["a"] if use_a else ["b"]

    @classmethod
    def execute(cls, use_a, a=None, b=None):
        _count("T_LazySwitch")
        return io.NodeOutput(a if use_a else b)


class Picky(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_Picky", category="testing",
                         inputs=[io.Int.Input("value", default=0)], outputs=[io.Int.Output()],
                         hidden=[io.Hidden.unique_id])

    @classmethod
    def validate_inputs(cls, value):
        if value % 2:
            return f"value must be even, got {value} (node {cls.hidden.unique_id})"
        return True

    @classmethod
    def execute(cls, value):
        return io.NodeOutput(value)


class Gate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_Gate", category="testing",
                         inputs=[io.AnyType.Input("value"), io.Boolean.Input("open", default=True)],
                         outputs=[io.AnyType.Output(), io.String.Output()])

    @classmethod
    def execute(cls, value, open):  # noqa: A002
        if not open:
            return io.NodeOutput(block_execution="gate closed")
        return io.NodeOutput(value, "passed")


class SumAll(io.ComfyNode):
    """Autogrow: sums every connected/filled number."""

    @classmethod
    def define_schema(cls):
        template = io.Autogrow.TemplatePrefix(io.Int.Input("n"), prefix="n", min=1, max=5)
        return io.Schema(node_id="T_SumAll", category="testing",
                         inputs=[io.Autogrow.Input("numbers", template=template)], outputs=[io.Int.Output()])

    @classmethod
    def execute(cls, numbers):
        return io.NodeOutput(sum(numbers.values()))


class Shape(io.ComfyNode):
    """DynamicCombo: the selected shape brings its own inputs."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_Shape", category="testing", inputs=[
            io.DynamicCombo.Input("shape", options=[
                io.DynamicCombo.Option("square", [io.Int.Input("side", default=2)]),
                io.DynamicCombo.Option("rect", [io.Int.Input("w", default=1), io.Int.Input("h", default=1)]),
            ]),
        ], outputs=[io.Int.Output("area"), io.String.Output("kind")])

    @classmethod
    def execute(cls, shape):
        if shape["shape"] == "square":
            return io.NodeOutput(shape["side"] ** 2, "square")
        return io.NodeOutput(shape["w"] * shape["h"], "rect")


class Fan(io.ComfyNode):
    """Output list: 0..count-1."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_Fan", category="testing", inputs=[io.Int.Input("count", default=3)],
                         outputs=[io.Int.Output(is_output_list=True)])

    @classmethod
    def execute(cls, count):
        return io.NodeOutput(list(range(count)))


class Collect(io.ComfyNode):
    """Input list: receives the whole list in one call."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_Collect", category="testing", is_input_list=True,
                         inputs=[io.Int.Input("values", force_input=True)], outputs=[io.String.Output()],
                         hidden=[io.Hidden.unique_id])

    @classmethod
    def execute(cls, values):
        _count("T_Collect")
        return io.NodeOutput(",".join(map(str, values)) + f"#{cls.hidden.unique_id}")


class Palette(io.ComfyNode):
    """Every widget kind, for the object_info shape tests."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="T_Palette", display_name="Palette", category="testing/widgets", description="all widgets",
            search_aliases=["colours", "widgets"], is_experimental=True, essentials_category="Basic",
            inputs=[
                io.Int.Input("seed", default=0, min=0, max=2**32, control_after_generate=True,
                             display_mode=io.NumberDisplay.slider, tooltip="the seed"),
                io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01),
                io.String.Input("text", multiline=True, dynamic_prompts=True, placeholder="type"),
                io.Boolean.Input("flag", default=False, label_on="yes", label_off="no", advanced=True),
                io.Combo.Input("color", options=Color, default=Color.green),
                io.Combo.Input("image", options=["a.png", "b.png"], upload=io.UploadType.image,
                               image_folder=io.FolderType.input),
                io.MultiCombo.Input("tags", options=["x", "y", "z"], default=["x"], chip=True),
                io.Image.Input("pixels", optional=True, tooltip="some pixels"),
                io.MultiType.Input("either", types=[io.Image, io.Mask], optional=True),
                io.Custom("MY_THING").Input("thing", optional=True, raw_link=True),
            ],
            outputs=[io.Image.Output(), io.Mask.Output("m", display_name="the mask", is_output_list=True),
                     io.Custom("MY_THING").Output()],
        )

    @classmethod
    def execute(cls, **kwargs):
        return io.NodeOutput(None, None, None)


class Extension(ComfyExtension):
    loaded = 0

    async def on_load(self):
        type(self).loaded += 1

    async def get_node_list(self):
        return [Num, AsyncAdd, Double, Show, LazySwitch, Picky, Gate, SumAll, Shape, Fan, Collect, FirstOf, Steps]


async def comfy_entrypoint() -> Extension:
    return Extension()


class FirstOf(io.ComfyNode):
    """Autogrow of lazy inputs: evaluates only the first one (tuple form in check_lazy_status)."""

    @classmethod
    def define_schema(cls):
        template = io.Autogrow.TemplatePrefix(io.AnyType.Input("v", lazy=True), prefix="v", min=1, max=3)
        return io.Schema(node_id="T_FirstOf", category="testing",
                         inputs=[io.Autogrow.Input("values", template=template)], outputs=[io.AnyType.Output()])

    @classmethod
    def check_lazy_status(cls, values):
        value, key = values["v0"]
        return [key] if value is None else []

    @classmethod
    def execute(cls, values):
        _count("T_FirstOf")
        return io.NodeOutput(values["v0"])


class Steps(io.ComfyNode):
    """Reports progress through ComfyAPI (async) and ComfyAPISync, with a preview."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="T_Steps", category="testing", inputs=[io.Int.Input("steps", default=2)],
                         outputs=[io.Int.Output()])

    @classmethod
    async def execute(cls, steps):
        from PIL import Image

        api = ComfyAPI()
        for i in range(1, steps + 1):
            await api.execution.set_progress(i, steps)
        ComfyAPISync().execution.set_progress(steps, steps, preview_image=Image.new("RGB", (4, 4)))
        return io.NodeOutput(steps)
