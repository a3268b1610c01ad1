"""Custom node packs written the way the popular real packs are written (KJNodes,
VideoHelperSuite, Impact Pack, rgthree, IPAdapter_plus, essentials ...): each test's pack uses
one of their import patterns, and the test checks that the pack loads and its nodes work."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from comfyui import compat
from comfyui.nodes.custom_nodes import load_custom_nodes
from comfyui.nodes.registry import NodeRegistry

NODE = '''
class {cls}:
    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"a": ("INT", {{"default": 0}})}}}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"
    def run(self, a):
        return ({body},)
'''


def load(registry, directory):
    results = load_custom_nodes(registry, [directory], entry_points=False)
    assert all(r.ok for r in results), [r.error for r in results]
    return results


def run_node(registry, name, **kwargs):
    cls = registry.get(name).cls
    return getattr(cls(), cls.FUNCTION)(**kwargs)


def load_in_fresh_process(directory, check: str) -> dict:
    """Load the packs of ``directory`` into built-ins in a new interpreter (no ``comfy.*``
    module imported before, as when the server starts), run ``check`` and return what it
    put in ``out``."""
    code = textwrap.dedent(f"""
        import json
        from comfyui.nodes.custom_nodes import load_custom_nodes
        from comfyui.nodes.registry import NodeRegistry
        registry = NodeRegistry.with_builtins()
        results = load_custom_nodes(registry, [{str(directory)!r}], entry_points=False)
        out = {{"errors": [r.error for r in results if not r.ok], "nodes": [n for r in results for n in r.nodes]}}
    """) + textwrap.dedent(check) + "\nprint(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_relative_imports_from_subfolders_without_init(tmp_path, write_pack):
    """KJNodes / VideoHelperSuite layout: ``from .nodes.x import`` in ``__init__``, and
    ``from ..utility.y import`` inside a sub-folder; none of the sub-folders is a package."""
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "ComfyUI-Layout", {
        "__init__.py": '''
            from .nodes.math_nodes import Double
            from .nodes import text_nodes
            NODE_CLASS_MAPPINGS = {"LayoutDouble": Double, "LayoutShout": text_nodes.Shout}
        ''',
        "nodes/math_nodes.py": "from ..utility.numbers import twice\n" + NODE.format(cls="Double", body="twice(a)"),
        "nodes/text_nodes.py": '''
            from ..utility import numbers
            class Shout:
                @classmethod
                def INPUT_TYPES(cls):
                    return {"required": {"text": ("STRING", {"default": ""})}}
                RETURN_TYPES = ("STRING",)
                FUNCTION = "run"
                CATEGORY = "test"
                def run(self, text):
                    return (text.upper() + "!" * numbers.twice(1),)
        ''',
        "utility/numbers.py": "def twice(x):\n    return 2 * x\n",
    })
    out = load_in_fresh_process(cn, """
        import importlib
        cls = registry.get("LayoutDouble").cls
        out["double"] = getattr(cls(), cls.FUNCTION)(a=21)[0]
        cls = registry.get("LayoutShout").cls
        out["shout"] = getattr(cls(), cls.FUNCTION)(text="hi")[0]
        # the pack is a sub-module of a real custom_nodes package, as in a ComfyUI checkout
        out["absolute"] = importlib.import_module("custom_nodes.ComfyUI-Layout.utility.numbers").twice(5)
        out["python_module"] = registry.get("LayoutDouble").python_module
    """)
    assert out["errors"] == []
    assert out == {"errors": [], "nodes": ["LayoutDouble", "LayoutShout"], "double": 42, "shout": "HI!!",
                   "absolute": 10, "python_module": "custom_nodes.ComfyUI-Layout"}


def test_bare_import_comfy_reaches_its_submodules(tmp_path, write_pack):
    """``import comfy`` then ``comfy.samplers.KSampler.SAMPLERS`` at import time (rgthree,
    Impact, essentials), as works in a running ComfyUI."""
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "bare_comfy", {
        "__init__.py": '''
            import comfy
            SAMPLERS = comfy.samplers.KSampler.SAMPLERS
            SCHEDULERS = comfy.samplers.KSampler.SCHEDULERS
            DEVICE = str(comfy.model_management.get_torch_device())
            class SamplerPicker:
                @classmethod
                def INPUT_TYPES(cls):
                    return {"required": {"sampler_name": (SAMPLERS,), "scheduler": (SCHEDULERS,)}}
                RETURN_TYPES = (SAMPLERS, SCHEDULERS)
                FUNCTION = "run"
                CATEGORY = "test"
                def run(self, sampler_name, scheduler):
                    return (sampler_name, scheduler)
            NODE_CLASS_MAPPINGS = {"SamplerPicker": SamplerPicker}
        ''',
    })
    out = load_in_fresh_process(cn, """
        import sys
        pack = sys.modules["custom_nodes.bare_comfy"]
        out["samplers"] = pack.SAMPLERS
        out["schedulers"] = pack.SCHEDULERS
        out["device"] = pack.DEVICE
        out["upscale"] = callable(sys.modules["comfy"].utils.common_upscale)
        info = registry.object_info()["SamplerPicker"]["input"]["required"]
        out["widget"] = info["sampler_name"][0][:3]
    """)
    from comfyui.sampling.names import SAMPLER_NAMES, SCHEDULER_NAMES

    assert out["errors"] == [] and out["nodes"] == ["SamplerPicker"]
    assert out["samplers"] == SAMPLER_NAMES and out["schedulers"] == SCHEDULER_NAMES
    assert out["device"] in ("cpu", "cuda", "cuda:0", "mps")
    assert out["upscale"] is True
    assert out["widget"] == ["euler", "euler_cfg_pp", "euler_ancestral"]


def test_comfy_extras_nodes_are_our_builtins(tmp_path, registry, write_pack):
    """``from comfy_extras.nodes_... import ...`` (Impact, Inspire, KJNodes, essentials): the
    classes are the built-in nodes, and the helpers there work."""
    builtins = NodeRegistry.with_builtins()
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "extras_user", {
        "__init__.py": '''
            import torch
            from comfy_extras.nodes_latent import LatentBatch
            from comfy_extras.nodes_custom_sampler import SamplerCustom, Noise_RandomNoise
            from comfy_extras.nodes_mask import composite
            import comfy_extras.nodes_model_advanced
            RESCALE = comfy_extras.nodes_model_advanced.rescale_zero_terminal_snr_sigmas
            class DoubleBatch:
                @classmethod
                def INPUT_TYPES(cls):
                    return {"required": {"samples": ("LATENT",)}}
                RETURN_TYPES = ("LATENT",)
                FUNCTION = "run"
                CATEGORY = "test"
                def run(self, samples):
                    return LatentBatch().batch(samples, samples)
            NODE_CLASS_MAPPINGS = {"DoubleBatch": DoubleBatch}
        ''',
    })
    load(builtins, cn)
    pack = sys.modules["custom_nodes.extras_user"]
    from comfyui.sampling.noise import Noise_RandomNoise

    assert pack.SamplerCustom is builtins.get("SamplerCustom").cls
    assert pack.LatentBatch is builtins.get("LatentBatch").cls
    assert pack.Noise_RandomNoise is Noise_RandomNoise
    latent = {"samples": torch.arange(2 * 4 * 8 * 8, dtype=torch.float32).reshape(2, 4, 8, 8)}
    (out,) = run_node(builtins, "DoubleBatch", samples=latent)
    assert out["samples"].shape == (4, 4, 8, 8)
    assert torch.equal(out["samples"][2:], latent["samples"])
    assert out["batch_index"] == [0, 1, 0, 1]
    # composite pastes source into destination at (x, y), in pixels divided by the multiplier
    dest, src = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 2, 2)
    pasted = pack.composite(dest, src, 4, 2, None, 1)
    assert pasted[0, :, 2:4, 4:6].eq(1).all() and pasted.sum() == 12
    import comfy_extras.nodes_latent

    with pytest.raises(AttributeError, match="NoSuchNode"):
        comfy_extras.nodes_latent.NoSuchNode  # noqa: B018


@pytest.fixture
def fresh_prompt_server():
    """A PromptServer of its own, so the routes a test pack adds do not outlive the test."""
    from comfyui.compat.server import PromptServer

    old = PromptServer.instance
    PromptServer.instance = PromptServer()
    yield PromptServer.instance
    PromptServer.instance = old


async def test_prompt_queue_and_routes_added_at_import(tmp_path, write_pack, workspace, fresh_prompt_server):
    """VideoHelperSuite takes ``PromptServer.instance.prompt_queue`` at import and reads
    ``currently_running`` while its node runs (the tuple holds the running prompt); KJNodes
    adds routes with ``PromptServer.instance.app.add_routes`` at import (ComfyUI's app exists
    by then), which the server then serves."""
    from aiohttp.test_utils import TestClient, TestServer

    from comfyui.config import Config
    from comfyui.engine.engine import Engine
    from comfyui.server.app import create_app

    cn = tmp_path / "custom_nodes"
    write_pack(cn, "queue_reader", {
        "__init__.py": '''
            import os
            from aiohttp import web
            import server
            prompt_queue = server.PromptServer.instance.prompt_queue  # taken at import, like VHS
            app = server.PromptServer.instance.app
            if not app.router.frozen:
                static = os.path.join(os.path.dirname(__file__), "static")
                app.add_routes([web.static("/queue_reader_static", static)])
                async def hello(request):
                    return web.json_response({"hello": request.match_info["name"]})
                app.router.add_get("/queue_reader/hello/{name}", hello)
            class RunningPrompt:
                @classmethod
                def INPUT_TYPES(cls):
                    return {"required": {"tag": ("STRING", {"default": ""})}}
                RETURN_TYPES = ()
                OUTPUT_NODE = True
                FUNCTION = "run"
                CATEGORY = "test"
                def run(self, tag):
                    running = prompt_queue.currently_running.values()
                    (number, prompt_id, prompt, extra_data, outputs, sensitive), = running
                    return {"ui": {"seen": [{"prompt_id": prompt_id, "class_type": prompt["1"]["class_type"],
                                             "outputs": list(outputs), "tag": tag,
                                             "remaining": prompt_queue.get_tasks_remaining()}]}}
            NODE_CLASS_MAPPINGS = {"RunningPrompt": RunningPrompt}
        ''',
        "static/note.txt": "static text",
    })
    registry = NodeRegistry.with_builtins()
    load(registry, cn)
    config = Config(base_directory=str(workspace), create_directories=True)
    engine = Engine.from_config(config, registry=registry)
    engine.start()
    client = TestClient(TestServer(create_app(engine, config)))
    await client.start_server()
    try:
        resp = await client.post("/prompt", json={"prompt": {"1": {"class_type": "RunningPrompt",
                                                                   "inputs": {"tag": "x"}}}})
        assert resp.status == 200, await resp.text()
        prompt_id = (await resp.json())["prompt_id"]
        import asyncio

        entry = await asyncio.wait_for(asyncio.wrap_future(engine.wait(prompt_id)), 30)
        assert entry["status"]["status_str"] == "success", entry["status"]
        assert entry["outputs"]["1"]["seen"] == [{"prompt_id": prompt_id, "class_type": "RunningPrompt",
                                                  "outputs": ["1"], "tag": "x", "remaining": 1}]
        resp = await client.get("/queue_reader_static/note.txt")
        assert resp.status == 200 and await resp.text() == "static text"
        resp = await client.get("/queue_reader/hello/fox")
        assert resp.status == 200 and await resp.json() == {"hello": "fox"}
    finally:
        await client.close()
        engine.stop()


def test_impact_and_rgthree_import_patterns(tmp_path, registry, write_pack):
    """``import execution`` and reading ``PromptExecutor.handle_execution_error`` at import
    (Impact), ``latent_preview.LatentPreviewer`` subclassed at import (VideoHelperSuite),
    ``node_helpers`` and ``server.BinaryEventTypes`` (many packs)."""
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "module_level", {
        "__init__.py": '''
            import execution
            import latent_preview
            import node_helpers
            from server import PromptServer, BinaryEventTypes
            ORIGINAL = execution.PromptExecutor.handle_execution_error
            class Wrapped(latent_preview.LatentPreviewer):
                def decode_latent_to_preview(self, x0):
                    return x0.shape
            class SetStrength:
                @classmethod
                def INPUT_TYPES(cls):
                    return {"required": {"conditioning": ("CONDITIONING",), "strength": ("FLOAT", {"default": 1.0})}}
                RETURN_TYPES = ("CONDITIONING",)
                FUNCTION = "run"
                CATEGORY = "test"
                def run(self, conditioning, strength):
                    return (node_helpers.conditioning_set_values(conditioning, {"strength": strength}),)
            NODE_CLASS_MAPPINGS = {"SetStrengthTest": SetStrength}
        ''',
    })
    load(registry, cn)
    pack = sys.modules["custom_nodes.module_level"]
    assert callable(pack.ORIGINAL)
    assert pack.BinaryEventTypes.PREVIEW_IMAGE == 1
    fmt, shape, size = pack.Wrapped().decode_latent_to_preview_image("JPEG", torch.zeros(1, 4, 8, 8))
    assert (fmt, tuple(shape), size) == ("JPEG", (1, 4, 8, 8), 512)
    cond = [[torch.zeros(1, 77, 8), {"pooled_output": None}]]
    (out,) = run_node(registry, "SetStrengthTest", conditioning=cond, strength=0.5)
    assert out[0][1] == {"pooled_output": None, "strength": 0.5} and cond[0][1] == {"pooled_output": None}
    import execution

    with pytest.raises(NotImplementedError, match="comfyui.engine"):
        execution.PromptExecutor()


@pytest.fixture
def shims():
    with compat.installed():
        yield


def test_manual_cast_layers_cast_stored_weights(shims):
    """``operations=comfy.ops.manual_cast`` (KJNodes, IPAdapter, GGUF): layers keep their
    stored dtype and compute in the input's; ``disable_weight_init`` layers run as torch's."""
    import comfy.ops

    torch.manual_seed(0)
    linear = comfy.ops.manual_cast.Linear(4, 3).to(torch.float16)
    conv = comfy.ops.manual_cast.conv_nd(1, 2, 5, 3, padding=1).to(torch.bfloat16)
    assert linear.comfy_cast_weights and conv.comfy_cast_weights
    with torch.no_grad():  # no random init (weights are loaded after building, as upstream)
        for layer in (linear, conv):
            for p in layer.parameters():
                p.copy_(torch.randn(p.shape))
    x = torch.randn(2, 4)
    y = linear(x)
    assert y.dtype == torch.float32 and linear.weight.dtype == torch.float16
    assert torch.allclose(y, torch.nn.functional.linear(x, linear.weight.float(), linear.bias.float()))
    s = torch.randn(1, 2, 7)
    assert torch.allclose(conv(s), torch.nn.functional.conv1d(s, conv.weight.float(), conv.bias.float(), padding=1))
    plain = comfy.ops.disable_weight_init.Linear(4, 3)
    assert not plain.comfy_cast_weights
    plain.comfy_cast_weights = True  # packs switch casting on per layer
    plain.weight.data = torch.randn(3, 4).half()
    plain.bias.data = torch.randn(3).half()
    assert plain(x).dtype == torch.float32
    assert comfy.ops.pick_operations(torch.float16, torch.float32) is comfy.ops.manual_cast
    assert comfy.ops.pick_operations(torch.float32, torch.float32) is comfy.ops.disable_weight_init


def test_optimized_attention_is_scaled_dot_product_attention(shims):
    """``comfy.ldm.modules.attention.optimized_attention`` (IPAdapter's cross-attention patch)."""
    from comfy.ldm.modules.attention import optimized_attention

    torch.manual_seed(0)
    heads, d = 2, 4
    q, k, v = torch.randn(1, 5, heads * d), torch.randn(1, 6, heads * d), torch.randn(1, 6, heads * d)
    mask = torch.zeros(5, 6)
    mask[:, 0] = -torch.inf  # nobody attends to the first key

    def by_hand(q, k, v, mask):
        split = [t.view(1, -1, heads, d).transpose(1, 2) for t in (q, k, v)]
        scores = split[0] @ split[1].transpose(-1, -2) / d ** 0.5 + mask
        return (scores.softmax(-1) @ split[2]).transpose(1, 2).reshape(1, -1, heads * d)

    assert torch.allclose(optimized_attention(q, k, v, heads), by_hand(q, k, v, 0), atol=1e-6)
    assert torch.allclose(optimized_attention(q, k, v, heads, mask=mask), by_hand(q, k, v, mask), atol=1e-6)
    changed = v.clone()
    changed[:, 0] += 100  # a masked-out value changes nothing
    assert torch.allclose(optimized_attention(q, k, changed, heads, mask=mask), by_hand(q, k, v, mask), atol=1e-5)


def test_unsupported_capabilities_fail_when_used_not_when_imported(shims):
    """Names a pack imports at module level that we do not implement: the import works, the
    use raises a NotImplementedError that says what is missing."""
    import comfy.hooks
    import comfy.model_base
    import comfy.patcher_extension as pe
    from comfy.ldm.lumina.model import FeedForward  # a family we do not run (KJNodes imports it)
    from comfy.ldm.flux.math import apply_rope

    with pytest.raises(NotImplementedError, match="comfy.ldm.flux.math.apply_rope is not supported"):
        apply_rope(None, None, None)
    with pytest.raises(NotImplementedError, match="FeedForward"):
        FeedForward(8)
    with pytest.raises(ImportError):
        import comfy.ldm.no_such_family  # noqa: F401  (only upstream's modules exist)

    class MyHook(comfy.hooks.Hook):  # packs subclass upstream classes at import time
        pass

    with pytest.raises(NotImplementedError, match="comfy.hooks.Hook is not supported by comfyui"):
        MyHook()
    with pytest.raises(NotImplementedError, match="wrappers"):
        pe.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "k", lambda e, *a: e(*a), {})
    assert comfy.model_base.ModelType.V_PREDICTION.value == 2
    from comfyui.sampling.model_sampling import model_sampling

    v_pred = comfy.model_base.model_sampling(None, comfy.model_base.ModelType.V_PREDICTION)
    assert torch.equal(v_pred.sigmas, model_sampling("v_prediction").sigmas)
    x, sigma = torch.ones(1, 4, 2, 2), torch.tensor([2.0])
    # v-prediction: denoised = x / (sigma^2 + 1) - v * sigma / sqrt(sigma^2 + 1)
    assert torch.allclose(v_pred.calculate_denoised(sigma, x, x), torch.full_like(x, 0.2 - 2 / 5 ** 0.5))
    flow = comfy.model_base.model_sampling(None, comfy.model_base.ModelType.FLOW)
    assert float(flow.timestep(torch.tensor(0.5))) == 500.0  # SD3's flow schedule, multiplier 1000
    with pytest.raises(NotImplementedError, match="FLOW_COSMOS"):
        comfy.model_base.model_sampling(None, comfy.model_base.ModelType.FLOW_COSMOS)
    with pytest.raises(NotImplementedError, match="WAN21"):
        comfy.model_base.WAN21()
    calls = []

    def outer(executor, x):
        calls.append("outer")
        return executor(x + 1)

    def inner(executor, x):
        calls.append("inner")
        return executor(x * 10)

    chain = pe.WrapperExecutor.new_executor(lambda x: x - 3, [outer, inner])
    assert chain.execute(1) == 17 and calls == ["outer", "inner"]


