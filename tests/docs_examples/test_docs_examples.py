"""Every custom-node example of the ComfyUI docs runs as a custom node loaded from a
custom_nodes/ directory, through the real loader, validation and engine."""
import pathlib

import pytest
import torch

from comfyui.engine.engine import Engine
from comfyui.engine.validation import PromptError
from comfyui.nodes.custom_nodes import load_custom_nodes
from comfyui.nodes.registry import NodeRegistry

HERE = pathlib.Path(__file__).parent


class TensorSource:
    """Test helper: a constant IMAGE/MASK from a small list of values."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"default": 0.0}), "kind": (["IMAGE", "MASK"],),
                             "batch": ("INT", {"default": 1})}}
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "run"

    def run(self, value, kind, batch):
        return (torch.full((batch, 4, 4, 3), value), torch.full((batch, 4, 4), value))


class Sink:
    """Test helper: an output node recording what it received."""
    received = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*",)}}
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    @classmethod
    def VALIDATE_INPUTS(cls, input_types):
        return True

    def run(self, value):
        Sink.received.append(value)
        return {"ui": {"text": [repr(getattr(value, "shape", value))]}}


class FakeLoader:
    calls = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"checkpoint_path": ("STRING",)}}
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "run"

    def run(self, checkpoint_path):
        FakeLoader.calls.append(checkpoint_path)
        return (f"model:{checkpoint_path}", f"clip:{checkpoint_path}", f"vae:{checkpoint_path}")


def _merge(kind):
    class Merge:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {f"{kind}1": (kind.upper(),), f"{kind}2": (kind.upper(),), "ratio": ("FLOAT",)}}
        RETURN_TYPES = (kind.upper(),)
        FUNCTION = "run"

        def run(self, ratio, **kw):
            return (f"{kw[kind + '1']}+{kw[kind + '2']}@{ratio}",)
    return Merge


@pytest.fixture(scope="module")
def engine():
    registry = NodeRegistry()
    results = load_custom_nodes(registry, [HERE / "custom_nodes"], entry_points=False)
    assert [r.error for r in results] == [None]
    for name, cls in {"TensorSource": TensorSource, "Sink": Sink, "CheckpointLoaderSimple": FakeLoader,
                      "ModelMergeSimple": _merge("model"), "ClipMergeSimple": _merge("clip")}.items():
        registry.register_classic(name, cls)
    engine = Engine(registry)
    engine.start()
    yield engine
    engine.stop()


def run(engine, prompt, **kw):
    Sink.received.clear()
    return engine.wait(engine.submit(prompt, **kw).prompt_id).result(20)


def test_pack_metadata_reaches_object_info(engine):
    info = engine.registry.object_info()
    assert info["InvertImageNode"]["python_module"] == "custom_nodes.docs_examples"
    assert info["InvertImageNode"]["display_name"] == "Invert Image"
    assert info["InvertImageNode"]["output_name"] == ["image_out"]
    assert info["ImageRebatch"]["output_is_list"] == [True]


def test_invert_and_image_selector(engine):
    entry = run(engine, {
        "1": {"class_type": "TensorSource", "inputs": {"value": 0.25, "kind": "IMAGE", "batch": 1}},
        "2": {"class_type": "InvertImageNode", "inputs": {"image_in": ["1", 0]}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    })
    assert entry["status"]["status_str"] == "success"
    assert torch.allclose(Sink.received[0], torch.full((1, 4, 4, 3), 0.75))
    images = torch.stack([torch.full((4, 4, 3), 0.2), torch.full((4, 4, 3), 0.9)])

    class Batch:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}
        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "run"

        def run(self):
            return (images,)

    engine.registry.register_classic("TwoImages", Batch)
    run(engine, {"1": {"class_type": "TwoImages", "inputs": {}},
                 "2": {"class_type": "Image Selector", "inputs": {"images": ["1", 0], "mode": "brightest"}},
                 "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}}})
    assert Sink.received[0].shape == (1, 4, 4, 3) and float(Sink.received[0].mean()) == pytest.approx(0.9)


@pytest.mark.parametrize("mask_value,expected,evaluated", [(0.0, 0.1, "image1"), (1.0, 0.7, "image2")])
def test_lazy_mix_images_evaluates_only_the_needed_image(engine, mask_value, expected, evaluated):
    prompt = {
        "a": {"class_type": "TensorSource", "inputs": {"value": 0.1, "kind": "IMAGE", "batch": 1}},
        "b": {"class_type": "TensorSource", "inputs": {"value": 0.7, "kind": "IMAGE", "batch": 1}},
        "m": {"class_type": "TensorSource", "inputs": {"value": mask_value, "kind": "MASK", "batch": 1}},
        "mix": {"class_type": "LazyMixImages", "inputs": {"image1": ["a", 0], "image2": ["b", 0], "mask": ["m", 1]}},
        "out": {"class_type": "Sink", "inputs": {"value": ["mix", 0]}},
    }
    engine.free(free_memory=True)
    engine.recorder = []
    seen = []
    listener = lambda e, d, c: seen.append(d["node"]) if e == "executing" else None  # noqa: E731
    engine.add_listener(listener)
    try:
        run(engine, prompt)
    finally:
        engine.remove_listener(listener)
    assert float(Sink.received[0].mean()) == pytest.approx(expected)
    skipped = "b" if evaluated == "image1" else "a"
    assert skipped not in seen


def test_silent_and_message_execution_blockers(engine):
    errors = []
    listener = lambda e, d, c: errors.append(d) if e == "execution_error" else None  # noqa: E731
    engine.add_listener(listener)
    try:
        entry = run(engine, {
            "1": {"class_type": "TensorSource", "inputs": {"value": 0.5, "kind": "IMAGE", "batch": 1}},
            "2": {"class_type": "SilentPassthrough", "inputs": {"passthrough": ["1", 0], "blocked": True}},
            "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
        })
        assert entry["status"]["status_str"] == "success" and Sink.received == [] and errors == []
        run(engine, {
            "1": {"class_type": "TensorSource", "inputs": {"value": 0.5, "kind": "IMAGE", "batch": 1}},
            "2": {"class_type": "LoadWithoutVae", "inputs": {"image": ["1", 0], "ckpt_name": "sd15.safetensors"}},
            "3": {"class_type": "Sink", "inputs": {"value": ["2", 1]}},
            "4": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
        })
    finally:
        engine.remove_listener(listener)
    assert len(Sink.received) == 1  # the MODEL output still flowed
    assert errors[0]["exception_message"] == "Execution Blocked: No VAE contained in the loaded model sd15.safetensors"


def test_image_rebatch_lists(engine):
    run(engine, {
        "1": {"class_type": "TensorSource", "inputs": {"value": 0.5, "kind": "IMAGE", "batch": 5}},
        "2": {"class_type": "ImageRebatch", "inputs": {"images": ["1", 0], "batch_size": 2}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    })
    assert [t.shape[0] for t in Sink.received] == [2, 2, 1]


def test_expansion_example_caches_each_subnode(engine):
    FakeLoader.calls.clear()
    prompt = {"1": {"class_type": "LoadAndMerge", "inputs": {"checkpoint_path1": "a", "checkpoint_path2": "b", "ratio": 0.5}},
              "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Sink", "inputs": {"value": ["1", 2]}}}
    run(engine, prompt)
    assert sorted(Sink.received) == ["model:a+model:b@0.5", "vae:a"]
    assert sorted(FakeLoader.calls) == ["a", "b"]
    prompt["1"]["inputs"]["checkpoint_path2"] = "c"
    run(engine, prompt)
    assert sorted(FakeLoader.calls) == ["a", "b", "c"]  # model1's loader stayed cached


def test_validate_inputs_variants(engine):
    run(engine, {"1": {"class_type": "CustomNode", "inputs": {"foo": 99}},  # max not enforced
                 "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}})
    assert Sink.received == [99]
    # the docs' AddNumbers reads input_types for both inputs, so both must be links
    run(engine, {"1": {"class_type": "CustomNode", "inputs": {"foo": 2}},
                 "2": {"class_type": "CustomNode", "inputs": {"foo": 3}},
                 "3": {"class_type": "AddNumbers", "inputs": {"input1": ["1", 0], "input2": ["2", 0]}},
                 "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}}})
    assert Sink.received == [5]
    with pytest.raises(PromptError) as e:
        engine.submit({"1": {"class_type": "AddNumbers", "inputs": {"input1": 5000, "input2": 1}},
                       "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}})
    assert e.value.node_errors["1"]["errors"][0]["type"] == "value_bigger_than_max"
    with pytest.raises(PromptError) as e:
        engine.submit({"0": {"class_type": "MakeCheese", "inputs": {"name": "brie"}},
                       "9": {"class_type": "CustomNode", "inputs": {"foo": 1}},
                       "1": {"class_type": "AddNumbers", "inputs": {"input1": ["0", 0], "input2": ["9", 0]}},
                       "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}})
    # ComfyUI names the argument VALIDATE_INPUTS was given
    assert e.value.node_errors["1"]["errors"][0]["details"] == "input_types - input1 must be an INT or FLOAT type"


def test_wildcard_dynamic_custom_type_and_hidden(engine):
    entry = run(engine, {
        "c": {"class_type": "MakeCheese", "inputs": {"name": "brie"}},
        "w": {"class_type": "Wildcard", "inputs": {"anything": ["c", 0]}},
        "d": {"class_type": "DynamicInputs", "inputs": {"zeta": ["w", 0], "alpha": 1}},
        "s": {"class_type": "Sink", "inputs": {"value": ["d", 0]}},
        "h": {"class_type": "HiddenInputs", "inputs": {"my_cheese": ["c", 0]}},
    }, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
    assert Sink.received == ["alpha,zeta"]
    assert entry["outputs"]["h"]["text"] == ["{'cheese': 'brie'}|h|HiddenInputs|{'workflow': {'nodes': []}}"]
