"""Adapter: ComfyUI's classic class API (INPUT_TYPES, RETURN_TYPES, FUNCTION, ...) -> NodeDef."""
from __future__ import annotations

from typing import Any

from .model import NodeDef, param_names


class NodeDefinitionError(Exception):
    pass


def from_classic(name: str, cls: type, display_name: str | None = None, python_module: str = "nodes") -> NodeDef:
    if not hasattr(cls, "INPUT_TYPES"):
        raise NodeDefinitionError(f"{name}: class {cls.__name__} has no INPUT_TYPES")
    inputs = cls.INPUT_TYPES()
    if not isinstance(inputs, dict):
        raise NodeDefinitionError(f"{name}: INPUT_TYPES() must return a dict")
    function_name = getattr(cls, "FUNCTION", None)
    if not function_name or not hasattr(cls, function_name):
        raise NodeDefinitionError(f"{name}: FUNCTION {function_name!r} is not a method of {cls.__name__}")
    outputs = list(getattr(cls, "RETURN_TYPES", ()))
    output_is_list = getattr(cls, "OUTPUT_IS_LIST", None)
    output_is_list = list(output_is_list) if output_is_list is not None else [False] * len(outputs)
    names = getattr(cls, "RETURN_NAMES", None)
    output_names = list(names) if names is not None else [o if isinstance(o, str) else "COMBO" for o in outputs]

    def call(instance: Any, **kwargs: Any) -> Any:
        return getattr(instance, function_name)(**kwargs)

    def bound(attr: str):
        # The classic API calls these on an instance (methods) or on the class (classmethods).
        if not hasattr(cls, attr):
            return None, None
        params = param_names(getattr(cls, attr))
        return (lambda instance, **kw: getattr(instance, attr)(**kw)), params

    lazy, _ = bound("check_lazy_status")
    validate, validate_params = bound("VALIDATE_INPUTS")
    fingerprint, fingerprint_params = bound("IS_CHANGED")

    extra: dict[str, Any] = {}
    aliases = getattr(cls, "SEARCH_ALIASES", None)
    if aliases is not None:
        extra["search_aliases"] = list(aliases)

    return NodeDef(
        name=name,
        cls=cls,
        inputs=inputs,
        outputs=outputs,
        output_is_list=output_is_list,
        output_names=output_names,
        function=call,
        display_name=display_name,
        category=getattr(cls, "CATEGORY", "sd"),
        description=getattr(cls, "DESCRIPTION", "") or "",
        python_module=python_module,
        output_node=bool(getattr(cls, "OUTPUT_NODE", False)),
        output_tooltips=getattr(cls, "OUTPUT_TOOLTIPS", None),
        deprecated=bool(getattr(cls, "DEPRECATED", False)),
        experimental=bool(getattr(cls, "EXPERIMENTAL", False)),
        api_node=getattr(cls, "API_NODE", None),
        input_is_list=bool(getattr(cls, "INPUT_IS_LIST", False)),
        not_idempotent=bool(getattr(cls, "NOT_IDEMPOTENT", False)),
        check_lazy_status=lazy,
        validate_inputs=validate,
        validate_inputs_params=validate_params,
        fingerprint=fingerprint,
        fingerprint_params=fingerprint_params,
        extra_info=extra,
        input_types_fn=cls.INPUT_TYPES,
    )
