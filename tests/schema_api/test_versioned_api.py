"""``comfy_api.v0_0_2`` / ``comfy_api.v0_0_1``: packs written against ComfyUI's pinned API
versions load and report progress through them (ComfyUI's own test pack does this)."""
import sys
import textwrap

import pytest

from comfyui.engine.engine import Engine
from comfyui.nodes.custom_nodes import load_custom_nodes
from comfyui.nodes.registry import NodeRegistry

PACK = '''
import asyncio

from comfy_api.v0_0_1 import ComfyAPISync as StableSync
from comfy_api.v0_0_2 import ComfyAPI, ComfyAPISync, ComfyExtension, io

api = ComfyAPI()
api_sync = ComfyAPISync()
VERSIONS = (ComfyAPI.VERSION, StableSync.VERSION, StableSync.STABLE)


class AsyncSteps:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 2})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    async def run(self, steps):
        for step in range(1, steps + 1):
            await api.execution.set_progress(value=step, max_value=steps)
            await asyncio.sleep(0)
        return (steps,)


class SyncSteps:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"forceInput": True})}}
    RETURN_TYPES = ("STRING",)
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, steps):
        for step in range(1, steps + 1):
            api_sync.execution.set_progress(value=step, max_value=steps)
        StableSync().execution.set_progress(value=0, max_value=1)
        return {"ui": {"text": [repr(VERSIONS)]}, "result": ("done",)}


class Echo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="VersionedEcho", category="test", inputs=[io.String.Input("text")],
                         outputs=[io.String.Output()])

    @classmethod
    def execute(cls, text):
        return io.NodeOutput(text)


class Extension(ComfyExtension):
    async def get_node_list(self):
        return [Echo]


async def comfy_entrypoint():
    return Extension()


NODE_CLASS_MAPPINGS = {"VersionedAsyncSteps": AsyncSteps, "VersionedSyncSteps": SyncSteps}
'''


@pytest.fixture
def engine(tmp_path):
    pack = tmp_path / "custom_nodes" / "versioned_pack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(textwrap.dedent(PACK))
    registry = NodeRegistry()
    [result] = load_custom_nodes(registry, [tmp_path / "custom_nodes"], entry_points=False)
    assert result.error is None, result.error
    eng = Engine(registry)
    eng.events = []
    eng.add_listener(lambda event, data, client: eng.events.append((event, data)))
    eng.start()
    yield eng
    eng.stop()
    for name in [n for n in sys.modules if n.startswith("custom_nodes.versioned_pack")]:
        del sys.modules[name]


def test_pinned_api_versions_report_progress(engine):
    prompt = {"1": {"class_type": "VersionedAsyncSteps", "inputs": {"steps": 2}},
              "2": {"class_type": "VersionedSyncSteps", "inputs": {"steps": ["1", 0]}}}
    entry = engine.wait(engine.submit(prompt).prompt_id).result(20)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert entry["outputs"]["2"]["text"] == ["('0.0.2', '0.0.1', True)"]
    progress = [(d["node"], d["value"], d["max"]) for e, d in engine.events if e == "progress"]
    assert progress == [("1", 1, 2), ("1", 2, 2), ("2", 1, 2), ("2", 2, 2), ("2", 0, 1)]
    assert engine.registry.get("VersionedEcho") is not None  # the extension's schema node
