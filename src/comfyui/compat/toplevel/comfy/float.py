"""``comfy.float``: rounding weights to a storage dtype."""
from __future__ import annotations

import torch

from comfyui.compat._unsupported import NotSupportedError

_PLAIN = (torch.float32, torch.float16, torch.bfloat16)


def stochastic_rounding(value: torch.Tensor, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """``value`` in ``dtype``: float32/16 and bfloat16 by a plain cast (as upstream); the
    stochastic rounding upstream does for float8 is not implemented here."""
    if dtype in _PLAIN:
        return value.to(dtype=dtype)
    raise NotSupportedError(f"comfy.float.stochastic_rounding to {dtype} is not supported by comfyui "
                            "(float8 stochastic rounding)")