def test_packs_write_comfyuis_module_level_dicts(tmp_path, registry, write_pack, workspace):
    """Impact Pack adds its web folder with ``nodes.EXTENSION_WEB_DIRS[name] = path``; packs add
    nodes with ``nodes.NODE_CLASS_MAPPINGS[name] = cls``; VideoHelperSuite and Inspire list the
    input folder while they import (ComfyUI creates it before custom nodes load)."""
    import shutil

    shutil.rmtree(workspace / "input")
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "writes_dicts", {
        "__init__.py": '''
            import os
            import folder_paths
            import nodes
            INPUTS = sorted(os.listdir(folder_paths.get_input_directory()))
            nodes.EXTENSION_WEB_DIRS["WritesDicts"] = os.path.join(os.path.dirname(__file__), "js")
            class Late:
                @classmethod
                def INPUT_TYPES(cls):
                    return {"required": {}}
                RETURN_TYPES = ("INT",)
                FUNCTION = "run"
                CATEGORY = "test"
                def run(self):
                    return (3,)
            nodes.NODE_CLASS_MAPPINGS["LateRegistered"] = Late
            NODE_CLASS_MAPPINGS = {}
        ''',
        "js/ext.js": "",
    })
    load(registry, cn)
    assert sys.modules["custom_nodes.writes_dicts"].INPUTS == []
    assert registry.web_directories["WritesDicts"] == str(cn / "writes_dicts" / "js")
    assert run_node(registry, "LateRegistered") == (3,)
    import nodes

    assert nodes.NODE_CLASS_MAPPINGS["LateRegistered"] is registry.get("LateRegistered").cls


