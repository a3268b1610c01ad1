"""Training a LoRA on a diffusion model (upstream's ``TrainLoraNode``).

Every castable layer of the diffusion model gets a trainable adapter, run as one of the
layer's ``weight_function`` / ``bias_function`` (so the stored weights never change):
a low-rank ``up @ down`` delta for 2-D and larger weights (Linear, Conv), a full delta
(``.diff``) for 1-D weights (norm scales) and a bias delta (``.diff_b``). Like upstream,
``up`` starts Kaiming-uniform and ``down`` at zero (the delta starts at zero), alpha is 1.

Each step: a random batch of latents, a random sigma per sample drawn uniformly over the
model's schedule (``percent_to_sigma``), noise added the model's way (``noise_scaling``),
and the loss between the model's x0 prediction and the clean latent. The trained
parameters form a LoRA state dict in ComfyUI's layout (``diffusion_model.<module>.lora_up
.weight`` / ``.lora_down.weight`` / ``.alpha``, ``.diff``, ``.diff_b``), which
:func:`comfyui.models.lora.load_lora_for_models` (LoraLoader) reads.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import ops

OPTIMIZERS = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD,
              "RMSprop": torch.optim.RMSprop}
LOSSES = {"MSE": torch.nn.MSELoss, "L1": torch.nn.L1Loss, "Huber": torch.nn.HuberLoss,
          "SmoothL1": torch.nn.SmoothL1Loss}


class LoraDelta(torch.nn.Module):
    """``w + alpha / rank * (up @ down)`` reshaped to the weight (convs: ``down`` is flat)."""

    def __init__(self, up: torch.Tensor, down: torch.Tensor, alpha: float):
        super().__init__()
        self.up = torch.nn.Parameter(up)
        self.down = torch.nn.Parameter(down)
        self.alpha = float(alpha)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        delta = (self.up @ self.down).reshape(w.shape) * (self.alpha / self.down.shape[0])
        return (w + delta.to(w.dtype)).to(w.dtype)


class FullDelta(torch.nn.Module):
    """``w + diff`` (biases and 1-D weights)."""

    def __init__(self, diff: torch.Tensor):
        super().__init__()
        self.diff = torch.nn.Parameter(diff)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w + self.diff.to(w.dtype)


def build_adapters(base_model: torch.nn.Module, rank: int, dtype: torch.dtype, generator: torch.Generator,
                   existing: dict[str, torch.Tensor] | None = None) -> dict[str, tuple[torch.nn.Module, str]]:
    """{LoRA-file name of the module (``diffusion_model.x.y``): (adapter, "weight"|"bias")} for
    every castable layer of ``base_model.diffusion_model``; adapters found in ``existing`` (an
    earlier LoRA of the same layout) continue from its values."""
    # copies: tensors loaded under inference mode cannot become trainable parameters
    existing = {k: v.clone() for k, v in (existing or {}).items()}
    out: dict[str, tuple[torch.nn.Module, str]] = {}
    for name, m in ops.castable_modules(base_model.diffusion_model):
        key = f"diffusion_model.{name}"
        w = getattr(m, "weight", None)
        if w is not None:
            device = w.device
            if w.ndim >= 2:
                up_k, down_k = f"{key}.lora_up.weight", f"{key}.lora_down.weight"
                if up_k in existing and down_k in existing:
                    up = existing[up_k].flatten(1).float()
                    down = existing[down_k].flatten(1).float()
                    alpha = float(existing.get(f"{key}.alpha", torch.tensor(float(down.shape[0]))).item())
                else:
                    up = torch.empty(w.shape[0], rank)
                    torch.nn.init.kaiming_uniform_(up, a=math.sqrt(5), generator=generator)
                    down = torch.zeros(rank, w[0].numel())
                    alpha = 1.0
                out[key] = (LoraDelta(up.to(device, dtype), down.to(device, dtype), alpha), "weight")
            else:
                diff = existing.get(f"{key}.diff", torch.zeros(w.shape))
                out[key] = (FullDelta(diff.to(device, dtype)), "weight")
        b = getattr(m, "bias", None)
        if b is not None:
            diff = existing.get(f"{key}.diff_b", torch.zeros(b.shape))
            out[key + ".__bias"] = (FullDelta(diff.to(b.device, dtype)), "bias")
    return out


def lora_state_dict(adapters: dict[str, tuple[torch.nn.Module, str]], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The trained adapters in ComfyUI's LoRA layout (detached, on the CPU, in ``dtype``)."""
    sd: dict[str, torch.Tensor] = {}
    for key, (adapter, kind) in adapters.items():
        if kind == "bias":
            sd[key[:-len(".__bias")] + ".diff_b"] = adapter.diff.detach().to("cpu", dtype)
        elif isinstance(adapter, LoraDelta):
            sd[key + ".lora_up.weight"] = adapter.up.detach().to("cpu", dtype)
            sd[key + ".lora_down.weight"] = adapter.down.detach().to("cpu", dtype)
            sd[key + ".alpha"] = torch.tensor(adapter.alpha, dtype=dtype)
        else:
            sd[key + ".diff"] = adapter.diff.detach().to("cpu", dtype)
    return sd


