"""Records reference outputs of upstream ComfyUI's own functions for tests/sampling/
test_attention_patches.py (SAG's blur map, ToMe's merge/unmerge, HyperTile's tile choice) and
tests/nodes/test_lora_extract.py (nodes_lora_extract's SVD extraction) and
tests/sampling/test_context_windows.py (comfy/context_windows.py's window schedules and weights).

    python record_upstream_patch_refs.py /path/to/ComfyUI > upstream_patch_refs.json

Only the module-level functions are taken from each upstream file (its ComfyUI imports are
not needed); the inputs are deterministic formulas, ToMe's and HyperTile's random draws
come from torch.manual_seed."""
import ast
import json
import math
import subprocess
import sys

import torch
import torch.nn.functional as F
from einops import rearrange, repeat


def functions_of(path: str) -> dict:
    tree = ast.parse(open(path).read())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    import numpy as np
    ns = {"np": np, "torch": torch, "F": F, "math": math, "rearrange": rearrange, "repeat": repeat,
          "einsum": torch.einsum, "randint": torch.randint}
    from typing import Callable, Optional, Tuple
    ns.update(Tuple=Tuple, Callable=Callable, Optional=Optional)
    import __future__
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec", flags=__future__.annotations.compiler_flag), ns)
    return ns


def full_rank_pattern(*shape):  # a quadratic phase: no low-rank structure
    n = math.prod(shape)
    return torch.sin(torch.arange(n, dtype=torch.float32) ** 2 * 0.37 + 0.1).reshape(shape)


def pattern(*shape, k=0.37):
    n = math.prod(shape)
    return torch.sin(torch.arange(n, dtype=torch.float32) * k + 0.1).reshape(shape)


def flat(t):
    return [round(float(v), 6) for v in t.flatten()]


def main(root: str) -> dict:
    out = {"upstream_commit": subprocess.check_output(["git", "-C", root, "rev-parse", "HEAD"], text=True).strip()}
    sag = functions_of(f"{root}/comfy_extras/nodes_sag.py")
    # 2 heads, 16 tokens (4x4 map under an 8x8 latent), batch 1
    q, k, v = pattern(1, 16, 8, k=0.31) * 3, pattern(1, 16, 8, k=0.17) * 3, pattern(1, 16, 8, k=0.23)
    attn_out, sim = sag["attention_basic_with_sim"](q, k, v, heads=2, attn_precision=torch.float32)
    out["sag_attention_out"] = flat(attn_out)
    out["sag_scores"] = flat(sim)
    x0 = pattern(1, 2, 8, 8, k=0.53)
    out["sag_blur_map"] = flat(sag["create_blur_map"](x0, sim, 2.0, 1.0))
    out["sag_gaussian_blur"] = flat(sag["gaussian_blur_2d"](x0, 9, 1.5))
    tome = functions_of(f"{root}/comfy_extras/nodes_tomesd.py")
    x = pattern(2, 36, 4, k=0.71)  # a 6x6 token map
    torch.manual_seed(7)
    merge, unmerge = tome["bipartite_soft_matching_random2d"](x, 6, 6, 2, 2, 10)
    merged = merge(x)
    out["tome_merged"] = flat(merged)
    out["tome_unmerged"] = flat(unmerge(merged * 2.0))
    hyper = functions_of(f"{root}/comfy_extras/nodes_hypertile.py")
    torch.manual_seed(3)
    out["hypertile_divisors"] = [hyper["random_divisor"](v, m, s) for v, m, s in
                                 [(64, 32, 2), (96, 16, 4), (96, 16, 1), (7, 32, 2), (128, 8, 3), (128, 8, 3)]]
    extract = functions_of(f"{root}/comfy_extras/nodes_lora_extract.py")
    extract["CLAMP_QUANTILE"] = 0.99
    for name, shape, rank in [("linear", (12, 10), 4), ("conv3x3", (6, 4, 3, 3), 3), ("conv1x1", (8, 6, 1, 1), 8)]:
        up, down = extract["extract_lora"](full_rank_pattern(*shape), rank)
        out[f"lora_extract_{name}"] = {"up": flat(up), "down": flat(down), "up_shape": list(up.shape),
                                       "down_shape": list(down.shape)}
    from types import SimpleNamespace
    ctx = functions_of(f"{root}/comfy/context_windows.py")
    windows = {}
    for name in ("create_windows_uniform_looped", "create_windows_uniform_standard", "create_windows_static_standard",
                 "create_windows_batched"):
        for frames, length, overlap, stride, closed in [(20, 8, 2, 1, False), (20, 8, 2, 3, True), (13, 5, 1, 2, False),
                                                       (16, 16, 4, 1, False), (40, 12, 4, 2, False)]:
            for step in (0, 1, 3, 6):
                h = SimpleNamespace(context_length=length, context_overlap=overlap, context_stride=stride,
                                    closed_loop=closed, _step=step)
                windows[f"{name}/{frames}/{length}/{overlap}/{stride}/{closed}/{step}"] = ctx[name](frames, h, {})
    out["context_windows"] = windows
    out["context_weights"] = {
        "pyramid": [ctx["create_weights_pyramid"](n) for n in (1, 4, 5, 8)],
        "overlap_linear": [ctx["create_weights_overlap_linear"](
            6, full_length=20, idxs=idxs, handler=SimpleNamespace(context_overlap=2)).tolist()
            for idxs in (list(range(0, 6)), list(range(7, 13)), list(range(14, 20)))]}
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
