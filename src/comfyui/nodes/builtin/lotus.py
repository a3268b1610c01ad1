"""LotusConditioning (comfy_extras/nodes_lotus.py): the fixed conditioning Lotus-D depth
estimation runs with (its frozen text encoder's output for the empty prompt, shipped as data)."""
from __future__ import annotations

import json
from importlib import resources

from comfyui.nodes.io import io

from ._lazy import lazy

torch = lazy("torch")
memory = lazy("comfyui.models.memory")


def lotus_null_conditioning():
    """The [1, 2, 1024] tensor of ``comfyui/data/lotus_null_conditioning.json`` (float32)."""
    data = json.loads(resources.files("comfyui.data").joinpath("lotus_null_conditioning.json").read_text())
    return torch.tensor(data["values"], dtype=torch.float32).reshape(data["shape"])


class LotusConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LotusConditioning",
            category="conditioning/lotus",
            inputs=[],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput([[lotus_null_conditioning().to(memory.intermediate_device()), {}]])


NODE_CLASS_MAPPINGS = {"LotusConditioning": LotusConditioning}
