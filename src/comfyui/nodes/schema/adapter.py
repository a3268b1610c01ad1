"""Adapter: a schema-API node class (``io.ComfyNode``) -> NodeDef.

What the engine sees is the classic contract:

* object_info's ``input`` is the spec exactly as ComfyUI emits it for schema nodes
  (``"COMBO"`` with ``options``, dynamic inputs as their ``COMFY_*_V3`` specs, hidden values
  as one-element lists ``["UNIQUE_ID"]``); for ordinary nodes it is also ``NodeDef.inputs``.
* For nodes with dynamic inputs (Autogrow, DynamicCombo, DynamicSlot) or
  ``accept_all_inputs``, ``NodeDef.inputs`` lists the flat names the prompt uses instead
  (``"images.image0"``, ...; an always-containing optional dict for accept_all_inputs) and the
  V3 specs go to object_info through ``extra_info["input"]``; the wrapper nests the flat values
  back into dicts before calling the node.
* ``function(instance, **kwargs)`` strips the hidden kwargs, runs ``execute`` on a per-call
  clone of the class whose ``hidden`` holds them, and turns the ``io.NodeOutput`` into
  ``{"result": tuple, "ui": dict, "expand": graph}``. Async ``execute`` yields a coroutine.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from ..model import NodeDef, param_names
from . import _io as io


class _OpenOptional(dict):
    """Optional inputs that also accept names not listed (``accept_all_inputs``)."""

    def __contains__(self, key: object) -> bool:
        return True


def _spec(inp: io.Input) -> tuple:
    options = inp.as_dict()
    options.pop("optional", None)
    return (inp.get_io_type(), options)


def build_inputs(schema: io.Schema) -> dict:
    """The object_info ``input`` dict of a finalized schema."""
    inputs = io.create_input_dict_v1(schema.inputs)
    if schema.hidden:
        inputs["hidden"] = {h.name: (h.value,) for h in schema.hidden}
    return inputs


# ---- dynamic inputs -------------------------------------------------------------------------

def _flatten_dynamic(inp: io.DynamicInput, prefix: str, required: dict, optional: dict, parent_required: bool) -> None:
    """Execution-view specs of a dynamic input and everything it can add, under dotted names."""
    own_required = parent_required and not inp.optional
    if isinstance(inp, io.DynamicCombo.Input):
        keys = [o.key for o in inp.options]
        spec = ("COMBO", {"options": keys} | ({"tooltip": inp.tooltip} if inp.tooltip else {}))
        (required if own_required else optional)[prefix] = spec
    elif isinstance(inp, io.DynamicSlot.Input):
        optional[prefix] = _spec(inp.slot)
    for name, sub, sub_required in inp.sub_inputs():
        flat = f"{prefix}.{name}"
        if isinstance(sub, io.DynamicInput):
            _flatten_dynamic(sub, flat, required, optional, False)
        else:
            (required if (sub_required and own_required) else optional)[flat] = _spec(sub)


def _nest(inp: io.DynamicInput, prefix: str, values: dict, as_tuples: bool, strict: bool = False) -> Any:
    """Pop the flat values of one dynamic input from ``values``; return its nested value
    (``_MISSING`` when the input is absent). ``strict``: a required input of the selected
    DynamicCombo option must be there (validation cannot know which option is selected)."""

    def leaf(key: str) -> Any:
        value = values.pop(key)
        return (value, key) if as_tuples else value

    last = prefix.rsplit(".", 1)[-1]
    if isinstance(inp, io.Autogrow.Input):
        return {name: leaf(f"{prefix}.{name}") for name, _sub, _req in inp.sub_inputs() if f"{prefix}.{name}" in values}
    if isinstance(inp, io.DynamicCombo.Input):
        if prefix not in values:
            return _MISSING
        key = values[prefix]
        if isinstance(key, list) and key:  # is_input_list nodes get lists
            key = key[0]
        out = {last: leaf(prefix)}
        selected = next((o for o in inp.options if o.key == key), None)
        for option in inp.options:
            for sub in option.inputs:
                flat = f"{prefix}.{sub.id}"
                if option is selected:
                    if isinstance(sub, io.DynamicInput):
                        nested = _nest(sub, flat, values, as_tuples, strict)
                        if nested is not _MISSING:
                            out[sub.id] = nested
                    elif flat in values:
                        out[sub.id] = leaf(flat)
                    elif strict and not sub.optional:
                        raise ValueError(f"Required input '{flat}' of option {key!r} is missing")
        return out
    if isinstance(inp, io.DynamicSlot.Input):
        if prefix not in values:
            return _MISSING
        out = {last: leaf(prefix)}
        for sub in inp.inputs:
            flat = f"{prefix}.{sub.id}"
            if isinstance(sub, io.DynamicInput):
                nested = _nest(sub, flat, values, as_tuples, strict)
                if nested is not _MISSING:
                    out[sub.id] = nested
            elif flat in values:
                out[sub.id] = leaf(flat)
        return out
    return _MISSING


_MISSING = object()


def _drop_prefixed(values: dict, prefix: str) -> None:
    for key in [k for k in values if k.startswith(prefix + ".")]:
        del values[key]


# ---- output conversion ----------------------------------------------------------------------

def to_classic_result(node_cls: type, value: Any, n_outputs: int) -> dict:
    """``io.NodeOutput`` (or what execute returned) -> the engine's ``{"result", "ui", "expand"}``."""
    from comfyui.engine.graph import ExecutionBlocker

    out = io._normalize_output(node_cls, value)
    if out.blocked:
        result = tuple(ExecutionBlocker(out.block_execution) for _ in range(n_outputs))
    elif out.args:
        result = tuple(out.args)
    else:
        result = (None,) * n_outputs
    classic: dict[str, Any] = {"result": result}
    if out.ui is not None:
        classic["ui"] = out.ui if isinstance(out.ui, dict) else out.ui.as_dict()
    if out.expand is not None:
        classic["expand"] = out.expand
    return classic


