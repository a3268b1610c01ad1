"""``python -m comfyui`` is the ``comfyui`` command."""
from comfyui.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