def _checkpointed_blocks(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The highest modules below the containers (ModuleList / Sequential / ModuleDict) of the
    network: each one's forward becomes one gradient-checkpointed segment (upstream's choice)."""
    found = []
    for child in module.children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential, torch.nn.ModuleDict)):
            found.extend(_checkpointed_blocks(child))
        else:
            found.append(child)
    return found


def _checkpoint_forward(m: torch.nn.Module) -> None:
    original = m.forward
    m._forward_before_checkpointing = m.__dict__.get("forward")

    def forward(*args, **kwargs):
        return torch.utils.checkpoint.checkpoint(original, *args, use_reentrant=False, **kwargs)

    m.forward = forward


def _cond_batches(base_model, positive: list, latents: torch.Tensor, device) -> list[dict]:
    """Per image, its model inputs (``c_crossattn``, ``y`` ...) as COND objects of batch 1."""
    from comfyui.sampling.conditioning import wrap_model_cond
    per_image = []
    for i, (cross, extra) in enumerate(positive):
        noise = latents[i:i + 1]
        params = {**extra, "cross_attn": cross, "device": device, "noise": noise, "prompt_type": "positive"}
        params.setdefault("width", noise.shape[3] * 8)
        params.setdefault("height", noise.shape[2] * 8)
        conds = base_model.extra_conds(**params)
        per_image.append({k: wrap_model_cond(k, v).process_cond(1, device=device) for k, v in conds.items()})
    return per_image


def train_lora(patcher, latents: torch.Tensor, positive: list, *, steps: int, batch_size: int = 1,
               grad_accumulation_steps: int = 1, learning_rate: float = 5e-4, rank: int = 8,
               optimizer: str = "AdamW", loss_function: str = "MSE", seed: int = 0,
               training_dtype: torch.dtype = torch.float32, lora_dtype: torch.dtype = torch.float32,
               gradient_checkpointing: bool = True, existing: dict[str, torch.Tensor] | None = None,
               on_step: Callable[[int, int, float], None] | None = None) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train a LoRA for ``steps`` optimizer steps on ``latents`` (raw VAE latents [N,C,H,W])
    with ``positive`` (one conditioning entry per latent). ``on_step(step, total, loss)`` is
    called after every forward/backward pass (it may raise to stop). Returns the LoRA state
    dict and the loss of every pass."""
    from comfyui.models import memory
    from comfyui.sampling.conditioning import cond_cat

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; one of {sorted(OPTIMIZERS)}")
    if loss_function not in LOSSES:
        raise ValueError(f"unknown loss function {loss_function!r}; one of {sorted(LOSSES)}")
    memory.load_models_gpu([patcher], force_full_load=True)
    base = patcher.model
    device = patcher.load_device
    generator = torch.Generator().manual_seed(seed)
    total = steps * grad_accumulation_steps
    losses: list[float] = []
    touched = []
    wrapped = []
    with torch.inference_mode(False), torch.enable_grad():
        x0_all = base.process_latent_in(latents.float().clone()).to(device)
        conds = _cond_batches(base, positive, x0_all, device)
        adapters = build_adapters(base, rank, lora_dtype, generator, existing)
        params = [p for adapter, _ in adapters.values() for p in adapter.parameters()]
        opt = OPTIMIZERS[optimizer](params, lr=learning_rate)
        criterion = LOSSES[loss_function]()
        modules = dict(ops.castable_modules(base.diffusion_model))
        try:
            for key, (adapter, kind) in adapters.items():
                name = key[len("diffusion_model."):].removesuffix(".__bias")
                m = modules[name]
                (m.bias_function if kind == "bias" else m.weight_function).append(adapter)
                if not m.cast_weights:
                    m.cast_weights = True
                    touched.append(m)
            if gradient_checkpointing:
                wrapped = _checkpointed_blocks(base.diffusion_model)
                for m in wrapped:
                    _checkpoint_forward(m)
            ms = base.model_sampling
            n = x0_all.shape[0]
            autocast = training_dtype != torch.float32
            for step in range(total):
                idx = torch.randperm(n, generator=generator)[:batch_size].tolist()
                x0 = x0_all[idx]
                noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + step * 1000)).to(device)
                sigma = torch.tensor([ms.percent_to_sigma(torch.rand((), generator=generator).item())
                                      for _ in idx], device=device)
                xt = ms.noise_scaling(sigma, noise, x0, False)
                batch_conds = cond_cat([conds[i] for i in idx])
                with torch.autocast(torch.device(device).type, dtype=training_dtype, enabled=autocast):
                    pred = base.apply_model(xt, sigma, **batch_conds)
                    loss = criterion(pred.float(), x0)
                (loss / grad_accumulation_steps).backward()
                losses.append(loss.item())
                if (step + 1) % grad_accumulation_steps == 0:
                    opt.step()
                    opt.zero_grad()
                if on_step is not None:
                    on_step(step + 1, total, losses[-1])
        finally:
            for m in wrapped:
                before = m.__dict__.pop("_forward_before_checkpointing")
                if before is None:
                    del m.forward  # back to the class's forward
                else:
                    m.forward = before
            for key, (adapter, kind) in adapters.items():
                m = modules[key[len("diffusion_model."):].removesuffix(".__bias")]
                fns = m.bias_function if kind == "bias" else m.weight_function
                if adapter in fns:
                    fns.remove(adapter)
            for m in touched:
                m.cast_weights = False
    return lora_state_dict(adapters, lora_dtype), losses
