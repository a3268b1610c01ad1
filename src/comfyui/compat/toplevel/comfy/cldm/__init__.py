"""``comfy.cldm``."""
