"""Self-attention patches of the SD UNet: Self-Attention Guidance (ComfyUI's nodes_sag; Hong et
al. 2023), Token Merging (nodes_tomesd; Bolya & Hoffman 2023) and HyperTile (nodes_hypertile).
They use the UNet's ``attn1_patch`` (before the q/k/v projections), ``attn1_output_patch``
(after ``to_out``) and ``patches_replace["attn1"]`` hooks. ToMe and HyperTile draw their random
choices from torch's global generator, as upstream does (a seeded run repeats)."""
from __future__ import annotations

import math

from ._lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")


# ----------------------------------------------------------------------------------------
# Self-Attention Guidance
# ----------------------------------------------------------------------------------------
def attention_with_scores(q, k, v, heads: int):
    """Scaled dot-product attention that also returns the softmaxed scores
    [B*heads, Lq, Lk] (batch-major), computed in float32."""
    b, lq, inner = q.shape
    d = inner // heads
    qh, kh, vh = (t.reshape(b, t.shape[1], heads, d).transpose(1, 2) for t in (q, k, v))
    scores = (qh.float() @ kh.float().transpose(-1, -2) * d ** -0.5).softmax(dim=-1)
    out = (scores.to(v.dtype) @ vh).transpose(1, 2).reshape(b, lq, inner)
    return out, scores.reshape(b * heads, lq, k.shape[1])


def gaussian_blur(x, kernel_size: int, sigma: float):
    """Separable Gaussian blur per channel with reflected borders."""
    half = (kernel_size - 1) / 2
    pos = torch.linspace(-half, half, kernel_size)
    k1 = torch.exp(-0.5 * (pos / sigma) ** 2)
    k1 = (k1 / k1.sum()).to(device=x.device, dtype=x.dtype)
    kernel = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), kernel, groups=x.shape[1])


def _token_rows(tokens: int, aspect: float) -> int:
    """The number of token rows of a ``tokens``-long flattened map whose height / width is
    ``aspect``: the divisor of ``tokens`` nearest to sqrt(aspect * tokens)."""
    guess = round(math.sqrt(aspect * tokens))
    divisors = [d for d in range(1, tokens + 1) if tokens % d == 0]
    return min(divisors, key=lambda d: (abs(d - guess), -d))