def test_upstream_classes_packs_subclass_or_check_against(tmp_path, write_pack):
    """AnimateDiff subclasses ``comfy_extras.nodes_hooks.CreateHookModelAsLora`` at import (our
    built-in node, so the subclass builds and keeps its inputs); Inspire asks ``isinstance(clip.tokenizer,
    sdxl_clip.SDXLTokenizer)`` of our CLIP objects."""
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "subclasses", {
        "__init__.py": '''
            import comfy_extras.nodes_hooks
            from comfy import sdxl_clip
            class MaskableLoader(comfy_extras.nodes_hooks.CreateHookModelAsLora):
                pass
            NODE_CLASS_MAPPINGS = {}
        ''',
    })
    out = load_in_fresh_process(cn, """
        import sys
        from comfyui.models.text_encoders.encoder import Tokenizers as MultiTokenizer
        pack = sys.modules["custom_nodes.subclasses"]
        out["built"] = list(pack.MaskableLoader.INPUT_TYPES()["required"])
        pack.MaskableLoader()
        sdxl = MultiTokenizer.__new__(MultiTokenizer); sdxl.family = "sdxl"
        sd1 = MultiTokenizer.__new__(MultiTokenizer); sd1.family = "sd1"
        out["sdxl"] = [isinstance(t, pack.sdxl_clip.SDXLTokenizer) for t in (sdxl, sd1, "text")]
    """)
    assert out["errors"] == []
    assert out["built"] == ["ckpt_name", "strength_model", "strength_clip"]
    assert out["sdxl"] == [True, False, False]


