"""Lumina Image 2.0 nodes (ComfyUI's nodes_lumina2): the system-prompt text encode and
RenormCFG."""
from __future__ import annotations

from ._lazy import lazy

torch = lazy("torch")

SYSTEM_PROMPT = {
    "superior": "You are an assistant designed to generate superior images with the superior "
                "degree of image-text alignment based on textual prompts or user prompts.",
    "alignment": "You are an assistant designed to generate high-quality images with the "
                 "highest degree of image-text alignment based on textual prompts.",
}
SYSTEM_PROMPT_TIP = ("Lumina2 provide two types of system prompts:"
                     "Superior: " + SYSTEM_PROMPT["superior"] + " Alignment: " + SYSTEM_PROMPT["alignment"])


class CLIPTextEncodeLumina2:
    """Encodes ``"{system prompt} <Prompt Start> {user prompt}"``, the form Lumina 2 was trained on."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "system_prompt": (list(SYSTEM_PROMPT), {"tooltip": SYSTEM_PROMPT_TIP}),
            "user_prompt": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                       "tooltip": "The text to be encoded."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."})}}

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("A conditioning containing the embedded text used to guide the diffusion model.",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"
    DESCRIPTION = ("Encodes a system prompt and a user prompt using a CLIP model into an embedding that can be "
                   "used to guide the diffusion model towards generating specific images.")

    def encode(self, clip, user_prompt, system_prompt):
        if clip is None:
            raise RuntimeError("ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node "
                               "your checkpoint does not contain a valid clip or text encoder model.")
        prompt = f"{SYSTEM_PROMPT[system_prompt]} <Prompt Start> {user_prompt}"
        return (clip.encode_from_tokens_scheduled(clip.tokenize(prompt)),)


class RenormCFG:
    """CFG whose guided prediction is scaled back when its norm exceeds ``renorm_cfg`` times the
    conditional one's; at sigma >= ``cfg_trunc`` the conditional prediction alone is used."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "cfg_trunc": ("FLOAT", {"default": 100, "min": 0.0, "max": 100.0, "step": 0.01}),
                             "renorm_cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    def patch(self, model, cfg_trunc, renorm_cfg):
        network = model.model.diffusion_model
        in_channels = getattr(network, "in_channels", None) or getattr(network, "cfg", {}).get("in_channels")

        def renorm(args):
            cond, uncond, scale = args["cond_denoised"], args["uncond_denoised"], args["cond_scale"]
            c = in_channels or cond.shape[1]
            cond_eps, rest = cond[:, :c], cond[:, c:]
            if args["timestep"][0] < cfg_trunc:
                eps = uncond[:, :c] + scale * (cond_eps - uncond[:, :c])
                if float(renorm_cfg) > 0.0:
                    dims = tuple(range(1, cond_eps.ndim))
                    max_norm = torch.linalg.vector_norm(cond_eps, dim=dims, keepdim=True) * float(renorm_cfg)
                    norm = torch.linalg.vector_norm(eps, dim=dims, keepdim=True)
                    eps = torch.where(norm >= max_norm, eps * (max_norm / norm), eps)  # per image
            else:
                eps = cond_eps
            return args["input"] - torch.cat([eps, rest], dim=1)

        m = model.clone()
        m.set_model_sampler_cfg_function(renorm)
        return (m,)


NODE_CLASS_MAPPINGS = {"CLIPTextEncodeLumina2": CLIPTextEncodeLumina2, "RenormCFG": RenormCFG}
NODE_DISPLAY_NAME_MAPPINGS = {"CLIPTextEncodeLumina2": "CLIP Text Encode for Lumina2"}
