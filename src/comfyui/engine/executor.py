"""Runs one prompt front to back: only what the outputs need, with lazy inputs, node
expansion, list semantics, ExecutionBlocker, async nodes, caching and events."""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ..nodes.model import (HIDDEN_API_KEY, HIDDEN_AUTH_TOKEN, HIDDEN_DYNPROMPT, HIDDEN_EXTRA_PNGINFO, HIDDEN_PROMPT,
                           HIDDEN_UNIQUE_ID, HIDDEN_USAGE_SOURCE, NodeDef)
from ..nodes.registry import NodeRegistry
from . import progress
from .caching import CacheEntry, OutputCache, Signatures
from .graph import DependencyCycleError, DynamicPrompt, ExecutionBlocker, GraphBuilder, is_link
from .validation import hook_arguments

log = logging.getLogger(__name__)

Emit = Callable[[str, dict], None]


def now_ms() -> int:
    return int(time.time() * 1000)


PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")


def prompt_preview_method(extra_data: dict) -> str | None:
    """The preview method a prompt asks for (upstream's ``set_preview_method``): a known method
    in ``extra_data["preview_method"]``; None ("default", absent or unknown) keeps the server's."""
    method = str(extra_data.get("preview_method") or "").lower()
    return method if method in PREVIEW_METHODS else None


class NodeError(Exception):
    """A node failed; carries the execution_error payload."""

    def __init__(self, payload: dict):
        super().__init__(payload.get("exception_message", ""))
        self.payload = payload


class Interrupted(Exception):
    def __init__(self, node_id: str | None, node_type: str | None):
        super().__init__("interrupted")
        self.node_id = node_id
        self.node_type = node_type


@dataclass
class RunResult:
    status: str  # "success" | "error" | "interrupted"
    ui_outputs: dict = field(default_factory=dict)  # node_id -> ui dict
    meta: dict = field(default_factory=dict)  # node_id -> {node_id, display_node, parent_node, real_node_id}
    messages: list = field(default_factory=list)  # [[event, data], ...] for history
    timings: dict = field(default_factory=dict)  # node_id -> seconds
    error: dict | None = None


class _Pending:
    """State of a node that could not finish in one go."""

    __slots__ = ("tasks", "results", "subgraph")

    def __init__(self):
        self.tasks: list | None = None  # asyncio tasks of an async node
        self.results: list | None = None  # raw per-call results awaiting expansion outputs
        self.subgraph = False


class ExecutionList:
    """Dynamic topological order: a node becomes ready once every link it needs has a result."""

    def __init__(self, dynprompt: DynamicPrompt, registry: NodeRegistry, has_result: Callable[[str], bool]):
        self.dynprompt = dynprompt
        self.registry = registry
        self.has_result = has_result
        self.pending: dict[str, None] = {}  # insertion ordered set
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, set]] = {}  # from -> {to -> {sockets}}
        self.ready: list[str] = []
        self.waiting_async: set[str] = set()

    def add_node(self, node_id: str, include_lazy: bool = False) -> None:
        stack = [(node_id, include_lazy)]
        while stack:
            unique_id, lazy_too = stack.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = None
            self.block_count.setdefault(unique_id, 0)
            node = self.dynprompt.get_node(unique_id)
            node_def = self.registry.get(node["class_type"])
            for name, value in node["inputs"].items():
                if not is_link(value) or name in node_def.raw_link_inputs:
                    continue
                if not lazy_too and name in node_def.lazy_inputs:
                    continue
                if self.has_result(value[0]):
                    continue
                if self._link(value[0], value[1], unique_id):
                    stack.append((value[0], False))
            if self.block_count[unique_id] == 0:
                self.ready.append(unique_id)

    def _link(self, from_id: str, socket: int, to_id: str) -> bool:
        targets = self.blocking.setdefault(from_id, {})
        sockets = targets.get(to_id)
        if sockets is None:
            sockets = targets[to_id] = set()
            was_ready = self.block_count.get(to_id, 0) == 0
            self.block_count[to_id] = self.block_count.get(to_id, 0) + 1
            if was_ready and to_id in self.ready:
                self.ready.remove(to_id)
        sockets.add(socket)
        return from_id not in self.pending

    def add_strong_link(self, from_id: str, socket: int, to_id: str) -> None:
        """``to_id`` now needs ``from_id`` (lazy input requested, or expansion output)."""
        if self.has_result(from_id):
            return
        if to_id not in self.pending:
            self.pending[to_id] = None
            self.block_count.setdefault(to_id, 0)
        self._link(from_id, socket, to_id)
        if from_id not in self.pending:
            self.add_node(from_id)

    def stage(self) -> str | None:
        while self.ready:
            node_id = self.ready.pop()
            if node_id in self.pending and self.block_count.get(node_id, 0) == 0 and node_id not in self.waiting_async:
                return node_id
        return None

    def requeue(self, node_id: str) -> None:
        """Run ``node_id`` again once whatever it now waits for is done."""
        if self.block_count.get(node_id, 0) == 0 and node_id not in self.waiting_async:
            self.ready.append(node_id)

    def complete(self, node_id: str) -> None:
        self.pending.pop(node_id, None)
        self.block_count.pop(node_id, None)
        for to_id in self.blocking.pop(node_id, {}):
            count = self.block_count.get(to_id)
            if count is None:
                continue
            self.block_count[to_id] = count - 1
            if count - 1 == 0 and to_id not in self.waiting_async:
                self.ready.append(to_id)

    def is_empty(self) -> bool:
        return not self.pending

    def cycle_nodes(self) -> list[str]:
        """The pending nodes on a cycle: trim, again and again, the nodes that wait on no other
        pending node or that no other pending node waits on."""
        waits_on = {n: set() for n in self.pending}
        for from_id, targets in self.blocking.items():
            for to_id in targets:
                if from_id in waits_on and to_id in waits_on:
                    waits_on[to_id].add(from_id)
        while True:
            waited_on = {d for deps in waits_on.values() for d in deps}
            trimmed = [n for n, deps in waits_on.items() if not deps or n not in waited_on]
            if not trimmed:
                return list(waits_on)
            for n in trimmed:
                del waits_on[n]
            for deps in waits_on.values():
                deps.difference_update(trimmed)


