"""``comfy.conds``: the per-model conditioning values (:mod:`comfyui.sampling.conditioning`)."""
from comfyui.sampling.conditioning import CONDConstant, CONDCrossAttn, CONDNoiseShape, CONDRegular  # noqa: F401
