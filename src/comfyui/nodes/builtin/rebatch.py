"""RebatchLatents (ComfyUI's ``nodes_rebatch`` group; RebatchImages lives in
``image_transform``): a list of latent batches regrouped into batches of ``batch_size``,
keeping noise masks and batch indices (seeds) with their latents."""
from __future__ import annotations

from ._lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")


def _entry(latent: dict, offset: int):
    """(samples, mask [B,1,8H,8W], batch indices) of one list entry."""
    samples = latent["samples"]
    b, h, w = samples.shape[0], samples.shape[-2], samples.shape[-1]
    if "noise_mask" in latent:
        mask = latent["noise_mask"]
        mask = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).float()
        if mask.shape[-2:] != (h * 8, w * 8):
            mask = F.interpolate(mask, size=(h * 8, w * 8), mode="bilinear")
        if mask.shape[0] < b:
            mask = mask.repeat((b - 1) // mask.shape[0] + 1, 1, 1, 1)[:b]
    else:
        mask = torch.ones((b, 1, h * 8, w * 8), device="cpu")
    inds = list(latent["batch_index"]) if "batch_index" in latent else [offset + i for i in range(b)]
    return samples, mask, inds


def _emit(out: list, samples, mask, inds):
    out.append({"samples": samples, "noise_mask": mask, "batch_index": inds})


class RebatchLatents:
    """Entries of different spatial sizes are never merged: a size change flushes the batch."""

    INPUT_IS_LIST = True
    OUTPUT_IS_LIST = (True,)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latents": ("LATENT",),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "rebatch"
    CATEGORY = "latent/batch"

    def rebatch(self, latents, batch_size):
        batch_size = batch_size[0]
        out: list = []
        cur = None  # (samples, mask, inds)
        processed = 0
        for latent in latents:
            nxt = _entry(latent, processed)
            processed += len(nxt[2])
            if cur is None:
                cur = nxt
            elif nxt[0].shape[-2:] != cur[0].shape[-2:]:
                _emit(out, cur[0][:batch_size], cur[1][:batch_size], cur[2][:batch_size])
                cur = nxt
            else:
                cur = (torch.cat((cur[0], nxt[0])), torch.cat((cur[1], nxt[1])), cur[2] + nxt[2])
            if cur[0].shape[0] > batch_size:
                n = cur[0].shape[0] // batch_size
                for i in range(n):
                    sl = slice(i * batch_size, (i + 1) * batch_size)
                    _emit(out, cur[0][sl], cur[1][sl], cur[2][sl])
                if n * batch_size < cur[0].shape[0]:
                    rest = slice(n * batch_size, None)
                    cur = (cur[0][rest], cur[1][rest], cur[2][rest])
                else:
                    cur = None
        if cur is not None:
            _emit(out, cur[0][:batch_size], cur[1][:batch_size], cur[2][:batch_size])
        for entry in out:  # an all-ones mask is no mask
            if entry["noise_mask"].mean() == 1.0:
                del entry["noise_mask"]
        return (out,)


NODE_CLASS_MAPPINGS = {"RebatchLatents": RebatchLatents}
NODE_DISPLAY_NAME_MAPPINGS = {"RebatchLatents": "Rebatch Latents"}
