"""``comfy.ldm.util``: small helpers."""


def exists(val) -> bool:
    return val is not None


def default(val, d):
    """``val``, or ``d`` (called if callable) when ``val`` is None."""
    if val is not None:
        return val
    return d() if callable(d) else d
