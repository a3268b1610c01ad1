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


NODE_CLASS_MAPPINGS = {"ApiTestFailImage": ApiTestFailImage, "ApiTestSlowImage": ApiTestSlowImage}
