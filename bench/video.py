"""Wan video: ours vs diffusers side by side in one run (transformer step, VAE decode).

1. Transformer: a Wan DiT with the 1.3B width (dim 1536, 12 heads of 128, ffn 8960, text width
   4096, 16 latent channels) and a reduced layer count (default 2), one denoising step on 33
   frames at 480x272 (latent [1, 16, 9, 34, 60]: 9 x 17 x 30 = 4590 tokens) with 512 text tokens
   (Wan's T5 padding). Ours (``comfyui.models.wan``, config detected from the native state dict
   as our loader does) vs diffusers' ``WanTransformer3DModel`` on the same random weights (drawn
   in the released layout, converted by diffusers' own ``convert_wan_transformer_to_diffusers``).
   Weights fp32 and bf16; ours with bf16 weights computes in the dtype our loader picks for the
   device (``memory.unet_manual_cast``: bf16 on a GPU and on a CPU with native bf16 --
   avx512_bf16 / amx_bf16 --, fp32 on other CPUs), diffusers computes in bf16. Reported: median seconds per step after a warm-up
   step, the process's resident memory with the weights loaded and its peak during the steps
   (CPU: RSS sampled every 2 ms in a thread; CUDA: torch's peak allocation), max |ours - diffusers|.
2. VAE decode: the Wan 2.1 VAE (dim 96, z 16, random weights, released layout) decoding T and 2T
   latent frames (default 5 and 9: 17 and 33 frames) at 17x30 by default (240x136 pixels, to keep
   a CPU run short; ``--vae-width 480 --vae-height 272`` for the 34x60 latent), ours (one latent
   frame at a time with causal caches) vs diffusers' ``AutoencoderKLWan``: seconds and peak
   memory; "growth" is the peak above the loaded weights at 2T over that at T (flat = 1.0; the
   decoded video itself doubles).
Each measurement runs in its own process, so a peak is its own. Rounds alternate ours / diffusers.

Goals (issue 13): time per step <= 0.9x diffusers, peak memory <= diffusers; VAE decode peak
memory flat as the frame count doubles.

Run:  python bench/video.py [--layers 2] [--frames 33] [--width 480] [--height 272] [--steps 1]
                            [--rounds 1] [--dtypes fp32,bf16] [--vae-frames 5,9] [--vae-width 240]
                            [--vae-height 136] [--vae-rounds 1] [--skip-dit] [--skip-vae]
                            [--device cpu|cuda]
(on a GPU use more steps and rounds: --steps 5 --rounds 2 --vae-width 480 --vae-height 272)

Measured 2026-12-07, CPU (2-core AMD EPYC with avx512_bf16, shared: another helper's test suite
ran alongside, load average 1.7 at the start, 3.6 at the end), defaults (one timed step per
implementation, so the fp32 step times are noisy: a single fp32 run a minute earlier gave ours
9.81 s, diffusers 8.01 s); the whole run took 8 min (about 2.5 min with --skip-vae):

    torch 2.14.1+cu130, 2 threads, load average 1.70 1.27 2.01
    Wan DiT dim 1536, 12 heads, ffn 8960, 2 layers (119 M parameters), 33 frames at 480x272 (latent [9, 34, 60], 4590 tokens), 512 text tokens, device cpu
     weights       impl   s/step  resident MiB  peak MiB  max |diff|
        fp32       ours    11.48          1003      1519    2.50e-06
        fp32  diffusers    13.64          1294      2010    2.50e-06
        fp32      ratio     0.84                    0.76
        bf16       ours    16.70           776      1420    1.32e-02
        bf16  diffusers     4.80          1068      1446    1.32e-02
        bf16      ratio     3.47                    0.98
    Wan 2.1 VAE decode (dim 96, z 16), latent 17x30 (240x136 pixels), fp32, device cpu
    latent T  frames       impl  seconds  resident MiB  peak MiB  above MiB  max |diff|
           5      17       ours    63.85          1001      1907        906    2.66e-06
           5      17  diffusers    60.04          1297      2231        935    2.66e-06
           9      33       ours   113.09          1001      1889        888    2.71e-06
           9      33  diffusers   104.86          1297      2209        912    2.71e-06
    growth of the peak above the weights, latent T 5 -> 9: ours 0.98x, diffusers 0.98x
    load average at the end 3.64 3.17 2.65

On this CPU ours with bf16 weights computed in fp32 (our loader's CPU policy then: fp32 on every
CPU, as upstream), diffusers in bf16, which this CPU runs natively (avx512_bf16), hence ours 3.5x
slower there. Since then ours computes bf16 weights in bf16 on such CPUs (``memory.
cpu_computes_bf16``) and keeps fp32 on the others, where bf16 is emulated and slow. Measured
2026-12-07 20:30-20:50 on the same kind of machine after a restart onto a 2-core AMD EPYC
*without* avx512 (flags up to avx2; torch.cpu.get_capabilities() avx512_bf16 False), heavily
shared (load average 9-14), ``--skip-vae --dtypes bf16 --frames 9`` (latent [3, 34, 60], 1530
tokens), before and after the policy change, once each:

     before: bf16 ours 36.47 s/step (fp32 compute)  diffusers 192.82  ratio 0.19  peak ratio 0.85
     after:  bf16 ours 29.36 s/step (fp32 compute)  diffusers 131.63  ratio 0.22  peak ratio 0.86

On this CPU both runs take the same path (no native bf16: fp32 compute), so the difference is
load noise; a bf16 matmul here is 9x slower than fp32 (4590x1536 @ 1536x8960: 3.0 vs 26.4
GFLOP/s), which is why the policy keys on the CPU flags. The avx512_bf16 case (the figures
above: diffusers' bf16 step 2.8x faster than its fp32 one) could not be re-measured. The VAE's peak on a CPU
is the full-resolution conv3d workspace of one chunk; it does not grow with the frame count for
either implementation (diffusers also decodes one latent frame at a time with caches).
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

DIM, HEADS, FFN, TEXT_DIM, CHANNELS, TEXT_TOKENS = 1536, 12, 8960, 4096, 16, 512
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------------------- weights
def dit_config(layers: int) -> dict:
    return dict(model_type="t2v", patch_size=(1, 2, 2), in_dim=CHANNELS, dim=DIM, ffn_dim=FFN, freq_dim=256,
                text_dim=TEXT_DIM, out_dim=CHANNELS, num_heads=HEADS, num_layers=layers, eps=1e-6)


def _random(shapes: dict, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic random weights: norm scales around 1, small biases, fan-in scaled matrices."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith(("norm_q.weight", "norm_k.weight", "norm3.weight", "gamma")):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("modulation"):
            t = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 0.01 * torch.randn(shape, generator=g)
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            t = torch.randn(shape, generator=g) * (0.5 / fan_in ** 0.5)
        out[name] = t.to(dtype)
    return out


def dit_weights(layers: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from comfyui.models.wan.model import WanModel
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WanModel(**dit_config(layers)).state_dict().items()}
    return _random(shapes, dtype, seed=0)


def vae_weights() -> dict[str, torch.Tensor]:
    from comfyui.models.wan.vae import WanVAE
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WanVAE().state_dict().items()}
    return _random(shapes, torch.float32, seed=0)


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


def _resident(device: str) -> int:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    import ctypes
    import psutil
    try:  # hand freed heap back to the system so the baseline is what is live
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return psutil.Process().memory_info().rss


# ------------------------------------------------------------------------------ transformer
def build_ours(weights: dict, dtype: torch.dtype, device: str):
    """Our network as our loader sets it up: config detected from the native keys, weights
    assigned in their stored dtype, manual cast where the device cannot compute in it."""
    from comfyui.models import memory, ops
    from comfyui.models.wan.detection import detect
    from comfyui.models.wan.model import WanModel
    compute = memory.unet_manual_cast(dtype, torch.device(device), (torch.bfloat16, torch.float16, torch.float32))
    with torch.device("meta"):
        model = WanModel(**detect(weights, ""))
    model.load_state_dict(weights, assign=True, strict=True)
    model.eval().requires_grad_(False).to(device)
    if compute is not None:
        ops.set_manual_cast(model, True)
    run_dtype = compute or dtype

    def step(inp):
        return model(inp["x"].to(run_dtype), inp["sigma"] * 1000, inp["context"].to(run_dtype))
    return step


def build_diffusers(weights: dict, dtype: torch.dtype, device: str):
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    layers = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("blocks."))
    # built on the CPU, not on meta: its rotary tables are non-persistent buffers
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=HEADS, attention_head_dim=DIM // HEADS, in_channels=CHANNELS,
        out_channels=CHANNELS, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=FFN, num_layers=layers,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6).to(dtype)
    theirs = {k: v.contiguous() for k, v in convert_wan_transformer_to_diffusers(dict(weights)).items()}
    weights.clear()
    model.load_state_dict(theirs, assign=True, strict=True)
    del theirs
    model.eval().requires_grad_(False).to(device)

    def step(inp):
        return model(hidden_states=inp["x"].to(dtype), timestep=inp["sigma"] * 1000,
                     encoder_hidden_states=inp["context"].to(dtype), return_dict=False)[0]
    return step


def dit_worker(args) -> None:
    device = args.device
    dtype = DTYPES[args.dtype]
    weights = dit_weights(args.layers, dtype)
    step = (build_ours if args.impl == "ours" else build_diffusers)(weights, dtype, device)
    del weights
    g = torch.Generator().manual_seed(1)
    lat_t, lat_h, lat_w = (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8
    inp = dict(x=torch.randn(1, CHANNELS, lat_t, lat_h, lat_w, generator=g).to(device),
               context=torch.randn(1, TEXT_TOKENS, TEXT_DIM, generator=g).to(device),
               sigma=torch.tensor([0.75], device=device))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = step(inp)  # warm-up
    sync()
    resident = _resident(device)
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


# ------------------------------------------------------------------------------------- VAE
def vae_worker(args) -> None:
    device = args.device
    sd = vae_weights()
    if args.impl == "ours":
        from comfyui.models.wan.vae import WanVAE, vae_config
        with torch.device("meta"):
            net = WanVAE(**vae_config(sd))
        net.load_state_dict(sd, assign=True, strict=True)
        decode = net.decode
    else:
        from diffusers import AutoencoderKLWan
        from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
        net = AutoencoderKLWan(base_dim=96, z_dim=16)  # not on meta: it has non-persistent buffers
        net.load_state_dict(convert_wan_vae_to_diffusers(dict(sd)), assign=True, strict=True)

        def decode(z):
            return net.decode(z).sample
    del sd
    net.eval().requires_grad_(False).to(device)
    z = torch.randn(1, 16, args.latent_frames, args.vae_height // 8, args.vae_width // 8,
                    generator=torch.Generator().manual_seed(2)).to(device)
    resident = _resident(device)
    with PeakRSS() as rss:
        start = time.perf_counter()
        out = decode(z)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss.peak
    torch.save(out[:, :, -2:].float().clamp(-1, 1).cpu(), args.out)
    print(json.dumps({"times": [seconds], "resident": resident, "peak": peak, "frames": out.shape[2]}))


# ------------------------------------------------------------------------------------ driver
def run_worker(args, kind: str, impl: str, out: str, **extra) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--impl", impl, "--out", out, "--layers", str(args.layers),
           "--frames", str(args.frames), "--width", str(args.width), "--height", str(args.height),
           "--steps", str(args.steps), "--device", args.device, "--vae-width", str(args.vae_width),
           "--vae-height", str(args.vae_height)]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if res.returncode:
        raise RuntimeError(f"{kind} {impl} {extra} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def alternate(args, rounds: int, run) -> dict[str, list]:
    results: dict[str, list] = {"ours": [], "diffusers": []}
    for r in range(rounds):
        for impl in (("ours", "diffusers") if r % 2 == 0 else ("diffusers", "ours")):
            results[impl].append(run(impl))
    return results


def bench_dit(args, tmp: str) -> None:
    from comfyui.models.wan.model import WanModel
    with torch.device("meta"):
        params = sum(v.numel() for v in WanModel(**dit_config(args.layers)).state_dict().values())
    lat = ((args.frames - 1) // 4 + 1, args.height // 8, args.width // 8)
    print(f"Wan DiT dim {DIM}, {HEADS} heads, ffn {FFN}, {args.layers} layers ({params / 1e6:.0f} M parameters), "
          f"{args.frames} frames at {args.width}x{args.height} (latent {list(lat)}, "
          f"{lat[0] * (lat[1] // 2) * (lat[2] // 2)} tokens), {TEXT_TOKENS} text tokens, device {args.device}")
    print(f"{'weights':>8} {'impl':>10} {'s/step':>8} {'resident MiB':>13} {'peak MiB':>9} {'max |diff|':>11}")
    for dtype in args.dtypes.split(","):
        results = alternate(args, args.rounds, lambda impl: run_worker(
            args, "dit", impl, os.path.join(tmp, f"{impl}.pt"), dtype=dtype))
        a, b = torch.load(os.path.join(tmp, "ours.pt")), torch.load(os.path.join(tmp, "diffusers.pt"))
        diff = (a - b).abs().max().item()
        rows = {}
        for impl, runs in results.items():
            step = statistics.median(t for run in runs for t in run["times"])
            resident = max(run["resident"] for run in runs) / 2 ** 20
            peak = max(run["peak"] for run in runs) / 2 ** 20
            rows[impl] = step, peak
            print(f"{dtype:>8} {impl:>10} {step:8.2f} {resident:13.0f} {peak:9.0f} {diff:11.2e}", flush=True)
        print(f"{dtype:>8} {'ratio':>10} {rows['ours'][0] / rows['diffusers'][0]:8.2f} {'':>13} "
              f"{rows['ours'][1] / rows['diffusers'][1]:9.2f}", flush=True)


def bench_vae(args, tmp: str) -> None:
    counts = [int(n) for n in args.vae_frames.split(",")]
    print(f"Wan 2.1 VAE decode (dim 96, z 16), latent {args.vae_height // 8}x{args.vae_width // 8} "
          f"({args.vae_width}x{args.vae_height} pixels), fp32, device {args.device}")
    print(f"{'latent T':>8} {'frames':>7} {'impl':>10} {'seconds':>8} {'resident MiB':>13} {'peak MiB':>9} "
          f"{'above MiB':>10} {'max |diff|':>11}")
    above: dict[str, list[float]] = {"ours": [], "diffusers": []}
    for n in counts:
        results = alternate(args, args.vae_rounds, lambda impl: run_worker(
            args, "vae", impl, os.path.join(tmp, f"vae-{impl}.pt"), latent_frames=n))
        a, b = torch.load(os.path.join(tmp, "vae-ours.pt")), torch.load(os.path.join(tmp, "vae-diffusers.pt"))
        diff = (a - b).abs().max().item()
        for impl, runs in results.items():
            seconds = statistics.median(run["times"][0] for run in runs)
            resident = max(run["resident"] for run in runs) / 2 ** 20
            peak = max(run["peak"] for run in runs) / 2 ** 20
            above[impl].append(max(run["peak"] - run["resident"] for run in runs) / 2 ** 20)
            print(f"{n:>8} {runs[0]['frames']:>7} {impl:>10} {seconds:8.2f} {resident:13.0f} {peak:9.0f} "
                  f"{above[impl][-1]:10.0f} {diff:11.2e}", flush=True)
    if len(counts) > 1:
        print(f"growth of the peak above the weights, latent T {counts[0]} -> {counts[-1]}: " + ", ".join(
            f"{impl} {v[-1] / max(v[0], 1e-9):.2f}x" for impl, v in above.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--height", type=int, default=272)
    p.add_argument("--steps", type=int, default=1, help="timed transformer steps after the warm-up")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--vae-frames", default="5,9", help="latent frame counts to decode")
    p.add_argument("--vae-rounds", type=int, default=1)
    p.add_argument("--vae-width", type=int, default=240)
    p.add_argument("--vae-height", type=int, default=136)
    p.add_argument("--skip-dit", action="store_true")
    p.add_argument("--skip-vae", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--worker", choices=("dit", "vae"))
    p.add_argument("--impl", choices=("ours", "diffusers"))
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--latent-frames", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    if args.worker:
        with torch.inference_mode():
            (dit_worker if args.worker == "dit" else vae_worker)(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_dit:
            bench_dit(args, tmp)
        if not args.skip_vae:
            bench_vae(args, tmp)
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
