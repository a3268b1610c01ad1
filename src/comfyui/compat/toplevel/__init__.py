"""Directory put on ``sys.path`` by :func:`comfyui.compat.install`; its modules are the
top-level names custom nodes import. (This file only makes setuptools ship the directory;
nothing imports ``comfyui.compat.toplevel`` itself.)"""
