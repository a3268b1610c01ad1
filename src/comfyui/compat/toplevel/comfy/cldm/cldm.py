"""``comfy.cldm.cldm``: the ControlNet network (:class:`comfyui.models.controlnet.ControlNetModel`
under upstream's name; its constructor takes our arguments)."""
from comfyui.models.controlnet import ControlNetModel as ControlNet  # noqa: F401
