"""aiohttp HTTP + WebSocket server for the official ComfyUI frontend.

``create_app(engine, config)`` builds the application; ``run_server(config)`` is what the
``comfyui`` command runs. Imports are lazy so that ``import comfyui.server`` stays cheap.
"""
from __future__ import annotations

__all__ = ["create_app", "run_server"]


def __getattr__(name):
    if name in __all__:
        from . import app as _app
        return getattr(_app, name)
    raise AttributeError(name)
