"""Flux transformer: ours vs diffusers' FluxTransformer2DModel, side by side in one run.

A Flux with the real width (hidden 3072, 24 heads of 128, T5 width 4096, CLIP width 768) and a
reduced block count (default 1 double + 1 single: the smallest Flux upstream's own detection
accepts), one denoising step at 512x512 (a 64x64 latent: 1024 image tokens) with 256 text
tokens (ComfyUI's T5 padding for Flux). Both implementations get the same random weights
(drawn in BFL layout, converted with our key map for diffusers) and the same inputs; each runs
in its own process, so peak memory is its own. Rounds alternate ours / diffusers.

Weights: bf16, and fp8 (e4m3fn storage, bf16 compute: ours through the weight-casting layers,
diffusers through ``enable_layerwise_casting``).
Reported: median seconds per step, the process's resident memory with the weights loaded and
its peak during the steps (CPU: sampled RSS; CUDA: torch's peak allocation), and how far the
two outputs are apart.

Run:  python bench/flux.py [--depth 1] [--single 1] [--size 512] [--steps 3] [--rounds 2]
                           [--dtypes bf16,fp8] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import torch

HIDDEN, HEADS, CONTEXT, POOLED = 3072, 24, 4096, 768


def config(depth: int, single: int) -> dict:
    return dict(in_channels=16, out_channels=16, vec_in_dim=POOLED, context_in_dim=CONTEXT, hidden_size=HIDDEN,
                mlp_ratio=4.0, num_heads=HEADS, depth=depth, depth_single_blocks=single, axes_dim=[16, 56, 56],
                theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)


def native_weights(cfg: dict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Deterministic random weights in BFL layout (norm scales around 1, small biases)."""
    from comfyui.models.flux.model import Flux
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Flux(**cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith(".scale"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 0.01 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) * (0.5 / shape[-1] ** 0.5)
        out[name] = t.to(dtype)
    return out


def inputs(size: int, txt: int, device: str) -> dict:
    g = torch.Generator().manual_seed(1)
    lat = size // 8
    return dict(x=torch.randn(1, 16, lat, lat, generator=g), context=torch.randn(1, txt, CONTEXT, generator=g),
                y=torch.randn(1, POOLED, generator=g), sigma=torch.tensor([0.75]), guidance=torch.tensor([3.5]))


class PeakRSS:
    """The process's peak resident memory while active (sampled every 2 ms)."""

    def __init__(self):
        import psutil
        self.proc = psutil.Process()
        self.peak = 0
        self.running = False

    def __enter__(self):
        self.running = True
        self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def build_ours(cfg: dict, weights: dict, fp8: bool, device: str):
    """Our network as our loader sets it up: weights stored in bf16 (or fp8), computed in the
    dtype the device handles (``memory.unet_manual_cast``: bf16 on a GPU; float32 on a CPU,
    where bf16 matrix products are emulated and several times slower)."""
    from comfyui.models import memory, ops
    from comfyui.models.flux.model import Flux
    storage = torch.float8_e4m3fn if fp8 else torch.bfloat16
    compute = memory.unet_manual_cast(storage, torch.device(device), (torch.bfloat16, torch.float16, torch.float32))
    with torch.device("meta"):
        model = Flux(**cfg)
    if fp8:
        weights = {k: (v.to(storage) if v.ndim == 2 else v) for k, v in weights.items()}
    model.load_state_dict(weights, assign=True)
    model.eval().requires_grad_(False).to(device)
    if compute is not None:
        ops.set_manual_cast(model, True)
    dtype = compute or storage

    def step(inp):
        return model(inp["x"].to(dtype), inp["sigma"], inp["context"].to(dtype), y=inp["y"].to(dtype),
                     guidance=inp["guidance"])
    return step


def build_diffusers(cfg: dict, weights: dict, fp8: bool, device: str):
    from diffusers import FluxTransformer2DModel
    from comfyui.models.flux.convert import native_to_diffusers
    with torch.device("meta"):
        model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=cfg["depth"],
                                       num_single_layers=cfg["depth_single_blocks"], attention_head_dim=HIDDEN // HEADS,
                                       num_attention_heads=HEADS, joint_attention_dim=CONTEXT,
                                       pooled_projection_dim=POOLED, guidance_embeds=True, axes_dims_rope=(16, 56, 56))
    theirs = {k: v.contiguous() for k, v in native_to_diffusers(weights).items()}
    weights.clear()
    model.load_state_dict(theirs, assign=True, strict=True)
    del theirs
    model.eval().requires_grad_(False).to(device)
    if fp8:
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)

    def step(inp):
        x = inp["x"]
        b, c, h, w = x.shape
        packed = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)
        ids = torch.zeros(h // 2, w // 2, 3, device=x.device)
        ids[..., 1] = torch.arange(h // 2, device=x.device)[:, None]
        ids[..., 2] = torch.arange(w // 2, device=x.device)[None, :]
        out = model(hidden_states=packed, encoder_hidden_states=inp["context"], pooled_projections=inp["y"],
                    timestep=inp["sigma"], img_ids=ids.reshape(-1, 3),
                    txt_ids=torch.zeros(inp["context"].shape[1], 3, device=x.device), guidance=inp["guidance"]).sample
        return out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
    return step


def worker(args) -> None:
    torch.set_grad_enabled(False)
    device = args.device
    cfg = config(args.depth, args.single)
    fp8 = args.dtype == "fp8"
    weights = native_weights(cfg, torch.bfloat16)
    build = build_ours if args.impl == "ours" else build_diffusers
    step = build(cfg, weights, fp8, device)
    del weights
    inp = {k: v.to(device=device, dtype=torch.bfloat16 if v.is_floating_point() and k not in ("sigma", "guidance")
                    else v.dtype) for k, v in inputs(args.size, args.txt, device).items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode():
        out = step(inp)  # warm-up
        sync()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            resident = torch.cuda.memory_allocated()
        else:
            import psutil
            resident = psutil.Process().memory_info().rss
        times = []
        with PeakRSS() as rss:
            for _ in range(args.steps):
                start = time.perf_counter()
                out = step(inp)
                sync()
                times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss.peak
    torch.save(out.float().cpu(), args.out)
    print(json.dumps({"times": times, "resident": resident, "peak": peak}))


def run_worker(args, impl: str, dtype: str, out: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--dtype", dtype, "--out", out, "--depth", str(args.depth),
           "--single", str(args.single), "--size", str(args.size), "--txt", str(args.txt),
           "--steps", str(args.steps), "--device", args.device]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if res.returncode:
        raise RuntimeError(f"{impl} {dtype} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--single", type=int, default=1)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--txt", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dtypes", default="bf16,fp8")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--worker", choices=("ours", "diffusers"))
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--out")
    args = p.parse_args()
    if args.worker:
        args.impl = args.worker
        worker(args)
        return
    from comfyui.models.flux.model import Flux
    with torch.device("meta"):
        params = sum(v.numel() for v in Flux(**config(args.depth, args.single)).state_dict().values())
    print(f"Flux hidden {HIDDEN}, {HEADS} heads, {args.depth} double + {args.single} single blocks, "
          f"{args.size}x{args.size} ({(args.size // 16) ** 2} image tokens), {args.txt} text tokens, "
          f"device {args.device}, {params / 1e6:.0f} M parameters")
    print(f"{'weights':>8} {'impl':>10} {'s/step':>8} {'resident MiB':>13} {'peak MiB':>9} {'max |diff|':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes.split(","):
            results: dict[str, list] = {"ours": [], "diffusers": []}
            for r in range(args.rounds):
                for impl in (("ours", "diffusers") if r % 2 == 0 else ("diffusers", "ours")):
                    results[impl].append(run_worker(args, impl, dtype, os.path.join(tmp, f"{impl}.pt")))
            a, b = torch.load(os.path.join(tmp, "ours.pt")), torch.load(os.path.join(tmp, "diffusers.pt"))
            diff = (a - b).abs().max().item()
            rows = {}
            for impl, runs in results.items():
                step = statistics.median(t for run in runs for t in run["times"])
                resident = max(run["resident"] for run in runs) / 2 ** 20
                peak = max(run["peak"] for run in runs) / 2 ** 20
                rows[impl] = step, peak
                print(f"{dtype:>8} {impl:>10} {step:8.3f} {resident:13.0f} {peak:9.0f} {diff:11.2e}")
            print(f"{dtype:>8} {'ratio':>10} {rows['ours'][0] / rows['diffusers'][0]:8.2f} {'':>13} "
                  f"{rows['ours'][1] / rows['diffusers'][1]:9.2f}")


if __name__ == "__main__":
    main()
