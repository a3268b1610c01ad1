"""Output caching keyed by input signature.

A node's signature is (class_type, IS_CHANGED fingerprint, its constant inputs, and the
signatures of the nodes its links, ``rawLink`` ones included, come from). Signatures are interned into small integer
ids so that comparing and hashing them stays O(inputs) however deep the graph is; ids are
never reused, so dropping an intern entry can only cause a cache miss, never a wrong hit.

Policies (ComfyUI's flags):
- classic (default): keep what the last prompt used; reuse it if the signature is unchanged.
- lru N: keep up to N node results across prompts, least recently used evicted first.
- none: nothing survives a prompt.
"""
from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..nodes.registry import NodeRegistry
from .graph import DynamicPrompt, is_link


@dataclass
class CacheEntry:
    outputs: list  # outputs[slot] = list of values (list semantics)
    ui: dict | None = None


class OutputCache:
    def __init__(self, policy: str = "classic", lru_size: int = 0):
        if policy not in ("classic", "lru", "none"):
            raise ValueError(f"unknown cache policy {policy!r}")
        self.policy = policy
        self.lru_size = lru_size
        self._ids: dict[tuple, int] = {}
        self._key_of: dict[int, tuple] = {}
        self._entries: OrderedDict[int, CacheEntry] = OrderedDict()
        self._counter = itertools.count(1)
        self._used: set[int] = set()

    # ---- signature interning ----
    def key_id(self, flat_key: tuple) -> int:
        key = self._ids.get(flat_key)
        if key is None:
            key = next(self._counter)
            self._ids[flat_key] = key
            self._key_of[key] = flat_key
        self._used.add(key)
        return key

    def unique_id(self) -> int:
        """A signature that matches nothing (IS_CHANGED returned NaN)."""
        key = next(self._counter)
        self._used.add(key)
        return key

    # ---- entries ----
    def get(self, key: int) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is not None and self.policy == "lru":
            self._entries.move_to_end(key)
        return entry

    def set(self, key: int, entry: CacheEntry) -> None:
        self._entries[key] = entry
        if self.policy == "lru":
            self._entries.move_to_end(key)
            while len(self._entries) > max(self.lru_size, 0):
                self._entries.popitem(last=False)

    def end_prompt(self) -> None:
        """Apply the retention policy after a prompt has finished."""
        if self.policy == "none":
            self.clear()
            return
        if self.policy == "classic":
            for key in [k for k in self._entries if k not in self._used]:
                del self._entries[key]
        keep = self._used | set(self._entries)
        for key in [k for k in self._key_of if k not in keep]:
            del self._ids[self._key_of.pop(key)]
        self._used = set()

    def clear(self) -> None:
        self._ids.clear()
        self._key_of.clear()
        self._entries.clear()
        self._used = set()

    def __len__(self) -> int:
        return len(self._entries)


def freeze(value: Any) -> Any:
    """A hashable stand-in for an input value."""
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return ("nan",) if math.isnan(value) else value
    if isinstance(value, (list, tuple)):
        return ("list",) + tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return ("dict",) + tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    try:
        hash(value)
        return value
    except TypeError:
        return ("id", id(value))


class Signatures:
    """Memoized signature ids for the nodes of one prompt run.

    Every link is part of a signature, ``rawLink`` ones included: a node handed a raw link
    (flow control) depends on what that node is in this prompt, so a loop built from raw links
    must not reuse the output of another iteration. A link that closes a cycle (possible
    through raw links, or in a broken expansion that execution reports) is keyed by its raw
    value, so computing a signature always ends.
    """

    def __init__(self, dynprompt: DynamicPrompt, registry: NodeRegistry, cache: OutputCache, fingerprint):
        self.dynprompt = dynprompt
        self.registry = registry
        self.cache = cache
        self.fingerprint = fingerprint  # (node_id) -> value, may raise
        self._sig: dict[str, int] = {}

    def get(self, node_id: str) -> int:
        sig = self._sig.get(node_id)
        if sig is not None:
            return sig
        # Iterative depth-first post-order, so deep chains don't hit the recursion limit.
        on_path: set[str] = set()
        stack = [node_id]
        while stack:
            current = stack[-1]
            if current in self._sig:
                stack.pop()
                continue
            node = self.dynprompt.get_node(current)
            if current not in on_path:
                on_path.add(current)
                stack.extend(v[0] for v in node["inputs"].values()
                             if is_link(v) and v[0] not in self._sig and v[0] not in on_path
                             and self.dynprompt.has_node(v[0]))
                continue
            stack.pop()
            on_path.discard(current)
            self._sig[current] = self._compute(current, node)
        return self._sig[node_id]

    def _compute(self, node_id: str, node: dict) -> int:
        node_def = self.registry.get(node["class_type"])
        fp = self.fingerprint(node_id)
        if isinstance(fp, float) and math.isnan(fp):
            return self.cache.unique_id()
        parts = []
        for name in sorted(node["inputs"]):
            value = node["inputs"][name]
            if is_link(value) and value[0] in self._sig:
                parts.append((name, -1, self._sig[value[0]], value[1]))
            else:
                parts.append((name, freeze(value)))
        node_key = node_id if node_def is None or node_def.not_idempotent or node_def.uses_unique_id else None
        try:
            flat = (node["class_type"], freeze(fp), node_key, tuple(parts))
            return self.cache.key_id(flat)
        except TypeError:  # an unhashable fingerprint: never cache
            return self.cache.unique_id()
