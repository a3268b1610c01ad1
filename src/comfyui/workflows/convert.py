"""Convert a UI-format workflow (what the frontend saves) into an API-format prompt.

The frontend keeps the graph as LiteGraph nodes with widget values stored positionally in
``widgets_values``; the engine wants ``{node_id: {"class_type", "inputs", "_meta"}}`` with
each input either a literal or a link ``[source_id, output_index]``. Widget positions are
mapped to input names through the node definitions (``object_info``), the same way the
frontend builds its widgets:

* every required then optional input (in ``input_order``) whose type gets a widget (INT,
  FLOAT, STRING, BOOLEAN, COMBO lists / ``"COMBO"``, any input the workflow itself marks with
  ``"widget"``) takes the next value, unless it is ``forceInput``;
* an INT (or COMBO) with ``control_after_generate`` - and, by the frontend's legacy
  convention, any INT named ``seed`` / ``noise_seed`` - is followed by the value of its
  control widget ("fixed", "increment", ...), which is skipped;
* an upload button (``image_upload``, ``video_upload``, ...) is one more widget after the last
  required input (the frontend appends it as ``required.upload``); its value is skipped when
  the list is long enough to hold it.

Links (0.4 arrays ``[id, origin_id, origin_slot, target_id, target_slot, type]`` or 1.0
objects) override widget values. Sources are resolved through: legacy ``Reroute`` nodes,
``PrimitiveNode`` (its value is written into the target), muted nodes (mode 2: the node is
dropped and inputs fed by it are removed), bypassed nodes (mode 4: the output passes the
input of a matching type through), KJNodes-style ``SetNode``/``GetNode`` pairs, and 1.0
subgraphs (``definitions.subgraphs``; inner nodes become ``"<instance>:<inner>"``).
``Note``/``MarkdownNote`` and groups are ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

__all__ = ["is_ui_workflow", "is_api_prompt", "convert_ui_to_api", "WorkflowConversionError"]

MODE_NEVER = 2  # "muted"
MODE_BYPASS = 4

SUBGRAPH_INPUT_ID = -10
SUBGRAPH_OUTPUT_ID = -20

# Frontend-only node types that never reach the backend.
VIRTUAL_TYPES = frozenset({
    "Reroute", "PrimitiveNode", "Note", "MarkdownNote", "SetNode", "GetNode",
    "Label (rgthree)", "Fast Groups Muter (rgthree)", "Fast Groups Bypasser (rgthree)",
    "Bookmark (rgthree)", "Display Any (rgthree)",
})

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "upload")
LEGACY_SEED_NAMES = frozenset({"seed", "noise_seed"})


class WorkflowConversionError(ValueError):
    """The workflow JSON could not be read as a UI workflow."""


def is_ui_workflow(obj: Any) -> bool:
    """A UI workflow has a ``nodes`` list (and usually ``links``, ``version``)."""
    return isinstance(obj, dict) and isinstance(obj.get("nodes"), list)


def is_api_prompt(obj: Any) -> bool:
    """An API prompt maps node ids to ``{"class_type": ..., "inputs": ...}``."""
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(v, dict) and "class_type" in v for v in obj.values())
    )


# --------------------------------------------------------------------------- flat graph


@dataclass
class _Link:
    origin: str | None  # node id in the flat graph; None when the origin is unknown
    slot: int
    type: Any
    from_subgraph_input: bool = False  # origin is the subgraph *instance*, slot is its input


@dataclass
class _Node:
    id: str
    type: str
    mode: int
    inputs: list[dict]
    outputs: list[dict]
    widgets_values: Any
    title: str | None
    properties: dict
    subgraph_outputs: dict[int, str] | None = None  # set on subgraph instances
    _widgets: dict | None = field(default=None, repr=False)


def _as_int(v: Any) -> Any:
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def _normalize_links(raw_links: Any) -> list[tuple]:
    out = []
    for link in raw_links or []:
        if isinstance(link, dict):
            out.append((link.get("id"), link.get("origin_id"), link.get("origin_slot"),
                        link.get("target_id"), link.get("target_slot"), link.get("type")))
        elif isinstance(link, (list, tuple)) and len(link) >= 5:
            t = link[5] if len(link) > 5 else "*"
            out.append((link[0], link[1], link[2], link[3], link[4], t))
    return out


class _FlatGraph:
    def __init__(self, workflow: dict):
        self.nodes: dict[str, _Node] = {}
        self.links: dict[str, _Link] = {}
        self.order: list[str] = []
        defs = (workflow.get("definitions") or {}).get("subgraphs") or []
        self.subgraphs: dict[str, dict] = {d["id"]: d for d in defs if isinstance(d, dict) and "id" in d}
        self._load(workflow, prefix="", instance=None, forced_mode=None, depth=0)
        self.set_nodes: dict[str, _Node] = {}
        for node in self.nodes.values():
            if node.type == "SetNode" and isinstance(node.widgets_values, list) and node.widgets_values:
                self.set_nodes.setdefault(str(node.widgets_values[0]), node)

    def _load(self, graph: dict, prefix: str, instance: str | None, forced_mode: int | None, depth: int) -> dict[int, str]:
        if depth > 32:
            raise WorkflowConversionError("subgraphs nested too deeply (or recursive)")
        nodes = graph.get("nodes")
        if not isinstance(nodes, list):
            raise WorkflowConversionError("workflow has no 'nodes' list")
        outputs_of_graph: dict[int, str] = {}
        for link_id, origin_id, origin_slot, target_id, target_slot, ltype in _normalize_links(graph.get("links")):
            key = f"{prefix}{link_id}"
            if _as_int(origin_id) == SUBGRAPH_INPUT_ID:
                self.links[key] = _Link(instance, _as_int(origin_slot), ltype, from_subgraph_input=True)
            else:
                self.links[key] = _Link(f"{prefix}{origin_id}", _as_int(origin_slot), ltype)
            if _as_int(target_id) == SUBGRAPH_OUTPUT_ID:
                outputs_of_graph[_as_int(target_slot)] = key
        for raw in nodes:
            if not isinstance(raw, dict) or "id" not in raw:
                continue
            nid = f"{prefix}{raw['id']}"
            mode = raw.get("mode") or 0
            if forced_mode is not None:
                mode = MODE_NEVER  # inside a muted or bypassed subgraph instance
            inputs = []
            for inp in raw.get("inputs") or []:
                inp = dict(inp)
                if inp.get("link") is not None:
                    inp["link"] = f"{prefix}{inp['link']}"
                inputs.append(inp)
            node = _Node(
                id=nid, type=str(raw.get("type", "")), mode=mode, inputs=inputs,
                outputs=list(raw.get("outputs") or []), widgets_values=raw.get("widgets_values"),
                title=raw.get("title"), properties=raw.get("properties") or {},
            )
            self.nodes[nid] = node
            self.order.append(nid)
            sub = self.subgraphs.get(node.type)
            if sub is not None:
                inner_forced = mode if mode in (MODE_NEVER, MODE_BYPASS) else forced_mode
                node.subgraph_outputs = self._load(sub, prefix=f"{nid}:", instance=nid,
                                                   forced_mode=inner_forced, depth=depth + 1)
        return outputs_of_graph


# --------------------------------------------------------------------------- node definitions


def _input_order(nodedef: dict) -> list[tuple[str, str]]:
    inputs = nodedef.get("input") or {}
    order = nodedef.get("input_order") or {}
    result = []
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        names = [n for n in (order.get(section) or []) if n in specs]
        names += [n for n in specs if n not in names]
        result += [(section, n) for n in names]
    return result


def _spec_parts(spec: Any) -> tuple[Any, dict]:
    if isinstance(spec, (list, tuple)) and spec:
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        return spec[0], opts
    if isinstance(spec, str):
        return spec, {}
    return None, {}


@dataclass
class _WidgetSpec:
    name: str | None  # None: the upload button's value (no input of its own)
    default: Any = None
    has_default: bool = False
    control: bool = False


def _widget_specs(nodedef: dict, node: _Node) -> list[_WidgetSpec]:
    marked = {inp.get("name") for inp in node.inputs if inp.get("widget")}
    specs: list[_WidgetSpec] = []
    required_widgets = 0
    upload = False
    inputs = nodedef.get("input") or {}
    for section, name in _input_order(nodedef):
        typ, opts = _spec_parts(inputs[section][name])
        upload = upload or any(opts.get(k) for k in UPLOAD_OPTIONS)
        is_combo = isinstance(typ, list) or typ == "COMBO"
        if opts.get("forceInput") or not (is_combo or typ in WIDGET_TYPES or name in marked):
            continue
        control = bool(opts.get("control_after_generate")) or (typ == "INT" and name in LEGACY_SEED_NAMES)
        if "default" in opts:
            default, has_default = opts["default"], True
        elif is_combo:
            options = typ if isinstance(typ, list) else opts.get("options") or []
            default, has_default = (options[0], True) if options else (None, False)
        else:
            default, has_default = None, False
        specs.append(_WidgetSpec(name, default, has_default, control))
        required_widgets += section == "required"
    if upload:  # the frontend appends the upload button as one more required input
        specs.insert(required_widgets, _WidgetSpec(None))
    return specs


# --------------------------------------------------------------------------- conversion


_MISSING = object()


class _Converter:
    def __init__(self, workflow: dict, lookup: Callable[[str], dict | None]):
        self.graph = _FlatGraph(workflow)
        self.lookup = lookup

    # widget values ------------------------------------------------------------

    def widgets(self, node: _Node) -> dict:
        if node._widgets is not None:
            return node._widgets
        nodedef = self.lookup(node.type)
        values = node.widgets_values
        out: dict = {}
        if isinstance(values, dict):  # some extensions save widgets by name
            if nodedef is not None:
                for spec in _widget_specs(nodedef, node):
                    if spec.name is None:
                        continue
                    if spec.name in values:
                        out[spec.name] = values[spec.name]
                    elif spec.has_default:
                        out[spec.name] = spec.default
            else:
                out = {k: v for k, v in values.items() if isinstance(k, str)}
        elif nodedef is not None:
            values = list(values or [])
            specs = _widget_specs(nodedef, node)
            real_left = sum(1 for spec in specs if spec.name is not None)
            i = 0
            for spec in specs:
                if spec.name is None:  # upload button value, when the list has room for it
                    if len(values) - i > real_left:
                        i += 1
                    continue
                real_left -= 1
                if i < len(values):
                    out[spec.name] = values[i]
                    i += 1
                    if spec.control and i < len(values) and isinstance(values[i], str) and values[i] in CONTROL_VALUES:
                        i += 1
                elif spec.has_default:
                    out[spec.name] = spec.default
        else:
            # Unknown class: best effort from the inputs the workflow marks as widgets.
            names = [inp["name"] for inp in node.inputs if inp.get("widget") and "name" in inp]
            for name, value in zip(names, list(values or [])):
                out[name] = value
        node._widgets = out
        return out

    # link resolution ------------------------------------------------------------

    def resolve(self, link_key: str | None, seen: frozenset = frozenset()) -> Any:
        """-> ``[node_id, slot]`` for a real source, a literal value, or ``_MISSING``."""
        if link_key is None or link_key in seen:
            return _MISSING
        seen = seen | {link_key}
        link = self.graph.links.get(link_key)
        if link is None or link.origin is None:
            return _MISSING
        src = self.graph.nodes.get(link.origin)
        if src is None:
            return _MISSING
        if link.from_subgraph_input:
            return self._input_value(src, link.slot, seen, instance_widget=True)
        if src.mode == MODE_NEVER:
            return _MISSING
        if src.mode == MODE_BYPASS:
            idx = self._bypass_input(src, link.slot, link.type)
            if idx is None:
                return _MISSING
            return self._input_value(src, idx, seen)
        if src.subgraph_outputs is not None:
            return self.resolve(src.subgraph_outputs.get(link.slot), seen)
        if src.type == "Reroute":
            return self._input_value(src, 0, seen)
        if src.type == "PrimitiveNode":
            values = src.widgets_values
            if isinstance(values, list) and values:
                return values[0]
            if isinstance(values, dict) and "value" in values:
                return values["value"]
            return _MISSING
        if src.type == "GetNode":
            name = src.widgets_values[0] if isinstance(src.widgets_values, list) and src.widgets_values else None
            setter = self.graph.set_nodes.get(str(name))
            return self._input_value(setter, 0, seen) if setter is not None else _MISSING
        if src.type in VIRTUAL_TYPES:
            return _MISSING
        return [src.id, int(link.slot)]

    def _input_value(self, node: _Node, index: int, seen: frozenset, instance_widget: bool = False) -> Any:
        """The value reaching input ``index`` of ``node``: its link, else its widget value."""
        if index is None or index >= len(node.inputs) or index < 0:
            return _MISSING
        inp = node.inputs[index]
        if inp.get("link") is not None:
            value = self.resolve(inp["link"], seen)
            if value is not _MISSING:
                return value
        if inp.get("widget"):
            if instance_widget:  # promoted widget of a subgraph instance: values in input order
                widget_inputs = [i for i in node.inputs if i.get("widget")]
                values = node.widgets_values
                if isinstance(values, list):
                    pos = next(k for k, i in enumerate(widget_inputs) if i is inp)
                    if pos < len(values):
                        return values[pos]
                return _MISSING
            name = (inp.get("widget") or {}).get("name") or inp.get("name")
            widgets = self.widgets(node)
            if name in widgets:
                return widgets[name]
        return _MISSING

    def _bypass_input(self, node: _Node, slot: int, link_type: Any) -> int | None:
        inputs = node.inputs
        if not inputs:
            return None
        out_type = node.outputs[slot].get("type") if 0 <= slot < len(node.outputs) else link_type
        if out_type in (None, "", "*") or link_type in ("", "*"):
            return slot if slot < len(inputs) else 0
        if slot < len(inputs) and _types_match(inputs[slot].get("type"), out_type):
            return slot
        for i, inp in enumerate(inputs):
            if str(inp.get("type")) == str(out_type):
                return i
        for i, inp in enumerate(inputs):
            if _types_match(inp.get("type"), out_type):
                return i
        return None

    # emission ------------------------------------------------------------------

    def convert(self) -> dict:
        prompt: dict = {}
        for nid in self.graph.order:
            node = self.graph.nodes[nid]
            if node.mode in (MODE_NEVER, MODE_BYPASS) or node.subgraph_outputs is not None:
                continue
            if node.type in VIRTUAL_TYPES:
                continue
            nodedef = self.lookup(node.type)
            inputs = dict(self.widgets(node))
            for inp in node.inputs:
                if inp.get("link") is None or "name" not in inp:
                    continue
                value = self.resolve(inp["link"])
                if value is not _MISSING:
                    inputs[inp["name"]] = value
            title = node.title or (nodedef or {}).get("display_name") or node.type
            prompt[nid] = {"inputs": inputs, "class_type": node.type, "_meta": {"title": title}}
        return prompt


def _types_match(a: Any, b: Any) -> bool:
    a = "*" if a in (None, "", 0) else str(a)
    b = "*" if b in (None, "", 0) else str(b)
    if a == "*" or b == "*":
        return True
    sa = {t.strip().upper() for t in a.split(",")}
    sb = {t.strip().upper() for t in b.split(",")}
    return bool(sa & sb)


def _make_lookup(object_info: Any) -> Callable[[str], dict | None]:
    if object_info is None:
        return lambda _t: None
    if callable(getattr(object_info, "object_info", None)):  # a NodeRegistry
        object_info = object_info.object_info()
    if isinstance(object_info, Mapping):
        return lambda t: object_info.get(t)
    if callable(object_info):
        return object_info
    raise TypeError("object_info must be a mapping, a NodeRegistry or a callable")


def convert_ui_to_api(workflow: dict | str, object_info: Any = None) -> dict:
    """Convert a UI workflow (0.4 or 1.0, dict or JSON text) to an API-format prompt.

    ``object_info``: the node definitions - ``NodeRegistry.object_info()``'s mapping, a
    registry itself, or a callable ``class_type -> definition | None``. Without a definition
    a node's widget values are mapped onto the inputs the workflow marks as widgets.
    """
    if isinstance(workflow, (str, bytes)):
        workflow = json.loads(workflow)
    if not is_ui_workflow(workflow):
        raise WorkflowConversionError("not a UI workflow: it has no 'nodes' list")
    return _Converter(workflow, _make_lookup(object_info)).convert()
