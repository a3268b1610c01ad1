"""The typed schema API (ComfyUI's ``comfy_api.latest``): ``io``, ``ui``, ``ComfyExtension``.

Import point: ``comfyui.nodes.io`` (see there). This package holds the pieces:
``_io`` (types, Schema, ComfyNode, NodeOutput), ``_ui`` (ui outputs), ``adapter`` (-> NodeDef),
``extension`` (ComfyExtension and the ``latest``-level extras).
"""