def test_video_types_of_the_schema_api_import(tmp_path, write_pack):
    """KJNodes: ``from comfy_api.latest import io, InputImpl, Types, ui`` at module level. The
    data types work and so do the video readers."""
    cn = tmp_path / "custom_nodes"
    write_pack(cn, "ComfyUI-VideoTypes", {
        "__init__.py": '''
            from fractions import Fraction
            from comfy_api.latest import io, InputImpl, Types, ui
            class Ext:
                @classmethod
                def INPUT_TYPES(cls):
                    return {"required": {"container": (Types.VideoContainer.as_input(),)}}
                RETURN_TYPES = ("STRING",)
                FUNCTION = "run"
                CATEGORY = "test"
                def run(self, container):
                    parts = Types.VideoComponents(images=None, frame_rate=Fraction(24))
                    return (Types.VideoContainer.get_extension(container) + "@" + str(parts.frame_rate),)
            class Read:
                @classmethod
                def INPUT_TYPES(cls):
                    return {"required": {"path": ("STRING", {"default": ""})}}
                RETURN_TYPES = ("VIDEO",)
                FUNCTION = "run"
                CATEGORY = "test"
                def run(self, path):
                    return (InputImpl.VideoFromFile(path),)
            NODE_CLASS_MAPPINGS = {"VideoExt": Ext, "VideoRead": Read}
        ''',
    })
    registry = NodeRegistry()
    with compat.installed():
        load(registry, str(cn))
        assert registry.get("VideoExt").cls.INPUT_TYPES()["required"]["container"] == (["auto", "mp4"],)
        assert run_node(registry, "VideoExt", container="auto") == ("mp4@24",)
        # the readers are real: a file written from components reads back lazily
        pytest.importorskip("av")
        from fractions import Fraction
        path = str(tmp_path / "a.mp4")
        InputImpl = sys.modules["comfy_api.latest"].InputImpl
        Types = sys.modules["comfy_api.latest"].Types
        InputImpl.VideoFromComponents(Types.VideoComponents(images=torch.zeros(3, 16, 16, 3),
                                                            frame_rate=Fraction(8))).save_to(path)
        (video,) = run_node(registry, "VideoRead", path=path)
        assert video.get_dimensions() == (16, 16) and video.get_components().images.shape == (3, 16, 16, 3)
