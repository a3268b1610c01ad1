"""Two engines in one process share no state: each embedded client has its own folders,
settings, loaded-model cache and interrupt flag (comfyui.runtime), and ComfyUI's module-level
APIs (folder_paths, comfy.cli_args, comfy.model_management) answer for the engine whose node
is calling them."""
import asyncio
import pathlib
import textwrap

import pytest

# A custom node pack as users write them: module-level ComfyUI APIs only.
PACK = textwrap.dedent('''
    import os, time
    import folder_paths
    import comfy.model_management
    from comfy.cli_args import args

    folder_paths.add_model_folder_path("probe_models", os.path.join(folder_paths.models_dir, "probe"))

    class RuntimeProbe:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"ckpt": (folder_paths.get_filename_list("checkpoints"),)}}
        RETURN_TYPES = ("STRING",)
        FUNCTION = "probe"
        CATEGORY = "test"

        def probe(self, ckpt):
            return ("|".join([folder_paths.get_output_directory(), str(args.disable_metadata), ckpt,
                              ",".join(folder_paths.get_folder_paths("probe_models"))]),)

    class SpinUntilReleased:
        """Runs until <output>/release exists, checking for interrupts like a sampler does."""
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"seconds": ("FLOAT", {"default": 20.0})}}
        RETURN_TYPES = ("STRING",)
        FUNCTION = "spin"
        CATEGORY = "test"

        def spin(self, seconds):
            out = folder_paths.get_output_directory()
            os.makedirs(out, exist_ok=True)
            open(os.path.join(out, "started"), "w").close()
            end = time.monotonic() + seconds
            while not os.path.exists(os.path.join(out, "release")) and time.monotonic() < end:
                comfy.model_management.throw_exception_if_processing_interrupted()
                time.sleep(0.01)
            return ("finished",)

    class InterruptEverything:
        """What packs do to stop 'the' running prompt: ComfyUI's global interrupt."""
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("STRING", {"default": "x"})}}
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"
        CATEGORY = "test"

        def run(self, value):
            comfy.model_management.interrupt_current_processing()
            return (value,)

    NODE_CLASS_MAPPINGS = {"RuntimeProbe": RuntimeProbe, "SpinUntilReleased": SpinUntilReleased,
                           "InterruptEverything": InterruptEverything}
''')


def _workspace(root: pathlib.Path, name: str, checkpoint: str) -> pathlib.Path:
    ws = root / name
    pack = ws / "custom_nodes" / f"probe_{name}"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(PACK)
    (ws / "models" / "checkpoints").mkdir(parents=True)
    (ws / "models" / "checkpoints" / checkpoint).write_bytes(b"")
    return ws


def _probe(ckpt: str) -> dict:
    return {"1": {"class_type": "RuntimeProbe", "inputs": {"ckpt": ckpt}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


async def test_each_client_sees_its_own_folders_and_settings(tmp_path):
    from comfyui import Comfy, paths

    ws_a = _workspace(tmp_path, "a", "only_in_a.safetensors")
    ws_b = _workspace(tmp_path, "b", "only_in_b.safetensors")
    default_output = paths.get_output_directory()
    async with Comfy(base_directory=str(ws_a), disable_metadata=True) as a, \
            Comfy(base_directory=str(ws_b)) as b:
        # the node library lists each workspace's files only
        ckpts_a = a.object_info()["RuntimeProbe"]["input"]["required"]["ckpt"][0]
        ckpts_b = b.object_info()["RuntimeProbe"]["input"]["required"]["ckpt"][0]
        assert (ckpts_a, ckpts_b) == (["only_in_a.safetensors"], ["only_in_b.safetensors"])
        # a prompt valid for one workspace is refused by the other (validation uses its folders)
        from comfyui.jobs.submission import PromptRejected

        with pytest.raises(PromptRejected):
            await b.queue_prompt(_probe("only_in_a.safetensors"))
        # run side by side, many times, so the two worker threads interleave
        results = await asyncio.gather(*[c.queue_prompt(_probe(ck)) for _ in range(5)
                                         for c, ck in ((a, "only_in_a.safetensors"), (b, "only_in_b.safetensors"))])
        texts = {r["2"]["text"][0] for r in results}
        assert texts == {
            f"{ws_a / 'output'}|True|only_in_a.safetensors|{ws_a / 'models' / 'probe'}",
            f"{ws_b / 'output'}|False|only_in_b.safetensors|{ws_b / 'models' / 'probe'}",
        }
        # the embedding process's own (default) runtime was not touched
        assert paths.get_output_directory() == default_output
        assert "probe_models" not in paths.folder_names_and_paths


async def test_an_interrupt_in_one_engine_leaves_the_other_running(tmp_path):
    from comfyui import Comfy
    from comfyui.client.common import PromptInterrupted

    ws_a = _workspace(tmp_path, "a", "a.safetensors")
    ws_b = _workspace(tmp_path, "b", "b.safetensors")
    spin = {"1": {"class_type": "SpinUntilReleased", "inputs": {"seconds": 20.0}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    stop_all = {"1": {"class_type": "InterruptEverything", "inputs": {"value": "x"}},
                "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    async with Comfy(base_directory=str(ws_a)) as a, Comfy(base_directory=str(ws_b)) as b:
        running = asyncio.ensure_future(a.queue_prompt(spin))
        for _ in range(500):
            if (ws_a / "output" / "started").exists():
                break
            await asyncio.sleep(0.01)
        assert (ws_a / "output" / "started").exists()
        # B's node interrupts "everything" the ComfyUI way: B's own prompt stops ...
        with pytest.raises(PromptInterrupted):
            await b.queue_prompt(stop_all)
        # ... and A's keeps running until it is released, then finishes normally
        await asyncio.sleep(0.2)
        assert not running.done()
        (ws_a / "output" / "release").write_text("")
        assert (await asyncio.wait_for(running, 20))["2"]["text"] == ["finished"]
        # B runs its next prompt (its interrupt was for the prompt it stopped)
        (ws_b / "output").mkdir(exist_ok=True)
        (ws_b / "output" / "release").write_text("")
        assert (await b.queue_prompt(spin))["2"]["text"] == ["finished"]
