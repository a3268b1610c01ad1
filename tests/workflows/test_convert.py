"""UI workflow (what the frontend saves) -> API prompt (what the engine runs)."""
import copy
import json
import pathlib

import pytest

from comfyui.workflows.convert import (
    WorkflowConversionError, convert_ui_to_api, is_api_prompt, is_ui_workflow,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load(name):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def object_info():
    return load("object_info_sd.json")


def to_v1(workflow):
    """The same graph in the 1.0 schema: links as objects, a native reroute with a parentId on
    a link, and (as current frontends save) a socket with ``widget`` for every widget input."""
    wf = copy.deepcopy(workflow)
    links = [{"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3], "target_slot": l[4],
              "type": l[5]} for l in wf.pop("links")]
    links[0]["parentId"] = 1
    wf.update({"version": 1, "links": links, "reroutes": [{"id": 1, "pos": [10, 10], "linkIds": [links[0]["id"]]}],
               "state": {"lastNodeId": wf.pop("last_node_id"), "lastLinkId": wf.pop("last_link_id"),
                         "lastGroupid": 0, "lastRerouteId": 1}})
    info = load("object_info_sd.json")
    for node in wf["nodes"]:
        nodedef = info.get(node["type"])
        if not nodedef:
            continue
        names = {i["name"] for i in node.get("inputs", [])}
        for section in ("required", "optional"):
            for name, spec in nodedef["input"].get(section, {}).items():
                widget = isinstance(spec[0], list) or spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN")
                if widget and not (len(spec) > 1 and spec[1].get("forceInput")) and name not in names:
                    node.setdefault("inputs", []).append(
                        {"localized_name": name, "name": name, "type": "COMBO" if isinstance(spec[0], list) else spec[0],
                         "widget": {"name": name}, "link": None})
    return wf


def test_format_detection():
    assert is_ui_workflow(load("default_t2i_0.4.json"))
    assert not is_api_prompt(load("default_t2i_0.4.json"))
    assert is_api_prompt(load("default_t2i_api.json"))
    assert not is_ui_workflow(load("default_t2i_api.json"))
    with pytest.raises(WorkflowConversionError):
        convert_ui_to_api(load("default_t2i_api.json"), {})


def test_default_text_to_image_workflow(object_info):
    assert convert_ui_to_api(load("default_t2i_0.4.json"), object_info) == load("default_t2i_api.json")


def test_default_workflow_as_json_text_and_in_1_0_schema(object_info):
    text = (FIXTURES / "default_t2i_0.4.json").read_text()
    assert convert_ui_to_api(text, object_info) == load("default_t2i_api.json")
    v1 = to_v1(load("default_t2i_0.4.json"))
    assert isinstance(v1["links"][0], dict)
    assert convert_ui_to_api(v1, object_info) == load("default_t2i_api.json")


def test_primitives_reroutes_muted_bypassed_notes_groups(object_info):
    """Bypassed LoRA passes MODEL/CLIP through; PrimitiveNodes feed converted widgets (seed,
    width); two chained Reroutes; muted PreviewImage dropped; an optional input fed by a muted
    node removed; Note and groups ignored; titles kept; control_after_generate values skipped
    (explicit on KSampler, legacy by name on KSamplerAdvanced's noise_seed); the upload
    widget value of LoadImage skipped; a bypassed ImageScale passes its IMAGE through."""
    api = convert_ui_to_api(load("kitchen_sink_0.4.json"), object_info)
    assert api == load("kitchen_sink_api.json")


def test_kitchen_sink_in_1_0_schema(object_info):
    assert convert_ui_to_api(to_v1(load("kitchen_sink_0.4.json")), object_info) == load("kitchen_sink_api.json")


def test_subgraphs_flatten_with_prefixed_ids(object_info):
    """A 1.0 subgraph used twice: inner nodes become '<instance>:<inner>'; subgraph inputs
    resolve to the instance's links or its promoted widget value; a PrimitiveNode feeding an
    instance's input does not reach inside (the frontend writes its value into the widget of the
    input it feeds, and an instance's linked input has none), so the inner node keeps its own
    widget value; a muted instance and a muted inner node disappear."""
    assert convert_ui_to_api(load("subgraph_frontend.json"), object_info) == load("subgraph_api.json")


def _node(id, type, widgets=None, inputs=(), outputs=(), mode=0, **extra):
    node = {"id": id, "type": type, "pos": [0, 0], "size": [100, 100], "flags": {}, "order": 0, "mode": mode,
            "inputs": list(inputs), "outputs": list(outputs), "properties": {}}
    if widgets is not None:
        node["widgets_values"] = widgets
    node.update(extra)
    return node


def _wf(nodes, links):
    return {"last_node_id": 99, "last_link_id": 99, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


def test_widget_value_edge_cases(object_info):
    wf = _wf([
        # no control value stored after the seed (older frontends / hand-written workflows)
        _node(1, "KSampler", [5, 10, 4.5, "euler", "karras", 0.5]),
        # too few values: the rest take the definition's defaults (first option for combos)
        _node(2, "ImageScale", ["area"]),
        # widgets saved by name
        _node(3, "EmptyLatentImage", {"width": 640, "height": 384, "batch_size": 3}),
        # unknown class: widget inputs the workflow marks are used, node kept for validation to report
        _node(4, "SomeCustomNode", [7, "x"], inputs=[{"name": "a", "type": "INT", "widget": {"name": "a"}, "link": None},
                                                     {"name": "b", "type": "STRING", "widget": {"name": "b"}, "link": None}]),
        # the upload button's value follows the last required widget, not the image widget
        _node(5, "LoadImageMask", ["photo.jpg", "red", "image"]),
        _node(6, "LoadImageMask", ["photo.jpg", "green"]),
    ], [])
    api = convert_ui_to_api(wf, object_info)
    assert api["5"]["inputs"] == {"image": "photo.jpg", "channel": "red"}
    assert api["6"]["inputs"] == {"image": "photo.jpg", "channel": "green"}
    assert api["1"]["inputs"] == {"seed": 5, "steps": 10, "cfg": 4.5, "sampler_name": "euler", "scheduler": "karras",
                                  "denoise": 0.5}
    assert api["2"]["inputs"] == {"upscale_method": "area", "width": 512, "height": 512, "crop": "disabled"}
    assert api["3"]["inputs"] == {"width": 640, "height": 384, "batch_size": 3}
    assert api["4"] == {"inputs": {"a": 7, "b": "x"}, "class_type": "SomeCustomNode", "_meta": {"title": "SomeCustomNode"}}


def test_bypass_matches_by_type_and_chains(object_info):
    """A bypassed node's output is fed by the input of the same type (not the same slot), and
    bypasses chain; a bypassed node without a matching input feeds nothing."""
    wf = _wf([
        _node(1, "CheckpointLoaderSimple", ["a.safetensors"], outputs=[
            {"name": "MODEL", "type": "MODEL", "links": [1]}, {"name": "CLIP", "type": "CLIP", "links": [2]},
            {"name": "VAE", "type": "VAE", "links": [9]}]),
        # bypassed node whose CLIP output sits at slot 0 while its CLIP input is at slot 1
        _node(2, "OddNode", [], mode=4, inputs=[{"name": "m", "type": "MODEL", "link": 1},
                                               {"name": "c", "type": "CLIP", "link": 2}],
              outputs=[{"name": "CLIP", "type": "CLIP", "links": [3]}, {"name": "MODEL", "type": "MODEL", "links": [4]}]),
        _node(3, "LoraLoader", ["detail.safetensors", 1, 1], mode=4,
              inputs=[{"name": "model", "type": "MODEL", "link": 4}, {"name": "clip", "type": "CLIP", "link": 3}],
              outputs=[{"name": "MODEL", "type": "MODEL", "links": [5]}, {"name": "CLIP", "type": "CLIP", "links": [6]}]),
        _node(4, "CLIPTextEncode", ["t"], inputs=[{"name": "clip", "type": "CLIP", "link": 6}]),
        _node(5, "KSampler", [1, "fixed", 2, 3, "euler", "normal", 1], inputs=[
            {"name": "model", "type": "MODEL", "link": 5},
            {"name": "latent_image", "type": "LATENT", "link": 8}]),
        _node(6, "VAEDecode", None, mode=4, inputs=[{"name": "samples", "type": "LATENT", "link": None},
                                                   {"name": "vae", "type": "VAE", "link": 9}],
              outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [7]}]),
        _node(7, "PreviewImage", None, inputs=[{"name": "images", "type": "IMAGE", "link": 7}]),
    ], [[1, 1, 0, 2, 0, "MODEL"], [2, 1, 1, 2, 1, "CLIP"], [3, 2, 0, 3, 1, "CLIP"], [4, 2, 1, 3, 0, "MODEL"],
        [5, 3, 0, 5, 0, "MODEL"], [6, 3, 1, 4, 0, "CLIP"], [7, 6, 0, 7, 0, "IMAGE"], [9, 1, 2, 6, 1, "VAE"]])
    api = convert_ui_to_api(wf, object_info)
    assert set(api) == {"1", "4", "5", "7"}
    assert api["4"]["inputs"]["clip"] == ["1", 1]
    assert api["5"]["inputs"]["model"] == ["1", 0]
    assert "latent_image" not in api["5"]["inputs"]  # link 8 does not exist
    assert api["7"]["inputs"] == {}  # the bypassed VAEDecode has no IMAGE input


