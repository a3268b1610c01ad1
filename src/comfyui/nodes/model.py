"""NodeDef: the one internal node-definition model.

Both authoring APIs (the classic class API in ``classic.py`` and the typed schema API in
``io.py``) adapt into a NodeDef. The engine only ever talks to NodeDef, and the
``/object_info`` JSON is generated from it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

INPUT_CATEGORIES = ("required", "optional", "hidden")

# Hidden input kinds and what the executor fills in for them.
HIDDEN_UNIQUE_ID = "UNIQUE_ID"
HIDDEN_PROMPT = "PROMPT"
HIDDEN_EXTRA_PNGINFO = "EXTRA_PNGINFO"
HIDDEN_DYNPROMPT = "DYNPROMPT"
HIDDEN_AUTH_TOKEN = "AUTH_TOKEN_COMFY_ORG"
HIDDEN_API_KEY = "API_KEY_COMFY_ORG"
HIDDEN_USAGE_SOURCE = "COMFY_USAGE_SOURCE"


@dataclass
class NodeDef:
    name: str
    cls: Any
    # Raw input spec in object_info form: {"required": {name: [type, options]}, "optional": ..., "hidden": ...}.
    # "optional" may be a dict subclass whose __contains__ is always true (dynamic inputs).
    inputs: dict
    outputs: list
    output_is_list: list[bool]
    output_names: list[str]
    function: Callable[..., Any]  # (instance, **kwargs) -> tuple | dict | NodeOutput-like | coroutine
    display_name: str | None = None
    category: str = "sd"
    description: str = ""
    python_module: str = "nodes"
    output_node: bool = False
    output_tooltips: list | None = None
    deprecated: bool = False
    experimental: bool = False
    api_node: bool | None = None
    input_is_list: bool = False
    not_idempotent: bool = False
    # Optional behaviours; each takes (instance_or_cls, **kwargs).
    check_lazy_status: Callable[..., Any] | None = None
    validate_inputs: Callable[..., Any] | None = None
    # Names VALIDATE_INPUTS asks for; None when it takes **kwargs (gets everything).
    validate_inputs_params: frozenset | None = None
    fingerprint: Callable[..., Any] | None = None  # IS_CHANGED
    fingerprint_params: frozenset | None = None
    # Extra fields for object_info (search_aliases, essentials_category, ...).
    extra_info: dict = field(default_factory=dict)
    # When True the schema-API style (V3) object_info fields are always emitted.
    schema_api: bool = False
    make_instance: Callable[[], Any] | None = None
    # Re-evaluates the input spec (classic INPUT_TYPES): file lists change while we run.
    input_types_fn: Callable[[], dict] | None = None

    # ---- derived views used by the engine (computed once) ----
    def __post_init__(self) -> None:
        # `is None` checks: an empty dynamic-inputs dict is falsy but must be kept.
        required, optional, hidden = ({} if self.inputs.get(c) is None else self.inputs[c] for c in INPUT_CATEGORIES)
        self.required = required
        self.optional = optional
        self.hidden = hidden
        self.hidden_kinds = {name: (spec[0] if isinstance(spec, (list, tuple)) else spec) for name, spec in hidden.items()}
        self.lazy_inputs = frozenset(
            name for cat in (required, optional) for name, spec in _iter_specs(cat) if _options(spec).get("lazy")
        )
        self.raw_link_inputs = frozenset(
            name for cat in (required, optional) for name, spec in _iter_specs(cat) if _options(spec).get("rawLink")
        )
        self.uses_unique_id = HIDDEN_UNIQUE_ID in self.hidden_kinds.values()
        self.has_combo = any(isinstance(_type(spec), list) or _type(spec) == "COMBO"
                             for cat in (required, optional) for _, spec in _iter_specs(cat))
        self._specs: dict[str, tuple[str, Any, dict]] = {}
        for cat, specs in (("optional", optional), ("hidden", hidden), ("required", required)):
            for name, spec in _iter_specs(specs):
                self._specs[name] = (cat, _type(spec), _options(spec))

    def refresh_inputs(self) -> bool:
        """Call INPUT_TYPES again (combo lists of files); True when the spec changed."""
        if self.input_types_fn is None:
            return False
        inputs = self.input_types_fn()
        if not isinstance(inputs, dict) or inputs == self.inputs:
            return False
        self.inputs = inputs
        self.__post_init__()
        return True

    def input_spec(self, name: str) -> tuple[str, Any, dict] | None:
        """(category, type, options) for an input name, consulting dynamic optional dicts."""
        found = self._specs.get(name)
        if found is not None:
            return found
        if name in self.required:
            spec = self.required[name]
            return "required", _type(spec), _options(spec)
        if name in self.hidden:
            spec = self.hidden[name]
            return "hidden", _type(spec), _options(spec)
        if name in self.optional:
            try:
                spec = self.optional[name]
            except KeyError:
                spec = ("*",)
            return "optional", _type(spec), _options(spec)
        return None

    def instance(self) -> Any:
        return self.make_instance() if self.make_instance is not None else self.cls()

    def object_info(self) -> dict:
        info: dict[str, Any] = {
            "input": {cat: _jsonable(self.inputs[cat]) for cat in INPUT_CATEGORIES if cat in self.inputs},
            "input_order": {cat: list(self.inputs[cat].keys()) for cat in INPUT_CATEGORIES if cat in self.inputs},
            "output": list(self.outputs),
            "output_is_list": list(self.output_is_list),
            "output_name": list(self.output_names),
            "name": self.name,
            "display_name": self.display_name or self.name,
            "description": self.description,
            "python_module": self.python_module,
            "category": self.category,
            "output_node": self.output_node,
        }
        if self.schema_api:
            info["input"].setdefault("required", {})
            info["input_order"].setdefault("required", [])
            info["output_tooltips"] = list(self.output_tooltips or [None] * len(self.outputs))
            info["deprecated"] = self.deprecated
            info["experimental"] = self.experimental
            info["api_node"] = bool(self.api_node)
        else:
            if self.output_tooltips is not None:
                info["output_tooltips"] = list(self.output_tooltips)
            if self.deprecated:
                info["deprecated"] = True
            if self.experimental:
                info["experimental"] = True
            if self.api_node is not None:
                info["api_node"] = self.api_node
        info.update(self.extra_info)
        return info


def param_names(func: Any) -> frozenset | None:
    """Keyword parameter names a node hook accepts (without self/cls/s); None when it takes
    **kwargs, meaning it gets every input."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    names = set()
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(p.name)
    return frozenset(names - {"self", "cls", "s"})


def _iter_specs(category: dict):
    # Dynamic optional dicts may not iterate over everything they "contain"; only what they list.
    return dict.items(category) if isinstance(category, dict) else category.items()


def _type(spec: Any) -> Any:
    if isinstance(spec, (list, tuple)):
        return spec[0] if spec else "*"
    return spec


def _options(spec: Any) -> dict:
    if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def _jsonable(value: Any) -> Any:
    """Tuples become lists; str subclasses (AnyType tricks) become plain str; dict subclasses plain dicts."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in dict.items(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)
