"""``comfy_api`` shim: ``comfy_api.latest`` is the schema node API of :mod:`comfyui.nodes.io`."""
