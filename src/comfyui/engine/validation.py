"""Prompt validation with ComfyUI's error shapes.

``validate_prompt`` returns the output node ids that can run plus per-node errors. Like
ComfyUI, a prompt is accepted when at least one output validates; the errors of the others
come back in ``node_errors``. Walks are iterative so very long chains are fine.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import math
from typing import Any

from ..nodes.model import HIDDEN_PROMPT, HIDDEN_UNIQUE_ID, NodeDef
from ..nodes.registry import NodeRegistry
from .graph import is_link

_COERCE = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


class PromptError(Exception):
    """Invalid prompt. ``error`` is ComfyUI's top-level error dict ({"type", "message",
    "details", "extra_info"}); ``node_errors`` maps node id to {"errors", "dependent_outputs",
    "class_type"}. The server answers 400 with {"error": error, "node_errors": node_errors}."""

    def __init__(self, error: dict, node_errors: dict):
        super().__init__(error.get("message", "invalid prompt"))
        self.error = error
        self.node_errors = node_errors

    def __str__(self) -> str:  # the message and every node error (batch mode, the clients' errors)
        from .runlog import describe_error

        return describe_error(self.error, self.node_errors)


def _error(type_: str, message: str, details: str = "", extra_info: dict | None = None) -> dict:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


MATCH_TYPE = "COMFY_MATCHTYPE_V3"


def types_compatible(received_type: Any, input_type: Any) -> bool:
    """ComfyUI's link type check: equal, '*' or a schema MatchType (whose type the frontend
    resolves) on either side, or overlapping comma unions.

    Uses ``!=`` so str subclasses that override ``__ne__`` (the AnyType trick) match anything.
    """
    if not (received_type != input_type):
        return True
    if isinstance(received_type, list) and input_type == "COMBO":
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    if received_type in ("*", MATCH_TYPE) or input_type in ("*", MATCH_TYPE):
        return True
    received = {t.strip() for t in received_type.split(",")}
    expected = {t.strip() for t in input_type.split(",")}
    return bool(received & expected) or "*" in received or "*" in expected


def hook_arguments(inputs: dict, node_def: NodeDef, params: frozenset | None) -> dict:
    """The inputs ComfyUI hands VALIDATE_INPUTS and IS_CHANGED: constants as they are, every
    linked input as None (its value is not known yet; a ``rawLink`` input gets the link itself),
    limited to ``params`` unless the hook takes ``**kwargs`` (``params`` None)."""
    args = {}
    for name, value in inputs.items():
        if params is not None and name not in params:
            continue
        if is_link(value) and name not in node_def.raw_link_inputs:
            args[name] = None
        elif node_def.input_spec(name) is not None:
            args[name] = value
    return args


def _combo_options(input_type: Any, options: dict) -> list | None:
    if isinstance(input_type, list):
        return input_type
    if input_type == "COMBO" and isinstance(options.get("options"), list):
        return options["options"]
    return None


def _short(values: list) -> str:
    return str(values if len(values) <= 20 else values[:20] + ["..."])


def validate_node(node_id: str, node: dict, node_def: NodeDef, prompt: dict,
                  registry: NodeRegistry) -> tuple[list[dict], dict | None]:
    """Default checks of one node's own inputs (linked nodes' validity is propagated separately).

    Converts constant INT/FLOAT/STRING/BOOLEAN values in place, as ComfyUI does. Returns the
    errors and, when the node has VALIDATE_INPUTS and passed, the arguments to call it with.
    """
    errors: list[dict] = []
    inputs = node.get("inputs")
    if not isinstance(inputs, dict):
        return [_error("invalid_prompt", "Node inputs must be an object", f"Node ID '#{node_id}'")]
    custom_params = node_def.validate_inputs_params if node_def.validate_inputs else frozenset()
    custom_all = node_def.validate_inputs is not None and custom_params is None
    wants_types = node_def.validate_inputs is not None and not custom_all and "input_types" in custom_params
    received_types: dict[str, Any] = {}

    for name, spec in node_def.required.items():
        if name not in inputs:
            errors.append(_error("required_input_missing", "Required input is missing", name,
                                 {"input_name": name}))

    for name, value in inputs.items():
        found = node_def.input_spec(name)
        if found is None or found[0] == "hidden":
            continue
        _, input_type, options = found
        input_config = [input_type, options] if options else [input_type]
        if isinstance(value, list) and not is_link(value) and not options.get("rawLink"):
            if len(value) != 2:
                errors.append(_error("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                     name, {"input_name": name, "input_config": input_config, "received_value": value}))
                continue
        if is_link(value):
            if options.get("rawLink"):
                continue
            source_id, slot = value
            source = prompt.get(source_id)
            source_def = registry.get(source.get("class_type")) if isinstance(source, dict) else None
            if source_def is None:
                errors.append(_error("bad_linked_input", "Bad linked input, linked node does not exist",
                                     f"{name}: node {source_id}",
                                     {"input_name": name, "input_config": input_config, "linked_node": value}))
                continue
            if slot < 0 or slot >= len(source_def.outputs):
                errors.append(_error("bad_linked_input", "Bad linked input, output index out of range",
                                     f"{name}: node {source_id} has {len(source_def.outputs)} outputs",
                                     {"input_name": name, "input_config": input_config, "linked_node": value}))
                continue
            received = source_def.outputs[slot]
            if wants_types:
                received_types[name] = received
            elif not types_compatible(received, input_type):
                errors.append(_error("return_type_mismatch", "Return type mismatch between linked nodes",
                                     f"{name}, received_type({received}) mismatch input_type({input_type})",
                                     {"input_name": name, "input_config": input_config, "received_type": received,
                                      "linked_node": value}))
            continue

        # A constant value. The frontend wraps a widget's list value as {"__value__": [...]}
        # (a bare list means a link); the node gets the unwrapped value, as in ComfyUI.
        if isinstance(value, dict) and "__value__" in value:
            value = inputs[name] = value["__value__"]
        coerce = _COERCE.get(input_type) if isinstance(input_type, str) else None
        if coerce is not None:
            try:
                if coerce is float and isinstance(value, str) and value.strip() == "":
                    raise ValueError("empty string")
                value = coerce(value)
                if coerce is float and isinstance(value, float) and math.isnan(value) and not options.get("allow_nan", False):
                    raise ValueError("NaN is not a valid FLOAT")
                inputs[name] = value
            except (TypeError, ValueError, OverflowError) as ex:
                errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                                     f"{name}, {value}, {ex}",
                                     {"input_name": name, "input_config": input_config, "received_value": value,
                                      "exception_message": str(ex)}))
                continue
        if node_def.validate_inputs is not None and (custom_all or name in custom_params):
            continue  # VALIDATE_INPUTS takes over the default checks for the inputs it asks for
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = options.get("min"), options.get("max")
            if low is not None and value < low:
                errors.append(_error("value_smaller_than_min", f"Value {value} smaller than min of {low}", name,
                                     {"input_name": name, "input_config": input_config, "received_value": value}))
            if high is not None and value > high:
                errors.append(_error("value_bigger_than_max", f"Value {value} bigger than max of {high}", name,
                                     {"input_name": name, "input_config": input_config, "received_value": value}))
        combo = _combo_options(input_type, options)
        if combo is not None and not options.get("multiselect") and not options.get("multi_select"):
            if _unhashable_or_missing(value, combo):
                errors.append(_error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {_short(combo)}",
                                     {"input_name": name, "input_config": [_short(combo), options] if options else [_short(combo)],
                                      "received_value": value}))

    if node_def.validate_inputs is None or errors:
        return errors, None
    args = hook_arguments(inputs, node_def, None if custom_all else custom_params)
    args.update(_hidden_arguments(node_id, node_def, prompt, None if custom_all else custom_params))
    if wants_types:
        args["input_types"] = received_types
    return errors, args


def _hidden_arguments(node_id: str, node_def: NodeDef, prompt: dict, params: frozenset | None) -> dict:
    """Hidden inputs as ComfyUI fills them before execution: the node's id and the prompt;
    what only a run knows (extra_pnginfo, the dynamic prompt, credentials) is None. A schema
    node gets them all (they go to its class clone, not to the call)."""
    values = {}
    for name, kind in node_def.hidden_kinds.items():
        if node_def.schema_api or params is None or name in params:
            values[name] = node_id if kind == HIDDEN_UNIQUE_ID else prompt if kind == HIDDEN_PROMPT else None
    return values


def _call_custom_validation(node_def: NodeDef, args: dict) -> Any:
    """VALIDATE_INPUTS' answer (an awaitable for an async one), or the exception it raised."""
    try:
        return node_def.validate_inputs(node_def.cls, **args)
    except Exception as ex:  # a custom validator's crash is a validation error, not a 500
        return ex


