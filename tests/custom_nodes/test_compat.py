import subprocess
import sys

import pytest
import torch

from comfyui import compat, paths
from comfyui.engine import progress


@pytest.fixture
def shims():
    with compat.installed():
        yield


def test_generic_names_not_importable_until_install():
    code = (
        "import importlib.util, comfyui.compat, comfyui.paths, comfyui.nodes.custom_nodes\n"
        "names = ['server', 'nodes', 'folder_paths', 'comfy', 'comfy_execution', 'comfy_api', 'node_helpers',\n"
        "         'latent_preview', 'comfy_extras', 'execution']\n"
        "print([n for n in names if importlib.util.find_spec(n) is not None])\n"
        "comfyui.compat.install()\n"
        "print([n for n in names if importlib.util.find_spec(n) is None])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout + out.stderr


def test_uninstall_forgets_shims():
    was = compat.is_installed()
    compat.uninstall()
    try:
        with compat.installed():
            import server  # noqa: F401
            assert "server" in sys.modules
        assert "server" not in sys.modules and compat.SHIM_DIR not in sys.path
    finally:
        if was:
            compat.install()


def test_folder_paths_is_live(shims, workspace, tmp_path):
    import folder_paths

    assert folder_paths is paths
    assert folder_paths.models_dir == str(workspace / "models")
    assert folder_paths.get_filename_list("checkpoints") == []
    paths.configure(base_directory=tmp_path / "other")
    assert folder_paths.models_dir == str(tmp_path / "other" / "models")
    assert folder_paths.get_output_directory() == str(tmp_path / "other" / "output")


def test_prompt_server_send_sync_reaches_sinks(shims):
    from server import PromptServer

    from comfyui.compat import server as hub

    got = []

    def sink(event, data, sid):
        got.append((event, data, sid))

    def broken(event, data, sid):
        raise RuntimeError("sink failure must not reach node code")

    hub.add_sink(broken)
    hub.add_sink(sink)
    try:
        PromptServer.instance.send_sync("my.event", {"v": 1}, "client-1")
        PromptServer.instance.send_sync("all.event", {"v": 2})
    finally:
        hub.remove_sink(sink)
        hub.remove_sink(broken)
    PromptServer.instance.send_sync("after", {})
    assert got == [("my.event", {"v": 1}, "client-1"), ("all.event", {"v": 2}, None)]
    assert PromptServer.instance is hub.PromptServer.instance


async def test_prompt_server_routes_serve_on_an_aiohttp_app(shims):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from server import PromptServer

    routes = PromptServer.instance.routes
    assert isinstance(routes, web.RouteTableDef)

    @routes.get("/test_pack/hello")
    async def hello(request):
        return web.json_response({"hello": request.query.get("name")})

    app = web.Application()
    app.add_routes(routes)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/test_pack/hello?name=x")
        assert resp.status == 200
        assert await resp.json() == {"hello": "x"}


def test_on_prompt_handlers(shims):
    from server import PromptServer

    ps = PromptServer.instance

    def handler(data):
        data["prompt"]["seen"] = True
        return data

    ps.add_on_prompt_handler(handler)
    try:
        assert ps.trigger_on_prompt({"prompt": {}}) == {"prompt": {"seen": True}}
    finally:
        ps.on_prompt_handlers.remove(handler)


def test_nodes_module_is_a_live_registry_view(shims):
    import nodes

    from comfyui.nodes.registry import NodeRegistry

    reg = NodeRegistry()
    compat.set_registry(reg)
    assert nodes.MAX_RESOLUTION == 16384
    assert "LiveNode" not in nodes.NODE_CLASS_MAPPINGS
    cls = type("LiveNode", (), {"CATEGORY": "x", "RETURN_TYPES": (), "FUNCTION": "f",
                                "INPUT_TYPES": classmethod(lambda c: {"required": {}}), "f": lambda self: ()})
    reg.register_mappings({"LiveNode": cls}, {"LiveNode": "Live Node"})
    assert nodes.NODE_CLASS_MAPPINGS["LiveNode"] is cls
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["LiveNode"] == "Live Node"
    assert nodes.LiveNode is cls
    from nodes import LiveNode
    assert LiveNode is cls
    with pytest.raises(AttributeError):
        nodes.NotANode


def test_interrupts(shims):
    import comfy.model_management as mm

    assert mm.processing_interrupted() is False
    mm.interrupt_current_processing()
    try:
        assert mm.processing_interrupted() is True
        with pytest.raises(mm.InterruptProcessingException):
            mm.throw_exception_if_processing_interrupted()
        assert mm.InterruptProcessingException is progress.InterruptProcessingException
    finally:
        mm.interrupt_current_processing(False)
    mm.throw_exception_if_processing_interrupted()


def test_model_management_devices(shims):
    import comfy.model_management as mm

    assert isinstance(mm.get_torch_device(), torch.device)
    assert mm.intermediate_device() == torch.device("cpu")
    assert isinstance(mm.unet_offload_device(), torch.device)
    mm.soft_empty_cache()
    assert mm.get_free_memory() > 0  # delegated to comfyui.models.memory
    with pytest.raises(AttributeError):
        mm.no_such_function


def test_progress_bar_reports_to_the_running_node(shims):
    import comfy.utils

    seen = []
    ctx = progress.NodeContext(prompt_id="p", node_id="5", display_node_id="5", real_node_id="5",
                               parent_node_id=None, on_progress=lambda v, t, p, n: seen.append((v, t)))
    token = progress.set_context(ctx)
    try:
        bar = comfy.utils.ProgressBar(4)
        bar.update(1)
        bar.update(2)
        bar.update_absolute(10)  # clamped to total
    finally:
        progress.reset_context(token)
    assert seen == [(1, 4), (3, 4), (4, 4)]


def test_common_upscale(shims):
    import comfy.utils

    img = torch.zeros(1, 3, 4, 8)
    img[..., :, :2] = 1.0  # left quarter white
    out = comfy.utils.common_upscale(img, 8, 8, "nearest-exact", "disabled")
    assert out.shape == (1, 3, 8, 8) and out[0, 0, 0, 0] == 1 and out[0, 0, 0, 7] == 0
    # center crop to 1:1 removes the 2 leftmost (white) columns
    out = comfy.utils.common_upscale(img, 4, 4, "nearest-exact", "center")
    assert out.shape == (1, 3, 4, 4) and out.max() == 0
    for method in ("bilinear", "area", "bicubic", "lanczos", "bislerp"):
        out = comfy.utils.common_upscale(torch.full((2, 4, 5, 7), 0.5), 14, 10, method, "disabled")
        assert out.shape == (2, 4, 10, 14)
        assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-4), method
    video = torch.rand(1, 4, 3, 8, 8)
    assert comfy.utils.common_upscale(video, 16, 16, "bilinear", "disabled").shape == (1, 4, 3, 16, 16)
    with pytest.raises(ValueError):
        comfy.utils.common_upscale(img, 4, 4, "nope", "disabled")