# ---- the adapter ----------------------------------------------------------------------------

def node_def_from_schema(cls: type, python_module: str = "nodes", name: str | None = None,
                         display_name: str | None = None) -> NodeDef:
    """Build the NodeDef of a ComfyNode class (calls ``define_schema()`` once)."""
    if not (isinstance(cls, type) and hasattr(cls, "define_schema")):
        raise TypeError(f"{cls!r} is not a schema-API node class (io.ComfyNode)")
    if not issubclass(cls, io._ComfyNodeBase):
        raise TypeError(f"{cls.__name__} must subclass io.ComfyNode")
    schema = cls.GET_SCHEMA()
    cls.RELATIVE_PYTHON_MODULE = python_module  # where ComfyUI's loader records the owning module
    node_name = name or schema.node_id
    inputs = build_inputs(schema)
    outputs = schema.outputs
    n_outputs = len(outputs)
    hidden_names = {h.name: h.value for h in schema.hidden}
    dynamic = [inp for inp in schema.inputs if isinstance(inp, io.DynamicInput)]
    input_is_list = bool(schema.is_input_list)

    def split_hidden(kwargs: dict) -> tuple[type, dict]:
        values = {}
        for key in hidden_names:
            if key in kwargs:
                value = kwargs.pop(key)
                if input_is_list and isinstance(value, list) and len(value) == 1:
                    value = value[0]
                values[hidden_names[key]] = value
        return cls.PREPARE_CLASS_CLONE(values), kwargs

    def nest(kwargs: dict, as_tuples: bool, strict: bool) -> dict:
        for inp in dynamic:
            nested = _nest(inp, inp.id, kwargs, as_tuples, strict)
            _drop_prefixed(kwargs, inp.id)
            if nested is not _MISSING:
                kwargs[inp.id] = nested
        return kwargs

    def prepare(kwargs: dict, as_tuples: bool = False, strict: bool = False) -> tuple[type, dict]:
        clone, kwargs = split_hidden(dict(kwargs))
        if dynamic:
            kwargs = nest(kwargs, as_tuples, strict)
        return clone, kwargs

    def call(instance: Any, **kwargs: Any) -> Any:
        clone, kwargs = prepare(kwargs, strict=True)
        result = clone.execute(**kwargs)
        if inspect.isawaitable(result):
            async def finish() -> dict:
                return to_classic_result(clone, await result, n_outputs)

            return finish()
        return to_classic_result(clone, result, n_outputs)

    def method_caller(attr: str, as_tuples: bool = False, filter_params: frozenset | None = None):
        def invoke(instance: Any, **kwargs: Any) -> Any:
            clone, kwargs = prepare(kwargs, as_tuples)
            if filter_params is not None:
                kwargs = {k: v for k, v in kwargs.items() if k in filter_params}
            return getattr(clone, attr)(**kwargs)

        return invoke

    lazy = None
    if io.first_real_override(cls, "check_lazy_status") is not None:
        lazy = method_caller("check_lazy_status", as_tuples=bool(dynamic))

    def optional_method(attr: str) -> tuple[Callable | None, frozenset | None]:
        if io.first_real_override(cls, attr) is None:
            return None, None
        params = param_names(getattr(cls, attr))
        if dynamic:
            # The engine only knows flat names; ask for everything and filter after nesting.
            return method_caller(attr, filter_params=params), None
        return method_caller(attr), params

    validate, validate_params = optional_method("validate_inputs")
    fingerprint, fingerprint_params = optional_method("fingerprint_inputs")

    matchtypes = [o.template.template_id if isinstance(o, io.MatchType.Output) else None for o in outputs]
    extra: dict[str, Any] = {
        "is_input_list": input_is_list,
        "output_matchtypes": matchtypes if any(m is not None for m in matchtypes) else None,
        "dev_only": bool(schema.is_dev_only),
        "price_badge": schema.price_badge.as_dict(schema.inputs) if schema.price_badge is not None else None,
        "search_aliases": list(schema.search_aliases) if schema.search_aliases else None,
        "essentials_category": schema.essentials_category,
        "has_intermediate_output": bool(schema.has_intermediate_output),
    }

    if dynamic or schema.accept_all_inputs:
        # The engine validates and runs against the flat prompt names; object_info keeps the V3 specs.
        extra["input"] = inputs
        extra["input_order"] = {category: list(specs) for category, specs in inputs.items()}
        engine_inputs = _execution_inputs(schema, inputs)
    else:
        engine_inputs = inputs

    return NodeDef(
        name=node_name,
        cls=cls,
        inputs=engine_inputs,
        outputs=[o.io_type for o in outputs],
        output_is_list=[bool(o.is_output_list) for o in outputs],
        output_names=[o.display_name if o.display_name else o.io_type for o in outputs],
        function=call,
        display_name=display_name or schema.display_name,
        category=schema.category,
        description=schema.description or "",
        python_module=python_module,
        output_node=bool(schema.is_output_node),
        output_tooltips=[o.tooltip if o.tooltip else None for o in outputs],
        deprecated=bool(schema.is_deprecated),
        experimental=bool(schema.is_experimental),
        api_node=bool(schema.is_api_node),
        input_is_list=input_is_list,
        not_idempotent=bool(schema.not_idempotent),
        check_lazy_status=lazy,
        validate_inputs=validate,
        validate_inputs_params=validate_params,
        fingerprint=fingerprint,
        fingerprint_params=fingerprint_params,
        # file combos (LoadVideo's input files, ...): object_info asks define_schema() again, as upstream
        input_types_fn=None if (dynamic or schema.accept_all_inputs) else (lambda: build_inputs(cls.GET_SCHEMA())),
        extra_info=extra,
        schema_api=True,
        make_instance=lambda: cls,
    )


def _execution_inputs(schema: io.Schema, inputs: dict) -> dict:
    """The input spec under the names the prompt uses (dynamic sub-inputs flattened to dotted names)."""
    required: dict = {}
    optional: dict = _OpenOptional() if schema.accept_all_inputs else {}
    for inp in schema.inputs:
        if isinstance(inp, io.DynamicInput):
            _flatten_dynamic(inp, inp.id, required, optional, True)
        else:
            (optional if inp.optional else required)[inp.id] = _spec(inp)
    result = {"required": required, "optional": optional}
    if "hidden" in inputs:
        result["hidden"] = inputs["hidden"]
    return result
