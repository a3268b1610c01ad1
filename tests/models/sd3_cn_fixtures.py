"""Tiny random-weight SD3 ControlNets made by the independent implementation (diffusers'
``SD3ControlNetModel``), and the same weights in the file layouts upstream loads:

* SD3.5 large (Stability's ``sd3.5_large_controlnet_*.safetensors``): image-only blocks in
  native names, diffusers-named embedders, no patch embedding, a ``control_type`` scalar. The
  key map is written here (diffusers' converter script reads the real file's 19 blocks);
* SD3 diffusers (the ``SD3ControlNetModel`` state dict as saved).
"""
from __future__ import annotations

import torch


def _randomize(m: torch.nn.Module, seed: int) -> torch.nn.Module:
    # diffusers zero-initialises the hint embedding and the output Linears: draw every weight
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
        for name, b in m.named_buffers():
            if name.endswith("pos_embed"):
                b.add_(0.1 * torch.randn(b.shape, generator=g))
    return m.eval()


def diffusers_sd35_controlnet(depth: int, layers: int, pooled: int, seed: int = 0, extra_channels: int = 0):
    """The SD3.5 large ControlNet's diffusers form (as diffusers' converter builds it)."""
    from diffusers import SD3ControlNetModel
    torch.manual_seed(seed)
    m = SD3ControlNetModel(patch_size=2, in_channels=16, num_layers=layers, attention_head_dim=64,
                           num_attention_heads=depth, joint_attention_dim=None, caption_projection_dim=64 * depth,
                           pooled_projection_dim=pooled, out_channels=16, pos_embed_max_size=None,
                           pos_embed_type=None, use_pos_embed=False, force_zeros_for_pooled_projection=False,
                           extra_conditioning_channels=extra_channels)
    return _randomize(m, seed)


def diffusers_sd3_controlnet(depth: int, layers: int, context: int, pooled: int, pos: int, seed: int = 0,
                             qk_norm: bool = False, extra_channels: int = 0):
    """An SD3 (InstantX-style) ControlNet: joint blocks, learned position table."""
    from diffusers import SD3ControlNetModel
    torch.manual_seed(seed)
    m = SD3ControlNetModel(sample_size=pos * 2, patch_size=2, in_channels=16, num_layers=layers,
                           attention_head_dim=64, num_attention_heads=depth, joint_attention_dim=context,
                           caption_projection_dim=64 * depth, pooled_projection_dim=pooled, out_channels=16,
                           pos_embed_max_size=pos, qk_norm="rms_norm" if qk_norm else None,
                           extra_conditioning_channels=extra_channels)
    return _randomize(m, seed)


_SD35_BLOCK = {  # diffusers -> the Stability file
    "attn.to_out.0.": "attn.proj.",
    "ff.net.0.proj.": "mlp.fc1.",
    "ff.net.2.": "mlp.fc2.",
    "norm1.linear.": "adaLN_modulation.1.",
}


def sd35_file(cn, control_type: int) -> dict[str, torch.Tensor]:
    """The diffusers SD3.5 ControlNet's weights in Stability's file layout."""
    sd = {k: v.detach().clone() for k, v in cn.state_dict().items()}
    out: dict[str, torch.Tensor] = {"control_type": torch.tensor(float(control_type))}
    for k, v in sd.items():
        if not k.startswith("transformer_blocks."):
            out[k] = v
            continue
        i, rest = k.split(".", 2)[1:]
        if rest.startswith(("attn.to_q.", "attn.to_k.", "attn.to_v.")):
            if rest.startswith("attn.to_q."):
                suffix = rest.rsplit(".", 1)[1]
                out[f"transformer_blocks.{i}.attn.qkv.{suffix}"] = torch.cat(
                    [sd[f"transformer_blocks.{i}.attn.to_{p}.{suffix}"] for p in "qkv"], dim=0)
            continue
        for old, new in _SD35_BLOCK.items():
            if rest.startswith(old):
                out[f"transformer_blocks.{i}.{new}{rest[len(old):]}"] = v
                break
        else:
            raise KeyError(k)
    return out
