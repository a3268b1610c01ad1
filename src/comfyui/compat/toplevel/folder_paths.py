"""``import folder_paths`` is :mod:`comfyui.paths` itself (not a copy): its functions and module
attributes (``models_dir``, ``folder_names_and_paths``, ...) act on the active runtime's folders
(see :mod:`comfyui.runtime`), so a custom node sees the folders of the engine running it."""
import sys

from comfyui import paths as _paths

sys.modules[__name__] = _paths
