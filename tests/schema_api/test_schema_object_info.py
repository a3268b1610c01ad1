"""object_info of schema-API nodes matches ComfyUI's V3 (GET_NODE_INFO_V1) shape."""
import json

import pytest

from comfyui.nodes.io import io, node_def_from_schema
from comfyui.nodes.registry import NodeRegistry

from . import nodes


def info_of(cls, **kwargs):
    # Through JSON, as the server sends it.
    return json.loads(json.dumps(node_def_from_schema(cls, **kwargs).object_info()))


V3_KEYS = {"input", "input_order", "is_input_list", "output", "output_is_list", "output_name", "output_tooltips",
           "output_matchtypes", "name", "display_name", "description", "python_module", "category", "output_node",
           "deprecated", "experimental", "dev_only", "api_node", "price_badge", "search_aliases",
           "essentials_category", "has_intermediate_output"}


def test_v3_keys_always_present_even_for_a_bare_node():
    class Bare(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Bare")

        @classmethod
        def execute(cls):
            return io.NodeOutput()

    info = info_of(Bare, python_module="custom_nodes.bare")
    assert set(info) == V3_KEYS
    assert info["input"] == {"required": {}}
    assert info["input_order"] == {"required": []}
    assert info["output"] == [] and info["output_tooltips"] == []
    assert info["deprecated"] is False and info["experimental"] is False and info["api_node"] is False
    assert info["category"] == "sd" and info["python_module"] == "custom_nodes.bare"
    assert info["is_input_list"] is False and info["output_matchtypes"] is None and info["search_aliases"] is None


def test_widgets_and_combo_in_v3_form():
    info = info_of(nodes.Palette)
    req, opt = info["input"]["required"], info["input"]["optional"]
    assert req["seed"] == ["INT", {"tooltip": "the seed", "default": 0, "min": 0, "max": 2**32,
                                   "control_after_generate": True, "display": "slider"}]
    assert req["cfg"] == ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}]
    assert req["text"] == ["STRING", {"multiline": True, "placeholder": "type", "dynamicPrompts": True}]
    assert req["flag"] == ["BOOLEAN", {"advanced": True, "default": False, "label_on": "yes", "label_off": "no"}]
    # Combo: type "COMBO", the choices under "options", multiselect always stated; Enum -> values.
    assert req["color"] == ["COMBO", {"default": "green", "multiselect": False, "options": ["red", "green"]}]
    assert req["image"] == ["COMBO", {"multiselect": False, "options": ["a.png", "b.png"], "image_upload": True,
                                      "image_folder": "input"}]
    assert req["tags"] == ["COMBO", {"default": ["x"], "multiselect": True, "options": ["x", "y", "z"],
                                     "multi_select": {"chip": True}}]
    # optional inputs: no "optional" key inside the options
    assert opt["pixels"] == ["IMAGE", {"tooltip": "some pixels"}]
    assert opt["either"] == ["IMAGE,MASK", {}]
    assert opt["thing"] == ["MY_THING", {"rawLink": True}]
    assert info["input_order"] == {"required": ["seed", "cfg", "text", "flag", "color", "image", "tags"],
                                   "optional": ["pixels", "either", "thing"]}


def test_outputs_names_lists_tooltips_and_flags():
    info = info_of(nodes.Palette)
    assert info["output"] == ["IMAGE", "MASK", "MY_THING"]
    assert info["output_name"] == ["IMAGE", "the mask", "MY_THING"]
    assert info["output_is_list"] == [False, True, False]
    assert info["output_tooltips"] == [None, None, None]
    assert info["display_name"] == "Palette" and info["description"] == "all widgets"
    assert info["category"] == "testing/widgets"
    assert info["experimental"] is True and info["deprecated"] is False
    assert info["search_aliases"] == ["colours", "widgets"] and info["essentials_category"] == "Basic"
    num = info_of(nodes.Num)
    assert num["output_tooltips"] == ["the number"]


def test_hidden_values_are_one_element_lists_and_flags_add_them():
    class ApiOut(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="ApiOut", is_api_node=True, is_output_node=True, hidden=[io.Hidden.unique_id])

        @classmethod
        def execute(cls):
            return io.NodeOutput()

    info = info_of(ApiOut)
    assert info["input"]["hidden"] == {
        "unique_id": ["UNIQUE_ID"],
        "auth_token_comfy_org": ["AUTH_TOKEN_COMFY_ORG"],
        "api_key_comfy_org": ["API_KEY_COMFY_ORG"],
        "comfy_usage_source": ["COMFY_USAGE_SOURCE"],
        "prompt": ["PROMPT"],
        "extra_pnginfo": ["EXTRA_PNGINFO"],
    }
    assert info["input_order"]["hidden"] == list(info["input"]["hidden"])
    assert info["api_node"] is True and info["output_node"] is True


def test_unnamed_outputs_get_ids_and_matchtypes_are_reported():
    template = io.MatchType.Template("T", allowed_types=[io.Image, io.Mask])

    class Passthrough(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Pass", inputs=[io.MatchType.Input("x", template=template)],
                             outputs=[io.MatchType.Output(template), io.Int.Output()])

        @classmethod
        def execute(cls, x):
            return io.NodeOutput(x, 1)

    schema = Passthrough.GET_SCHEMA()
    assert [o.id for o in schema.outputs] == ["_0_COMFY_MATCHTYPE_V3_", "_1_INT_"]
    info = info_of(Passthrough)
    assert info["output_matchtypes"] == ["T", None]
    assert info["output_name"] == ["MATCHTYPE", "INT"]
    assert info["input"]["required"]["x"] == ["COMFY_MATCHTYPE_V3",
                                              {"template": {"template_id": "T", "allowed_types": "IMAGE,MASK"}}]


