"""``comfy.taesd``."""