def _merge_ui(ui_list: list[dict]) -> dict | None:
    merged: dict = {}
    for ui in ui_list:
        for key, value in ui.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            else:
                merged[key] = value
    return merged or None


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


class PromptRun:
    """One execution of one prompt. Create, then ``await run()``."""

    def __init__(self, *, registry: NodeRegistry, cache: OutputCache, objects: dict, prompt_id: str, prompt: dict,
                 outputs: list[str], extra_data: dict, emit: Emit, interrupt_flag, emit_preview=None, emit_text=None):
        self.registry = registry
        self.cache = cache
        self.objects = objects
        self.prompt_id = prompt_id
        self.dynprompt = DynamicPrompt(prompt)
        self.outputs = outputs
        self.extra_data = extra_data or {}
        self.emit_raw = emit
        self.emit_preview = emit_preview
        self.emit_text = emit_text
        self.interrupt_flag = interrupt_flag
        self.results: dict[str, CacheEntry] = {}
        self.pending: dict[str, _Pending] = {}
        self.executed: set[str] = set()
        self.result = RunResult(status="success")
        self.signatures = Signatures(self.dynprompt, registry, cache, self._fingerprint)
        self.node_states: dict[str, dict] = {}

    # ---- events ----
    def emit(self, event: str, data: dict, record: bool = False) -> None:
        if record:
            self.result.messages.append([event, data])
        self.emit_raw(event, data)

    def _progress_state(self, node_id: str, state: str, value: float = 0, max_: float = 1) -> None:
        display = self.dynprompt.get_display_node_id(node_id)
        entry = {"value": value, "max": max_, "state": state, "node_id": node_id, "prompt_id": self.prompt_id,
                 "display_node_id": display, "parent_node_id": self.dynprompt.get_parent_node_id(node_id),
                 "real_node_id": self.dynprompt.get_real_node_id(node_id)}
        if state == "running":
            self.node_states[node_id] = entry
        else:
            self.node_states.pop(node_id, None)
        nodes = dict(self.node_states)
        nodes[node_id] = entry
        self.emit("progress_state", {"prompt_id": self.prompt_id, "nodes": nodes})

    # ---- IS_CHANGED ----
    def _fingerprint(self, node_id: str) -> Any:
        node = self.dynprompt.get_node(node_id)
        node_def = self.registry.get(node["class_type"])
        if node_def is None or node_def.fingerprint is None:
            return None
        params = node_def.fingerprint_params
        args = hook_arguments(node["inputs"], node_def, params)
        hidden = self._hidden_values(node_id, node_def)
        # a schema node's hidden values go to its class clone, whatever the hook's signature
        args.update({k: v[0] for k, v in hidden.items() if node_def.schema_api or params is None or k in params})
        try:
            return node_def.fingerprint(node_def.cls, **args)
        except Exception as ex:  # a failing IS_CHANGED means "changed"; the node then reports its own error
            log.warning("IS_CHANGED of node %s (%s) failed: %s", node_id, node["class_type"], ex)
            return float("nan")

    # ---- main loop ----
    async def run(self) -> RunResult:
        self.emit("execution_start", {"prompt_id": self.prompt_id, "timestamp": now_ms()}, record=True)
        try:
            cached = []
            for node_id in self._reachable(self.outputs):
                entry = self.cache.get(self.signatures.get(node_id))
                if entry is not None:
                    self.results[node_id] = entry
                    cached.append(node_id)
            self.emit("execution_cached", {"nodes": cached, "prompt_id": self.prompt_id, "timestamp": now_ms()},
                      record=True)
            order = ExecutionList(self.dynprompt, self.registry, self.results.__contains__)
            for output in self.outputs:
                order.add_node(output)
            await self._loop(order)
        except Interrupted as ex:
            self._cancel_tasks()
            data = {"prompt_id": self.prompt_id, "node_id": ex.node_id, "node_type": ex.node_type,
                    "executed": sorted(self.executed), "timestamp": now_ms()}
            self.result.status = "interrupted"
            self.emit("execution_interrupted", data, record=True)
        except NodeError as ex:
            self._cancel_tasks()
            self.result.status = "error"
            self.result.error = ex.payload
            self.emit("execution_error", ex.payload, record=True)
        else:
            self.emit("execution_success", {"prompt_id": self.prompt_id, "timestamp": now_ms()}, record=True)
        finally:
            # the signatures hold this run's bound _fingerprint: let reference counting, not
            # the cyclic collector, free the run and everything it holds
            self.signatures.fingerprint = None
        return self.result

    def _reachable(self, outputs: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        stack = list(outputs)
        while stack:
            node_id = stack.pop()
            if node_id in seen:
                continue
            seen[node_id] = None
            for value in self.dynprompt.get_node(node_id)["inputs"].values():
                if is_link(value) and value[0] not in seen and self.dynprompt.has_node(value[0]):
                    stack.append(value[0])
        return list(seen)

    async def _loop(self, order: ExecutionList) -> None:
        while not order.is_empty():
            node_id = order.stage()
            if node_id is None:
                running = [t for p in self.pending.values() if p.tasks for t in p.tasks if not t.done()]
                if not running:
                    waiting = [n for n in order.waiting_async]
                    if waiting:  # tasks finished between checks: release them
                        for n in waiting:
                            order.waiting_async.discard(n)
                            order.requeue(n)
                        continue
                    raise NodeError(self._cycle_error(order.cycle_nodes()))
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for n in list(order.waiting_async):
                    tasks = self.pending[n].tasks
                    if all(t.done() for t in tasks):
                        order.waiting_async.discard(n)
                        order.requeue(n)
                continue
            if self.interrupt_flag.is_set() or progress.global_interrupt_requested():
                node = self.dynprompt.get_node(node_id)
                raise Interrupted(node_id, node["class_type"])
            finished = await self._execute(node_id, order)
            if finished:
                order.complete(node_id)

    def _cycle_error(self, stuck: list[str]) -> dict:
        """The execution_error of a cycle. Validation refuses cycles in the prompt, so one that
        appears now comes from an expansion: blame the node that expanded, as ComfyUI does (the
        display id of the first expanded node in the cycle)."""
        blamed = next((self.dynprompt.get_display_node_id(n) for n in stuck
                       if self.dynprompt.get_display_node_id(n) != n), stuck[0] if stuck else None)
        return self._error_payload(blamed, DependencyCycleError(
            f"Dependency cycle detected between nodes {', '.join(stuck)}"), {})

    def _cancel_tasks(self) -> None:
        for p in self.pending.values():
            for t in p.tasks or ():
                t.cancel()

    # ---- one node ----
    def _hidden_values(self, node_id: str, node_def: NodeDef) -> dict:
        values = {}
        for name, kind in node_def.hidden_kinds.items():
            if kind == HIDDEN_UNIQUE_ID:
                values[name] = [node_id]
            elif kind == HIDDEN_PROMPT:
                values[name] = [self.dynprompt.get_original_prompt()]
            elif kind == HIDDEN_EXTRA_PNGINFO:
                values[name] = [self.extra_data.get("extra_pnginfo")]
            elif kind == HIDDEN_DYNPROMPT:
                values[name] = [self.dynprompt]
            elif kind == HIDDEN_AUTH_TOKEN:
                values[name] = [self.extra_data.get("auth_token_comfy_org")]
            elif kind == HIDDEN_API_KEY:
                values[name] = [self.extra_data.get("api_key_comfy_org")]
            elif kind == HIDDEN_USAGE_SOURCE:
                values[name] = [self.extra_data.get("comfy_usage_source")]
        return values

    def _input_data(self, node_id: str, node: dict, node_def: NodeDef) -> dict:
        """Input name -> list of values (list semantics). Unevaluated lazy links give [None]."""
        data = {}
        for name, value in node["inputs"].items():
            if is_link(value) and name not in node_def.raw_link_inputs:
                entry = self.results.get(value[0])
                if entry is None:
                    if name in node_def.lazy_inputs:
                        data[name] = [None]
                    continue
                data[name] = entry.outputs[value[1]]
            elif node_def.input_spec(name) is not None:
                data[name] = [value]
        data.update(self._hidden_values(node_id, node_def))
        return data

    async def _execute(self, node_id: str, order: ExecutionList) -> bool:
        """Returns True when the node has its result; False when it is waiting for something."""
        node = self.dynprompt.get_node(node_id)
        class_type = node["class_type"]
        node_def = self.registry.get(class_type)
        display_id = self.dynprompt.get_display_node_id(node_id)

        cached = self.results.get(node_id)
        if cached is not None:
            if cached.ui is not None:
                self.emit("executed", {"node": node_id, "display_node": display_id, "output": cached.ui,
                                       "prompt_id": self.prompt_id})
                self._record_ui(node_id, cached.ui)
            return True

        pending = self.pending.get(node_id)
        inputs = self._input_data(node_id, node, node_def)
        started = time.perf_counter()
        try:
            if pending is not None and pending.subgraph:
                results = self._resolve_subgraph_results(pending.results)
                del self.pending[node_id]
                return self._finish(node_id, node_def, display_id, results, started)
            if pending is not None and pending.tasks is not None:
                results = [t.result() for t in pending.tasks]
                del self.pending[node_id]
            else:
                self.emit("executing", {"node": node_id, "display_node": display_id, "prompt_id": self.prompt_id})
                self._progress_state(node_id, "running")
                instance = self._instance(node_id, class_type, node_def)
                if node_def.check_lazy_status is not None:
                    needed = await self._lazy_needed(node_id, node, node_def, instance, inputs)
                    if needed:
                        for name in needed:
                            link = node["inputs"][name]
                            order.add_strong_link(link[0], link[1], node_id)
                        order.requeue(node_id)
                        return False
                results = self._call(node_id, node_def, instance, inputs)
                if any(inspect.isawaitable(r) for r in results):
                    state = self.pending.setdefault(node_id, _Pending())
                    state.tasks = [self._spawn(node_id, r) for r in results]
                    order.waiting_async.add(node_id)
                    return False
            results = self._apply_blockers(node_id, class_type, results, node_def)
            if self._expand(node_id, node_def, results, order, display_id):
                return False
            return self._finish(node_id, node_def, display_id, results, started)
        except progress.InterruptProcessingException:
            raise Interrupted(node_id, class_type)
        except (Interrupted, NodeError):
            raise
        except Exception as ex:
            raise NodeError(self._error_payload(node_id, ex, inputs))

    def _instance(self, node_id: str, class_type: str, node_def: NodeDef) -> Any:
        key = (node_id, class_type)
        instance = self.objects.get(key)
        if instance is None:
            instance = node_def.instance()
            self.objects[key] = instance
        return instance

    def _calls(self, node_def: NodeDef, inputs: dict) -> list[dict]:
        """Split list inputs into per-call kwargs; shorter lists repeat their last item."""
        if node_def.input_is_list:
            return [inputs]
        if not inputs:
            return [{}]
        length = max(len(v) for v in inputs.values())
        if any(len(v) == 0 for v in inputs.values()):
            return []
        return [{k: (v[i] if i < len(v) else v[-1]) for k, v in inputs.items()} for i in range(length)]

    def _context(self, node_id: str) -> progress.NodeContext:
        def on_progress(value, total, preview=None, target=None):
            target = target or node_id
            self.emit("progress", {"value": value, "max": total, "prompt_id": self.prompt_id, "node": target})
            self._progress_state(target, "running", value, total)
            if preview is not None and self.emit_preview is not None:
                self.emit_preview(target, preview, self.dynprompt)

        def on_text(text, target=None):
            if self.emit_text is not None:
                self.emit_text(target or node_id, text)

        return progress.NodeContext(
            prompt_id=self.prompt_id, node_id=node_id,
            display_node_id=self.dynprompt.get_display_node_id(node_id),
            real_node_id=self.dynprompt.get_real_node_id(node_id),
            parent_node_id=self.dynprompt.get_parent_node_id(node_id),
            on_progress=on_progress, on_text=on_text, interrupt_flag=self.interrupt_flag,
            preview_method=prompt_preview_method(self.extra_data))

    def _call(self, node_id: str, node_def: NodeDef, instance: Any, inputs: dict) -> list:
        results = []
        token = progress.set_context(self._context(node_id))
        try:
            for index, kwargs in enumerate(self._calls(node_def, inputs)):
                blocker = self._find_blocker(kwargs, node_def.input_is_list)
                if blocker is not None:
                    results.append(blocker)
                    continue
                GraphBuilder.set_default_prefix(node_id, index)
                results.append(node_def.function(instance, **kwargs))
        finally:
            progress.reset_context(token)
        return results

    def _spawn(self, node_id: str, awaitable) -> asyncio.Task:
        token = progress.set_context(self._context(node_id))
        try:
            return asyncio.ensure_future(awaitable)
        finally:
            progress.reset_context(token)

    @staticmethod
    def _find_blocker(kwargs: dict, input_is_list: bool) -> ExecutionBlocker | None:
        for value in kwargs.values():
            if input_is_list and isinstance(value, list):
                for item in value:
                    if isinstance(item, ExecutionBlocker):
                        return item
            elif isinstance(value, ExecutionBlocker):
                return value
        return None

    def _apply_blockers(self, node_id: str, class_type: str, results: list, node_def: NodeDef) -> list:
        """A node that received a blocker with a message reports it once, then blocks silently."""
        out = []
        for r in results:
            if isinstance(r, ExecutionBlocker) and r.message is not None and self._received_blocker(r, node_id):
                self.emit("execution_error", {
                    "prompt_id": self.prompt_id, "node_id": node_id, "node_type": class_type,
                    "executed": sorted(self.executed), "exception_message": f"Execution Blocked: {r.message}",
                    "exception_type": "ExecutionBlocked", "traceback": [], "current_inputs": [],
                    "current_outputs": [], "timestamp": now_ms()}, record=True)
                r = ExecutionBlocker(None)
            out.append(r)
        return out

    def _received_blocker(self, blocker: ExecutionBlocker, node_id: str) -> bool:
        # A node's own returned blocker is its output; only a received one is reported.
        node = self.dynprompt.get_node(node_id)
        for value in node["inputs"].values():
            if is_link(value):
                entry = self.results.get(value[0])
                if entry is not None and any(blocker is v for slot in entry.outputs for v in slot):
                    return True
        return False

    async def _lazy_needed(self, node_id: str, node: dict, node_def: NodeDef, instance: Any,
                           inputs: dict) -> list[str]:
        """The lazy inputs check_lazy_status (plain or async) asks for that are not evaluated yet."""
        needed: list[str] = []
        token = progress.set_context(self._context(node_id))
        try:
            for kwargs in self._calls(node_def, inputs):
                names = node_def.check_lazy_status(instance, **kwargs)
                if inspect.isawaitable(names):
                    names = await names
                for name in names or ():
                    link = node["inputs"].get(name)
                    if is_link(link) and name not in needed and link[0] not in self.results:
                        needed.append(name)
        finally:
            progress.reset_context(token)
        return needed

    def _expand(self, node_id: str, node_def: NodeDef, results: list, order: ExecutionList, display_id: str) -> bool:
        expansions = [r for r in results if isinstance(r, dict) and r.get("expand") is not None]
        if not expansions:
            return False
        state = self.pending.setdefault(node_id, _Pending())
        state.subgraph = True
        state.results = results
        new_outputs = []
        for r in expansions:
            for new_id, new_node in r["expand"].items():
                if self.dynprompt.has_node(new_id):
                    raise RuntimeError(f"Node expansion produced a duplicate node id {new_id!r}")
                if self.registry.get(new_node.get("class_type")) is None:
                    raise RuntimeError(f"Node expansion used unknown node type {new_node.get('class_type')!r}")
                new_node = {"class_type": new_node["class_type"], "inputs": dict(new_node.get("inputs", {})),
                            **({"override_display_id": new_node["override_display_id"]}
                               if "override_display_id" in new_node else {})}
                self.dynprompt.add_ephemeral_node(new_id, new_node, node_id,
                                                  new_node.get("override_display_id", display_id))
            for new_id in r["expand"]:
                entry = self.cache.get(self.signatures.get(new_id))
                if entry is not None:
                    self.results[new_id] = entry
                if self.registry.get(self.dynprompt.get_node(new_id)["class_type"]).output_node:
                    new_outputs.append(new_id)
        for r in expansions:
            for value in _result_values(r):
                if is_link(value):
                    order.add_strong_link(value[0], value[1], node_id)
        for new_id in new_outputs:
            order.add_strong_link(new_id, 0, node_id)
        order.requeue(node_id)
        return True

    def _resolve_subgraph_results(self, results: list) -> list:
        resolved = []
        for r in results:
            if isinstance(r, dict) and r.get("expand") is not None:
                values = []
                for value in _result_values(r):
                    if is_link(value):
                        entry = self.results[value[0]]
                        values.append(entry.outputs[value[1]])
                    else:
                        values.append([value])
                resolved.append(("__resolved__", values, r.get("ui")))
            else:
                resolved.append(r)
        return resolved

    def _finish(self, node_id: str, node_def: NodeDef, display_id: str, results: list, started: float) -> bool:
        count = len(node_def.outputs)
        outputs: list[list] = [[] for _ in range(count)]
        uis = []
        for r in results:
            if isinstance(r, tuple) and len(r) == 3 and r[0] == "__resolved__":
                _, values, ui = r
                for i in range(min(count, len(values))):
                    outputs[i].extend(values[i])
                if ui:
                    uis.append(ui)
                continue
            if isinstance(r, ExecutionBlocker):
                for i in range(count):
                    outputs[i].append(r)
                continue
            if isinstance(r, dict):
                if r.get("ui"):
                    uis.append(r["ui"])
                values = r.get("result")
                if values is None:
                    values = ()
            else:
                values = r
            if values is None:
                values = ()
            if not isinstance(values, (tuple, list)):
                raise TypeError(f"node {node_def.name} returned {type(values).__name__}, expected a tuple")
            for i in range(min(count, len(values))):
                value = values[i]
                if node_def.output_is_list[i] and isinstance(value, list):
                    outputs[i].extend(value)
                else:
                    outputs[i].append(value)
        ui = _merge_ui(uis)
        entry = CacheEntry(outputs=outputs, ui=ui)
        self.results[node_id] = entry
        self.cache.set(self.signatures.get(node_id), entry)
        self.executed.add(node_id)
        self.result.timings[node_id] = time.perf_counter() - started
        if ui is not None:
            self.emit("executed", {"node": node_id, "display_node": display_id, "output": ui,
                                   "prompt_id": self.prompt_id})
            self._record_ui(node_id, ui)
        self._progress_state(node_id, "finished")
        return True

    def _record_ui(self, node_id: str, ui: dict) -> None:
        self.result.ui_outputs[node_id] = ui
        self.result.meta[node_id] = {
            "node_id": node_id,
            "display_node": self.dynprompt.get_display_node_id(node_id),
            "parent_node": self.dynprompt.get_parent_node_id(node_id),
            "real_node_id": self.dynprompt.get_real_node_id(node_id),
        }

    def _error_payload(self, node_id: str | None, ex: BaseException, inputs: dict) -> dict:
        node_type = self.dynprompt.get_node(node_id)["class_type"] if node_id and self.dynprompt.has_node(node_id) else None
        return {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": node_type,
            "executed": sorted(self.executed),
            "exception_message": str(ex),
            "exception_type": f"{type(ex).__module__}.{type(ex).__qualname__}" if type(ex).__module__ != "builtins" else type(ex).__name__,
            "traceback": traceback.format_tb(ex.__traceback__),
            "current_inputs": {k: [_format_value(v) for v in vals] for k, vals in inputs.items()},
            "current_outputs": sorted(self.results),
            "timestamp": now_ms(),
        }


def _result_values(r: dict) -> tuple:
    values = r.get("result")
    return tuple(values) if values is not None else ()
