"""The BFL tutorial workflows (examples/api_nodes) convert from their UI form to the stored
API prompts and run end to end against the contract server."""
from __future__ import annotations

import glob
import json
import os

import pytest
from PIL import Image

from apinode_helpers import error_of, run_prompt
from contract_server import RESULT_SIZE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "api_nodes")
NAMES = sorted(os.path.basename(p)[:-len(".api.json")] for p in glob.glob(os.path.join(EXAMPLES, "*.api.json")))


def test_examples_present():
    assert NAMES == ["flux_expand", "flux_kontext_max", "flux_kontext_multiple_images", "flux_kontext_pro",
                     "flux_pro_ultra_t2i"]


@pytest.mark.parametrize("name", NAMES)
async def test_example_runs(name, make_engine, contract, workspace):
    from comfyui.nodes.registry import NodeRegistry
    from comfyui.workflows.convert import convert_ui_to_api

    with open(os.path.join(EXAMPLES, f"{name}.api.json")) as f:
        prompt = json.load(f)
    with open(os.path.join(EXAMPLES, f"{name}.workflow.json")) as f:
        assert convert_ui_to_api(json.load(f), NodeRegistry.with_builtins()) == prompt
    for i, node in enumerate(n for n in prompt.values() if n["class_type"] == "LoadImage"):
        Image.new("RGB", (48 + 8 * i, 32), (40 * i, 90, 160)).save(os.path.join(workspace, "input", node["inputs"]["image"]))
    engine = make_engine()
    entry = await run_prompt(engine, prompt)
    assert entry["status"]["status_str"] == "success", error_of(entry)
    saved = [i for out in entry["outputs"].values() for i in out.get("images", []) if i["type"] == "output"]
    assert len(saved) == 1
    assert Image.open(os.path.join(workspace, "output", saved[0]["subfolder"], saved[0]["filename"])).size == RESULT_SIZE
    api_calls = [r for r in contract.requests if r["path"].endswith("/generate")]
    assert len(api_calls) == 1 and api_calls[0]["body"].prompt
