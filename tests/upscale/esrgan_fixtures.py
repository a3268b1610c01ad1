"""Tiny random ESRGAN-family upscalers written in the layouts users download.

``esrgan_old_sd`` (growth channels fixed at 32, as every ESRGAN release): the original ESRGAN release layout (``RRDB_ESRGAN_x4.pth``, ``4x-ESRGAN.pth``):
``model.0`` conv_first, ``model.1.sub.<i>.RDB<j>.conv<k>.0`` dense blocks, ``model.1.sub.<nb>``
trunk conv, ``model.3`` / ``model.6`` upsampling convs, ``model.8`` HR conv, ``model.10`` last.
``esrgan_new_sd``: the BasicSR / Real-ESRGAN layout of the same weights (``conv_first``,
``body.<i>.rdb<j>.conv<k>``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
``conv_last``), as shipped in ``params_ema``.
"""
from __future__ import annotations

import os

import torch


def _conv(g: torch.Generator, cout: int, cin: int, k: int = 3, std: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    std = std if std is not None else (1.0 / (cin * k * k)) ** 0.5
    return torch.randn(cout, cin, k, k, generator=g) * std, torch.randn(cout, generator=g) * 0.01


def esrgan_old_sd(nf: int = 8, nb: int = 2, gc: int = 32, scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    assert scale in (2, 4)
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def put(name: str, cout: int, cin: int, std: float | None = None) -> None:
        sd[name + ".weight"], sd[name + ".bias"] = _conv(g, cout, cin, std=std)

    put("model.0", nf, 3)
    for i in range(nb):
        for j in (1, 2, 3):
            for k in range(1, 6):
                cin = nf + (k - 1) * gc
                put(f"model.1.sub.{i}.RDB{j}.conv{k}.0", nf if k == 5 else gc, cin)
    put(f"model.1.sub.{nb}", nf, nf)
    idx = 3
    for _ in range(2 if scale == 4 else 1):
        put(f"model.{idx}", nf, nf)
        idx += 3
    put(f"model.{idx - 1}", nf, nf)      # HR conv
    put(f"model.{idx + 1}", 3, nf, std=0.05)  # conv_last
    return sd


def esrgan_new_sd(old: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an old-layout 4x ESRGAN state dict to the BasicSR (Real-ESRGAN) layout."""
    out: dict[str, torch.Tensor] = {}
    nb = max(int(k.split(".")[3]) for k in old if k.startswith("model.1.sub.") and ".RDB" in k) + 1
    fixed = {"model.0": "conv_first", f"model.1.sub.{nb}": "conv_body", "model.3": "conv_up1",
             "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    for k, v in old.items():
        base, param = k.rsplit(".", 1)
        if base in fixed:
            out[f"{fixed[base]}.{param}"] = v
        else:  # model.1.sub.I.RDBJ.convK.0
            p = base.split(".")
            out[f"body.{p[3]}.rdb{p[4][3:]}.{p[5]}.{param}"] = v
    return out


def write_esrgan(path: str, seed: int = 0, layout: str = "old", **kw) -> dict[str, torch.Tensor]:
    """Write a tiny ESRGAN (.pth pickled state dict / .safetensors); returns the old-layout sd."""
    sd = esrgan_old_sd(seed=seed, **kw)
    data = sd if layout == "old" else esrgan_new_sd(sd)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in data.items()}, path)
    elif layout == "realesrgan":
        torch.save({"params_ema": data}, path)
    else:
        torch.save(data, path)
    return sd
