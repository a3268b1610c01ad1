"""Shared by the client tests: a workspace with a test custom node (progress, previews,
failures) and a small image prompt on built-in nodes."""
import copy
import textwrap

import pytest

STEPS_NODE = textwrap.dedent('''
    import time

    import comfy.utils
    from PIL import Image


    class SlowSteps:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"steps": ("INT", {"default": 3, "min": 1}),
                                 "delay": ("FLOAT", {"default": 0.0, "min": 0.0})}}

        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "test"

        def run(self, steps, delay):
            bar = comfy.utils.ProgressBar(steps)
            for i in range(steps):
                time.sleep(delay)
                bar.update_absolute(i + 1, steps, ("JPEG", Image.new("RGB", (8, 8), (200, 10, 10)), 64))
            return {"ui": {"text": [f"did {steps}"]}, "result": (f"did {steps}",)}


    class Explode:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"message": ("STRING", {"default": "kaput"})}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "test"

        def run(self, message):
            raise RuntimeError(message)


    NODE_CLASS_MAPPINGS = {"SlowSteps": SlowSteps, "Explode": Explode}
''')

IMAGE_PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": 0x00FF00}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "emb/pic"}},
}


@pytest.fixture
def ws(workspace):
    """The conftest workspace plus custom_nodes/test_steps.py."""
    (workspace / "custom_nodes").mkdir(exist_ok=True)
    (workspace / "custom_nodes" / "test_steps.py").write_text(STEPS_NODE)
    return workspace




@pytest.fixture
def image_prompt():
    """EmptyImage -> SaveImage (prefix emb/pic)."""
    return copy.deepcopy(IMAGE_PROMPT)
