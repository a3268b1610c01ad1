"""Test nodes for the production API tests."""
from __future__ import annotations

import time


class ApiTestFailImage:
    """Raises at run time when ``fail`` is on; else passes the image through."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "fail": ("BOOLEAN", {"default": True}),
                             "message": ("STRING", {"default": "failing on purpose"})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, images, fail, message):
        if fail:
            raise ValueError(message)
        return (images,)


class ApiTestSlowImage:
    """Sleeps ``seconds``, then passes the image through (keeps the queue busy)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "seconds": ("FLOAT", {"default": 0.5, "min": 0, "max": 60})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, images, seconds):
        time.sleep(seconds)
        return (images,)


class ApiTestStepsImage:
    """Reports ``steps`` progress steps (``step_seconds`` apart), then passes the image through."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "steps": ("INT", {"default": 4, "min": 1, "max": 100}),
                             "step_seconds": ("FLOAT", {"default": 0.02, "min": 0, "max": 5})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, images, steps, step_seconds):
        from comfyui.engine.progress import ProgressBar

        bar = ProgressBar(steps)
        for _ in range(steps):
            time.sleep(step_seconds)
            bar.update(1)
        return (images,)


NODE_CLASS_MAPPINGS = {"ApiTestFailImage": ApiTestFailImage, "ApiTestSlowImage": ApiTestSlowImage,
                       "ApiTestStepsImage": ApiTestStepsImage}
