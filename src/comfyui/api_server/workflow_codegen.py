"""``comfyui api generate-workflow``: a starting workflow-endpoint module from an exported
API-format workflow.

Every widget input (a value, not a link) of a node the registry knows becomes a field of
``RequestSchema`` with the workflow's value as default, typed from the node's INPUT_TYPES:
INT -> ``int`` and FLOAT -> ``float`` with ``ge``/``le`` from min/max, STRING -> ``str``,
BOOLEAN -> ``bool``, a choice list -> ``Literal[...]`` of the choices. Choices that are file
names (models, images: they differ per server) stay ``str``; a ``ckpt_name`` defaults to the
warmup checkpoint when there is one. ``filename_prefix`` is not a field (the API rewrites it).
A field is named after its input, ``<input>_<node id>`` when several nodes share the name; the
description carries the input's tooltip and where it sits in the workflow.
"""
from __future__ import annotations

import keyword
import pprint
import re
from typing import Any

FIXED_INPUTS = ("filename_prefix",)
_FILE_NAME = re.compile(r"\.[A-Za-z][A-Za-z0-9]{1,11}$")
_SIMPLE = {"INT": "int", "FLOAT": "float", "STRING": "str", "BOOLEAN": "bool"}


class _Ref:
    """A field reference in the generated prompt: prints as ``input.<name>``."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"input.{self.name}"


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _spec(object_info: dict, class_type: str, name: str) -> tuple[Any, dict] | None:
    info = object_info.get(class_type)
    if not info:
        return None
    for section in ("required", "optional"):
        spec = (info.get("input", {}).get(section) or {}).get(name)
        if spec:
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if kind == "COMBO":
                kind = list(options.get("options", []))
            return kind, options
    return None


def _field_name(raw: str) -> str:
    name = re.sub(r"\W+", "_", raw).strip("_") or "value"
    if name[0].isdigit():
        name = "f_" + name
    return name + "_" if keyword.iskeyword(name) else name


def _literal(choices: list) -> str:
    items = [repr(c) for c in choices]
    if sum(len(i) + 2 for i in items) < 70:
        return f"Literal[{', '.join(items)}]"
    return "Literal[\n" + "".join(f"        {i},\n" for i in items) + "    ]"


def _annotation(kind: Any, options: dict, value: Any) -> tuple[str, dict]:
    """``(type annotation, Field constraints)`` for an input's spec and workflow value."""
    if isinstance(kind, list):
        files = options.get("image_upload") or options.get("video_upload") or options.get("audio_upload") \
            or not kind or any(isinstance(c, str) and _FILE_NAME.search(c) for c in kind)
        if files or value not in kind:
            return "str", {}
        return _literal(kind), {}
    if kind in ("INT", "FLOAT"):
        constraints = {}
        if isinstance(options.get("min"), (int, float)):
            constraints["ge"] = options["min"]
        if isinstance(options.get("max"), (int, float)):
            constraints["le"] = options["max"]
        return _SIMPLE[kind], constraints
    if kind in _SIMPLE:
        return _SIMPLE[kind], {}
    return type(value).__name__, {}  # a custom type whose widget value is a plain JSON value


def generate_module(prompt: dict, object_info: dict, source: str = "workflow.api.json",
                    summary: str | None = None, description: str | None = None) -> str:
    """The Python source of a workflow module for ``prompt`` (API format)."""
    widgets = []  # (node id, node, input name, value, spec)
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            raise ValueError(f"node {node_id} is not an API-format node (export the workflow with 'Export (API)')")
        for name, value in node["inputs"].items():
            if _is_link(value) or name in FIXED_INPUTS or not isinstance(value, (str, int, float, bool)):
                continue
            spec = _spec(object_info, node["class_type"], name)
            if spec is not None:
                widgets.append((node_id, node, name, value, spec))
    counts: dict[str, int] = {}
    for _, _, name, _, _ in widgets:
        counts[_field_name(name)] = counts.get(_field_name(name), 0) + 1

    fields, taken, built = [], set(), {}
    for node_id, node, name, value, (kind, options) in widgets:
        field = _field_name(name) if counts[_field_name(name)] == 1 else _field_name(f"{name}_{node_id}")
        while field in taken:
            field += "_"
        taken.add(field)
        annotation, constraints = _annotation(kind, options, value)
        if annotation == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        title = (node.get("_meta") or {}).get("title") or node["class_type"]
        where = f"node {node_id} '{title}' ({node['class_type']}.{name})"
        tooltip = str(options.get("tooltip") or "").strip()
        text = f"{tooltip} [{where}]" if tooltip else where.capitalize()
        default = repr(value)
        if name == "ckpt_name":
            default = f"config.warmup_checkpoint or {default}"
        args = [default, *(f"{k}={v!r}" for k, v in constraints.items()), f"description={text!r}"]
        fields.append(f"    {field}: {annotation} = Field({', '.join(args)})")
        built.setdefault(node_id, {})[name] = _Ref(field)

    graph = {}
    for node_id, node in prompt.items():
        inputs = {name: built.get(node_id, {}).get(name, value) for name, value in node["inputs"].items()}
        graph[node_id] = {**node, "inputs": inputs}
    body = pprint.pformat(graph, indent=1, width=96, sort_dicts=False)
    body = "\n".join("    " + line if i else line for i, line in enumerate(body.splitlines()))
    stem = re.sub(r"(\.api)?\.json$", "", source.rsplit("/", 1)[-1])
    summary = summary or stem.replace("_", " ").replace("-", " ").strip().capitalize()
    description = description or f"Runs {source} with the fields below (generated; review before serving)."
    uses_literal = any("Literal[" in f for f in fields)
    return "\n".join([
        f'"""Workflow endpoint generated by `comfyui api generate-workflow` from {source}.',
        "",
        "Review it before serving: rename fields, drop the ones callers should not set, tighten",
        'ranges and descriptions. The file\'s path under --workflow-dir is its route."""',
        *(["from typing import Literal", ""] if uses_literal else []),
        "from pydantic import BaseModel, ConfigDict, Field",
        "",
        "from comfyui.api_server.workflow_endpoints import config",
        "",
        f"summary = {summary!r}",
        f"description = {description!r}",
        "",
        "",
        "class RequestSchema(BaseModel):",
        '    model_config = ConfigDict(extra="forbid", protected_namespaces=())',
        "",
        *(fields or ["    pass"]),
        "",
        "",
        "def generate_workflow(input: RequestSchema) -> dict:",
        f"    return {body}",
        "",
    ])
