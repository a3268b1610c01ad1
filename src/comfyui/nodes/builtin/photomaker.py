"""PhotoMakerLoader and PhotoMakerEncode (ComfyUI's nodes_photomaker, SDXL): the trigger word
"photomaker" is taken out of the prompt and an ID image is fused into the embedding of the token
before it (the class word: "a photo of a man photomaker")."""
from __future__ import annotations

from comfyui import known_models, paths

from ._lazy import lazy

pm = lazy("comfyui.models.photomaker")

TRIGGER_WORD = "photomaker"


class PhotoMakerLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"photomaker_model_name": (known_models.filename_list("photomaker"),)}}

    RETURN_TYPES = ("PHOTOMAKER",)
    FUNCTION = "load_photomaker_model"
    CATEGORY = "_for_testing/photomaker"
    EXPERIMENTAL = True

    def load_photomaker_model(self, photomaker_model_name):
        return (pm.load_photomaker(paths.get_full_path_or_raise("photomaker", photomaker_model_name)),)


def remove_trigger(tokens: dict[str, list], trigger: dict[str, list[int]]) -> tuple[dict[str, list], int | None]:
    """The tokens with the first occurrence of the trigger's tokens removed (each chunk padded
    back to its length with its last token, as upstream) and the flat position of the token
    just before it, the class word that takes the image (None when the trigger is absent)."""
    out, position = {}, None
    for name, chunks in tokens.items():
        ids, found = trigger[name], None
        out[name] = []
        for c, chunk in enumerate(chunks):
            if found is None and ids:
                row = [t[0] for t in chunk]
                found = next((c * len(chunk) + i for i in range(1, len(row) - len(ids) + 1)
                              if row[i:i + len(ids)] == ids), None)
                if found is not None:
                    i = found - c * len(chunk)
                    chunk = chunk[:i] + chunk[i + len(ids):] + [chunk[-1]] * len(ids)
            out[name].append(chunk)
        if position is not None and found is not None and found - 1 != position:
            raise ValueError("the CLIP models of this CLIP split the prompt differently")
        position = found - 1 if found is not None else position
    return out, position


class PhotoMakerEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"photomaker": ("PHOTOMAKER",),
                             "image": ("IMAGE",),
                             "clip": ("CLIP",),
                             "text": ("STRING", {"multiline": True, "dynamicPrompts": True,
                                                 "default": "photograph of photomaker"})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_photomaker"
    CATEGORY = "_for_testing/photomaker"
    EXPERIMENTAL = True

    def apply_photomaker(self, photomaker, image, clip, text):
        # upstream removes the trigger by word id, which its tokenizer now numbers per weighted
        # segment, not per word; matching the trigger's tokens is what PhotoMaker's pipeline does
        trigger = {name: [t[0] for t in chunks[0] if t[2] != 0]
                   for name, chunks in clip.tokenize(TRIGGER_WORD, return_word_ids=True).items()}
        tokens, position = remove_trigger(clip.tokenize(text, return_word_ids=True), trigger)
        cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
        if position is not None:
            cond = photomaker.fuse(image, cond, position)
        return ([[cond, {"pooled_output": pooled}]],)


NODE_CLASS_MAPPINGS = {"PhotoMakerLoader": PhotoMakerLoader, "PhotoMakerEncode": PhotoMakerEncode}
