"""``comfy_api`` shim: ``comfy_api.latest`` is the schema node API of :mod:`comfyui.nodes.io`;
``comfy_api.v0_0_2`` and ``comfy_api.v0_0_1`` are ComfyUI's pinned versions of it (the same
API today, with their own ``VERSION``)."""
