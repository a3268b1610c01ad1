"""Convert a UI-format workflow (what the frontend saves) into an API-format prompt: the
prompt the official frontend's ``app.graphToPrompt()`` sends for it (checked against frontend
1.58.1 on the official templates by tests/workflows/test_templates_browser.py).

The frontend keeps the graph as LiteGraph nodes with widget values stored positionally in
``widgets_values``; the engine wants ``{node_id: {"class_type", "inputs", "_meta"}}`` with
each input either a literal or a link ``[source_id, output_index]``. Widget positions are
mapped to input names through the node definitions (``object_info``), the same way the
frontend builds its widgets:

* every required then optional input (in ``input_order``) whose type gets a widget (INT,
  FLOAT, STRING, BOOLEAN, CURVE, COMBO lists / ``"COMBO"``, any input the workflow itself marks with
  ``"widget"``) takes the next value, unless it is ``forceInput``;
* an INT (or COMBO) with ``control_after_generate`` - and, by the frontend's legacy
  convention, any INT named ``seed`` / ``noise_seed`` - is followed by the value of its
  control widget ("fixed", "increment", ...), which is skipped;
* an upload button (``image_upload``, ``video_upload``, ...) is one more widget after the last
  required input (the frontend appends it as ``required.upload``); its value is skipped when
  the list is long enough to hold it.

Widget values are sent as the frontend's widgets send them: a STRING input with
``dynamicPrompts`` loses its comments and picks one option of each ``{a|b}``; a save node's
``filename_prefix`` gets ``%date:...%`` and ``%<node>.<widget>%`` replaced; a list goes as
``{"__value__": [...]}``. ``_meta`` holds the title and the node pack's ``cnr_id`` / ``aux_id`` /
``ver`` properties where valid.

Links (0.4 arrays ``[id, origin_id, origin_slot, target_id, target_slot, type]`` or 1.0
objects) override widget values. Sources are resolved through: legacy ``Reroute`` nodes,
``PrimitiveNode`` (its value is written into the widget it feeds, directly or through
reroutes), muted nodes (mode 2: the node is dropped, a widget keeps its value, other inputs
fed by it are removed), bypassed nodes (mode 4: the output passes the link of the input of a
matching type through), KJNodes-style ``SetNode``/``GetNode`` pairs, and 1.0 subgraphs
(``definitions.subgraphs``; inner nodes become ``"<instance>:<inner>"``, an inner node whose id
another node already has is renumbered as the frontend does). ``Note``/``MarkdownNote`` and
groups are ignored.

Where the frontend would misread a workflow, this converter keeps its meaning instead: a seed
saved without its control value, a node type the server does not know (its widget-marked inputs
are named), reroutes that feed each other (no source rather than an error).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
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

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "CURVE"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "upload")
LEGACY_SEED_NAMES = frozenset({"seed", "noise_seed"})
# Nodes whose ``filename_prefix`` the frontend expands (%date:...%, %Node name.widget%).
SAVE_NODES = frozenset({
    "SaveImage", "SaveImageAdvanced", "SaveSVGNode", "SaveVideo", "SaveAnimatedWEBP", "SaveWEBM",
    "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveAudioAdvanced", "SaveGLB", "Save3DAdvanced",
    "SaveGaussianSplat", "SavePointCloud", "SaveAnimatedPNG", "CLIPSave", "VAESave", "ModelSave",
    "LoraSave", "SaveLatent",
})


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
    # on subgraph instances: their definition's inputs, (name, whether its type is a widget's)
    subgraph_inputs: list[tuple[str, bool]] | None = None
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
        self.search_order: list[str] = []  # the frontend's node walk: a subgraph's nodes, then its instance
        self.subgraphs: dict[str, dict] = {}
        for definition in _subgraph_definitions(workflow):
            self.subgraphs.setdefault(definition["id"], definition)
        self.renumbered = _renumber_colliding_ids(workflow, self.subgraphs.values())
        self._load(workflow, prefix="", instance=None, hidden=False, depth=0)
        self.set_nodes: dict[str, _Node] = {}
        for node in self.nodes.values():
            if node.type == "SetNode" and isinstance(node.widgets_values, list) and node.widgets_values:
                self.set_nodes.setdefault(str(node.widgets_values[0]), node)

    def _load(self, graph: dict, prefix: str, instance: str | None, hidden: bool, depth: int) -> dict[int, str]:
        if depth > 32:
            raise WorkflowConversionError("subgraphs nested too deeply (or recursive)")
        nodes = graph.get("nodes")
        if not isinstance(nodes, list):
            raise WorkflowConversionError("workflow has no 'nodes' list")
        renumbered = self.renumbered.get(graph.get("id"), {}) if depth else {}

        def node_id(raw_id: Any) -> str:
            return f"{prefix}{renumbered.get(str(raw_id), raw_id)}"

        outputs_of_graph: dict[int, str] = {}
        for link_id, origin_id, origin_slot, target_id, target_slot, ltype in _normalize_links(graph.get("links")):
            key = f"{prefix}{link_id}"
            if _as_int(origin_id) == SUBGRAPH_INPUT_ID:
                self.links[key] = _Link(instance, _as_int(origin_slot), ltype, from_subgraph_input=True)
            else:
                self.links[key] = _Link(node_id(origin_id), _as_int(origin_slot), ltype)
            if _as_int(target_id) == SUBGRAPH_OUTPUT_ID:
                outputs_of_graph[_as_int(target_slot)] = key
        seen: set[str] = set()
        for raw in nodes:
            if not isinstance(raw, dict) or "id" not in raw or str(raw["id"]) in seen:
                continue  # the frontend keeps the first of two nodes with one id in one graph
            seen.add(str(raw["id"]))
            nid = node_id(raw["id"])
            # The inner nodes of a muted or bypassed instance in the root graph never run; one
            # level deeper the frontend still emits them (only the instance's links pass by).
            mode = MODE_NEVER if hidden else raw.get("mode") or 0
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
                hide_inner = hidden or (depth == 0 and mode in (MODE_NEVER, MODE_BYPASS))
                node.subgraph_inputs = [(str(i.get("name")), str(i.get("type")) in WIDGET_TYPES)
                                        for i in sub.get("inputs") or [] if isinstance(i, dict)]
                node.subgraph_outputs = self._load(sub, prefix=f"{nid}:", instance=nid,
                                                   hidden=hide_inner, depth=depth + 1)
            self.search_order.append(nid)
        return outputs_of_graph


def _subgraph_definitions(graph: dict) -> list[dict]:
    """``definitions.subgraphs``, with definitions nested inside them, depth first."""
    found = []
    for definition in (graph.get("definitions") or {}).get("subgraphs") or []:
        if isinstance(definition, dict) and "id" in definition:
            found.append(definition)
            found += _subgraph_definitions(definition)
    return found


def _renumber_colliding_ids(workflow: dict, definitions: Any) -> dict[str, dict[str, int]]:
    """New ids for subgraph nodes whose id is already taken, as the frontend assigns them.

    Node ids must be unique across the root graph and every subgraph definition: the frontend
    walks the definitions in order and gives a node whose id is taken the next free number after
    the workflow's last node id (which every id seen raises). -> ``{subgraph id: {old: new}}``.
    """
    state = workflow.get("state")
    last = state.get("lastNodeId") if isinstance(state, dict) else workflow.get("last_node_id")
    last = last if isinstance(last, int) and not isinstance(last, bool) and last >= 0 else 0
    taken = {str(n["id"]) for n in workflow.get("nodes") or [] if isinstance(n, dict) and "id" in n}
    taken_numbers = {int(i) for i in taken if _is_int_id(i)}
    renumbered: dict[str, dict[str, int]] = {}
    for definition in definitions:
        changes: dict[str, int] = {}
        seen: set[str] = set()
        for node in definition.get("nodes") or []:
            if not isinstance(node, dict) or "id" not in node or str(node["id"]) in seen:
                continue
            old = str(node["id"])
            seen.add(old)
            if old in taken:
                new = last + 1
                while new in taken_numbers:
                    new += 1
                changes[old] = last = new
                taken_numbers.add(new)
                taken.add(str(new))
            else:
                taken.add(old)
                if _is_int_id(old):
                    taken_numbers.add(int(old))
                    last = max(last, int(old))
        if changes:
            renumbered[definition["id"]] = changes
    return renumbered


def _is_int_id(node_id: str) -> bool:
    return node_id.isascii() and node_id.isdigit() and str(int(node_id)) == node_id


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
    dynamic_prompts: bool = False  # a STRING widget whose text the frontend expands ({a|b}, comments)
    curve: bool = False  # a CURVE widget: sent as {"__type__": "CURVE", "__value__": ...}
    # a dynamic combo (COMFY_DYNAMICCOMBO_V3): option key -> the inputs that option adds; the
    # frontend puts the selected option's widgets right after the combo, named "<combo>.<input>"
    options: dict | None = None

    def option_specs(self, key: Any, node: "_Node") -> list["_WidgetSpec"]:
        inputs = (self.options or {}).get(key) if isinstance(key, str) else None
        if not isinstance(inputs, dict):
            return []
        specs = _widget_specs({"input": inputs}, node)
        for spec in specs:
            spec.name = f"{self.name}.{spec.name}"
        return specs


def _widget_specs(nodedef: dict, node: _Node) -> list[_WidgetSpec]:
    marked = {inp.get("name") for inp in node.inputs if inp.get("widget")}
    specs: list[_WidgetSpec] = []
    required_widgets = 0
    upload = False
    inputs = nodedef.get("input") or {}
    for section, name in _input_order(nodedef):
        typ, opts = _spec_parts(inputs[section][name])
        upload = upload or any(opts.get(k) for k in UPLOAD_OPTIONS)
        if typ == "COMFY_DYNAMICCOMBO_V3":
            options = {o.get("key"): o.get("inputs") for o in opts.get("options") or [] if isinstance(o, dict)}
            keys = list(options)
            specs.append(_WidgetSpec(name, opts.get("default", keys[0] if keys else None), bool(keys), options=options))
            required_widgets += section == "required"
            continue
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
        specs.append(_WidgetSpec(name, default, has_default, control,
                                 dynamic_prompts=typ == "STRING" and opts.get("dynamicPrompts") is True,
                                 curve=typ == "CURVE"))
        required_widgets += section == "required"
    if upload:  # the frontend appends the upload button as one more required input
        specs.insert(required_widgets, _WidgetSpec(None))
    return specs


# --------------------------------------------------------------------------- conversion


_MISSING = object()


@dataclass
class _Value:
    """A literal a link delivers: a PrimitiveNode's value, or (``promoted``) the value of a
    subgraph instance's widget, which the frontend sends without its target's serializer."""
    value: Any
    promoted: bool = False


class _Converter:
    def __init__(self, workflow: dict, lookup: Callable[[str], dict | None]):
        self.graph = _FlatGraph(workflow)
        self.lookup = lookup

    # widget values ------------------------------------------------------------

    def widget_specs(self, node: _Node) -> dict[str, _WidgetSpec]:
        nodedef = self.lookup(node.type)
        if nodedef is None:
            return {}
        return {spec.name: spec for spec in _widget_specs(nodedef, node) if spec.name is not None}

    def widgets(self, node: _Node) -> dict:
        if node._widgets is not None:
            return node._widgets
        nodedef = self.lookup(node.type)
        values = node.widgets_values
        out: dict = {}
        if isinstance(values, dict):  # some extensions save widgets by name
            if nodedef is not None:
                pending = _widget_specs(nodedef, node)
                while pending:
                    spec = pending.pop(0)
                    if spec.name is None:
                        continue
                    if spec.name in values:
                        out[spec.name] = values[spec.name]
                    elif spec.has_default:
                        out[spec.name] = spec.default
                    if spec.options is not None:
                        pending[:0] = spec.option_specs(out.get(spec.name), node)
            else:
                out = {k: v for k, v in values.items() if isinstance(k, str)}
        elif nodedef is not None:
            values = list(values or [])
            specs = _widget_specs(nodedef, node)
            real_left = sum(1 for spec in specs if spec.name is not None)
            i = 0
            while specs:
                spec = specs.pop(0)
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
                if spec.options is not None:
                    added = spec.option_specs(out.get(spec.name), node)
                    real_left += len(added)
                    specs[:0] = added
        else:
            # Unknown class: best effort from the inputs the workflow marks as widgets.
            names = [inp["name"] for inp in node.inputs if inp.get("widget") and "name" in inp]
            for name, value in zip(names, list(values or [])):
                out[name] = value
        node._widgets = out
        return out

    # link resolution ------------------------------------------------------------

    def resolve(self, link_key: str | None, seen: frozenset = frozenset(), direct: bool = True) -> Any:
        """What a link delivers: ``[node_id, slot]`` for a real source, a ``_Value``, or ``_MISSING``.

        ``direct``: nothing but Reroutes lies between the link and the input it feeds. A
        PrimitiveNode's value is written into the widget of the input it feeds, so it only
        arrives that way; through a bypassed node or a subgraph boundary it is lost.
        """
        if link_key is None or link_key in seen:
            return _MISSING
        seen = seen | {link_key}
        link = self.graph.links.get(link_key)
        if link is None or link.origin is None:
            return _MISSING
        src = self.graph.nodes.get(link.origin)
        if src is None:
            return _MISSING
        if link.from_subgraph_input:  # an input of the subgraph instance ``src``
            inp = self._instance_input(src, link.slot)
            if inp.get("link") is not None:
                return self.resolve(inp["link"], seen, direct=False)
            return self._promoted_value(src, inp, link.slot)
        if src.mode == MODE_NEVER:
            return _MISSING
        if src.mode == MODE_BYPASS:
            idx = self._bypass_input(src, link.slot, link.type)
            return _MISSING if idx is None else self._linked_input(src, idx, seen, direct=False)
        if src.subgraph_outputs is not None:
            return self.resolve(src.subgraph_outputs.get(link.slot), seen, direct=False)
        if src.type == "Reroute":
            return self._linked_input(src, 0, seen, direct)
        if src.type == "PrimitiveNode":
            values = src.widgets_values
            if not direct:
                return _MISSING
            if isinstance(values, list) and values:
                return _Value(values[0])
            if isinstance(values, dict) and "value" in values:
                return _Value(values["value"])
            return _MISSING
        if src.type == "GetNode":
            name = src.widgets_values[0] if isinstance(src.widgets_values, list) and src.widgets_values else None
            setter = self.graph.set_nodes.get(str(name))
            return self._linked_input(setter, 0, seen, direct) if setter is not None else _MISSING
        if src.type in VIRTUAL_TYPES:
            return _MISSING
        return [src.id, int(link.slot)]

    def _linked_input(self, node: _Node, index: int, seen: frozenset, direct: bool) -> Any:
        """What reaches input ``index`` of a pass-through node (reroute, bypassed node)."""
        if not 0 <= index < len(node.inputs):
            return _MISSING
        return self.resolve(node.inputs[index].get("link"), seen, direct)

    @staticmethod
    def _instance_input(instance: _Node, slot: int) -> dict:
        """The instance's input for input ``slot`` of its subgraph definition, matched by name as
        the frontend does: a saved instance may list only some of the definition's inputs (then
        an unlisted one is unlinked and its inner widget keeps its own value)."""
        defined = instance.subgraph_inputs
        if defined and 0 <= slot < len(defined):
            return next((inp for inp in instance.inputs if inp.get("name") == defined[slot][0]), {})
        return instance.inputs[slot] if 0 <= slot < len(instance.inputs) else {}

    @staticmethod
    def _promoted_value(instance: _Node, inp: dict, slot: int) -> Any:
        """An unlinked subgraph input's own widget: the instance's widget values, one per widget
        input of the subgraph's definition, in its input order (an instance may list fewer)."""
        if not isinstance(instance.widgets_values, list):
            return _MISSING
        defined = instance.subgraph_inputs
        if defined and 0 <= slot < len(defined):
            if not defined[slot][1]:
                return _MISSING
            pos = sum(1 for _, is_widget in defined[:slot] if is_widget)
        else:
            if not inp.get("widget"):
                return _MISSING
            widget_inputs = [i for i in instance.inputs if i.get("widget")]
            pos = next(k for k, i in enumerate(widget_inputs) if i is inp)
        if pos < len(instance.widgets_values):
            return _Value(instance.widgets_values[pos], promoted=True)
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
            specs = self.widget_specs(node)
            inputs = {name: self._serialize(node, specs.get(name), value) for name, value in self.widgets(node).items()}
            for inp in node.inputs:
                if inp.get("link") is None or "name" not in inp:
                    continue
                value = self.resolve(inp["link"])
                if value is _MISSING:
                    continue  # the widget value (if any) stays
                if isinstance(value, _Value):
                    value = _wrap_list(value.value) if value.promoted else \
                        self._serialize(node, specs.get(inp["name"]), value.value)
                inputs[inp["name"]] = value
            prompt[nid] = {"inputs": inputs, "class_type": node.type,
                           "_meta": _meta(self.title(node), node.properties)}
        return prompt

    def title(self, node: _Node) -> str:
        return node.title or (self.lookup(node.type) or {}).get("display_name") or node.type

    # what the frontend's widgets send ---------------------------------------------

    def _serialize(self, node: _Node, spec: _WidgetSpec | None, value: Any) -> Any:
        if spec is not None:
            if spec.dynamic_prompts and isinstance(value, str):
                value = expand_dynamic_prompt(value)
            elif spec.name == "filename_prefix" and node.type in SAVE_NODES and isinstance(value, str):
                value = self.replace_text(value)
            if spec.curve and value is not None:
                return {"__type__": "CURVE", "__value__": value}
        return _wrap_list(value)

    def replace_text(self, text: str, now: datetime | None = None) -> str:
        """The frontend's ``%date:<format>%`` and ``%<node>.<widget>%`` replacements; a node is
        found by its "Node name for S&R" property, else by its title."""
        def replacement(match: re.Match) -> str:
            parts = match.group(1).split(".")
            if len(parts) != 2:
                if parts[0].startswith("date:"):
                    return _format_date(parts[0][5:], now or datetime.now())
                return match.group(0)
            name, widget = parts
            nodes = [self.graph.nodes[n] for n in self.graph.search_order]
            found = [n for n in nodes if self._search_name(n) == name] or \
                [n for n in nodes if self.title(n) == name]
            if not found:
                return match.group(0)
            widgets = self.widgets(found[0])
            if widget not in widgets:
                return match.group(0)
            return re.sub(r'[/?<>\\:*|"\x00-\x1f\x7f]', "_", _js_string(widgets[widget]))

        return re.sub(r"%([^%]+)%", replacement, text)

    @staticmethod
    def _search_name(node: _Node) -> Any:
        # the frontend gives every node but the save nodes this property when it creates one
        default = None if node.type in SAVE_NODES else node.type
        return node.properties.get("Node name for S&R", default)


