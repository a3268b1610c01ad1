"""Process-wide settings are applied once, where a process comfyui owns starts; loading a
model, running a forward pass or embedding the server changes none of them."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# mallinfo2().hblks counts blocks glibc mapped on their own; a 64 MiB block is one of them
# under glibc's default policy and comes from the heap once the CPU-inference policy is set.
BIG_BLOCK_MAPPED = """
import ctypes
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
print("mapped" if libc.mallinfo2().hblks > before else "heap")
libc.free(ctypes.c_void_p(block))
"""


def _run(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests", "models"))
    env.pop("COMFYUI_CPU_KEEP_HEAP", None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + BIG_BLOCK_MAPPED], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[-1]


def test_cpu_model_load_leaves_the_allocator_alone():
    assert _run("""
        import fixtures
        from comfyui.models import memory, sd
        memory.configure(None, cpu=True)
        model = sd.load_state_dict_guess_config(fixtures.sd1_state_dict(seed=3, vae=False, clip=False))[0]
        memory.load_models_gpu([model])
    """) == "mapped"


def test_configure_process_sets_the_cpu_allocator_policy_once_at_start():
    assert _run("from comfyui.process import configure_process; configure_process(cpu=True)") == "heap"
    assert _run("from comfyui.process import configure_process; configure_process(cpu=False)") == "mapped"


def test_gc_freeze_only_in_a_process_comfyui_owns(tmp_path):
    """serve() embedded in another program leaves its collector alone; after configure_process
    (what the ``comfyui`` command does first) start-up objects are frozen."""
    code = f"""
        import asyncio, gc, socket
        from comfyui.config import load_config
        from comfyui.engine.engine import Engine
        from comfyui.nodes.registry import NodeRegistry
        from comfyui.process import configure_process
        from comfyui.server.app import serve

        def serve_once():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            config = load_config(["--base-directory", {str(tmp_path)!r}, "--port", str(port), "--dont-print-server"],
                                 env={{}}, discover_config_file=False)
            config.apply_paths()
            engine = Engine.from_config(config, registry=NodeRegistry(), custom_nodes=False)

            async def main():
                ready, stop = asyncio.Event(), asyncio.Event()
                task = asyncio.ensure_future(serve(config, engine, ready=ready, stop=stop))
                await ready.wait()
                frozen = gc.get_freeze_count()
                stop.set()
                await task
                return frozen
            return asyncio.run(main())

        print("embedded", serve_once())
        configure_process()
        print("owned", serve_once())
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    counts = dict(line.split() for line in out.stdout.splitlines())
    assert counts["embedded"] == "0"
    assert int(counts["owned"]) > 10_000


def test_unet_weight_layout_is_set_at_load_not_in_forward():
    import fixtures as fx
    from comfyui.models import memory, sd

    memory.configure(None, cpu=True)
    state = fx.sd1_state_dict(seed=4, vae=False, clip=False)
    model = sd.load_state_dict_guess_config(state)[0]
    reference = sd.load_state_dict_guess_config(state)[0].model  # never loaded: contiguous weights
    try:
        memory.load_models_gpu([model])
        unet = model.model.diffusion_model
        convs = [m for m in unet.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
        layout = [(c.weight, c.weight.data_ptr(), c.weight.stride()) for c in convs]
        x, ctx, sigma = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32), torch.tensor([3.0])
        with torch.inference_mode():
            out = model.model.apply_model(x, sigma, c_crossattn=ctx)
            expected = reference.apply_model(x, sigma, c_crossattn=ctx)
        assert [(c.weight, c.weight.data_ptr(), c.weight.stride()) for c in convs] == layout
        assert all(m.weight.is_contiguous() for m in reference.modules() if isinstance(m, torch.nn.Conv2d))
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    finally:
        memory.unload_all_models()
        memory.configure(None)
