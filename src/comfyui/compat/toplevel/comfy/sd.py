"""``comfy.sd``: checkpoint / VAE / CLIP loading (``comfyui.models.sd``, ``.lora``, ``.vae``, ``.clip``)."""
from comfyui.compat._delegate import delegating_getattr

__getattr__ = delegating_getattr(__name__, ["comfyui.models.sd", "comfyui.models.lora", "comfyui.models.vae",
                                            "comfyui.models.clip"])