def test_bislerp_keeps_vector_norms(shims):
    import comfy.utils

    a = torch.zeros(1, 2, 1, 2)
    a[0, 0, 0, 0] = 1.0  # (1, 0)
    a[0, 1, 0, 1] = 1.0  # (0, 1)
    out = comfy.utils.bislerp(a, 5, 1)
    norms = out[0, :, 0].norm(dim=0)
    assert torch.allclose(norms, torch.ones(5), atol=1e-5)  # slerp, not lerp (lerp midpoint has norm .707)


def test_tiled_scale_matches_untiled(shims):
    import comfy.utils

    x = torch.rand(2, 3, 40, 52)

    def up(t):
        return torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest")

    steps = comfy.utils.get_tiled_scale_steps(52, 40, 16, 16, 4)

    class Bar:
        n = 0

        def update(self, k):
            Bar.n += k

    out = comfy.utils.tiled_scale(x, up, tile_x=16, tile_y=16, overlap=4, upscale_amount=2, out_channels=3,
                                  pbar=Bar())
    assert out.shape == (2, 3, 80, 104)
    assert torch.allclose(out, up(x), atol=1e-5)
    assert Bar.n == steps * 2


def test_torch_file_roundtrip(shims, tmp_path):
    import comfy.utils

    sd = {"a.weight": torch.randn(3, 3), "b": torch.arange(4)}
    comfy.utils.save_torch_file(sd, str(tmp_path / "m.safetensors"), metadata={"k": "v"})
    loaded, meta = comfy.utils.load_torch_file(str(tmp_path / "m.safetensors"), return_metadata=True)
    assert meta == {"k": "v"} and torch.equal(loaded["a.weight"], sd["a.weight"])
    torch.save({"state_dict": sd}, tmp_path / "m.ckpt")
    loaded = comfy.utils.load_torch_file(str(tmp_path / "m.ckpt"))
    assert torch.equal(loaded["b"], sd["b"])
    assert comfy.utils.calculate_parameters(sd) == 13
    assert comfy.utils.state_dict_prefix_replace(dict(sd), {"a.": "x."}).keys() == {"x.weight", "b"}
    assert comfy.utils.repeat_to_batch_size(torch.arange(2), 5).tolist() == [0, 1, 0, 1, 0]
    assert comfy.utils.resize_to_batch_size(torch.arange(5), 3).tolist() == [0, 2, 4]


