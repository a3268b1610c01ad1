"""``comfy`` package shim for custom nodes (``comfy.utils``, ``comfy.model_management``,
``comfy.comfy_types``, ``comfy.cli_args``)."""
