"""Tiny random-weight Wan transformers built with the independent implementation (diffusers'
``WanTransformer3DModel``); ``native_sd`` gives them in the released files' layout with the
key map written here (diffusers' own converter goes the other way and must invert it)."""
from __future__ import annotations

import re

import torch

# dim 256 = 2 heads x 128 (the released head width); text features 64 wide
TINY = dict(dim=256, layers=2, ffn=512, text_dim=64, image_dim=96)


def diffusers_wan(seed: int = 0, i2v: bool = False, flf: bool = False, in_channels: int = 16,
                  out_channels: int = 16, **sizes):
    from diffusers import WanTransformer3DModel
    s = dict(TINY, **sizes)
    torch.manual_seed(seed)
    m = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=s["dim"] // 128, attention_head_dim=128,
        in_channels=in_channels, out_channels=out_channels, text_dim=s["text_dim"], freq_dim=256,
        ffn_dim=s["ffn"], num_layers=s["layers"], cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=1e-6, image_dim=s["image_dim"] if i2v else None, added_kv_proj_dim=s["dim"] if i2v else None,
        pos_embed_seq_len=2 * 257 if flf else None).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.ndim == 1 and "bias" not in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("scale_shift_table") or name.endswith("pos_embed"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
    return m


def diffusers_vace(seed: int = 0, layers: int = 4, vace_layers=(0, 2), vace_in: int = 96, **sizes):
    """A random diffusers WanVACETransformer3DModel (t2v base, control blocks after
    ``vace_layers``)."""
    from diffusers import WanVACETransformer3DModel
    s = dict(TINY, **sizes)
    torch.manual_seed(seed)
    m = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=s["dim"] // 128, attention_head_dim=128, in_channels=16,
        out_channels=16, text_dim=s["text_dim"], freq_dim=256, ffn_dim=s["ffn"], num_layers=layers,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, vace_layers=list(vace_layers),
        vace_in_channels=vace_in).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.ndim == 1 and "bias" not in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("scale_shift_table"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / p.shape[-1] ** 0.5 if p.ndim > 1 else 0.05))
    return m


# diffusers -> native, tried in order on each key (block-local names after the block prefix)
_RENAMES = [
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.image_embedder\.norm1\.", "img_emb.proj.0."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.0\.proj\.", "img_emb.proj.1."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.2\.", "img_emb.proj.3."),
    (r"^condition_embedder\.image_embedder\.norm2\.", "img_emb.proj.4."),
    (r"^condition_embedder\.image_embedder\.pos_embed$", "img_emb.emb_pos"),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^patch_embedding\.", "patch_embedding."),
    (r"^vace_patch_embedding\.", "vace_patch_embedding."),
]
_BLOCK = [
    ("attn1.", "self_attn."), ("attn2.", "cross_attn."),
    ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "o."),
    ("add_k_proj.", "k_img."), ("add_v_proj.", "v_img."), ("norm_added_k.", "norm_k_img."),
    ("ffn.net.0.proj.", "ffn.0."), ("ffn.net.2.", "ffn.2."),
    ("norm2.", "norm3."),  # diffusers' norm2 is the cross-attention norm (native norm3)
    ("scale_shift_table", "modulation"),
]


def native_key(key: str) -> str:
    m = re.match(r"^(vace_blocks|blocks)\.(\d+)\.(.*)$", key)
    if m:
        rest = m.group(3)
        if rest.startswith(("proj_in.", "proj_out.")):  # VACE blocks' input / output projections
            return f"{m.group(1)}.{m.group(2)}." + rest.replace("proj_in.", "before_proj.").replace("proj_out.", "after_proj.")
        for a, b in _BLOCK:
            if a in rest:
                rest = rest.replace(a, b, 1)
        return f"{m.group(1)}.{m.group(2)}.{rest}"
    for pattern, repl in _RENAMES:
        if re.search(pattern, key):
            return re.sub(pattern, repl, key)
    raise KeyError(key)


def native_sd(dm) -> dict[str, torch.Tensor]:
    return {native_key(k): v.detach().clone() for k, v in dm.state_dict().items()}


def fun_ref_conv(native: dict[str, torch.Tensor], channels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The Fun 2.2 reference-image patchifier (``ref_conv``: Conv2d, kernel = stride = 2) of
    ``channels`` latent channels, for the transformer whose native weights are ``native``."""
    dim = native["patch_embedding.weight"].shape[0]
    g = torch.Generator().manual_seed(seed)
    return {"ref_conv.weight": torch.randn(dim, channels, 2, 2, generator=g) * (0.5 / (channels * 4) ** 0.5),
            "ref_conv.bias": torch.randn(dim, generator=g) * 0.05}


def fun_camera_adapter(native: dict[str, torch.Tensor], channels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fun Camera's ``control_adapter``: a Conv2d (kernel = stride = 2) over the 8x
    pixel-unshuffled ``channels`` Plücker channels and one residual block of two 3x3 convs."""
    dim = native["patch_embedding.weight"].shape[0]
    g = torch.Generator().manual_seed(seed)
    shapes = {"conv": (dim, channels * 64, 2, 2), "residual_blocks.0.conv1": (dim, dim, 3, 3),
              "residual_blocks.0.conv2": (dim, dim, 3, 3)}
    out = {}
    for name, shape in shapes.items():
        fan_in = shape[1] * shape[2] * shape[3]
        out[f"control_adapter.{name}.weight"] = torch.randn(shape, generator=g) * (0.5 / fan_in ** 0.5)
        out[f"control_adapter.{name}.bias"] = torch.randn(dim, generator=g) * 0.05
    return out


# ----------------------------------------------------------------------------------- VAE
def wan_vae_sd(seed: int = 0, dim: int = 16, z_dim: int = 16) -> dict[str, torch.Tensor]:
    """Random weights of a tiny Wan 2.1 VAE in the released layout (gammas around 1)."""
    from comfyui.models.wan.vae import WanVAE
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WanVAE(dim=dim, z_dim=z_dim).state_dict().items()}
    out = {}
    for k, shape in shapes.items():
        if k.endswith("gamma"):
            out[k] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) > 1:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            out[k] = torch.randn(shape, generator=g) * (1.0 / fan_in ** 0.5)
        else:
            out[k] = torch.randn(shape, generator=g) * 0.05
    return out


