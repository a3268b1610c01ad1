"""Time and peak memory of ImageUpscaleWithModel's tiled upscale (ESRGAN-shaped, random weights).

    python bench/upscale.py                      # full-size ESRGAN 4x (nf=64, 23 RRDB), 512/1024/2048 inputs
    python bench/upscale.py --filters 16 --blocks 1 --sizes 512 1024 2048   # a quick CPU run

Each input size runs in its own child process, so the peak figures do not mix:

* CPU: peak resident set size of the child (``resource.getrusage(RUSAGE_SELF).ru_maxrss``),
  and the *working memory*: peak RSS minus the RSS just before the call (interpreter, torch,
  model weights and the input image) minus the output image itself (B*H*s*W*s*3 float32,
  which any upscaler has to return). The working memory is what tiling bounds: it depends
  on the tile size, not on the image size.
* CUDA: ``torch.cuda.max_memory_allocated`` during the call, minus weights, input and output.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(args: argparse.Namespace) -> None:
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel import ModelLoader

    from comfyui.models import memory
    from comfyui.models import upscale as up

    memory.configure(None, cpu=args.device == "cpu")
    torch.manual_seed(0)
    net = ESRGAN(num_filters=args.filters, num_blocks=args.blocks, scale=args.scale)
    model = ModelLoader().load_from_state_dict(net.state_dict()).eval()
    del net
    image = torch.rand(1, args.size, args.size, 3)
    device = torch.device(args.device)
    out_bytes = args.size * args.scale * args.size * args.scale * 3 * 4
    weights = sum(p.nelement() * p.element_size() for p in model.model.parameters())
    if device.type == "cuda":
        model.to(device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = _rss_now()
    t = time.perf_counter()
    out = up.upscale_image(model, image, tile=args.tile, overlap=args.overlap, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    assert out.shape == (1, args.size * args.scale, args.size * args.scale, 3)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    res = {"size": args.size, "seconds": dt, "peak_rss": peak_rss, "base_rss": base_rss, "output_bytes": out_bytes,
           "working": peak_rss - base_rss - out_bytes, "weights": weights}
    if device.type == "cuda":
        res["cuda_peak"] = torch.cuda.max_memory_allocated()
        res["cuda_working"] = res["cuda_peak"] - base
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--filters", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=23)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--device", default="cuda" if _has_cuda() else "cpu")
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    mib = 1024 * 1024
    print(f"ESRGAN {args.scale}x nf={args.filters} nb={args.blocks}, tile {args.tile} overlap {args.overlap}, "
          f"device {args.device}, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"{'input':>9} {'seconds':>9} {'peak RSS MiB':>13} {'before MiB':>11} {'output MiB':>11} {'working MiB':>12}"
          + (f" {'cuda peak MiB':>14} {'cuda working MiB':>17}" if args.device.startswith("cuda") else ""))
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", "--size", str(size), "--filters", str(args.filters),
               "--blocks", str(args.blocks), "--scale", str(args.scale), "--tile", str(args.tile),
               "--overlap", str(args.overlap), "--device", args.device]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        line = (f"{size:>4}x{size:<4} {r['seconds']:>9.2f} {r['peak_rss'] / mib:>13.0f} {r['base_rss'] / mib:>11.0f} "
                f"{r['output_bytes'] / mib:>11.0f} {r['working'] / mib:>12.0f}")
        if "cuda_peak" in r:
            line += f" {r['cuda_peak'] / mib:>14.0f} {r['cuda_working'] / mib:>17.0f}"
        print(line, flush=True)


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


if __name__ == "__main__":
    main()
