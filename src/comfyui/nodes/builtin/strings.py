"""String utility nodes (ComfyUI's comfy_extras/nodes_string.py)."""
from __future__ import annotations

import re

_CATEGORY = "utils/string"


def _flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    flags = 0
    if case_insensitive:
        flags |= re.IGNORECASE
    if multiline:
        flags |= re.MULTILINE
    if dotall:
        flags |= re.DOTALL
    return flags


def _text(multiline: bool = True) -> tuple:
    return ("STRING", {"multiline": multiline})


class StringConcatenate:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string_a": _text(), "string_b": _text(), "delimiter": ("STRING", {"multiline": False, "default": ""})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string_a, string_b, delimiter):
        return (delimiter.join((string_a, string_b)),)


class StringSubstring:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "start": ("INT", {}), "end": ("INT", {})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string, start, end):
        # Python slice semantics: negative indices count from the end.
        return (string[start:end],)


class StringLength:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text()}}

    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("length",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string):
        return (len(string),)


class CaseConverter:
    modes = ["UPPERCASE", "lowercase", "Capitalize", "Title Case"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "mode": (cls.modes, {})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string, mode):
        if mode == "UPPERCASE":
            return (string.upper(),)
        if mode == "lowercase":
            return (string.lower(),)
        if mode == "Capitalize":
            return (string.capitalize(),)
        if mode == "Title Case":
            return (string.title(),)
        return (string,)


class StringTrim:
    modes = ["Both", "Left", "Right"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "mode": (cls.modes, {})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string, mode):
        if mode == "Both":
            return (string.strip(),)
        if mode == "Left":
            return (string.lstrip(),)
        if mode == "Right":
            return (string.rstrip(),)
        return (string,)


class StringReplace:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "find": _text(), "replace": _text()}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string, find, replace):
        return (string.replace(find, replace),)


class StringContains:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "substring": _text(), "case_sensitive": ("BOOLEAN", {"default": True})}}

    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("contains",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string, substring, case_sensitive):
        if case_sensitive:
            return (substring in string,)
        return (substring.lower() in string.lower(),)


class StringCompare:
    modes = ["Starts With", "Ends With", "Equal"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string_a": _text(), "string_b": _text(), "mode": (cls.modes, {}),
                             "case_sensitive": ("BOOLEAN", {"default": True})}}

    RETURN_TYPES = ("BOOLEAN",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string_a, string_b, mode, case_sensitive):
        a, b = (string_a, string_b) if case_sensitive else (string_a.lower(), string_b.lower())
        if mode == "Equal":
            return (a == b,)
        if mode == "Starts With":
            return (a.startswith(b),)
        if mode == "Ends With":
            return (a.endswith(b),)
        raise ValueError(f"StringCompare: mode must be one of {self.modes}, got {mode!r}")


class RegexMatch:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "regex_pattern": _text(),
                             "case_insensitive": ("BOOLEAN", {"default": True}),
                             "multiline": ("BOOLEAN", {"default": False}),
                             "dotall": ("BOOLEAN", {"default": False})}}

    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("matches",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string, regex_pattern, case_insensitive, multiline, dotall):
        # As upstream: an invalid pattern simply does not match.
        try:
            return (re.search(regex_pattern, string, _flags(case_insensitive, multiline, dotall)) is not None,)
        except re.error:
            return (False,)


class RegexExtract:
    modes = ["First Match", "All Matches", "First Group", "All Groups"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "regex_pattern": _text(), "mode": (cls.modes, {}),
                             "case_insensitive": ("BOOLEAN", {"default": True}),
                             "multiline": ("BOOLEAN", {"default": False}),
                             "dotall": ("BOOLEAN", {"default": False}),
                             "group_index": ("INT", {"default": 1, "min": 0, "max": 100})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY

    def execute(self, string, regex_pattern, mode, case_insensitive, multiline, dotall, group_index):
        flags = _flags(case_insensitive, multiline, dotall)
        # As upstream: an invalid pattern extracts nothing. Results are joined with newlines.
        try:
            if mode == "First Match":
                m = re.search(regex_pattern, string, flags)
                return (m.group(0) if m else "",)
            if mode == "All Matches":
                # findall semantics (as upstream): with capture groups this yields the first group.
                found = re.findall(regex_pattern, string, flags)
                return ("\n".join(m[0] if isinstance(m, tuple) else m for m in found),)
            if mode == "First Group":
                m = re.search(regex_pattern, string, flags)
                if m and len(m.groups()) >= group_index:
                    return (m.group(group_index) or "",)
                return ("",)
            if mode == "All Groups":
                out = [m.group(group_index) or "" for m in re.finditer(regex_pattern, string, flags)
                       if m.groups() and len(m.groups()) >= group_index]
                return ("\n".join(out),)
        except re.error:
            return ("",)
        return ("",)


class RegexReplace:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"string": _text(), "regex_pattern": _text(), "replace": _text()},
            "optional": {
                "case_insensitive": ("BOOLEAN", {"default": True}),
                "multiline": ("BOOLEAN", {"default": False}),
                "dotall": ("BOOLEAN", {"default": False, "tooltip": "When enabled, the dot (.) character will match any character including newline characters. When disabled, dots won't match newlines."}),
                "count": ("INT", {"default": 0, "min": 0, "max": 100, "tooltip": "Maximum number of replacements to make. Set to 0 to replace all occurrences (default). Set to 1 to replace only the first match, 2 for the first two matches, etc."}),
            },
        }

    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY
    DESCRIPTION = "Find and replace text using regex patterns."

    def execute(self, string, regex_pattern, replace, case_insensitive=True, multiline=False, dotall=False, count=0):
        try:
            return (re.sub(regex_pattern, replace, string, count=count, flags=_flags(case_insensitive, multiline, dotall)),)
        except re.error as e:
            raise ValueError(f"RegexReplace: invalid pattern or replacement {regex_pattern!r}: {e}") from e


NODE_CLASS_MAPPINGS = {
    "StringConcatenate": StringConcatenate,
    "StringSubstring": StringSubstring,
    "StringLength": StringLength,
    "CaseConverter": CaseConverter,
    "StringTrim": StringTrim,
    "StringReplace": StringReplace,
    "StringContains": StringContains,
    "StringCompare": StringCompare,
    "RegexMatch": RegexMatch,
    "RegexExtract": RegexExtract,
    "RegexReplace": RegexReplace,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "StringConcatenate": "Concatenate",
    "StringSubstring": "Substring",
    "StringLength": "Length",
    "CaseConverter": "Case Converter",
    "StringTrim": "Trim",
    "StringReplace": "Replace",
    "StringContains": "Contains",
    "StringCompare": "Compare",
    "RegexMatch": "Regex Match",
    "RegexExtract": "Regex Extract",
    "RegexReplace": "Regex Replace",
}
