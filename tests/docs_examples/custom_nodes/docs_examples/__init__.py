"""The custom-node examples of the ComfyUI docs (seeds/docs/custom-nodes), as written there.

Method-only snippets are placed in a class; the only edit is the missing comma in the
AddNumbers example, which is a syntax error in the docs.
"""
import torch
from comfy_execution.graph import ExecutionBlocker


class InvertImageNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": { "image_in" : ("IMAGE", {}) },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image_out",)
    CATEGORY = "examples"
    FUNCTION = "invert"

    def invert(self, image_in):
        image_out = 1 - image_in
        return (image_out,)


class ImageSelector:
    CATEGORY = "example"
    @classmethod
    def INPUT_TYPES(s):
        return { "required":  { "images": ("IMAGE",),
                                "mode": (["brightest", "reddest", "greenest", "bluest"],)} }
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "choose_image"

    def choose_image(self, images, mode):
        batch_size = images.shape[0]
        brightness = list(torch.mean(image.flatten()).item() for image in images)
        if (mode=="brightest"):
            scores = brightness
        else:
            channel = 0 if mode=="reddest" else (1 if mode=="greenest" else 2)
            absolute = list(torch.mean(image[:,:,channel].flatten()).item() for image in images)
            scores = list( absolute[i]/(brightness[i]+1e-8) for i in range(batch_size) )
        best = scores.index(max(scores))
        result = images[best].unsqueeze(0)
        return (result,)


class LazyMixImages:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image1": ("IMAGE",{"lazy": True}),
                "image2": ("IMAGE",{"lazy": True}),
                "mask": ("MASK",),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mix"

    CATEGORY = "Examples"

    def check_lazy_status(self, mask, image1, image2):
        mask_min = mask.min()
        mask_max = mask.max()
        needed = []
        if image1 is None and (mask_min != 1.0 or mask_max != 1.0):
            needed.append("image1")
        if image2 is None and (mask_min != 0.0 or mask_max != 0.0):
            needed.append("image2")
        return needed

    # Not trying to handle different batch sizes here just to keep the demo simple
    def mix(self, mask, image1, image2):
        mask_min = mask.min()
        mask_max = mask.max()
        if mask_min == 0.0 and mask_max == 0.0:
            return (image1,)
        elif mask_min == 1.0 and mask_max == 1.0:
            return (image2,)

        result = image1 * (1. - mask) + image2 * mask,
        return (result[0],)


class SilentPassthrough:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"passthrough": ("IMAGE",), "blocked": ("BOOLEAN", {"default": False})}}
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "silent_passthrough"
    CATEGORY = "Examples"

    def silent_passthrough(self, passthrough, blocked):
        if blocked:
            return (ExecutionBlocker(None),)
        else:
            return (passthrough,)


class LoadWithoutVae:
    """The error-message ExecutionBlocker example (the VAE output of a model without one)."""
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "ckpt_name": ("STRING", {"default": "model.safetensors"})}}
    RETURN_TYPES = ("IMAGE", "IMAGE")
    FUNCTION = "load_checkpoint"
    CATEGORY = "Examples"

    def load_checkpoint(self, image, ckpt_name):
        model, clip, vae = image, None, None
        if vae is None:
            # This error is more useful than a "'NoneType' has no attribute" error
            # in a later node
            vae = ExecutionBlocker(f"No VAE contained in the loaded model {ckpt_name}")
        return (model, vae)


class ImageRebatch:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": { "images": ("IMAGE",),
                              "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}) }}
    RETURN_TYPES = ("IMAGE",)
    INPUT_IS_LIST = True
    OUTPUT_IS_LIST = (True, )
    FUNCTION = "rebatch"
    CATEGORY = "image/batch"

    def rebatch(self, images, batch_size):
        batch_size = batch_size[0]    # everything comes as a list, so batch_size is list[int]

        output_list = []
        all_images = []
        for img in images:                    # each img is a batch of images
            for i in range(img.shape[0]):     # each i is a single image
                all_images.append(img[i:i+1])

        for i in range(0, len(all_images), batch_size): # take batch_size chunks and turn each into a new batch
            output_list.append(torch.cat(all_images[i:i+batch_size], dim=0))  # will die horribly if the image batches had different width or height!

        return (output_list,)