def test_set_get_nodes_and_reroute_cycles(object_info):
    wf = _wf([
        _node(1, "CheckpointLoaderSimple", ["a.safetensors"], outputs=[
            {"name": "MODEL", "type": "MODEL", "links": []}, {"name": "CLIP", "type": "CLIP", "links": [1]}]),
        _node(2, "SetNode", ["clip_main"], inputs=[{"name": "CLIP", "type": "CLIP", "link": 1}]),
        _node(3, "GetNode", ["clip_main"], outputs=[{"name": "CLIP", "type": "CLIP", "links": [2]}]),
        _node(4, "CLIPTextEncode", ["t"], inputs=[{"name": "clip", "type": "CLIP", "link": 2}]),
        # two reroutes feeding each other: no source, no hang
        _node(5, "Reroute", None, inputs=[{"name": "", "type": "*", "link": 4}], outputs=[{"name": "", "type": "*", "links": [3, 5]}]),
        _node(6, "Reroute", None, inputs=[{"name": "", "type": "*", "link": 3}], outputs=[{"name": "", "type": "*", "links": [4]}]),
        _node(7, "CLIPTextEncode", ["u"], inputs=[{"name": "clip", "type": "CLIP", "link": 5}]),
        _node(8, "MarkdownNote", ["# hi"]),
    ], [[1, 1, 1, 2, 0, "CLIP"], [2, 3, 0, 4, 0, "CLIP"], [3, 5, 0, 6, 0, "*"], [4, 6, 0, 5, 0, "*"], [5, 5, 0, 7, 0, "CLIP"]])
    api = convert_ui_to_api(wf, object_info)
    assert set(api) == {"1", "4", "7"}
    assert api["4"]["inputs"] == {"text": "t", "clip": ["1", 1]}
    assert api["7"]["inputs"] == {"text": "u"}


