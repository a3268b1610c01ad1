"""Graph primitives shared by validation, execution and node code.

``DynamicPrompt`` is the prompt being executed plus the nodes that expansion adds while it
runs; ``GraphBuilder`` is what expanding nodes use to build those nodes with deterministic ids.
"""
from __future__ import annotations

from typing import Any, Iterable


def is_link(value: Any) -> bool:
    """A link is ``[node_id: str, output_index: int]`` (bools are not indexes)."""
    # Exact class checks: this runs for every input of every node, so it must be cheap.
    return (
        value.__class__ is list
        and len(value) == 2
        and isinstance(value[0], str)
        and value[1].__class__ is int
    )


class ExecutionBlocker:
    """Returned in place of an output to stop everything downstream from running.

    ``message=None`` blocks silently; with a message, the first output node it reaches
    reports an ``execution_error`` carrying that message.
    """

    __slots__ = ("message",)

    def __init__(self, message: str | None):
        self.message = message

    def __repr__(self) -> str:
        return f"ExecutionBlocker({self.message!r})"


class NodeNotFoundError(KeyError):
    pass


class DependencyCycleError(Exception):
    """Nodes wait on each other; only a node expansion can create this at run time
    (validation refuses cycles in the submitted prompt)."""


class DynamicPrompt:
    """The original prompt plus ephemeral nodes created by node expansion."""

    def __init__(self, original_prompt: dict):
        self.original_prompt = original_prompt
        self.ephemeral_prompt: dict[str, dict] = {}
        self.ephemeral_parents: dict[str, str] = {}
        self.ephemeral_display: dict[str, str] = {}

    def get_node(self, node_id: str) -> dict:
        node = self.ephemeral_prompt.get(node_id)
        if node is None:
            node = self.original_prompt.get(node_id)
        if node is None:
            raise NodeNotFoundError(f"Node {node_id} not found")
        return node

    def has_node(self, node_id: str) -> bool:
        return node_id in self.original_prompt or node_id in self.ephemeral_prompt

    def add_ephemeral_node(self, node_id: str, node_info: dict, parent_id: str, display_id: str) -> None:
        self.ephemeral_prompt[node_id] = node_info
        self.ephemeral_parents[node_id] = parent_id
        self.ephemeral_display[node_id] = display_id

    def get_real_node_id(self, node_id: str) -> str:
        while node_id in self.ephemeral_parents:
            node_id = self.ephemeral_parents[node_id]
        return node_id

    def get_parent_node_id(self, node_id: str) -> str | None:
        return self.ephemeral_parents.get(node_id)

    def get_display_node_id(self, node_id: str) -> str:
        while node_id in self.ephemeral_display:
            node_id = self.ephemeral_display[node_id]
        return node_id

    def all_node_ids(self) -> set[str]:
        return set(self.original_prompt) | set(self.ephemeral_prompt)

    def get_original_prompt(self) -> dict:
        return self.original_prompt


class GraphNode:
    """One node being built by a GraphBuilder."""

    def __init__(self, node_id: str, class_type: str, inputs: dict):
        self.id = node_id
        self.class_type = class_type
        self.inputs = dict(inputs)
        self.override_display_id: str | None = None

    def out(self, index: int) -> list:
        return [self.id, index]

    def set_input(self, key: str, value: Any) -> None:
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str) -> Any:
        return self.inputs.get(key)

    def set_override_display_id(self, display_id: str) -> None:
        self.override_display_id = display_id

    def serialize(self) -> dict:
        data = {"class_type": self.class_type, "inputs": self.inputs}
        if self.override_display_id is not None:
            data["override_display_id"] = self.override_display_id
        return data


class GraphBuilder:
    """Builds an expansion graph whose node ids are unique and stable across runs.

    The executor calls ``set_default_prefix(node_id, call_index)`` before each node call, so a
    builder made without an explicit prefix gets ``"<node_id>.<call_index>.<graph_index>."``.
    """

    _default_prefix_root = ""
    _default_prefix_call_index = 0
    _default_prefix_graph_index = 0

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix if prefix is not None else GraphBuilder.alloc_prefix()
        self.nodes: dict[str, GraphNode] = {}
        self.id_gen = 1

    @classmethod
    def set_default_prefix(cls, prefix_root: str, call_index: int, graph_index: int = 0) -> None:
        cls._default_prefix_root = prefix_root
        cls._default_prefix_call_index = call_index
        cls._default_prefix_graph_index = graph_index

    @classmethod
    def alloc_prefix(cls, root: str | None = None, call_index: int | None = None, graph_index: int | None = None) -> str:
        if root is None:
            root = cls._default_prefix_root
        if call_index is None:
            call_index = cls._default_prefix_call_index
        if graph_index is None:
            graph_index = cls._default_prefix_graph_index
            cls._default_prefix_graph_index += 1
        return f"{root}.{call_index}.{graph_index}."

    def node(self, class_type: str, id: str | None = None, **kwargs) -> GraphNode:  # noqa: A002 - ComfyUI's name
        if id is None:
            id = str(self.id_gen)
            self.id_gen += 1
        node_id = self.prefix + id
        if node_id in self.nodes:
            return self.nodes[node_id]
        node = GraphNode(node_id, class_type, kwargs)
        self.nodes[node_id] = node
        return node

    def lookup_node(self, id: str) -> GraphNode | None:  # noqa: A002
        return self.nodes.get(self.prefix + id)

    def remove_node(self, id: str) -> None:  # noqa: A002
        self.nodes.pop(self.prefix + id, None)

    def finalize(self) -> dict:
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}

    @staticmethod
    def is_link(value: Any) -> bool:
        return is_link(value)


def add_graph_prefix(graph: dict, outputs: Iterable, prefix: str) -> tuple[dict, tuple]:
    """Prefix every node id in an API-format graph (and links in ``outputs``)."""
    new_graph = {}
    for node_id, node in graph.items():
        inputs = {}
        for name, value in node.get("inputs", {}).items():
            inputs[name] = [prefix + value[0], value[1]] if is_link(value) else value
        new_graph[prefix + node_id] = {**node, "inputs": inputs}
    new_outputs = tuple([prefix + o[0], o[1]] if is_link(o) else o for o in outputs)
    return new_graph, new_outputs
