"""JSON on the hot paths: every HTTP response and WebSocket message, request bodies, and the
job store's rows.

orjson encodes a history entry about ten times faster than the standard library and parses
about three times faster; the standard library is the fallback for what orjson refuses
(integers beyond 64 bits, NaN/Infinity literals in a request body), so nothing that encoded or
parsed before fails now. Output is compact, non-ASCII kept; NaN and infinities encode as null
(valid JSON, which browsers can parse).
"""
from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _fallback(o: Any) -> Any:
    """Values JSON has no type for: sets as lists, array-likes by ``tolist``/``item``,
    anything else as its ``str``."""
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        try:
            return o.item()
        except Exception:  # noqa: BLE001
            pass
    return str(o)


def dumps(obj: Any) -> str:
    """Compact JSON text of ``obj``; never raises for an unknown type (see ``_fallback``)."""
    try:
        return orjson.dumps(obj, default=_fallback, option=_OPTIONS).decode()
    except TypeError:  # e.g. an int beyond 64 bits
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_fallback)


def dumps_strict(obj: Any) -> str:
    """Compact JSON text of ``obj``; TypeError for a value JSON has no type for (stored data
    must read back as it was written)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def loads(data: str | bytes) -> Any:
    """Parse JSON; ValueError (``json.JSONDecodeError``) for malformed input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # NaN/Infinity literals, deeper nesting than orjson allows
        return json.loads(data)