def _wrap_list(value: Any) -> Any:
    """A list widget value goes as ``{"__value__": [...]}``: a bare list would read as a link."""
    return {"__value__": value} if isinstance(value, list) else value


_COMMENT = re.compile(r"/\*[\s\S]*?\*/|//[^\n\r\u2028\u2029]*")


def expand_dynamic_prompt(text: str) -> str:
    """The frontend's dynamic prompts: comments (``//``, ``/* */``) removed, each ``{a|b|c}``
    replaced by one of its options at random (nested blocks too), ``\\{`` ``\\}`` ``\\|``
    kept as literal characters."""
    text = _COMMENT.sub("", text)
    pos = 0

    def escape() -> str:
        nonlocal pos
        # as the frontend does, a trailing backslash reads the missing next character as "undefined"
        char = text[pos] if pos < len(text) else "undefined"
        pos += 1
        return "\\" + char

    def choice_block() -> str:
        nonlocal pos
        options, current, depth = [], "", 0
        while pos < len(text):
            char = text[pos]
            pos += 1
            if char == "\\":
                current += escape()
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                if not depth:
                    break
                depth -= 1
            elif char == "|" and not depth:
                options.append(current)
                current = ""
                continue
            current += char
        options.append(current)
        return expand_dynamic_prompt(random.choice(options))

    out = ""
    while pos < len(text):
        char = text[pos]
        pos += 1
        out += escape() if char == "\\" else choice_block() if char == "{" else char
    return re.sub(r"\\([{}|])", r"\1", out)


