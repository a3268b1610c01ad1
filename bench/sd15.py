"""Seconds per sampling step for an SD1.5-shaped UNet with random weights: ours vs diffusers.

Both run the same weights (one original-layout checkpoint, and the same weights saved as a
diffusers folder), Euler, CFG 8 (batched cond/uncond), batch 1, in the same run, each
implementation in its own subprocess so that peak memory is its own. Prints seconds per
step, peak memory and checkpoint load time.

    python bench/sd15.py                       # 512x512, 20 steps, auto device
    python bench/sd15.py --size 256 --steps 4  # quicker on a CPU
    python bench/sd15.py --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

SD15_UNET = dict(in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
                 context_dim=768, num_heads=8, num_head_channels=-1, use_linear_in_transformer=False)
SD15_DIFFUSERS = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                      block_out_channels=(320, 640, 1280, 1280),
                      down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                        "DownBlock2D"),
                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                      cross_attention_dim=768, attention_head_dim=8)


def make_weights(workdir: str) -> tuple[str, str]:
    """An SD1.5-layout checkpoint (UNet only, fp16 storage) and the same weights as a
    diffusers UNet folder."""
    ckpt = os.path.join(workdir, "sd15_random.safetensors")
    folder = os.path.join(workdir, "sd15_random_diffusers")
    if os.path.isfile(ckpt) and os.path.isdir(folder):
        return ckpt, folder
    from safetensors.torch import save_file
    from comfyui.models.convert import unet_to_diffusers
    from comfyui.models.unet import UNetModel
    torch.manual_seed(0)
    unet = UNetModel(**SD15_UNET)
    sd = {k: v.half().contiguous() for k, v in unet.state_dict().items()}
    del unet
    save_file({"model.diffusion_model." + k: v for k, v in sd.items()}, ckpt)
    from diffusers import UNet2DConditionModel
    mapping = unet_to_diffusers(SD15_UNET)
    with torch.device("meta"):
        d = UNet2DConditionModel(**SD15_DIFFUSERS)
    d.load_state_dict({dk: sd[lk] for dk, lk in mapping.items() if lk in sd}, strict=True, assign=True)
    d.save_pretrained(folder)
    return ckpt, folder


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_ours(args, ckpt: str, device: torch.device, dtype: torch.dtype) -> dict:
    from comfyui.models import memory
    from comfyui.models import sd as sdm
    from comfyui.nodes.builtin import sampling as S
    memory.configure(None, cpu=device.type == "cpu", highvram=device.type != "cpu",
                     fp32_unet=dtype == torch.float32, fp16_unet=dtype == torch.float16)
    t0 = time.perf_counter()
    model = sdm.load_checkpoint_guess_config(ckpt, output_vae=False, output_clip=False)[0]
    memory.load_models_gpu([model])
    if device.type == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(1)
    pos = [[torch.randn(1, 77, 768, generator=g), {}]]
    neg = [[torch.randn(1, 77, 768, generator=g), {}]]
    h = w = args.size // 8
    latent = {"samples": torch.zeros(args.batch, 4, h, w)}

    def sample(steps):
        with torch.inference_mode():
            return S.KSampler().sample(model, 0, steps, args.cfg, "euler", "normal", pos, neg, latent, 1.0)[0]

    sample(args.warmup)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = sample(args.steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"impl": "ours", "load_s": load_s, "s_per_step": dt / args.steps, "peak_bytes": peak_memory(device),
            "out_std": float(out["samples"].float().std())}


def run_diffusers(args, folder: str, device: torch.device, dtype: torch.dtype) -> dict:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    t0 = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(folder, torch_dtype=dtype).to(device).eval()
    if device.type == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   num_train_timesteps=1000, timestep_spacing="linspace", prediction_type="epsilon")
    pipe = StableDiffusionPipeline(vae=None, text_encoder=None, tokenizer=None, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(1, 77, 768, generator=g).to(device, dtype)
    neg = torch.randn(1, 77, 768, generator=g).to(device, dtype)

    def sample(steps):
        with torch.inference_mode():
            return pipe(prompt_embeds=pos, negative_prompt_embeds=neg, num_inference_steps=steps,
                        guidance_scale=args.cfg, height=args.size, width=args.size, num_images_per_prompt=args.batch,
                        output_type="latent", generator=torch.Generator().manual_seed(0)).images

    sample(args.warmup)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = sample(args.steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"impl": "diffusers", "load_s": load_s, "s_per_step": dt / args.steps, "peak_bytes": peak_memory(device),
            "out_std": float(out.float().std())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--cfg", type=float, default=8.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "comfyui_bench_sd15"))
    ap.add_argument("--impl", default="both", choices=["both", "ours", "diffusers"])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each implementation this many times, alternating, and keep its fastest run "
                         "(for noisy shared machines)")
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
             "auto": torch.float16 if device.type == "cuda" else torch.float32}[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    # the process settings of `comfyui --cpu` (the allocator policy), shared by both implementations
    from comfyui.process import configure_process
    configure_process(cpu=device.type == "cpu")
    os.makedirs(args.workdir, exist_ok=True)
    ckpt, folder = make_weights(args.workdir)
    if args.impl != "both":
        fn = run_ours if args.impl == "ours" else run_diffusers
        res = fn(args, ckpt if args.impl == "ours" else folder, device, dtype)
        print("RESULT " + json.dumps(res), flush=True)
        return
    best: dict[str, dict] = {}
    order = ("diffusers", "ours")
    for rep in range(max(1, args.repeat)):
        for impl in (order if rep % 2 == 0 else order[::-1]):
            cmd = [sys.executable, os.path.abspath(__file__), "--impl", impl] + \
                  [a for a in sys.argv[1:] if not a.startswith("--impl")]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{impl} run failed")
            r = json.loads(line[0][len("RESULT "):])
            if impl not in best or r["s_per_step"] < best[impl]["s_per_step"]:
                best[impl] = r
    results = [best["diffusers"], best["ours"]]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"SD1.5-shaped UNet, random weights, {args.size}x{args.size}, batch {args.batch}, {args.steps} steps, "
          f"euler, cfg {args.cfg}, {str(dtype).replace('torch.', '')}, {name}")
    print(f"{'impl':<10} {'s/step':>10} {'peak MiB':>10} {'load s':>8}")
    for r in results:
        print(f"{r['impl']:<10} {r['s_per_step']:>10.4f} {r['peak_bytes'] / 2**20:>10.0f} {r['load_s']:>8.2f}")
    d, o = results
    print(f"ours/diffusers time per step: {o['s_per_step'] / d['s_per_step']:.3f}  "
          f"peak memory: {o['peak_bytes'] / d['peak_bytes']:.3f}")


if __name__ == "__main__":
    main()
