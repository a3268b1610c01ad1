"""ComfyExtension / comfy_entrypoint registration through NodeRegistry."""
import asyncio
import types

import pytest

from comfyui.nodes.io import ComfyExtension, io
from comfyui.nodes.registry import NodeRegistry

from . import nodes

NODE_IDS = ["T_Num", "T_AsyncAdd", "T_Double", "T_Show", "T_LazySwitch", "T_Picky", "T_Gate", "T_SumAll",
            "T_Shape", "T_Fan", "T_Collect", "T_FirstOf", "T_Steps"]


def test_register_extension_registers_nodes_and_calls_on_load():
    nodes.Extension.loaded = 0
    reg = NodeRegistry()
    added = reg.register_extension(nodes.Extension(), "custom_nodes.schema_pack")
    assert added == NODE_IDS
    assert nodes.Extension.loaded == 1
    assert reg.get("T_Num").python_module == "custom_nodes.schema_pack"
    assert reg.object_info()["T_Show"]["output_node"] is True


def test_register_module_with_comfy_entrypoint():
    module = types.ModuleType("pack")
    module.comfy_entrypoint = nodes.comfy_entrypoint
    reg = NodeRegistry()
    assert reg.register_module(module, "custom_nodes.pack") == NODE_IDS


def test_register_extension_from_a_running_loop():
    async def inside():
        return NodeRegistry().register_extension(nodes.Extension(), "custom_nodes.pack")

    assert asyncio.run(inside()) == NODE_IDS


def test_extension_must_implement_get_node_list():
    class Incomplete(ComfyExtension):
        pass

    with pytest.raises(TypeError):
        Incomplete()

    class Minimal(ComfyExtension):
        async def get_node_list(self):
            return [nodes.Num]

    reg = NodeRegistry()
    assert reg.register_extension(Minimal(), "custom_nodes.min") == ["T_Num"]  # default on_load is a no-op


def test_io_namespace_has_the_documented_types():
    for name in ["ComfyNode", "Schema", "NodeOutput", "Int", "Float", "String", "Boolean", "Combo", "MultiCombo",
                 "Image", "Mask", "Latent", "Conditioning", "Model", "Clip", "Vae", "ClipVision", "ControlNet",
                 "Sampler", "Sigmas", "Noise", "Guider", "UpscaleModel", "Audio", "Video", "AnyType", "Custom",
                 "MultiType", "Hidden"]:
        assert hasattr(io, name), name
    expected = {"Image": "IMAGE", "Mask": "MASK", "Latent": "LATENT", "Conditioning": "CONDITIONING",
                "Model": "MODEL", "Clip": "CLIP", "Vae": "VAE", "ClipVision": "CLIP_VISION",
                "ControlNet": "CONTROL_NET", "Sampler": "SAMPLER", "Sigmas": "SIGMAS", "Noise": "NOISE",
                "Guider": "GUIDER", "UpscaleModel": "UPSCALE_MODEL", "Audio": "AUDIO", "Video": "VIDEO",
                "AnyType": "*"}
    for name, io_type in expected.items():
        t = getattr(io, name)
        assert t.io_type == io_type
        assert t.Input("x").get_io_type() == io_type and t.Output().io_type == io_type
    # Custom types are distinct and carry their own type string.
    a, b = io.Custom("A_TYPE"), io.Custom("B_TYPE")
    assert a.Input("x").get_io_type() == "A_TYPE" and b.Output().io_type == "B_TYPE"
    assert io.Int.Input("x").io_type == "INT"  # the bound Input classes do not leak between types


def test_comfy_api_outside_a_running_node_needs_a_node_id():
    from comfyui.nodes.io import ComfyAPISync

    with pytest.raises(ValueError, match="node_id must be provided"):
        ComfyAPISync().execution.set_progress(1, 2)
    ComfyAPISync().execution.set_progress(1, 2, node_id="5")  # no listener: nothing happens
