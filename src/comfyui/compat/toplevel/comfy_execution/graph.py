"""``comfy_execution.graph``: ExecutionBlocker and DynamicPrompt."""
from comfyui.engine.graph import DynamicPrompt, ExecutionBlocker, NodeNotFoundError  # noqa: F401
