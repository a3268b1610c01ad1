"""Every node of the upstream ComfyUI modules we have completed is registered, with
upstream's display name, category and experimental / deprecated flags (the list of upstream
nodes is ../shared/spec/upstream-nodes.tsv; a module joins COMPLETED when all its nodes land)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = [ROOT.parent / "shared" / "spec" / "upstream-nodes.tsv", Path("/work/shared/spec/upstream-nodes.tsv")]
if os.environ.get("COMFYUI_UPSTREAM_NODES"):
    CANDIDATES.insert(0, Path(os.environ["COMFYUI_UPSTREAM_NODES"]))

COMPLETED = [
    "comfy_extras/nodes_latent.py",
    "comfy_extras/nodes_rebatch.py",
    "comfy_extras/nodes_custom_sampler.py",
    "comfy_extras/nodes_align_your_steps.py",
    "comfy_extras/nodes_gits.py",
    "comfy_extras/nodes_optimalsteps.py",
    "comfy_extras/nodes_advanced_samplers.py",
    "comfy_extras/nodes_cfg.py",
    "comfy_extras/nodes_mahiro.py",
    "comfy_extras/nodes_tcfg.py",
    "comfy_extras/nodes_apg.py",
    "comfy_extras/nodes_fresca.py",
    "comfy_extras/nodes_eps.py",
    "comfy_extras/nodes_perpneg.py",
    "comfy_extras/nodes_freelunch.py",
    "comfy_extras/nodes_pag.py",
    "comfy_extras/nodes_attention_multiply.py",
    "comfy_extras/nodes_model_merging.py",
    "comfy_extras/nodes_train.py",
    "comfy_extras/nodes_load_3d.py",
    "comfy_extras/nodes_hooks.py",
    "comfy_extras/nodes_sag.py",
    "comfy_extras/nodes_tomesd.py",
    "comfy_extras/nodes_hypertile.py",
    "comfy_extras/nodes_model_downscale.py",
    "comfy_extras/nodes_differential_diffusion.py",
    "comfy_extras/nodes_torch_compile.py",
    "comfy_extras/nodes_easycache.py",
    "comfy_extras/nodes_lora_extract.py",
    "comfy_extras/nodes_cond.py",
    "comfy_extras/nodes_images.py",
    "comfy_extras/nodes_sdupscale.py",
    "comfy_extras/nodes_context_windows.py",
    "comfy_extras/nodes_camera_trajectory.py",
    "comfy_extras/nodes_photomaker.py",
]


def _upstream_rows() -> list[dict]:
    for path in CANDIDATES:
        if path.is_file():
            with open(path, newline="") as f:
                return list(csv.DictReader(f, delimiter="\t"))
    pytest.skip("upstream-nodes.tsv not found")


@pytest.fixture(scope="module")
def object_info():
    from comfyui.nodes.registry import NodeRegistry

    return NodeRegistry.with_builtins().object_info()


def test_completed_modules_are_fully_registered(object_info):
    rows = [r for r in _upstream_rows() if r["source_file"] in COMPLETED]
    assert {r["source_file"] for r in rows} == set(COMPLETED)
    missing = sorted(r["class_type"] for r in rows if r["class_type"] not in object_info)
    assert missing == [], f"upstream nodes not registered: {missing}"
    wrong = []
    for r in rows:
        info = object_info[r["class_type"]]
        got = (info["display_name"], info["category"], bool(info.get("experimental", False)),
               bool(info.get("deprecated", False)))
        want = (r["display_name"], r["category"], r["experimental"] == "true", r["deprecated"] == "true")
        if got != want:
            wrong.append((r["class_type"], got, want))
    assert wrong == []