def test_nested_subgraph_and_bypassed_instance(object_info):
    inner = {"id": "inner-sg", "name": "inner", "inputNode": {"id": -10}, "outputNode": {"id": -20},
             "inputs": [{"id": "i0", "name": "clip", "type": "CLIP", "linkIds": [1]}],
             "outputs": [{"id": "o0", "name": "c", "type": "CONDITIONING", "linkIds": [2]}],
             "nodes": [_node(1, "CLIPTextEncode", ["deep"], inputs=[{"name": "clip", "type": "CLIP", "link": 1}],
                             outputs=[{"name": "CONDITIONING", "type": "CONDITIONING", "links": [2]}])],
             "links": [{"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "CLIP"},
                       {"id": 2, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "CONDITIONING"}]}
    outer = {"id": "outer-sg", "name": "outer", "inputNode": {"id": -10}, "outputNode": {"id": -20},
             "inputs": [{"id": "i0", "name": "clip", "type": "CLIP", "linkIds": [1]}],
             "outputs": [{"id": "o0", "name": "c", "type": "CONDITIONING", "linkIds": [2]}],
             "nodes": [_node(7, "inner-sg", [], inputs=[{"name": "clip", "type": "CLIP", "link": 1}],
                             outputs=[{"name": "c", "type": "CONDITIONING", "links": [2]}])],
             "links": [{"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 7, "target_slot": 0, "type": "CLIP"},
                       {"id": 2, "origin_id": 7, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "CONDITIONING"}]}
    wf = _wf([
        _node(1, "CheckpointLoaderSimple", ["a.safetensors"], outputs=[
            {"name": "MODEL", "type": "MODEL", "links": []}, {"name": "CLIP", "type": "CLIP", "links": [1, 4]}]),
        _node(2, "outer-sg", [], inputs=[{"name": "clip", "type": "CLIP", "link": 1}],
              outputs=[{"name": "c", "type": "CONDITIONING", "links": [2]}]),
        _node(3, "ConditioningCombine", [], inputs=[{"name": "conditioning_1", "type": "CONDITIONING", "link": 2},
                                                    {"name": "conditioning_2", "type": "CONDITIONING", "link": 3}]),
        _node(4, "CLIPTextEncode", ["x"], inputs=[{"name": "clip", "type": "CLIP", "link": 4}],
              outputs=[{"name": "CONDITIONING", "type": "CONDITIONING", "links": [5]}]),
        # a bypassed instance passes its CONDITIONING input through
        _node(5, "inner-sg", [], mode=4, inputs=[{"name": "cond", "type": "CONDITIONING", "link": 5}],
              outputs=[{"name": "c", "type": "CONDITIONING", "links": [3]}]),
    ], [[1, 1, 1, 2, 0, "CLIP"], [2, 2, 0, 3, 0, "CONDITIONING"], [3, 5, 0, 3, 1, "CONDITIONING"],
        [4, 1, 1, 4, 0, "CLIP"], [5, 4, 0, 5, 0, "CONDITIONING"]])
    wf["definitions"] = {"subgraphs": [inner, outer]}
    api = convert_ui_to_api(wf, object_info)
    # the inner node's id 1 is the root loader's too: it becomes last_node_id + 1
    assert set(api) == {"1", "2:7:100", "3", "4"}
    assert api["2:7:100"]["inputs"] == {"text": "deep", "clip": ["1", 1]}
    assert api["3"]["inputs"] == {"conditioning_1": ["2:7:100", 0], "conditioning_2": ["4", 0]}


def test_builtin_nodes_with_the_real_registry():
    """Conversion through the node definitions the engine really serves."""
    from comfyui.nodes.registry import NodeRegistry

    registry = NodeRegistry.with_builtins()
    wf = load("builtin_ui_0.4.json")
    assert convert_ui_to_api(wf, registry) == load("builtin_api.json")
    assert convert_ui_to_api(to_v1(wf), registry.object_info()) == load("builtin_api.json")


# ------------------------------------------------- rules checked against the frontend (1.58.1)
# Each of these is what app.graphToPrompt() sends; frontend_rules_0.4.json is also converted by
# the frontend itself in tests/workflows/test_templates_browser.py.


def test_frontend_rules_fixture():
    """Dynamic prompts on CLIPTextEncode (comments dropped, {a|a} choices, escaped braces),
    SaveImage's filename_prefix replacements (%Node.widget% by "Node name for S&R" or title,
    characters unsafe in a file name replaced, unknown patterns kept), and the node pack's
    identity in _meta (cnr_id, aux_id, ver without its "v"; invalid ones left out)."""
    from comfyui.nodes.registry import NodeRegistry

    api = convert_ui_to_api(load("frontend_rules_0.4.json"), NodeRegistry.with_builtins())
    assert api == load("frontend_rules_api.json")
    assert api["2"]["inputs"]["text"] == "a red fox \nin {snow} deep"
    assert api["7"]["inputs"]["filename_prefix"] == \
        "run/123456789_640x384_ugly_ blurry_bad_%Nope.x%_%width%_%date:yyyy.MM%"
    assert api["1"]["_meta"] == {"title": "Load Checkpoint", "cnr_id": "comfy-core",
                                 "aux_id": "comfyanonymous/ComfyUI", "ver": "0.3.40"}
    assert api["3"]["_meta"] == {"title": "Negative"}


def test_dynamic_prompts_pick_one_option_per_block():
    from comfyui.workflows.convert import expand_dynamic_prompt

    seen = {expand_dynamic_prompt("{cat|dog} on a {mat|rug}") for _ in range(200)}
    assert seen == {"cat on a mat", "cat on a rug", "dog on a mat", "dog on a rug"}
    assert {expand_dynamic_prompt("{a {b|c}|d}") for _ in range(200)} == {"a b", "a c", "d"}
    assert expand_dynamic_prompt("x // y\nz /* w */!") == "x \nz !"
    assert expand_dynamic_prompt(r"keep \{this\|that\}") == "keep {this|that}"
    assert expand_dynamic_prompt('{"json": 1}') == '"json": 1'  # one option: the braces go
    assert expand_dynamic_prompt("C:\\") == "C:\\undefined"  # as the frontend reads past the end


def test_dynamic_prompts_only_where_the_input_asks_for_them(object_info):
    info = {**object_info, "StringNode": {"input": {"required": {"s": ["STRING", {"multiline": True}]}},
                                          "input_order": {"required": ["s"]}}}
    wf = _wf([_node(1, "CLIPTextEncode", ["{a|a} // c"]), _node(2, "StringNode", ["{a|a} // c"])], [])
    api = convert_ui_to_api(wf, info)
    assert api["1"]["inputs"]["text"] == "a "
    assert api["2"]["inputs"]["s"] == "{a|a} // c"


def test_filename_prefix_dates_and_node_values(object_info, monkeypatch):
    import datetime as dt

    from comfyui.workflows import convert

    class FixedClock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2024, 3, 7, 9, 5, 2)

    monkeypatch.setattr(convert, "datetime", FixedClock)
    wf = _wf([
        _node(1, "SaveImage", ["%date:yyyy-MM-dd hh:mm:ss%/%date:yy-M-d h.m%/%date:yyy%/%Seed.value%/%KSampler.cfg%/%KSampler.denoise%"]),
        _node(2, "KSampler", [5, "fixed", 10, 4.0, "euler", "karras", 0.25]),
        _node(3, "PreviewImage", None),  # not a save node: no replacements
        _node(4, "SaveImage", [7]),  # not a string: sent as it is
    ], [])
    wf["nodes"][2]["widgets_values"] = ["%date:yyyy%"]
    api = convert_ui_to_api(wf, object_info)
    # "h.m" makes two parts: read as node "date:yy-M-d h" (none) and left alone; 4.0 is "4" in JS
    assert api["1"]["inputs"]["filename_prefix"] == \
        "2024-03-07 09:05:02/%date:yy-M-d h.m%/yyy/%Seed.value%/4/0.25"
    assert api["4"]["inputs"]["filename_prefix"] == 7


def test_list_widget_values_are_wrapped(object_info):
    """A list widget value goes as {"__value__": [...]} (a bare list reads as a link), a curve
    as {"__type__": "CURVE", "__value__": ...}, also when it comes from a subgraph input."""
    info = {"Points": {"input": {"required": {"curve": ["CURVE", {}], "tags": ["COMBO", {"multi_select": True}]}},
                       "input_order": {"required": ["curve", "tags"]}}}
    curve = [[0, 0], [1, 1]]
    wf = _wf([_node(1, "Points", [curve, ["a", "b"]])], [])
    assert convert_ui_to_api(wf, info)["1"]["inputs"] == {
        "curve": {"__type__": "CURVE", "__value__": curve}, "tags": {"__value__": ["a", "b"]}}

    sub = {"id": "sg", "name": "sg", "inputNode": {"id": -10}, "outputNode": {"id": -20},
           "inputs": [{"id": "i0", "name": "tags", "type": "COMBO", "linkIds": [1]}], "outputs": [],
           "nodes": [_node(5, "Points", [curve, ["x"]], inputs=[
               {"name": "tags", "type": "COMBO", "widget": {"name": "tags"}, "link": 1}])],
           "links": [{"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 5, "target_slot": 0, "type": "COMBO"}]}
    wf = _wf([_node(2, "sg", [["p", "q"]], inputs=[{"name": "tags", "type": "COMBO", "widget": {"name": "tags"},
                                                   "link": None}])], [])
    wf["definitions"] = {"subgraphs": [sub]}
    assert convert_ui_to_api(wf, info)["2:5"]["inputs"]["tags"] == {"__value__": ["p", "q"]}


def _subgraph(sid, nodes, links=(), inputs=(), outputs=()):
    return {"id": sid, "name": sid, "inputNode": {"id": -10}, "outputNode": {"id": -20},
            "inputs": list(inputs), "outputs": list(outputs), "nodes": nodes, "links": list(links)}


def test_colliding_subgraph_node_ids_take_the_next_free_number(object_info):
    """Node ids are unique across the root graph and all subgraph definitions: a taken id gets
    the next number after the last node id (1.0: state.lastNodeId), skipping taken numbers and
    raised by every id seen, in definition order (nested definitions after their parent)."""
    inner = _subgraph("inner", [_node(8, "EmptyLatentImage", [64, 64, 1]), _node(3, "EmptyLatentImage", [32, 32, 1])])
    outer = _subgraph("outer", [_node(3, "EmptyLatentImage", [128, 128, 1]), _node(40, "EmptyLatentImage", [8, 8, 1]),
                                _node(9, "inner", [])])
    outer["definitions"] = {"subgraphs": [inner]}
    wf = {"version": 1, "state": {"lastNodeId": 5, "lastLinkId": 0, "lastGroupId": 0, "lastRerouteId": 0},
          "nodes": [_node(3, "outer", []), _node(6, "EmptyLatentImage", [16, 16, 1])], "links": [],
          "definitions": {"subgraphs": [outer]}}
    api = convert_ui_to_api(wf, object_info)
    # outer: 3 is taken by the root -> 7 (6 is taken too); 40 raises the counter; 9 is free.
    # inner: 8 is free; 3 is taken -> 41.
    assert set(api) == {"6", "3:7", "3:40", "3:9:8", "3:9:41"}
    assert api["3:9:41"]["inputs"]["width"] == 32


def test_nested_bypassed_instance_keeps_its_inner_nodes(object_info):
    """Only an instance in the root graph that is muted or bypassed hides its inner nodes; one
    level deeper the frontend still sends them (its links pass by as for any bypassed node)."""
    inner = _subgraph("inner", [
        _node(1, "ConditioningCombine", [], inputs=[{"name": "conditioning_1", "type": "CONDITIONING", "link": 1}],
              outputs=[{"name": "CONDITIONING", "type": "CONDITIONING", "links": [2]}])],
        links=[{"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "CONDITIONING"},
               {"id": 2, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "CONDITIONING"}],
        inputs=[{"id": "i", "name": "cond", "type": "CONDITIONING", "linkIds": [1]}],
        outputs=[{"id": "o", "name": "c", "type": "CONDITIONING", "linkIds": [2]}])
    outer = _subgraph("outer", [
        _node(2, "CLIPTextEncode", ["mine"], inputs=[{"name": "clip", "type": "CLIP", "link": 3}],
              outputs=[{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4]}]),
        _node(3, "inner", [], mode=4, inputs=[{"name": "cond", "type": "CONDITIONING", "link": 4}],
              outputs=[{"name": "c", "type": "CONDITIONING", "links": [5]}])],
        links=[{"id": 3, "origin_id": -10, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "CLIP"},
               {"id": 4, "origin_id": 2, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "CONDITIONING"},
               {"id": 5, "origin_id": 3, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "CONDITIONING"}],
        inputs=[{"id": "i", "name": "clip", "type": "CLIP", "linkIds": [3]}],
        outputs=[{"id": "o", "name": "c", "type": "CONDITIONING", "linkIds": [5]}])
    wf = _wf([
        _node(10, "CheckpointLoaderSimple", ["a.safetensors"], outputs=[
            {"name": "MODEL", "type": "MODEL", "links": []}, {"name": "CLIP", "type": "CLIP", "links": [1, 3]}]),
        _node(11, "outer", [], inputs=[{"name": "clip", "type": "CLIP", "link": 1}],
              outputs=[{"name": "c", "type": "CONDITIONING", "links": [2]}]),
        _node(12, "ConditioningCombine", [], inputs=[{"name": "conditioning_1", "type": "CONDITIONING", "link": 2}]),
        _node(13, "outer", [], mode=4, inputs=[{"name": "clip", "type": "CLIP", "link": 3}],
              outputs=[{"name": "c", "type": "CONDITIONING", "links": []}]),
    ], [[1, 10, 1, 11, 0, "CLIP"], [2, 11, 0, 12, 0, "CONDITIONING"], [3, 10, 1, 13, 0, "CLIP"]])
    wf["definitions"] = {"subgraphs": [outer, inner]}
    api = convert_ui_to_api(wf, object_info)
    # 11:3 is bypassed: its CONDITIONING input (11:2) passes through to 12, and its inner node
    # is still sent (its output leads nowhere). 13 hides all of its nodes.
    assert set(api) == {"10", "11:2", "11:3:1", "12"}
    assert api["12"]["inputs"] == {"conditioning_1": ["11:2", 0]}
    assert api["11:3:1"]["inputs"] == {"conditioning_1": ["11:2", 0]}


def test_pass_through_carries_links_only(object_info):
    """A bypassed node passes on what its input's link delivers, never its widget value, and a
    PrimitiveNode's value reaches only the widget it feeds (through Reroutes), not a node behind
    a bypassed one."""
    info = {**object_info, "Echo": {"input": {"required": {"value": ["STRING", {}]}}, "input_order": {"required": ["value"]},
                                    "output": ["STRING"]}}
    wf = _wf([
        _node(1, "Echo", ["own value"], mode=4, inputs=[{"name": "value", "type": "STRING", "widget": {"name": "value"},
                                                         "link": None}],
              outputs=[{"name": "STRING", "type": "STRING", "links": [1]}]),
        _node(2, "Echo", ["fallback"], inputs=[{"name": "value", "type": "STRING", "widget": {"name": "value"}, "link": 1}]),
        _node(3, "PrimitiveNode", ["from primitive"], outputs=[{"name": "STRING", "type": "STRING", "links": [2, 4]}]),
        _node(4, "Echo", ["x"], mode=4, inputs=[{"name": "value", "type": "STRING", "widget": {"name": "value"}, "link": 2}],
              outputs=[{"name": "STRING", "type": "STRING", "links": [3]}]),
        _node(5, "Echo", ["behind bypass"], inputs=[{"name": "value", "type": "STRING", "widget": {"name": "value"}, "link": 3}]),
        _node(6, "Reroute", None, inputs=[{"name": "", "type": "*", "link": 4}], outputs=[{"name": "", "type": "*", "links": [5]}]),
        _node(7, "Echo", ["overwritten"], inputs=[{"name": "value", "type": "STRING", "widget": {"name": "value"}, "link": 5}]),
    ], [[1, 1, 0, 2, 0, "STRING"], [2, 3, 0, 4, 0, "STRING"], [3, 4, 0, 5, 0, "STRING"], [4, 3, 0, 6, 0, "STRING"],
        [5, 6, 0, 7, 0, "STRING"]])
    api = convert_ui_to_api(wf, info)
    assert api["2"]["inputs"] == {"value": "fallback"}
    assert api["5"]["inputs"] == {"value": "behind bypass"}
    assert api["7"]["inputs"] == {"value": "from primitive"}


def test_dynamic_combo_widgets_follow_the_selected_option():
    """A COMFY_DYNAMICCOMBO_V3 input: the frontend puts the selected option's widgets right
    after the combo, named ``<combo>.<input>``; the next widgets come after them."""
    option = {"required": {"depth": ["COMBO", {"options": ["8", "16"]}], "gamma": ["FLOAT", {"default": 2.2}]}}
    info = {"Saver": {"input": {"required": {
        "prefix": ["STRING", {"default": "x"}],
        "format": ["COMFY_DYNAMICCOMBO_V3", {"options": [{"key": "png", "inputs": option},
                                                         {"key": "raw", "inputs": {"required": {}}}]}],
        "quality": ["INT", {"default": 90}]}}, "output": [], "output_node": True}}
    workflow = {"nodes": [{"id": 1, "type": "Saver", "mode": 0, "inputs": [], "outputs": [],
                           "widgets_values": ["a", "png", "16", 1.8, 75]},
                          {"id": 2, "type": "Saver", "mode": 0, "inputs": [], "outputs": [],
                           "widgets_values": ["b", "raw", 60]},
                          {"id": 3, "type": "Saver", "mode": 0, "inputs": [], "outputs": [],
                           "widgets_values": {"prefix": "c", "format": "png", "format.depth": "8"}}],
                "links": []}
    prompt = convert_ui_to_api(workflow, info)
    assert prompt["1"]["inputs"] == {"prefix": "a", "format": "png", "format.depth": "16", "format.gamma": 1.8,
                                     "quality": 75}
    assert prompt["2"]["inputs"] == {"prefix": "b", "format": "raw", "quality": 60}
    assert prompt["3"]["inputs"] == {"prefix": "c", "format": "png", "format.depth": "8", "format.gamma": 2.2,
                                     "quality": 90}


def test_instance_listing_some_subgraph_inputs_matches_them_by_name(object_info):
    """An instance may list only some of its definition's inputs (the official Boogu and Wan 2.2
    templates): a listed input is the definition's input of the same name, not the one at its
    position; widget values follow the definition's widget inputs in order, listed or not (an
    instance without values leaves the inner widgets their own; checked against the frontend's
    conversion in test_templates_browser.py)."""
    sub = _subgraph("sg", [
        _node(1, "EmptyLatentImage", [1024, 1024, 1],
              inputs=[{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 71},
                      {"name": "height", "type": "INT", "widget": {"name": "height"}, "link": 72},
                      {"name": "batch_size", "type": "INT", "widget": {"name": "batch_size"}, "link": 73}])],
        links=[{"id": 71, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 0, "type": "INT"},
               {"id": 72, "origin_id": -10, "origin_slot": 2, "target_id": 1, "target_slot": 1, "type": "INT"},
               {"id": 73, "origin_id": -10, "origin_slot": 3, "target_id": 1, "target_slot": 2, "type": "INT"}],
        inputs=[{"id": "a", "name": "latent", "type": "LATENT", "linkIds": []},
                {"id": "b", "name": "width", "type": "INT", "linkIds": [71]},
                {"id": "c", "name": "height", "type": "INT", "linkIds": [72]},
                {"id": "d", "name": "batch_size", "type": "INT", "linkIds": [73]}])
    wf = _wf([
        _node(5, "PrimitiveInt", [640], outputs=[{"name": "INT", "type": "INT", "links": [9]}]),
        # lists height (linked) and batch_size; values for width, height, batch_size
        _node(6, "sg", [320, 480, 3], inputs=[
            {"name": "height", "type": "INT", "widget": {"name": "height"}, "link": 9},
            {"name": "batch_size", "type": "INT", "widget": {"name": "batch_size"}, "link": None}]),
    ], [[9, 5, 0, 6, 0, "INT"]])
    wf["definitions"] = {"subgraphs": [sub]}
    api = convert_ui_to_api(wf, object_info)
    assert api["6:1"]["inputs"] == {"width": 320, "height": ["5", 0], "batch_size": 3}
    wf["nodes"][1]["widgets_values"] = []
    assert convert_ui_to_api(wf, object_info)["6:1"]["inputs"] == {"width": 1024, "height": ["5", 0], "batch_size": 1}
