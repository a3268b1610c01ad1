"""``comfy_execution.graph_utils``: GraphBuilder and is_link for node expansion."""
from comfyui.engine.graph import ExecutionBlocker, GraphBuilder, is_link  # noqa: F401

try:
    from comfyui.engine.graph import GraphNode as Node  # noqa: F401
except ImportError:  # pragma: no cover - older engine
    pass
try:
    from comfyui.engine.graph import add_graph_prefix  # noqa: F401
except ImportError:  # pragma: no cover
    pass