def _format_date(pattern: str, now: datetime) -> str:
    parts = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}

    def token(match: re.Match) -> str:
        t = match.group(0)
        if t == "yy":
            return str(now.year)[2:]
        if t == "yyyy":
            return str(now.year)
        if t[0] in parts:
            return str(parts[t[0]]).rjust(len(t), "0")
        return t

    return re.sub(r"dd?|MM?|hh?|mm?|ss?|yyy?y?", token, pattern)


def _js_string(value: Any) -> str:
    """``String(value)`` in JavaScript, for the JSON values widgets hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", text) if "e" in text else text
    if isinstance(value, list):
        return ",".join("" if v is None else _js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


# What the frontend accepts as a node's pack id, GitHub repository and pack version (the
# properties it copies into ``_meta``; anything else is left out).
_PACK_ID = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?", re.ASCII)
_GITHUB_OWNER = re.compile(r"(?!-)(?!.*--)[a-zA-Z0-9-]+(?<!-)", re.ASCII)
_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                     r"(?:-([\da-z-]+(?:\.[\da-z-]+)*))?(?:\+([\da-z-]+(?:\.[\da-z-]+)*))?", re.ASCII)
_COMMIT = re.compile(r"[0-9a-f]{4,40}", re.ASCII | re.IGNORECASE)


def _pack_id(value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= 100 and _PACK_ID.fullmatch(value):
        return value
    return None


def _aux_id(value: Any) -> str | None:
    if not isinstance(value, str) or value.count("/") != 1:
        return None
    owner, repo = value.split("/")
    if len(owner) <= 39 and _GITHUB_OWNER.fullmatch(owner) and _pack_id(repo):
        return value
    return None


def _pack_version(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    version = value[1:] if value.startswith("v") else value
    if _SEMVER.fullmatch(version) or _COMMIT.fullmatch(version):
        return version
    return "unknown" if value == "unknown" else None


def _meta(title: str, properties: dict) -> dict:
    """``_meta`` as the frontend writes it: the title, then the node pack's identity."""
    meta = {"title": title}
    for key, check in (("cnr_id", _pack_id), ("aux_id", _aux_id), ("ver", _pack_version)):
        value = check(properties.get(key))
        if value:
            meta[key] = value
    return meta


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
