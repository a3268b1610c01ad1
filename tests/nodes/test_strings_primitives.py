import sys

import pytest
import torch

from comfyui.nodes.builtin import primitives, strings
from comfyui.nodes.builtin.preview import PreviewAny
from comfyui.nodes.builtin.strings import (
    CaseConverter,
    RegexExtract,
    RegexMatch,
    RegexReplace,
    StringCompare,
    StringConcatenate,
    StringContains,
    StringLength,
    StringReplace,
    StringSubstring,
    StringTrim,
)


def run(node_cls, **kwargs):
    return getattr(node_cls(), node_cls.FUNCTION)(**kwargs)


def test_primitives_pass_values_through():
    assert run(primitives.PrimitiveInt, value=-7) == (-7,)
    assert run(primitives.PrimitiveFloat, value=2.5) == (2.5,)
    assert run(primitives.PrimitiveBoolean, value=True) == (True,)
    assert run(primitives.PrimitiveString, value="hi") == ("hi",)
    assert run(primitives.PrimitiveStringMultiline, value="a\nb") == ("a\nb",)
    spec = primitives.PrimitiveInt.INPUT_TYPES()["required"]["value"]
    assert spec == ("INT", {"min": -sys.maxsize, "max": sys.maxsize, "control_after_generate": True})
    assert primitives.PrimitiveStringMultiline.INPUT_TYPES()["required"]["value"][1] == {"multiline": True}
    assert primitives.NODE_DISPLAY_NAME_MAPPINGS["PrimitiveStringMultiline"] == "String (Multiline)"


def test_basic_string_ops():
    assert run(StringConcatenate, string_a="a", string_b="b", delimiter=", ") == ("a, b",)
    assert run(StringSubstring, string="hello world", start=-5, end=11) == ("world",)
    assert run(StringLength, string="héllo") == (5,)
    assert run(CaseConverter, string="hello wORLD", mode="Title Case") == ("Hello World",)
    assert run(CaseConverter, string="hello wORLD", mode="Capitalize") == ("Hello world",)
    assert run(CaseConverter, string="abc", mode="UPPERCASE") == ("ABC",)
    assert run(StringTrim, string="  x  ", mode="Left") == ("x  ",)
    assert run(StringTrim, string="  x  ", mode="Both") == ("x",)
    assert run(StringReplace, string="a-b-c", find="-", replace="+") == ("a+b+c",)
    assert run(StringContains, string="Hello", substring="hell", case_sensitive=True) == (False,)
    assert run(StringContains, string="Hello", substring="hell", case_sensitive=False) == (True,)
    assert run(StringCompare, string_a="Prefix-x", string_b="prefix", mode="Starts With", case_sensitive=False) == (True,)
    assert run(StringCompare, string_a="abc", string_b="ABC", mode="Equal", case_sensitive=True) == (False,)
    assert run(StringCompare, string_a="file.png", string_b=".png", mode="Ends With", case_sensitive=True) == (True,)


def test_regex_nodes():
    assert run(RegexMatch, string="Cat", regex_pattern="^cat$", case_insensitive=True, multiline=False, dotall=False) == (True,)
    assert run(RegexMatch, string="Cat", regex_pattern="^cat$", case_insensitive=False, multiline=False, dotall=False) == (False,)
    assert run(RegexMatch, string="x", regex_pattern="(", case_insensitive=True, multiline=False, dotall=False) == (False,)
    common = dict(case_insensitive=True, multiline=False, dotall=False, group_index=1)
    text = "a=1, b=22, c=333"
    assert run(RegexExtract, string=text, regex_pattern=r"\w=(\d+)", mode="First Match", **common) == ("a=1",)
    assert run(RegexExtract, string=text, regex_pattern=r"\w=\d+", mode="All Matches", **common) == ("a=1\nb=22\nc=333",)
    assert run(RegexExtract, string=text, regex_pattern=r"(\w)=(\d+)", mode="First Group", **{**common, "group_index": 2}) == ("1",)
    assert run(RegexExtract, string=text, regex_pattern=r"\w=(\d+)", mode="All Groups", **common) == ("1\n22\n333",)
    assert run(RegexExtract, string=text, regex_pattern=r"\w=\d+", mode="First Group", **common) == ("",)
    assert run(RegexReplace, string="Foo foo", regex_pattern="foo", replace="bar") == ("bar bar",)
    assert run(RegexReplace, string="Foo foo", regex_pattern="foo", replace="bar", case_insensitive=False, count=1) == ("Foo bar",)
    with pytest.raises(ValueError, match="RegexReplace"):
        run(RegexReplace, string="x", regex_pattern="(", replace="")


def test_string_node_specs_match_upstream():
    assert strings.RegexReplace.INPUT_TYPES()["optional"]["count"][1]["max"] == 100
    assert strings.StringLength.RETURN_NAMES == ("length",)
    assert all(c.CATEGORY == "utils/string" for c in strings.NODE_CLASS_MAPPINGS.values())
    assert set(strings.NODE_CLASS_MAPPINGS) == set(strings.NODE_DISPLAY_NAME_MAPPINGS)


def test_preview_any():
    assert run(PreviewAny, source="text") == {"ui": {"text": ["text"]}}
    assert run(PreviewAny, source=3.5) == {"ui": {"text": ["3.5"]}}
    assert run(PreviewAny, source={"a": [1, 2]}) == {"ui": {"text": ['{"a": [1, 2]}']}}
    assert run(PreviewAny, source=None) == {"ui": {"text": ["None"]}}
    out = run(PreviewAny, source=torch.zeros(2))["ui"]["text"][0]
    assert "tensor" in out
    assert PreviewAny.OUTPUT_NODE and PreviewAny.INPUT_TYPES()["required"]["source"][0] == "*"
