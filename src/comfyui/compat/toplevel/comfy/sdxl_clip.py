"""``comfy.sdxl_clip``: packs use its classes to ask which model a CLIP belongs to
(``isinstance(clip.tokenizer, sdxl_clip.SDXLTokenizer)``). The classes answer that for our
CLIP objects (:class:`comfyui.models.text_encoders.encoder.Tokenizers` / ``TextEncoders`` of the SDXL families);
building one directly is not supported."""
from comfyui.compat._unsupported import NotSupportedError
from comfyui.models.text_encoders.encoder import TextEncoders as MultiClip, Tokenizers as MultiTokenizer


class _OfFamily(type):
    """``isinstance(x, cls)``: ``x`` is one of our ``cls._kind`` objects of ``cls._families``."""

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, cls._kind) and getattr(obj, "family", None) in cls._families


class _FamilyClass(metaclass=_OfFamily):
    _kind: type = object
    _families: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        raise NotSupportedError(f"comfy.sdxl_clip.{type(self).__name__} cannot be built in comfyui; "
                                "CLIP objects come from the loaders")


class SDXLTokenizer(_FamilyClass):
    _kind, _families = MultiTokenizer, ("sdxl",)


class SDXLRefinerTokenizer(_FamilyClass):
    _kind, _families = MultiTokenizer, ("sdxl_refiner",)


class SDXLClipModel(_FamilyClass):
    _kind, _families = MultiClip, ("sdxl",)


class SDXLRefinerClipModel(_FamilyClass):
    _kind, _families = MultiClip, ("sdxl_refiner",)