def test_dynamic_inputs_keep_their_v3_specs():
    sum_info = info_of(nodes.SumAll)
    assert sum_info["input"]["required"]["numbers"] == ["COMFY_AUTOGROW_V3", {"template": {
        "input": {"required": {"n": ["INT", {"forceInput": True}]}}, "prefix": "n", "min": 1, "max": 5}}]
    shape = info_of(nodes.Shape)["input"]["required"]["shape"]
    assert shape[0] == "COMFY_DYNAMICCOMBO_V3"
    assert shape[1]["options"][1] == {"key": "rect", "inputs": {"required": {
        "w": ["INT", {"default": 1}], "h": ["INT", {"default": 1}]}}}


def test_schema_errors_are_reported():
    class Dup(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Dup", inputs=[io.Int.Input("a"), io.Float.Input("a")])

        @classmethod
        def execute(cls, a):
            return io.NodeOutput(a)

    with pytest.raises(ValueError, match="Input ids must be unique"):
        node_def_from_schema(Dup)

    class NoExecute(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="NoExecute")

    with pytest.raises(TypeError, match="No execute function"):
        node_def_from_schema(NoExecute)

    with pytest.raises(ValueError, match="not both"):
        io.Combo.Input("c", options=["a"], remote_combo=io.RemoteComboOptions(
            "/x", io.RemoteItemSchema("id", "name")))


def test_classic_attribute_view():
    assert nodes.Palette.RETURN_TYPES == ["IMAGE", "MASK", "MY_THING"]
    assert nodes.Palette.RETURN_NAMES == ["IMAGE", "the mask", "MY_THING"]
    assert nodes.Palette.OUTPUT_IS_LIST == [False, True, False]
    assert nodes.Palette.CATEGORY == "testing/widgets"
    assert nodes.Palette.DESCRIPTION == "all widgets"
    assert nodes.Palette.EXPERIMENTAL is True and nodes.Palette.OUTPUT_NODE is False
    assert nodes.Show.OUTPUT_NODE is True
    assert nodes.Collect.INPUT_IS_LIST is True
    assert nodes.Num.FUNCTION == "EXECUTE_NORMALIZED"
    assert nodes.AsyncAdd.FUNCTION == "EXECUTE_NORMALIZED_ASYNC"
    types = nodes.Num.INPUT_TYPES()
    assert types["required"]["value"] == ("INT", {"default": 1, "min": -100, "max": 100})
    out = getattr(nodes.Num, nodes.Num.FUNCTION)(value=5)
    assert isinstance(out, io.NodeOutput) and out.result == (5,) and out[0] == 5
    # Subclasses do not inherit their parent's cached outputs.

    class Child(nodes.Num):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Child", outputs=[io.Float.Output()])

    assert nodes.Num.RETURN_TYPES == ["INT"]
    assert Child.RETURN_TYPES == ["FLOAT"]


def test_registry_object_info_json_for_schema_nodes():
    reg = NodeRegistry()
    reg.register_mappings({"T_Palette": nodes.Palette, "T_Num": nodes.Num}, {"T_Num": "Num (renamed)"},
                          python_module="custom_nodes.pack")
    data = json.loads(reg.object_info_json())
    assert set(data) == {"T_Palette", "T_Num"}
    assert data["T_Num"]["display_name"] == "Num (renamed)"
    assert data["T_Palette"]["python_module"] == "custom_nodes.pack"
    assert set(data["T_Palette"]) == V3_KEYS
    node = reg.get("T_Palette")
    assert node.schema_api is True
    assert node.raw_link_inputs == frozenset({"thing"})


def test_get_node_info_v1_custom_comfytype_and_multitype_override():
    @io.comfytype(io_type="MY_WIDGET")
    class MyWidget(io.ComfyTypeIO):
        class Input(io.WidgetInput):
            def __init__(self, id, level=3, **kwargs):
                super().__init__(id, **kwargs)
                self.level = level

            def as_dict(self):
                return super().as_dict() | {"level": self.level}

    class UsesIt(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="UsesIt", inputs=[
                MyWidget.Input("w", default="x"),
                io.MultiType.Input(io.Float.Input("f", default=1.5, optional=True), types=[io.Int, io.Float]),
            ], outputs=[MyWidget.Output()])

        @classmethod
        def execute(cls, w, f=None):
            return io.NodeOutput(w)

    info = UsesIt.GET_NODE_INFO_V1()
    assert info["input"]["required"]["w"] == ["MY_WIDGET", {"default": "x", "level": 3}]
    assert info["input"]["optional"]["f"] == ["FLOAT,INT", {"default": 1.5, "widgetType": "FLOAT"}]
    assert info["output"] == ["MY_WIDGET"] and info["name"] == "UsesIt"
    assert io.Int.Input("i").io_type == "INT"  # defining MyWidget did not touch other types


def test_abstract_base_classes_are_safe_to_inspect():
    class Base(io.ComfyNode):
        pass

    assert not hasattr(Base, "RETURN_TYPES") and not hasattr(Base, "CATEGORY")
    with pytest.raises(TypeError, match="No define_schema"):
        node_def_from_schema(Base)
