"""``import folder_paths`` is :mod:`comfyui.paths` itself (not a copy), so module attributes
like ``models_dir`` follow every later ``paths.configure()``."""
import sys

from comfyui import paths as _paths

sys.modules[__name__] = _paths