def _custom_validation_errors(result: Any, args: dict) -> list[dict]:
    """ComfyUI's errors for a VALIDATE_INPUTS answer: True passes; anything else fails, with
    one error per argument it was given, ``input_types`` included (an exception: one
    ``exception_during_validation``)."""
    if result is True:
        return []
    if isinstance(result, BaseException):
        return [_error("exception_during_validation", "Exception when validating node", str(result),
                       {"exception_type": type(result).__name__})]
    reason = "" if result is False or result is None else f" - {result}"
    names = list(args) or [""]
    return [_error("custom_validation_failed", "Custom validation failed for node", f"{name}{reason}",
                   {"input_name": name}) for name in names]


def _unhashable_or_missing(value: Any, combo: list) -> bool:
    try:
        return value not in combo
    except Exception:
        return True


def validate_prompt(prompt: Any, registry: NodeRegistry, partial_execution_targets: list | None = None) -> tuple[list[str], dict]:
    """Returns (output node ids to execute, node_errors); raises PromptError when nothing can run.

    An async VALIDATE_INPUTS is awaited on a private event loop in a helper thread (this
    function may be called from a thread that runs a loop); on a loop, use
    :func:`validate_prompt_async`."""
    checked = _PromptCheck(prompt, registry, partial_execution_targets)
    if checked.awaiting:
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="comfyui-validate") as pool:
            checked.settle(pool.submit(asyncio.run, _gather(checked.awaiting.values())).result())
    return checked.conclude()


