"""Engine overhead: a chain of N StringConcatenate nodes ending in PreviewAny.

Prints wall time for a cold run (empty caches) and a fully cached rerun, for N = 50, 500,
5000, and the time per node. Submit-to-history, validation included.
Reference (ComfyUI on this machine, from the issue): 500 nodes 21-24 s cold, 14-15 s cached;
50 nodes 0.17 s, 200 nodes 2.2 s. Goal: linear growth; 500 nodes < 50 ms cold, < 5 ms cached.

Run: python bench/engine.py
"""
import statistics
import time

from comfyui.engine.engine import Engine
from comfyui.nodes.registry import NodeRegistry


def chain(n: int) -> dict:
    prompt = {"0": {"class_type": "PrimitiveString", "inputs": {"value": "x"}}}
    for i in range(1, n + 1):
        prompt[str(i)] = {"class_type": "StringConcatenate",
                          "inputs": {"string_a": [str(i - 1), 0], "string_b": "y", "delimiter": ""}}
    prompt[str(n + 1)] = {"class_type": "PreviewAny", "inputs": {"source": [str(n), 0]}}
    return prompt


def run(engine: Engine, prompt: dict) -> float:
    start = time.perf_counter()
    result = engine.submit(prompt)
    entry = engine.wait(result.prompt_id).result(600)
    elapsed = time.perf_counter() - start
    assert entry["status"]["status_str"] == "success", entry["status"]
    return elapsed


def main() -> None:
    registry = NodeRegistry.with_builtins()
    print(f"{'nodes':>6} {'cold ms':>9} {'cached ms':>10} {'cold us/node':>13} {'cached us/node':>15}")
    for n in (50, 500, 5000):
        colds, cacheds = [], []
        for _ in range(3 if n <= 500 else 1):
            engine = Engine(registry)
            engine.start()
            try:
                colds.append(run(engine, chain(n)))
                cacheds.append(min(run(engine, chain(n)) for _ in range(3)))
            finally:
                engine.stop()
        cold, cached = statistics.median(colds), statistics.median(cacheds)
        print(f"{n:>6} {cold * 1000:>9.1f} {cached * 1000:>10.2f} {cold / n * 1e6:>13.1f} {cached / n * 1e6:>15.2f}")


if __name__ == "__main__":
    main()
