"""Node classes used by the engine tests (classic API), registered into a fresh registry."""
import asyncio
import gc
import time
import weakref

from comfyui.engine.graph import ExecutionBlocker, GraphBuilder
from comfyui.engine.progress import ProgressBar, throw_if_interrupted

CALLS: dict = {}


def _count(name):
    CALLS[name] = CALLS.get(name, 0) + 1


class AnyType(str):
    def __ne__(self, other):
        return False


ANY = AnyType("*")


class Const:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": ""})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value):
        _count("Const")
        return (value,)


class IntConst:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -10, "max": 100})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value):
        _count("IntConst")
        return (value,)


class Concat:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("STRING", {"forceInput": True}), "b": ("STRING", {"default": ""})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, a, b):
        _count("Concat")
        return (a + b,)


class Output:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY,)}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def run(self, value):
        _count("Output")
        return {"ui": {"text": [str(value)]}}


class ListOutput:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3})}}
    RETURN_TYPES = ("STRING",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, count):
        return ([f"item{i}" for i in range(count)],)


class JoinList:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("STRING", {"forceInput": True}), "sep": ("STRING", {"default": ","})}}
    RETURN_TYPES = ("STRING",)
    INPUT_IS_LIST = True
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, values, sep):
        return (sep[0].join(values),)


class LazyMix:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("STRING", {"lazy": True}), "b": ("STRING", {"lazy": True}),
                             "use_a": ("BOOLEAN", {"default": True})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def check_lazy_status(self, a, b, use_a):
        _count("check_lazy_status")
        if use_a and a is None:
            return ["a"]
        if not use_a and b is None:
            return ["b"]
        return []

    def run(self, a, b, use_a):
        return (a if use_a else b,)


class Expand:
    """Expands into Const -> Concat(a, suffix) for each call."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": ""}), "suffix": ("STRING", {"default": "!"})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, text, suffix):
        _count("Expand")
        graph = GraphBuilder()
        const = graph.node("Const", value=text)
        concat = graph.node("Concat", a=const.out(0), b=suffix)
        return {"result": (concat.out(0),), "expand": graph.finalize()}


class Blocker:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"forceInput": True}), "block": ("BOOLEAN", {"default": True}),
                             "message": ("STRING", {"default": ""})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value, block, message):
        if block:
            return (ExecutionBlocker(message or None),)
        return (value,)


class Fail:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"forceInput": True})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value):
        raise ValueError(f"boom {value}")


class Sleep:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"forceInput": True}), "seconds": ("FLOAT", {"default": 0.3})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    async def run(self, value, seconds):
        await asyncio.sleep(seconds)
        return (value,)


class Slow:
    """Reports progress and honours interrupts."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"forceInput": True}), "steps": ("INT", {"default": 5}),
                             "delay": ("FLOAT", {"default": 0.05})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value, steps, delay):
        bar = ProgressBar(steps)
        for _ in range(steps):
            time.sleep(delay)
            throw_if_interrupted()
            bar.update(1)
        return (value,)


class AlwaysChanged:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": ""})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def IS_CHANGED(cls, value):
        return float("nan")

    def run(self, value):
        _count("AlwaysChanged")
        return (value,)


class ValidatedOnly:
    """VALIDATE_INPUTS asks for `value` only: the default max check is skipped for it."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "max": 10}), "other": ("INT", {"default": 0, "max": 10})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def VALIDATE_INPUTS(cls, value):
        return True if value != 13 else "13 is unlucky"

    def run(self, value, other):
        return (value,)


class ValidatedTypes:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"forceInput": True})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def VALIDATE_INPUTS(cls, input_types):
        return True if input_types["value"] in ("INT", "STRING") else f"bad type {input_types['value']}"

    def run(self, value):
        return (value,)


class Hidden:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT",
                                           "extra_pnginfo": "EXTRA_PNGINFO", "dynprompt": "DYNPROMPT"}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, unique_id, prompt, extra_pnginfo, dynprompt):
        return (f"{unique_id}|{sorted(prompt)}|{extra_pnginfo}|{type(dynprompt).__name__}",)


class ContainsAnyDict(dict):
    def __contains__(self, key):
        return True


class DynamicInputs:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "optional": ContainsAnyDict()}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, **kwargs):
        return (",".join(f"{k}={kwargs[k]}" for k in sorted(kwargs)),)


class RawLink:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"link": ("STRING", {"rawLink": True})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, link):
        return (repr(link),)


class AsyncValidated:
    """An async VALIDATE_INPUTS (it might ask a remote service)."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    async def VALIDATE_INPUTS(cls, value):
        await asyncio.sleep(0.01)
        return True if value <= 5 else f"{value} is more than 5"

    def run(self, value):
        return (value,)


SEEN: dict = {}  # hook name -> the arguments it was called with


class LinkedHooks:
    """VALIDATE_INPUTS and IS_CHANGED with required arguments, one of them linked."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("STRING", {"forceInput": True}), "b": ("STRING", {"default": ""})},
                "hidden": {"unique_id": "UNIQUE_ID"}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def VALIDATE_INPUTS(cls, a, b, unique_id):
        SEEN["VALIDATE_INPUTS"] = {"a": a, "b": b, "unique_id": unique_id}
        return True

    @classmethod
    def IS_CHANGED(cls, a, b):
        SEEN["IS_CHANGED"] = {"a": a, "b": b}
        return b

    def run(self, a, b, unique_id):
        return (a + b,)


class AsyncLazy:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("STRING", {"lazy": True}), "b": ("STRING", {"lazy": True}),
                             "use_a": ("BOOLEAN", {"default": True})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    async def check_lazy_status(self, a, b, use_a):
        await asyncio.sleep(0.01)
        name = "a" if use_a else "b"
        return [name] if (a if use_a else b) is None else []

    def run(self, a, b, use_a):
        return (a if use_a else b,)


class ExpandCycle:
    """Expands into two LazyMix nodes that each ask for the other's output."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"forceInput": True})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value):
        graph = GraphBuilder()
        first = graph.node("LazyMix", a=value, use_a=False)
        second = graph.node("LazyMix", a=first.out(0), b="", use_a=True)
        first.set_input("b", second.out(0))
        return {"result": (second.out(0),), "expand": graph.finalize()}


class RawLinkExpand:
    """Gets its input as a raw link and expands into a node that reads it (flow control nodes
    build loops this way)."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"link": ("STRING", {"rawLink": True})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, link):
        _count("RawLinkExpand")
        graph = GraphBuilder()
        concat = graph.node("Concat", a=link, b="")
        return {"result": (concat.out(0),), "expand": graph.finalize()}


class CyclicGarbage:
    """Makes reference cycles while it runs and reports whether the collector freed the first."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 20000})}}
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, count):
        class Cell:
            pass

        first = Cell()
        first.self = first
        probe = weakref.ref(first)
        del first
        for _ in range(count):  # allocations that trigger automatic collections
            cell = Cell()
            cell.self = cell
        return (f"gc enabled={gc.isenabled()} first freed={probe() is None}",)


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in [
    Const, IntConst, Concat, Output, ListOutput, JoinList, LazyMix, Expand, Blocker, Fail, Sleep, Slow,
    AlwaysChanged, ValidatedOnly, ValidatedTypes, Hidden, DynamicInputs, RawLink, AsyncValidated, LinkedHooks,
    AsyncLazy, ExpandCycle, RawLinkExpand, CyclicGarbage]}
