"""LoraSave ("Extract and Save Lora", ComfyUI's nodes_lora_extract): a model difference (the
output of ModelMergeSubtract / CLIPMergeSubtract: weights = multiplier * (a - b)) written as a
LoRA file in ComfyUI's layout (``diffusion_model.<module>.lora_up/lora_down.weight``,
``text_encoders.<module>...``, ``.diff`` / ``.diff_b`` for 1-D weights and biases, fp16), which
LoraLoader applies to b to give back about a."""
from __future__ import annotations

import logging
import os

from ._lazy import lazy

torch = lazy("torch")
safetensors_torch = lazy("safetensors.torch")
paths = lazy("comfyui.paths")

log = logging.getLogger(__name__)

CLAMP_QUANTILE = 0.99
LORA_TYPES = ["standard", "full_diff"]


def extract_lora(diff, rank: int):
    """(up, down) with up @ down ~ ``diff`` by truncated SVD: up = U S, down = V^T over the
    ``rank`` largest singular values, both clamped to the 99th percentile of their values (as
    upstream, which keeps outliers from dominating fp16). A convolution's kernel goes to down;
    up is 1x1."""
    out_dim, in_dim = diff.shape[:2]
    rank = min(rank, in_dim, out_dim)
    u, s, vh = torch.linalg.svd(diff.float().reshape(out_dim, -1), full_matrices=False)
    up = u[:, :rank] * s[:rank]
    down = vh[:rank]
    hi = torch.quantile(torch.cat([up.flatten(), down.flatten()]), CLAMP_QUANTILE)
    up, down = up.clamp(-hi, hi), down.clamp(-hi, hi)
    if diff.ndim == 4:
        up = up.reshape(out_dim, rank, 1, 1)
        down = down.reshape(rank, in_dim, *diff.shape[2:])
    return up, down


def lora_entries(patcher, rank: int, prefix_model: str, prefix_lora: str, lora_type: str, bias_diff: bool) -> dict:
    """The LoRA tensors for every weight under ``prefix_model`` of ``patcher`` (its weights with
    its patches applied: the difference)."""
    out = {}
    device = patcher.load_device
    keys = [k for k in patcher.model_state_dict(filter_prefix=prefix_model) if k.startswith(prefix_model)]
    for key in keys:
        name = prefix_lora + key[len(prefix_model):]
        if key.endswith(".weight"):
            module = name[:-len(".weight")]
            diff = patcher.patched_weight(key, device=device)
            if lora_type == "full_diff":
                out[module + ".diff"] = diff
            elif diff.ndim < 2:
                if bias_diff:
                    out[module + ".diff"] = diff
            else:
                try:
                    out[module + ".lora_up.weight"], out[module + ".lora_down.weight"] = extract_lora(diff, rank)
                except (RuntimeError, torch.linalg.LinAlgError) as e:
                    log.warning("Could not generate lora weights for key %s (%s)", key, e)
        elif bias_diff and key.endswith(".bias"):
            out[name[:-len(".bias")] + ".diff_b"] = patcher.patched_weight(key, device=device)
    return {k: v.contiguous().half().cpu() for k, v in out.items()}


class LoraSave:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "filename_prefix": ("STRING", {"default": "loras/ComfyUI_extracted_lora"}),
            "rank": ("INT", {"default": 8, "min": 1, "max": 4096, "step": 1}),
            "lora_type": (LORA_TYPES,),
            "bias_diff": ("BOOLEAN", {"default": True})},
            "optional": {
                "model_diff": ("MODEL", {"tooltip": "The ModelSubtract output to be converted to a lora."}),
                "text_encoder_diff": ("CLIP", {"tooltip": "The CLIPSubtract output to be converted to a lora."})}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True

    def save(self, filename_prefix, rank, lora_type, bias_diff, model_diff=None, text_encoder_diff=None):
        if model_diff is None and text_encoder_diff is None:
            return {}
        folder, filename, counter, _, _ = paths.get_save_image_path(filename_prefix, paths.get_output_directory())
        tensors = {}
        if model_diff is not None:
            tensors.update(lora_entries(model_diff, rank, "diffusion_model.", "diffusion_model.", lora_type, bias_diff))
        if text_encoder_diff is not None:
            tensors.update(lora_entries(text_encoder_diff.patcher, rank, "", "text_encoders.", lora_type, bias_diff))
        os.makedirs(folder, exist_ok=True)
        safetensors_torch.save_file(tensors, os.path.join(folder, f"{filename}_{counter:05}_.safetensors"))
        return {}


NODE_CLASS_MAPPINGS = {"LoraSave": LoraSave}
NODE_DISPLAY_NAME_MAPPINGS = {"LoraSave": "Extract and Save Lora"}
