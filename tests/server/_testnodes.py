"""A tiny custom node pack for the server tests (slow, interruptible, preview/progress-text nodes)."""
from __future__ import annotations

import time

from comfyui.engine.progress import ProgressBar, report_text, throw_if_interrupted


class ServerTestSleep:
    """Sleeps ``seconds`` in small steps, checking for interrupts; passes ``value`` through."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": ""}),
                             "seconds": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 60.0})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, value, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            throw_if_interrupted()
            time.sleep(0.01)
        return (value,)


class ServerTestPreview:
    """Reports progress with a preview image and a progress text, then returns ``value``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": "x"}),
                             "format": (["JPEG", "PNG"], {"default": "JPEG"})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, value, format):
        from PIL import Image

        bar = ProgressBar(2)
        img = Image.new("RGB", (16, 8), (10, 200, 30))
        bar.update_absolute(1, 2, (format, img, 64))
        report_text("halfway there")
        bar.update_absolute(2, 2)
        return (value,)


class ServerTestFail:
    """Raises at run time (for execution_error / failed jobs)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": "boom"})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, value):
        raise ValueError(f"failing on purpose: {value}")


class ServerTestExpandCycle:
    """Expands into two StringConcatenate nodes that each take the other's output (a broken
    expansion: the engine must fail the prompt, not loop)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": "x"})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, value):
        from comfyui.engine.graph import GraphBuilder

        graph = GraphBuilder()
        first = graph.node("StringConcatenate", string_a=value, delimiter="")
        second = graph.node("StringConcatenate", string_a=first.out(0), delimiter="")
        first.set_input("string_b", second.out(0))
        second.set_input("string_b", first.out(0))
        return {"result": (second.out(0),), "expand": graph.finalize()}


NODE_CLASS_MAPPINGS = {"ServerTestSleep": ServerTestSleep, "ServerTestPreview": ServerTestPreview,
                       "ServerTestFail": ServerTestFail, "ServerTestExpandCycle": ServerTestExpandCycle}
