"""``comfy.taesd.taesd``: the tiny autoencoder's building blocks (:mod:`comfyui.sampling.preview`,
which decodes previews with them). ``Decoder(latent_channels)`` is TAESD's decoder with its
state-dict layout; the encoder and the ``TAESD`` wrapper are not provided."""
from comfyui.compat import _unsupported
from comfyui.sampling.preview import _Block as Block  # noqa: F401
from comfyui.sampling.preview import _Clamp as Clamp  # noqa: F401
from comfyui.sampling.preview import _conv as conv  # noqa: F401
from comfyui.sampling.preview import taesd_decoder as Decoder  # noqa: F401

__getattr__ = _unsupported.module_getattr(__name__, {"Encoder", "TAESD"}, "only TAESD's decoder is implemented")
