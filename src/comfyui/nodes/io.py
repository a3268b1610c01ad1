"""The typed schema API (ComfyUI's ``comfy_api.latest``) and its adapter into NodeDef.

    from comfyui.nodes.io import io, ui, ComfyExtension

    class Add(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Add", category="math",
                             inputs=[io.Int.Input("a"), io.Int.Input("b", default=1)],
                             outputs=[io.Int.Output()])

        @classmethod
        def execute(cls, a, b):
            return io.NodeOutput(a + b)

``comfy_api.latest`` (compat layer) re-exports ``io``, ``ui``, ``ComfyExtension`` from here.
The registry calls :func:`node_def_from_schema` for every ComfyNode class; see
``schema/adapter.py`` for what the NodeDef looks like.
"""
from __future__ import annotations

from .schema import _io as io
from .schema import _ui as ui
from .schema._io import ComfyNode, Hidden, HiddenHolder, NodeOutput, Schema  # noqa: F401
from .schema.adapter import build_inputs, node_def_from_schema, to_classic_result  # noqa: F401
from .schema.extension import ComfyAPI, ComfyAPISync, ComfyExtension, Input  # noqa: F401

IO = io
UI = ui

__all__ = ["io", "ui", "IO", "UI", "ComfyExtension", "ComfyAPI", "ComfyAPISync", "Input", "node_def_from_schema", "ComfyNode", "Schema",
           "NodeOutput", "Hidden", "HiddenHolder"]
