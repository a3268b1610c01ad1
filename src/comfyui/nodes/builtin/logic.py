"""ComfySwitchNode (upstream comfy_extras/nodes_logic.py, "If/Else Switch"): passes ``on_true``
or ``on_false`` on, whichever ``switch`` picks. Both are lazy, so the branch not taken is never
run (the Wan 2.2 templates switch between a model with and without a speed-up LoRA, and their
step counts, this way)."""
from __future__ import annotations

from comfyui.nodes.io import io

MISSING = object()   # an input left unconnected (a connected one not evaluated yet arrives as None)


class SwitchNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        template = io.MatchType.Template("switch")
        return io.Schema(
            node_id="ComfySwitchNode",
            display_name="If/Else Switch",
            category="utilities/logic",
            search_aliases=["if", "then", "switch", "conditional", "branch"],
            is_experimental=True,
            inputs=[
                io.Boolean.Input("switch"),
                io.MatchType.Input("on_false", template=template, lazy=True, optional=True),
                io.MatchType.Input("on_true", template=template, lazy=True, optional=True),
            ],
            outputs=[io.MatchType.Output(template=template, display_name="output")],
        )

    @classmethod
    def check_lazy_status(cls, switch, on_false=MISSING, on_true=MISSING):
        if switch and on_true is None:
            return ["on_true"]
        if not switch and on_false is None:
            return ["on_false"]
        return []

    @classmethod
    def execute(cls, switch, on_true=MISSING, on_false=MISSING) -> io.NodeOutput:
        selected = on_true if switch else on_false
        return io.NodeOutput(None if selected is MISSING else selected)


NODE_CLASS_MAPPINGS = {"ComfySwitchNode": SwitchNode}
