"""The official templates of the Flux.1, SD3.5, Z-Image, Lumina 2 (NetaYume) and Chroma families
(``comfyui-workflow-templates-json``, as shipped) run end to end through the engine.

Each template is converted to API format with our converter (``comfyui.workflows.convert``,
checked against the frontend's own conversion in test_templates_browser.py) and run on tiny
random-weight files written under the exact names it asks for, in the real layouts
(``template_fixtures.py``, also a script). Every image an output node (SaveImage,
SaveImageAdvanced, PreviewImage) reports must exist with the size the graph implies.

Test-size changes to the converted prompts (everything else -- wiring, samplers, schedulers,
cfg, guidance, shifts, prompts, seeds -- as shipped): ``EmptySD3LatentImage`` /
``EmptyLatentImage`` / ``EmptyChromaRadianceLatentImage`` 64x64 (the templates say 1024x1024),
at most 2 sampling steps (``steps`` of KSampler / BasicScheduler / BetaSamplingScheduler),
``ImagePadForOutpaint`` pads divided by 8, ``ImageScaleToMaxDimension`` to the input images'
size (64), ``ImageScaleToTotalPixels`` 0.01 megapixels, and after ``FluxKontextImageScale``
(which scales to about a megapixel) an ``ImageScaleBy`` 1/8 node is inserted. Input images are
64x48 with a
transparent rectangle (the LoadImage mask).

Templates that need nodes or model formats this build does not have yet are strict expected
failures naming what is missing, so each turns into an unexpected pass (and must leave the list)
when that part lands.
"""
from __future__ import annotations

import copy
import logging
import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("comfyui_workflow_templates_json", reason="pip install comfyui-workflow-templates-json (a dependency)")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

import template_fixtures as tf  # noqa: E402  (this folder's fixture writer)

T2I = (64, 64)
W, H = tf.INPUT_SIZE
EXPECT = {  # template -> {output node class: (W, H) of each image it reports}
    "flux1_krea_dev": {"SaveImage": T2I},
    "flux_canny_model_example": {"SaveImage": (W, H), "PreviewImage": (W, H)},   # the Canny edges previewed
    "flux_dev_checkpoint_example": {"SaveImage": T2I},
    "flux_dev_full_text_to_image": {"SaveImage": T2I},
    "flux_fill_inpaint_example": {"SaveImage": (W, H)},
    # 64x48 padded by 50 left/right and 50 at the bottom (400/8) = 164x98, cropped to multiples of 8
    "flux_fill_outpaint_example": {"SaveImage": (160, 96)},
    # FluxKontextImageScale: 64x48 (4:3) -> 1184x880, then 1/8 -> 148x110, VAE-encoded at 144x104
    "flux_kontext_dev_basic": {"SaveImage": (144, 104)},
    "flux_schnell": {"SaveImage": T2I},
    "flux_schnell_full_text_to_image": {"SaveImage": T2I},
    "image_flux.1_fill_dev_OneReward": {"PreviewImage": (W, H)},   # the result and the input, previewed
    "sd3.5_simple_example": {"SaveImage": T2I},
    "image_z_image_turbo": {"SaveImage": T2I},
    "image_z_image": {"SaveImageAdvanced": T2I},
    "image_z_image_int8": {"SaveImageAdvanced": T2I},
    "image_z_image_turbo_int8": {"SaveImage": T2I},
    "image_netayume_lumina_t2i": {"SaveImage": T2I},
    "flux_redux_model_example": {"SaveImage": T2I},
    "image_chroma_text_to_image": {"SaveImage": T2I},
    "image_chroma1_radiance_text_to_image": {"SaveImage": T2I},
    "flux1_dev_uso_reference_image_gen": {"SaveImage": T2I},
    # the Canny edges of the input, previewed; the control image (64x48) is rescaled and
    # centre-cropped to the 64x64 latent's size inside the patch
    "image_z_image_turbo_fun_union_controlnet": {"SaveImage": T2I, "PreviewImage": (W, H)},
    "sd3.5_large_blur": {"SaveImage": T2I},
    "sd3.5_large_canny_controlnet_example": {"SaveImage": T2I},
    # ImageScaleToTotalPixels 0.01 MP: 64x48 -> 118x89, VAE-encoded at 112x88 (the Lotus depth map,
    # and the latent both samplers start from)
    "flux_depth_lora_example": {"SaveImage": (112, 88)},
    "sd3.5_large_depth": {"SaveImage": (112, 88), "PreviewImage": (112, 88)},
}
XFAIL = {  # template -> what it needs that this build lacks
}
# templates that run end to end in another test, with fixtures of their own
ELSEWHERE = {
    "sd3.5_large_blur": "tests/models/test_controlnet_sd3.py::test_official_sd35_controlnet_templates_run",
    "sd3.5_large_canny_controlnet_example": "tests/models/test_controlnet_sd3.py::"
                                            "test_official_sd35_controlnet_templates_run",
}
TEMPLATES = tf.family_templates()