async def validate_prompt_async(prompt: Any, registry: NodeRegistry,
                                partial_execution_targets: list | None = None) -> tuple[list[str], dict]:
    """:func:`validate_prompt` for an event loop: async VALIDATE_INPUTS run on it, side by side."""
    checked = _PromptCheck(prompt, registry, partial_execution_targets)
    if checked.awaiting:
        checked.settle(await _gather(checked.awaiting.values()))
    return checked.conclude()


async def _gather(awaitables) -> list:
    return await asyncio.gather(*awaitables, return_exceptions=True)


class _PromptCheck:
    """One prompt's validation: the checks that need no waiting run in ``__init__``; the
    answers of async VALIDATE_INPUTS (``awaiting``) are handed to ``settle``; ``conclude``
    propagates validity to the outputs."""

    def __init__(self, prompt: Any, registry: NodeRegistry, partial_execution_targets: list | None):
        self.prompt = prompt
        self.outputs, self.order, cycle_nodes = _outputs_and_order(prompt, registry, partial_execution_targets)
        self.local_errors: dict[str, list[dict]] = {}
        self.awaiting: dict[str, Any] = {}  # node id -> awaitable answer of VALIDATE_INPUTS
        self._custom_args: dict[str, dict] = {}
        for node_id in self.order:
            node = prompt[node_id]
            node_def = registry.get(node["class_type"])
            errs, custom_args = validate_node(node_id, node, node_def, prompt, registry)
            if custom_args is not None:
                answer = _call_custom_validation(node_def, custom_args)
                if inspect.isawaitable(answer):
                    self.awaiting[node_id] = answer
                    self._custom_args[node_id] = custom_args
                else:
                    errs += _custom_validation_errors(answer, custom_args)
            if node_id in cycle_nodes:
                errs.append(_error("dependency_cycle", "Dependency cycle detected", f"Node ID '#{node_id}'"))
            if errs:
                self.local_errors[node_id] = errs

    def settle(self, answers: list) -> None:
        for node_id, answer in zip(list(self.awaiting), answers):
            errs = _custom_validation_errors(answer, self._custom_args[node_id])
            if errs:
                self.local_errors.setdefault(node_id, []).extend(errs)
        self.awaiting = {}

    def conclude(self) -> tuple[list[str], dict]:
        prompt, outputs, local_errors = self.prompt, self.outputs, self.local_errors
        valid: dict[str, bool] = {}
        for node_id in self.order:
            ok = node_id not in local_errors
            if ok:
                for value in prompt[node_id]["inputs"].values():
                    if is_link(value) and value[0] in prompt and not valid.get(value[0], True):
                        ok = False
                        break
            valid[node_id] = ok
        good = [o for o in outputs if valid.get(o)]
        node_errors: dict[str, dict] = {}
        for output in outputs:
            if valid.get(output):
                continue
            for node_id in _ancestors(output, prompt):
                if node_id in local_errors:
                    entry = node_errors.setdefault(node_id, {"errors": local_errors[node_id], "dependent_outputs": [],
                                                             "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(output)
        if not good:
            details = "".join(
                f"{err['message']}: {err['details']}\n" for entry in node_errors.values() for err in entry["errors"]
            )
            raise PromptError(_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details),
                              node_errors)
        return good, node_errors


def _outputs_and_order(prompt: Any, registry: NodeRegistry,
                       partial_execution_targets: list | None) -> tuple[list[str], list[str], set[str]]:
    """The output nodes to run, every node they reach in post order (dependencies first), and
    the nodes on a cycle. Raises PromptError for a prompt that cannot be checked further."""
    if not isinstance(prompt, dict):
        raise PromptError(_error("invalid_prompt", "Invalid prompt: the prompt must be an object of nodes", ""), {})

    outputs: list[str] = []
    refreshed: set[str] = set()
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise PromptError(_error("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                                     f"Node ID '#{node_id}'"), {})
        class_type = node["class_type"]
        node_def = registry.get(class_type) if isinstance(class_type, str) else None
        if node_def is None:
            title = (node.get("_meta") or {}).get("title", class_type) if isinstance(node.get("_meta"), dict) else class_type
            raise PromptError(_error("missing_node_type", f"Cannot execute because node {class_type} does not exist.",
                                     f"Node ID '#{node_id}'",
                                     {"node_id": node_id, "class_type": class_type, "node_title": title}), {})
        if node_def.has_combo and class_type not in refreshed:
            # Combo lists are file lists: check values against what is on disk now.
            refreshed.add(class_type)
            registry.refresh_inputs([class_type])
        if node_def.output_node and (partial_execution_targets is None or node_id in partial_execution_targets):
            outputs.append(node_id)

    if partial_execution_targets is not None:
        missing = [t for t in partial_execution_targets if t not in prompt]
        if missing:
            raise PromptError(_error("invalid_prompt", "Partial execution target not in prompt", ", ".join(map(str, missing))), {})
    if not outputs:
        raise PromptError(_error("prompt_no_outputs", "Prompt has no outputs", ""), {})

    # Reachable nodes in post order (dependencies first), with cycle detection.
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    cycle_nodes: set[str] = set()
    for output in outputs:
        if output in state:
            continue
        stack = [(output, False)]
        while stack:
            node_id, expanded = stack.pop()
            if expanded:
                state[node_id] = 2
                order.append(node_id)
                continue
            if state.get(node_id) == 2:
                continue
            if state.get(node_id) == 1:
                continue
            state[node_id] = 1
            stack.append((node_id, True))
            node = prompt[node_id]
            inputs = node.get("inputs")
            if not isinstance(inputs, dict):
                continue
            node_def = registry.get(node["class_type"])
            for name, value in inputs.items():
                if is_link(value) and value[0] in prompt:
                    if node_def is not None and name in node_def.raw_link_inputs:
                        continue
                    dep = value[0]
                    if state.get(dep) == 1:
                        cycle_nodes.add(dep)
                        cycle_nodes.add(node_id)
                    elif dep not in state:
                        stack.append((dep, False))
    return outputs, order, cycle_nodes


def _ancestors(node_id: str, prompt: dict) -> list[str]:
    seen = {node_id}
    stack = [node_id]
    while stack:
        current = stack.pop()
        inputs = prompt[current].get("inputs")
        if isinstance(inputs, dict):
            for value in inputs.values():
                if is_link(value) and value[0] in prompt and value[0] not in seen:
                    seen.add(value[0])
                    stack.append(value[0])
    return list(seen)