def one_thread():
    """A module fixture body: torch on one thread (these tiny models are fastest that way and
    the machine's cores are shared), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------- UMT5
CORPUS = [
    "a cat walks across the street at night",
    "a red car drives along a mountain road",
    "the camera slowly pans over a quiet lake at sunrise",
    "two dogs play in the snow near a wooden cabin",
    "a woman in a yellow coat walks through a busy market",
    "waves crash against the rocks under a grey sky",
    "an old man reads a newspaper on a park bench",
    "a small boat sails past a lighthouse in the fog",
]


def spiece_model(vocab: int = 120) -> bytes:
    """A tiny SentencePiece unigram model trained now, with T5's special ids (pad 0, eos 1,
    unk 2, no bos): the serialised proto that UMT5 files carry as ``spiece_model``."""
    import io

    import sentencepiece as spm
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS * 4), model_writer=out, vocab_size=vocab,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, minloglevel=2)
    return out.getvalue()


def hf_umt5(seed: int = 0, vocab: int = 128, d_model: int = 32, heads: int = 2, d_ff: int = 48, layers: int = 2):
    """A random transformers UMT5EncoderModel (gated GELU, d_kv 64, a bias per block)."""
    from transformers import UMT5Config, UMT5EncoderModel
    torch.manual_seed(seed)
    cfg = UMT5Config(vocab_size=vocab, d_model=d_model, d_kv=64, d_ff=d_ff, num_layers=layers, num_heads=heads,
                     feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                     relative_attention_max_distance=128, dropout_rate=0.0)
    m = UMT5EncoderModel(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[-1] ** 0.5))
    return m


def umt5_file_sd(model, proto: bytes) -> dict[str, torch.Tensor]:
    """The file layout of ComfyUI's umt5 files: HF encoder keys plus ``spiece_model``."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    sd["spiece_model"] = torch.frombuffer(bytearray(proto), dtype=torch.uint8)
    return sd


def wan22_vae_sd(seed: int = 0, dim: int = 16, dec_dim: int = 24, z_dim: int = 8) -> dict[str, torch.Tensor]:
    """Random weights of a tiny Wan 2.2 VAE in the released layout."""
    from comfyui.models.wan.vae import WanVAE22
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WanVAE22(dim=dim, dec_dim=dec_dim, z_dim=z_dim).state_dict().items()}
    out = {}
    for k, shape in shapes.items():
        if k.endswith("gamma"):
            out[k] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) > 1:
            out[k] = torch.randn(shape, generator=g) / (torch.Size(shape[1:]).numel() ** 0.5)
        else:
            out[k] = torch.randn(shape, generator=g) * 0.05
    return out


def wan22_vae_to_diffusers(sd: dict[str, torch.Tensor], num_res_blocks: int = 2) -> dict[str, torch.Tensor]:
    """The released Wan 2.2 VAE layout -> diffusers' AutoencoderKLWan (is_residual) keys."""
    res = {"residual.0.gamma": "norm1.gamma", "residual.2.": "conv1.", "residual.3.gamma": "norm2.gamma",
           "residual.6.": "conv2.", "shortcut.": "conv_shortcut."}

    def resnet(rest: str) -> str:
        for a, b in res.items():
            if rest.startswith(a):
                return b + rest[len(a):]
        raise KeyError(rest)

    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] in ("conv1", "conv2"):
            nk = {"conv1": "quant_conv", "conv2": "post_quant_conv"}[parts[0]] + "." + ".".join(parts[1:])
        elif parts[1] == "conv1":
            nk = f"{parts[0]}.conv_in." + ".".join(parts[2:])
        elif parts[1] == "head":
            nk = f"{parts[0]}." + {"0": "norm_out", "2": "conv_out"}[parts[2]] + "." + ".".join(parts[3:])
        elif parts[1] == "middle":
            rest = ".".join(parts[3:])
            nk = (f"{parts[0]}.mid_block.attentions.0.{rest}" if parts[2] == "1"
                  else f"{parts[0]}.mid_block.resnets.{int(parts[2]) // 2}.{resnet(rest)}")
        else:  # encoder.downsamples.i.downsamples.j... / decoder.upsamples.i.upsamples.j...
            kind = "down" if parts[0] == "encoder" else "up"
            i, j, rest = parts[2], int(parts[4]), ".".join(parts[5:])
            blocks = num_res_blocks if kind == "down" else num_res_blocks + 1
            if j == blocks:
                nk = f"{parts[0]}.{kind}_blocks.{i}.{kind}sampler.{rest}"
            else:
                nk = f"{parts[0]}.{kind}_blocks.{i}.resnets.{j}.{resnet(rest)}"
        out[nk] = v
    return out
