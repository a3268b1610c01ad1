"""The JSON codec of responses, messages and stored rows (comfyui.jsonutil)."""
import json

import numpy as np
import pytest

from comfyui.jsonutil import dumps, dumps_strict, loads


def test_dumps_is_compact_keeps_unicode_and_never_fails_on_odd_values():
    class Thing:
        def __str__(self):
            return "thing"

    value = {"a": "ünï", "n": float("nan"), 3: (1, 2), "s": {1}, "arr": np.arange(3), "f": np.float32(0.5),
             "o": Thing(), "big": 2 ** 70}
    text = dumps(value)
    assert json.loads(text) == {"a": "ünï", "n": None, "3": [1, 2], "s": [1], "arr": [0, 1, 2], "f": 0.5,
                                "o": "thing", "big": 2 ** 70}
    assert " " not in dumps({"a": [1, 2]})


def test_dumps_strict_refuses_what_would_not_read_back():
    assert json.loads(dumps_strict({"x": [1.5, None, "é"], "big": 2 ** 70})) == {"x": [1.5, None, "é"], "big": 2 ** 70}
    with pytest.raises(TypeError):
        dumps_strict({"o": object()})


def test_loads_takes_what_the_standard_library_takes():
    assert loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert loads('{"w": NaN}')["w"] != loads('{"w": NaN}')["w"]  # NaN literal, as json.dumps writes
    with pytest.raises(ValueError):
        loads(b"{not json")