def test_every_family_template_is_listed():
    assert set(TEMPLATES) == set(EXPECT) | set(XFAIL) | set(ELSEWHERE)
    assert set(EXPECT) | set(XFAIL) >= {"flux_dev_full_text_to_image", "sd3.5_simple_example", "image_z_image_turbo",
                                        "image_netayume_lumina_t2i"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from comfyui import paths
    from comfyui.engine.engine import Engine
    from comfyui.models import memory
    from comfyui import runtime
    from comfyui.nodes.registry import NodeRegistry

    memory.configure(None, cpu=True)
    base = tmp_path_factory.mktemp("templates")
    paths.configure(base_directory=base, create_directories=True)
    tf.write_template_files(str(base), [n for w in TEMPLATES.values() for n in tf.load_image_names(w)])
    paths.invalidate_cache()
    registry = NodeRegistry.with_builtins()
    engine = Engine(registry)
    engine.start()
    yield {"base": str(base), "engine": engine, "object_info": registry.object_info()}
    engine.stop()
    runtime.current().model_files.clear()
    paths.configure(base_directory=None)
    memory.configure(None)


def shrink(prompt: dict) -> dict:
    """The test-size changes listed in the module docstring."""
    p = copy.deepcopy(prompt)
    for node_id, node in list(p.items()):
        i, kind = node["inputs"], node["class_type"]
        if kind in ("EmptySD3LatentImage", "EmptyLatentImage", "EmptyChromaRadianceLatentImage"):
            i["width"], i["height"] = T2I
        if kind in ("KSampler", "BasicScheduler", "BetaSamplingScheduler") and isinstance(i.get("steps"), int):
            i["steps"] = min(i["steps"], 2)
        if kind == "ImageScaleToMaxDimension":
            i["largest_size"] = max(W, H)
        if kind == "ImageScaleToTotalPixels":
            i["megapixels"] = 0.01
        if kind == "ImagePadForOutpaint":
            for side in ("left", "top", "right", "bottom"):
                i[side] //= 8
        if kind == "FluxKontextImageScale":
            small = f"{node_id}_small"
            for other in p.values():
                for k, v in other["inputs"].items():
                    if v == [node_id, 0]:
                        other["inputs"][k] = [small, 0]
            p[small] = {"class_type": "ImageScaleBy",
                        "inputs": {"image": [node_id, 0], "upscale_method": "bilinear", "scale_by": 0.125}}
    return p


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=XFAIL[n], strict=True))
                                  if n in XFAIL else n for n in sorted(TEMPLATES) if n not in ELSEWHERE])
def test_template_runs_end_to_end(env, name, caplog):
    from comfyui.workflows.convert import convert_ui_to_api

    prompt = shrink(convert_ui_to_api(TEMPLATES[name], env["object_info"]))
    missing = sorted({n["class_type"] for n in prompt.values()} - set(env["object_info"]))
    assert not missing, f"nodes missing: {missing}"
    engine = env["engine"]
    with caplog.at_level(logging.WARNING):
        submitted = engine.submit(prompt)
        assert submitted.node_errors == {}, submitted.node_errors
        history = engine.wait(submitted.prompt_id).result(300)
    assert history["status"]["status_str"] == "success", history["status"]
    # a LoRA whose keys match nothing would pass silently otherwise
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    seen = set()
    for node_id, out in history["outputs"].items():
        kind = prompt[node_id]["class_type"]
        for image in out.get("images", []):
            folder = "output" if image["type"] == "output" else "temp"
            with Image.open(os.path.join(env["base"], folder, image["subfolder"], image["filename"])) as f:
                pixels = np.asarray(f.convert("RGB"))
            assert (pixels.shape[1], pixels.shape[0]) == EXPECT[name][kind], (node_id, kind)
            assert pixels.std() > 0
            seen.add(kind)
    assert seen == set(EXPECT[name])