class LoadAndMerge:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"checkpoint_path1": ("STRING",), "checkpoint_path2": ("STRING",),
                             "ratio": ("FLOAT", {"default": 0.5})}}
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_and_merge_checkpoints"
    CATEGORY = "Examples"

    def load_and_merge_checkpoints(self, checkpoint_path1, checkpoint_path2, ratio):
        from comfy_execution.graph_utils import GraphBuilder # Usually at the top of the file
        graph = GraphBuilder()
        checkpoint_node1 = graph.node("CheckpointLoaderSimple", checkpoint_path=checkpoint_path1)
        checkpoint_node2 = graph.node("CheckpointLoaderSimple", checkpoint_path=checkpoint_path2)
        merge_model_node = graph.node("ModelMergeSimple", model1=checkpoint_node1.out(0), model2=checkpoint_node2.out(0), ratio=ratio)
        merge_clip_node = graph.node("ClipMergeSimple", clip1=checkpoint_node1.out(1), clip2=checkpoint_node2.out(1), ratio=ratio)
        return {
            # Returning (MODEL, CLIP, VAE) outputs
            "result": (merge_model_node.out(0), merge_clip_node.out(0), checkpoint_node1.out(2)),
            "expand": graph.finalize(),
        }


class CustomNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": { "foo" : ("INT", {"min": 0, "max": 10}) },
        }
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "Examples"

    @classmethod
    def VALIDATE_INPUTS(cls, foo):
        # YOLO, anything goes!
        return True

    def run(self, foo):
        return (foo,)


class AddNumbers:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "input1" : ("INT,FLOAT", {"min": 0, "max": 1000}),
                "input2" : ("INT,FLOAT", {"min": 0, "max": 1000})
            },
        }
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "add"
    CATEGORY = "Examples"

    @classmethod
    def VALIDATE_INPUTS(cls, input_types):
        # The min and max of input1 and input2 are still validated because
        # we didn't take `input1` or `input2` as arguments
        if input_types["input1"] not in ("INT", "FLOAT"):
            return "input1 must be an INT or FLOAT type"
        if input_types["input2"] not in ("INT", "FLOAT"):
            return "input2 must be an INT or FLOAT type"
        return True

    def add(self, input1, input2):
        return (input1 + input2,)


class Wildcard:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": { "anything": ("*",{})},
        }

    @classmethod
    def VALIDATE_INPUTS(s, input_types):
        return True
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "Examples"

    def run(self, anything):
        return (type(anything).__name__,)


class ContainsAnyDict(dict):
    def __contains__(self, key):
        return True


class DynamicInputs:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {},
            "optional": ContainsAnyDict()
        }
    RETURN_TYPES = ("STRING",)
    FUNCTION = "main_method"
    CATEGORY = "Examples"

    def main_method(self, **kwargs):
        # the dynamically created input data will be in the dictionary kwargs
        return (",".join(sorted(kwargs)),)


class HiddenInputs:
    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {"my_cheese": ("CHEESE", {"forceInput":True})},
            "hidden": {
                "unique_id": "UNIQUE_ID",
                "prompt": "PROMPT",
                "extra_pnginfo": "EXTRA_PNGINFO",
            }
        }
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "Examples"

    def run(self, my_cheese, unique_id, prompt, extra_pnginfo):
        return {"ui": {"text": [f"{my_cheese}|{unique_id}|{prompt[unique_id]['class_type']}|{extra_pnginfo}"]}}


class MakeCheese:
    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"name": ("STRING", {"default": "gouda"})}}
    RETURN_TYPES = ("CHEESE",)
    FUNCTION = "run"
    CATEGORY = "Examples"

    def run(self, name):
        return ({"cheese": name},)


NODE_CLASS_MAPPINGS = {
    "InvertImageNode": InvertImageNode,
    "Image Selector": ImageSelector,
    "LazyMixImages": LazyMixImages,
    "SilentPassthrough": SilentPassthrough,
    "LoadWithoutVae": LoadWithoutVae,
    "ImageRebatch": ImageRebatch,
    "LoadAndMerge": LoadAndMerge,
    "CustomNode": CustomNode,
    "AddNumbers": AddNumbers,
    "Wildcard": Wildcard,
    "DynamicInputs": DynamicInputs,
    "HiddenInputs": HiddenInputs,
    "MakeCheese": MakeCheese,
}

NODE_DISPLAY_NAME_MAPPINGS = {"Image Selector": "Image Selector", "InvertImageNode": "Invert Image"}