def test_graph_modules_are_the_engines(shims):
    from comfy_execution.graph import DynamicPrompt, ExecutionBlocker
    from comfy_execution.graph_utils import GraphBuilder, is_link

    from comfyui.engine import graph

    assert ExecutionBlocker is graph.ExecutionBlocker and DynamicPrompt is graph.DynamicPrompt
    assert GraphBuilder is graph.GraphBuilder and is_link(["1", 0]) and not is_link(["1", "0"])
    g = GraphBuilder(prefix="p")
    n = g.node("Add", a=1)
    assert is_link(n.out(0))
    assert "Add" in [v["class_type"] for v in g.finalize().values()]


def test_comfy_types(shims):
    from comfy.comfy_types import IO, ComfyNodeABC, FileLocator, InputTypeDict  # noqa: F401

    assert IO.IMAGE == "IMAGE" and isinstance(IO.IMAGE, str)
    assert not (IO.ANY != "LATENT") and not (IO.IMAGE != "*")
    assert not (IO.NUMBER != "INT") and not (IO.INT != "FLOAT,INT")
    assert IO.INT != "FLOAT" and IO.IMAGE != "MASK"

    class N(ComfyNodeABC):
        @classmethod
        def INPUT_TYPES(cls) -> InputTypeDict:
            return {"required": {"image": (IO.IMAGE,)}}

    assert N.INPUT_TYPES()["required"]["image"] == ("IMAGE",)


def test_comfy_api_latest(shims):
    from comfy_api.latest import ComfyExtension, io, ui

    from comfyui.nodes import io as schema

    assert io is schema.io and ui is schema.ui and ComfyExtension is schema.ComfyExtension
    import comfy_api.latest._io as _io

    assert _io is schema.io


def test_cli_args_follow_current_config(shims):
    from comfy.cli_args import LatentPreviewMethod, args

    from comfyui import config

    old = config.current()
    try:
        config.set_current(config.load_config(["--port", "9999", "--preview-method", "taesd"], {},
                                              discover_config_file=False))
        assert args.port == 9999
        assert args.preview_method == LatentPreviewMethod.TAESD
    finally:
        config.set_current(old)


def test_inference_modules_are_the_real_ones(shims):
    import comfy.k_diffusion.sampling
    import comfy.lora
    import comfy.model_patcher
    import comfy.model_sampling
    import comfy.ops
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import latent_preview
    import nodes

    from comfyui.models import lora, patcher, vae
    from comfyui.sampling import k_diffusion, preview, samplers

    assert comfy.samplers is samplers and comfy.k_diffusion.sampling is k_diffusion
    assert comfy.model_patcher.ModelPatcher is patcher.ModelPatcher
    assert comfy.sd.VAE is vae.VAE
    assert comfy.sd.load_lora_for_models is lora.load_lora_for_models
    assert comfy.sample.sample is samplers.sample_with_ksampler
    assert latent_preview.prepare_callback is preview.prepare_callback
    assert "euler" in comfy.samplers.KSampler.SAMPLERS
    assert callable(nodes.common_ksampler)
    with pytest.raises(AttributeError, match="comfy.sd"):
        comfy.sd.not_a_loader


def test_node_helpers(shims):
    import node_helpers

    cond = [[torch.zeros(1), {"a": 1}]]
    out = node_helpers.conditioning_set_values(cond, {"strength": 0.5})
    assert out[0][1] == {"a": 1, "strength": 0.5} and cond[0][1] == {"a": 1}
    assert node_helpers.hasher()().name == "sha256"
