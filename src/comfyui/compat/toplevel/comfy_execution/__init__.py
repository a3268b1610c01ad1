"""``comfy_execution`` shim: ``graph`` and ``graph_utils`` from :mod:`comfyui.engine.graph`."""
