"""The ``comfyui`` command: the server, ``--workflows`` batch mode, UI->API conversion."""