def sag_degrade(x0, scores, sigma: float, threshold: float = 1.0):
    """``x0`` blurred where the middle block's self-attention concentrates: the tokens whose
    received attention (mean over heads, summed over queries) exceeds ``threshold``."""
    b, _, lh, lw = x0.shape
    tokens = scores.shape[-1]
    received = scores.reshape(b, -1, tokens, tokens).mean(1).sum(1)
    rows = _token_rows(tokens, lh / lw)
    mask = (received > threshold).reshape(b, 1, rows, tokens // rows).to(x0.dtype)
    mask = F.interpolate(mask, (lh, lw))
    if sigma <= 0:
        return x0
    return gaussian_blur(x0, 9, sigma) * mask + x0 * (1 - mask)


class SelfAttentionGuidance:
    """Records the uncond pass's middle-block self-attention, blurs the uncond prediction where
    that attention is high, runs the model on the blurred image re-noised, and adds
    scale * (blurred - its prediction) to the guided result."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "scale": ("FLOAT", {"default": 0.5, "min": -2.0, "max": 5.0, "step": 0.01}),
                             "blur_sigma": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 10.0, "step": 0.1})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True

    def patch(self, model, scale, blur_sigma):
        from comfyui.models.stable_diffusion.unet import attention
        from comfyui.sampling.conditioning import calc_cond_batch

        recorded = {}

        def attn_and_record(q, k, v, extra_options):
            heads = extra_options["n_heads"]
            chunks = extra_options.get("cond_or_uncond") or [0]
            if 1 not in chunks:
                return attention(q, k, v, heads)
            out, scores = attention_with_scores(q, k, v, heads)
            per_chunk = heads * (q.shape[0] // len(chunks))
            i = chunks.index(1)
            recorded["scores"] = scores[per_chunk * i:per_chunk * (i + 1)]
            return out

        def post_cfg_function(args):
            cfg_result = args["denoised"]
            scores = recorded.pop("scores", None)
            if scores is None or args["uncond"] is None or min(cfg_result.shape[2:]) <= 4:
                return cfg_result  # no uncond pass, or too small to pad the blur
            uncond_pred, x = args["uncond_denoised"], args["input"]
            degraded = sag_degrade(uncond_pred, scores, blur_sigma)
            (sag,) = calc_cond_batch(args["model"], [args["uncond"]], degraded + x - uncond_pred, args["sigma"],
                                     args["model_options"])
            return cfg_result + (degraded - sag) * scale

        m = model.clone()
        m.set_model_sampler_post_cfg_function(post_cfg_function, disable_cfg1_optimization=True)
        m.set_model_attn1_replace(attn_and_record, "middle", 0, 0)
        return (m,)


# ----------------------------------------------------------------------------------------
# Token Merging
# ----------------------------------------------------------------------------------------
def bipartite_soft_matching(metric, w: int, h: int, sx: int, sy: int, r: int):
    """ToMe's random 2-D bipartite matching: in each sy x sx cell one random token is a
    destination, the others sources; the ``r`` sources most similar (cosine) to a destination
    are averaged into it. Returns (merge, unmerge) for [B, h*w, C] tensors."""
    b, n, _ = metric.shape
    if r <= 0 or w == 1 or h == 1:
        return (lambda x: x), (lambda x: x)
    dev = metric.device
    with torch.no_grad():
        hsy, wsx = h // sy, w // sx
        pick = torch.randint(sy * sx, size=(hsy, wsx, 1), device=dev)
        cells = torch.zeros(hsy, wsx, sy * sx, device=dev, dtype=torch.int64)
        cells.scatter_(2, pick, -torch.ones_like(pick))
        grid = torch.zeros(h, w, device=dev, dtype=torch.int64)  # -1 = destination; uncovered rim: sources
        grid[:hsy * sy, :wsx * sx] = cells.view(hsy, wsx, sy, sx).transpose(1, 2).reshape(hsy * sy, wsx * sx)
        order = grid.reshape(1, -1, 1).argsort(dim=1)  # destinations first (stable order within each)
        n_dst = hsy * wsx
        src_ids, dst_ids = order[:, n_dst:, :], order[:, :n_dst, :]

        def split(x):
            c = x.shape[-1]
            return (torch.gather(x, 1, src_ids.expand(b, n - n_dst, c)),
                    torch.gather(x, 1, dst_ids.expand(b, n_dst, c)))

        a, d = split(metric / metric.norm(dim=-1, keepdim=True))
        r = min(a.shape[1], r)
        best, best_dst = (a @ d.transpose(-1, -2)).max(dim=-1)
        ranked = best.argsort(dim=-1, descending=True)[..., None]
        kept, merged = ranked[..., r:, :], ranked[..., :r, :]
        merged_dst = torch.gather(best_dst[..., None], -2, merged)

    def merge(x, mode: str = "mean"):
        src, dst = split(x)
        bb, ns, c = src.shape
        keep = torch.gather(src, -2, kept.expand(bb, ns - r, c))
        moving = torch.gather(src, -2, merged.expand(bb, r, c))
        dst = dst.scatter_reduce(-2, merged_dst.expand(bb, r, c), moving, reduce=mode)
        return torch.cat([keep, dst], dim=1)

    def unmerge(x):
        n_kept = kept.shape[1]
        keep, dst = x[..., :n_kept, :], x[..., n_kept:, :]
        c = keep.shape[-1]
        out = torch.zeros(b, n, c, device=x.device, dtype=x.dtype)
        src_per_batch = src_ids.expand(b, n - n_dst, 1)
        out.scatter_(-2, dst_ids.expand(b, n_dst, c), dst)
        out.scatter_(-2, torch.gather(src_per_batch, 1, kept).expand(b, n_kept, c), keep)
        out.scatter_(-2, torch.gather(src_per_batch, 1, merged).expand(b, r, c),
                     torch.gather(dst, -2, merged_dst.expand(b, r, c)))
        return out

    return merge, unmerge


def tome_functions(x, ratio: float, original_shape):
    """Merge / unmerge for the tokens ``x`` of a transformer at the latent's full resolution
    (ToMe leaves the coarser levels alone), merging ``ratio`` of them with 2x2 cells."""
    _, _, oh, ow = original_shape
    downsample = int(math.ceil(math.sqrt((oh * ow) // x.shape[1])))
    if downsample > 1:
        return (lambda y: y), (lambda y: y)
    return bipartite_soft_matching(x, ow, oh, 2, 2, int(x.shape[1] * ratio))


class TomePatchModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "ratio": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "model_patches/unet"

    def patch(self, model, ratio):
        state = {}

        def merge_queries(q, k, v, extra_options):  # queries merged; keys and values keep all tokens
            merge, state["unmerge"] = tome_functions(q, ratio, extra_options["original_shape"])
            return merge(q), k, v

        def unmerge_output(out, extra_options):
            return state.pop("unmerge")(out)

        m = model.clone()
        m.set_model_attn1_patch(merge_queries)
        m.set_model_attn1_output_patch(unmerge_output)
        return (m,)


# ----------------------------------------------------------------------------------------
# HyperTile
# ----------------------------------------------------------------------------------------
def random_divisor(value: int, min_value: int, max_options: int = 1) -> int:
    """``value // d`` for one of the (up to ``max_options``) smallest divisors d of ``value``
    that are >= ``min_value`` (clamped to value), chosen at random: a number of tiles."""
    min_value = min(min_value, value)
    divisors = [d for d in range(min_value, value + 1) if value % d == 0]
    counts = [value // d for d in divisors[:max_options]]
    idx = torch.randint(low=0, high=len(counts) - 1, size=(1,)).item() if len(counts) > 1 else 0
    return counts[idx]


class HyperTile:
    """Self-attention runs per tile of about ``tile_size`` pixels (the tiles are folded into the
    batch), on the transformers of the first ``max_depth`` + 1 resolution levels. Queries, keys
    and values are all tiled, as in HyperTile itself (upstream's node tiles only the queries;
    its attention then reads the keys in row strips of the same length)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "tile_size": ("INT", {"default": 256, "min": 1, "max": 2048}),
                             "swap_size": ("INT", {"default": 2, "min": 1, "max": 128}),
                             "max_depth": ("INT", {"default": 0, "min": 0, "max": 10}),
                             "scale_depth": ("BOOLEAN", {"default": False})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "model_patches/unet"

    def patch(self, model, tile_size, swap_size, max_depth, scale_depth):
        latent_tile = max(32, tile_size) // 8
        state = {}

        def tile_in(q, k, v, extra_options):
            shape = extra_options["original_shape"]
            sizes = [(shape[-2] / 2 ** i) * (shape[-1] / 2 ** i) for i in range(max_depth + 1)]
            tokens = q.shape[1]
            if tokens not in sizes:
                return q, k, v
            aspect = shape[-1] / shape[-2]
            h, w = round(math.sqrt(tokens / aspect)), round(math.sqrt(tokens * aspect))
            factor = 2 ** sizes.index(tokens) if scale_depth else 1
            nh = random_divisor(h, latent_tile * factor, swap_size)
            nw = random_divisor(w, latent_tile * factor, swap_size)
            if nh * nw > 1:
                th, tw = h // nh, w // nw

                def tile(t):  # [b, (nh th nw tw), c] -> [(b nh nw), (th tw), c]
                    b, _, c = t.shape
                    return t.reshape(b, nh, th, nw, tw, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, th * tw, c)

                q, k, v = tile(q), tile(k), tile(v)
                state["tiles"] = (nh, nw, th, tw)
            return q, k, v

        def tile_out(out, extra_options):
            tiles = state.pop("tiles", None)
            if tiles is None:
                return out
            nh, nw, th, tw = tiles
            c = out.shape[-1]
            b = out.shape[0] // (nh * nw)
            return out.reshape(b, nh, nw, th, tw, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * th * nw * tw, c)

        m = model.clone()
        m.set_model_attn1_patch(tile_in)
        m.set_model_attn1_output_patch(tile_out)
        return (m,)


NODE_CLASS_MAPPINGS = {
    "SelfAttentionGuidance": SelfAttentionGuidance,
    "TomePatchModel": TomePatchModel,
    "HyperTile": HyperTile,
}
NODE_DISPLAY_NAME_MAPPINGS = {"SelfAttentionGuidance": "Self-Attention Guidance"}
