"""Build the tutorial examples: each workflow of the docs' basic and ControlNet tutorials in
API format (``<name>.api.json``) and as a UI workflow (``<name>.workflow.json``, frontend
format 0.4 with nodes / links / widgets_values), from one definition per tutorial.

    python examples/tutorials/build.py          # rewrites the JSON files next to this script

Widget order comes from the node definitions (``object_info``), the way the frontend lays
out widgets: required then optional inputs in ``input_order``; INT/FLOAT/STRING/BOOLEAN and
COMBO inputs are widgets, a seed is followed by its "control after generate" value and an
image upload combo by the upload widget's value. The tests convert every UI workflow back
with ``comfyui.workflows.convert`` and check it gives the API prompt.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))

HF = "https://huggingface.co"
SD15 = ("v1-5-pruned-emaonly-fp16.safetensors",
        f"{HF}/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors")
INPAINT = ("512-inpainting-ema.safetensors",
           f"{HF}/stabilityai/stable-diffusion-2-inpainting/resolve/main/512-inpainting-ema.safetensors")
VAE_MSE = ("vae-ft-mse-840000-ema-pruned.safetensors",
           f"{HF}/stabilityai/sd-vae-ft-mse-original/resolve/main/vae-ft-mse-840000-ema-pruned.safetensors")
CN = f"{HF}/comfyanonymous/ControlNet-v1-1_fp16_safetensors/resolve/main/"
SCRIBBLE = ("control_v11p_sd15_scribble_fp16.safetensors", CN + "control_v11p_sd15_scribble_fp16.safetensors")
OPENPOSE = ("control_v11p_sd15_openpose_fp16.safetensors", CN + "control_v11p_sd15_openpose_fp16.safetensors")
DEPTH = ("control_v11f1p_sd15_depth_fp16.safetensors", CN + "control_v11f1p_sd15_depth_fp16.safetensors")
T2I_DEPTH = ("t2iadapter_depth_sd15v2.pth", f"{HF}/TencentARC/T2I-Adapter/resolve/main/models/t2iadapter_depth_sd15v2.pth")
CIVITAI = "https://civitai.com/api/download/models/"
DREAMSHAPER = ("dreamshaper_8.safetensors", CIVITAI + "128713?type=Model&format=SafeTensor&size=pruned&fp=fp16")
BLINDBOX = ("blindbox_V1Mix.safetensors", CIVITAI + "32988?type=Model&format=SafeTensor&size=full&fp=fp16")
MOXIN = ("MoXinV1.safetensors", CIVITAI + "14856?type=Model&format=SafeTensor&size=full&fp=fp16")
ESRGAN = ("4x-ESRGAN.pth", "https://openmodeldb.info/models/4x-ESRGAN")
DREAMCREATION = ("dreamCreationVirtual3DECommerce_v10.safetensors", CIVITAI + "731340?type=Model&format=SafeTensor&size=full&fp=fp16")
ARCHITECTURE = ("architecturerealmix_v11.safetensors", CIVITAI + "431755?type=Model&format=SafeTensor&size=full&fp=fp16")
INTERIOR = ("interiordesignsuperm_v2.safetensors", CIVITAI + "93152?type=Model&format=SafeTensor&size=full&fp=fp16")
AWPAINTING = ("awpainting_v14.safetensors", CIVITAI + "624939?type=Model&format=SafeTensor&size=full&fp=fp16")
MAJICMIX = ("majicmixRealistic_v7.safetensors", CIVITAI + "176425?type=Model&format=SafeTensor&size=pruned&fp=fp16")
JAPANESE = ("japaneseStyleRealistic_v20.safetensors", CIVITAI + "85426?type=Model&format=SafeTensor&size=pruned&fp=fp16")

NEG = "text, watermark"


def L(node: str, slot: int = 0) -> list:
    return [node, slot]


class Workflow:
    """One tutorial graph: nodes added with literal widget values and links ``L(id, slot)``."""

    def __init__(self, name: str, tutorial: str, description: str):
        self.name = name
        self.tutorial = tutorial
        self.description = description
        self.nodes: list[dict[str, Any]] = []

    def add(self, nid: str, class_type: str, title: str | None = None, models: list[tuple] | None = None,
            folder: str | None = None, **inputs: Any) -> str:
        self.nodes.append({"id": nid, "class_type": class_type, "inputs": inputs, "title": title,
                           "models": models or [], "folder": folder})
        return nid

    def models(self) -> list[dict[str, str]]:
        out = []
        for n in self.nodes:
            for name, url in n["models"]:
                out.append({"name": name, "url": url, "directory": n["folder"]})
        return out

    # ------------------------------------------------------------------ API format
    def api(self) -> dict[str, Any]:
        out = {}
        for n in self.nodes:
            out[n["id"]] = {"class_type": n["class_type"], "inputs": dict(n["inputs"]),
                            "_meta": {"title": n["title"] or n["class_type"]}}
        return out

    # ------------------------------------------------------------------- UI format
    def ui(self, object_info: dict[str, Any]) -> dict[str, Any]:
        links: list[list] = []
        ui_nodes: list[dict[str, Any]] = []
        pending = []
        for order, n in enumerate(self.nodes):
            info = object_info[n["class_type"]]
            nid = int(n["id"])
            req = info["input"].get("required", {})
            opt = info["input"].get("optional", {})
            order_req = info.get("input_order", {}).get("required", list(req))
            order_opt = info.get("input_order", {}).get("optional", list(opt))
            sockets, widgets = [], []
            for name, spec, optional in [(k, req[k], False) for k in order_req] + [(k, opt[k], True) for k in order_opt]:
                typ = spec[0]
                opts = spec[1] if len(spec) > 1 else {}
                is_widget = isinstance(typ, list) or typ in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
                value = n["inputs"].get(name)
                linked = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
                if is_widget and not opts.get("forceInput"):
                    if linked:
                        raise ValueError(f"{self.name}: {n['class_type']}.{name}: linked widgets not used here")
                    if value is None and optional:
                        continue
                    widgets.append(value)
                    if typ == "INT" and (opts.get("control_after_generate") or name in ("seed", "noise_seed")):
                        widgets.append("fixed")
                    if opts.get("image_upload"):
                        widgets.append("image")
                    continue
                sock = {"name": name, "type": "COMBO" if isinstance(typ, list) else typ, "link": None}
                if linked:
                    pending.append((value, nid, len(sockets), sock))
                elif value is not None:
                    raise ValueError(f"{self.name}: {n['class_type']}.{name} needs a link")
                elif not optional:
                    raise ValueError(f"{self.name}: {n['class_type']}.{name} is not connected")
                sockets.append(sock)
            outputs = [{"name": name, "type": typ, "links": [], "slot_index": i}
                       for i, (typ, name) in enumerate(zip(info["output"], info.get("output_name", info["output"])))]
            props: dict[str, Any] = {"Node name for S&R": n["class_type"]}
            if n["models"]:
                props["models"] = [{"name": a, "url": b, "directory": n["folder"]} for a, b in n["models"]]
            node = {"id": nid, "type": n["class_type"], "pos": [100 + 320 * (order % 5), 100 + 260 * (order // 5)],
                    "size": [300, 200], "flags": {}, "order": order, "mode": 0, "inputs": sockets,
                    "outputs": outputs, "properties": props, "widgets_values": widgets}
            if n["title"]:
                node["title"] = n["title"]
            ui_nodes.append(node)
        by_id = {node["id"]: node for node in ui_nodes}
        for lid, ((src, slot), target, tslot, sock) in enumerate(pending, start=1):
            sid = int(src)
            typ = by_id[sid]["outputs"][slot]["type"]
            links.append([lid, sid, slot, target, tslot, typ])
            sock["link"] = lid
            by_id[sid]["outputs"][slot]["links"].append(lid)
        return {"last_node_id": max(by_id), "last_link_id": len(links), "nodes": ui_nodes, "links": links,
                "groups": [], "config": {}, "extra": {"ds": {"scale": 1.0, "offset": [0, 0]},
                                                        "tutorial": self.tutorial, "description": self.description},
                "version": 0.4}


# --------------------------------------------------------------------------- workflows
def _txt2img_core(w: Workflow, ckpt: tuple, pos: str, width: int = 512, height: int = 512, batch: int = 1,
                  seed: int = 156680208700286, steps: int = 20, cfg: float = 8.0, model=None, clip=None) -> None:
    w.add("4", "CheckpointLoaderSimple", "Load Checkpoint", [ckpt], "checkpoints", ckpt_name=ckpt[0])
    model = model or L("4", 0)
    clip = clip or L("4", 1)
    w.add("6", "CLIPTextEncode", "CLIP Text Encode (Positive Prompt)", text=pos, clip=clip)
    w.add("7", "CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text=NEG, clip=clip)
    w.add("5", "EmptyLatentImage", "Empty Latent Image", width=width, height=height, batch_size=batch)
    w.add("3", "KSampler", "KSampler", seed=seed, steps=steps, cfg=cfg, sampler_name="euler", scheduler="normal",
          denoise=1.0, model=model, positive=L("6"), negative=L("7"), latent_image=L("5"))
    w.add("8", "VAEDecode", "VAE Decode", samples=L("3"), vae=L("4", 2))


def text_to_image() -> Workflow:
    w = Workflow("text_to_image", "basic/text-to-image.md", "Load Checkpoint -> prompts -> KSampler -> VAE Decode -> Save Image")
    _txt2img_core(w, SD15, "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,")
    w.add("9", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("8"))
    return w


def image_to_image() -> Workflow:
    w = Workflow("image_to_image", "basic/image-to-image.md", "Load Image -> VAE Encode -> KSampler (denoise < 1)")
    w.add("14", "CheckpointLoaderSimple", "Load Checkpoint", [SD15], "checkpoints", ckpt_name=SD15[0])
    w.add("10", "LoadImage", "Load Image", image="example.png")
    w.add("12", "VAEEncode", "VAE Encode", pixels=L("10"), vae=L("14", 2))
    w.add("6", "CLIPTextEncode", "CLIP Text Encode (Positive Prompt)",
          text="photograph of victorian woman with wings, sky clouds, meadow grass", clip=L("14", 1))
    w.add("7", "CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text="watermark, text", clip=L("14", 1))
    w.add("3", "KSampler", "KSampler", seed=280823642470253, steps=20, cfg=8.0, sampler_name="dpmpp_2m",
          scheduler="normal", denoise=0.87, model=L("14"), positive=L("6"), negative=L("7"), latent_image=L("12"))
    w.add("8", "VAEDecode", "VAE Decode", samples=L("3"), vae=L("14", 2))
    w.add("9", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("8"))
    return w


def inpaint() -> Workflow:
    w = Workflow("inpaint", "basic/inpaint.md",
                 "The image's alpha channel (or a mask drawn in the mask editor) is the MASK of Load Image; "
                 "VAE Encode (for Inpainting) grows it and the 9-channel inpainting model repaints it")
    w.add("29", "CheckpointLoaderSimple", "Load Checkpoint", [INPAINT], "checkpoints", ckpt_name=INPAINT[0])
    w.add("20", "LoadImage", "Load Image", image="yosemite_inpaint_example.png")
    w.add("6", "CLIPTextEncode", "CLIP Text Encode (Positive Prompt)",
          text="closeup photograph of maine coon (cat:1.2) in the yosemite national park mountains nature",
          clip=L("29", 1))
    w.add("7", "CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text="watermark, text", clip=L("29", 1))
    w.add("26", "VAEEncodeForInpaint", "VAE Encode (for Inpainting)", grow_mask_by=6, pixels=L("20"),
          vae=L("29", 2), mask=L("20", 1))
    w.add("3", "KSampler", "KSampler", seed=1040111309094545, steps=20, cfg=8.0, sampler_name="uni_pc_bh2",
          scheduler="normal", denoise=1.0, model=L("29"), positive=L("6"), negative=L("7"), latent_image=L("26"))
    w.add("8", "VAEDecode", "VAE Decode", samples=L("3"), vae=L("29", 2))
    w.add("9", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("8"))
    return w


def outpaint() -> Workflow:
    w = Workflow("outpaint", "basic/outpaint.md",
                 "Pad Image for Outpainting builds the padded image and its mask; then an inpaint pass")
    w.add("29", "CheckpointLoaderSimple", "Load Checkpoint", [INPAINT], "checkpoints", ckpt_name=INPAINT[0])
    w.add("20", "LoadImage", "Load Image", image="yosemite_outpaint_example.png")
    w.add("30", "ImagePadForOutpaint", "Pad Image for Outpainting", left=0, top=128, right=0, bottom=128,
          feathering=40, image=L("20"))
    w.add("6", "CLIPTextEncode", "CLIP Text Encode (Positive Prompt)",
          text="outdoors in the yosemite national park mountains nature", clip=L("29", 1))
    w.add("7", "CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text="watermark, text", clip=L("29", 1))
    w.add("26", "VAEEncodeForInpaint", "VAE Encode (for Inpainting)", grow_mask_by=8, pixels=L("30"),
          vae=L("29", 2), mask=L("30", 1))
    w.add("3", "KSampler", "KSampler", seed=152545289528694, steps=20, cfg=8.0, sampler_name="uni_pc_bh2",
          scheduler="normal", denoise=1.0, model=L("29"), positive=L("6"), negative=L("7"), latent_image=L("26"))
    w.add("8", "VAEDecode", "VAE Decode", samples=L("3"), vae=L("29", 2))
    w.add("9", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("8"))
    return w


def upscale() -> Workflow:
    w = Workflow("upscale", "basic/upscale.md", "Load Upscale Model + Upscale Image (using Model) on a loaded image")
    w.add("1", "UpscaleModelLoader", "Load Upscale Model", [ESRGAN], "upscale_models", model_name=ESRGAN[0])
    w.add("2", "LoadImage", "Load Image", image="upscale_input.png")
    w.add("3", "ImageUpscaleWithModel", "Upscale Image (using Model)", upscale_model=L("1"), image=L("2"))
    w.add("4", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("3"))
    return w


def upscale_txt2img() -> Workflow:
    w = Workflow("upscale_txt2img", "basic/upscale.md", "Text to image, then the image upscaled 4x with the model")
    _txt2img_core(w, SD15, "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,")
    w.add("10", "UpscaleModelLoader", "Load Upscale Model", [ESRGAN], "upscale_models", model_name=ESRGAN[0])
    w.add("11", "ImageUpscaleWithModel", "Upscale Image (using Model)", upscale_model=L("10"), image=L("8"))
    w.add("9", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("11"))
    return w


def lora() -> Workflow:
    w = Workflow("lora", "basic/lora.md", "Load LoRA between the checkpoint and the prompts / KSampler")
    w.add("4", "CheckpointLoaderSimple", "Load Checkpoint", [DREAMSHAPER], "checkpoints", ckpt_name=DREAMSHAPER[0])
    w.add("10", "LoraLoader", "Load LoRA", [BLINDBOX], "loras", lora_name=BLINDBOX[0], strength_model=0.9,
          strength_clip=1.0, model=L("4"), clip=L("4", 1))
    w.add("6", "CLIPTextEncode", "CLIP Text Encode (Positive Prompt)",
          text="masterpiece, best quality, 1girl, chibi, full body, blindbox, smile", clip=L("10", 1))
    w.add("7", "CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text="(worst quality, low quality:1.4), text, watermark",
          clip=L("10", 1))
    w.add("5", "EmptyLatentImage", "Empty Latent Image", width=512, height=768, batch_size=1)
    w.add("3", "KSampler", "KSampler", seed=667478637401342, steps=25, cfg=7.0, sampler_name="dpmpp_2m",
          scheduler="karras", denoise=1.0, model=L("10"), positive=L("6"), negative=L("7"), latent_image=L("5"))
    w.add("8", "VAEDecode", "VAE Decode", samples=L("3"), vae=L("4", 2))
    w.add("9", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("8"))
    return w


def multiple_loras() -> Workflow:
    w = Workflow("multiple_loras", "basic/multiple-loras.md", "Two Load LoRA nodes chained")
    w.add("4", "CheckpointLoaderSimple", "Load Checkpoint", [DREAMSHAPER], "checkpoints", ckpt_name=DREAMSHAPER[0])
    w.add("10", "LoraLoader", "Load LoRA", [BLINDBOX], "loras", lora_name=BLINDBOX[0], strength_model=0.9,
          strength_clip=1.0, model=L("4"), clip=L("4", 1))
    w.add("11", "LoraLoader", "Load LoRA", [MOXIN], "loras", lora_name=MOXIN[0], strength_model=0.8,
          strength_clip=1.0, model=L("10"), clip=L("10", 1))
    w.add("6", "CLIPTextEncode", "CLIP Text Encode (Positive Prompt)",
          text="masterpiece, best quality, 1girl, chibi, blindbox, shuimobysim, ink painting", clip=L("11", 1))
    w.add("7", "CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text="(worst quality, low quality:1.4), text, watermark",
          clip=L("11", 1))
    w.add("5", "EmptyLatentImage", "Empty Latent Image", width=512, height=768, batch_size=1)
    w.add("3", "KSampler", "KSampler", seed=667478637401342, steps=25, cfg=7.0, sampler_name="dpmpp_2m",
          scheduler="karras", denoise=1.0, model=L("11"), positive=L("6"), negative=L("7"), latent_image=L("5"))
    w.add("8", "VAEDecode", "VAE Decode", samples=L("3"), vae=L("4", 2))
    w.add("9", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("8"))
    return w


def _cn_base(w: Workflow, ckpt: tuple, pos: str, neg: str, width: int, height: int, vae_loader: bool) -> tuple:
    w.add("4", "CheckpointLoaderSimple", "Load Checkpoint", [ckpt], "checkpoints", ckpt_name=ckpt[0])
    vae = L("4", 2)
    if vae_loader:
        w.add("20", "VAELoader", "Load VAE", [VAE_MSE], "vae", vae_name=VAE_MSE[0])
        vae = L("20")
    w.add("6", "CLIPTextEncode", "CLIP Text Encode (Positive Prompt)", text=pos, clip=L("4", 1))
    w.add("7", "CLIPTextEncode", "CLIP Text Encode (Negative Prompt)", text=neg, clip=L("4", 1))
    w.add("5", "EmptyLatentImage", "Empty Latent Image", width=width, height=height, batch_size=1)
    return vae


def _cn_tail(w: Workflow, positive: list, negative: list, vae: list, seed: int, steps: int = 20, cfg: float = 7.0,
             sampler: str = "dpmpp_2m", scheduler: str = "karras") -> None:
    w.add("3", "KSampler", "KSampler", seed=seed, steps=steps, cfg=cfg, sampler_name=sampler, scheduler=scheduler,
          denoise=1.0, model=L("4"), positive=positive, negative=negative, latent_image=L("5"))
    w.add("8", "VAEDecode", "VAE Decode", samples=L("3"), vae=vae)
    w.add("9", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("8"))


def controlnet() -> Workflow:
    w = Workflow("controlnet", "controlnet/controlnet.md", "Scribble ControlNet v1.1 with a separate VAE")
    vae = _cn_base(w, DREAMCREATION, "a cute toy robot on a desk, product photo, 3d render, soft light",
                   "lowres, bad anatomy, worst quality, low quality", 512, 768, True)
    w.add("11", "LoadImage", "Load Image", image="scribble_input.png")
    w.add("12", "ControlNetLoader", "Load ControlNet Model", [SCRIBBLE], "controlnet", control_net_name=SCRIBBLE[0])
    w.add("13", "ControlNetApplyAdvanced", "Apply ControlNet", strength=1.0, start_percent=0.0, end_percent=1.0,
          positive=L("6"), negative=L("7"), control_net=L("12"), image=L("11"), vae=vae)
    _cn_tail(w, L("13", 0), L("13", 1), vae, seed=879387420381204)
    return w


def depth_controlnet() -> Workflow:
    w = Workflow("depth_controlnet", "controlnet/depth-controlnet.md", "Depth ControlNet v1.1 on an architecture checkpoint")
    vae = _cn_base(w, ARCHITECTURE, "modern architecture, glass and concrete building, sunset, photorealistic",
                   "lowres, blurry, worst quality", 768, 512, False)
    w.add("11", "LoadImage", "Load Image", image="depth_input.png")
    w.add("12", "ControlNetLoader", "Load ControlNet Model", [DEPTH], "controlnet", control_net_name=DEPTH[0])
    w.add("13", "ControlNetApplyAdvanced", "Apply ControlNet", strength=1.0, start_percent=0.0, end_percent=1.0,
          positive=L("6"), negative=L("7"), control_net=L("12"), image=L("11"), vae=vae)
    _cn_tail(w, L("13", 0), L("13", 1), vae, seed=1062094823479238)
    return w


def depth_t2i_adapter() -> Workflow:
    w = Workflow("depth_t2i_adapter", "controlnet/depth-t2i-adapter.md",
                 "A T2I-Adapter (.pth) loaded by Load ControlNet Model and applied like a ControlNet")
    vae = _cn_base(w, INTERIOR, "interior design, living room, sofa, large windows, warm light, photorealistic",
                   "lowres, blurry, worst quality", 768, 512, False)
    w.add("11", "LoadImage", "Load Image", image="t2i_depth_input.png")
    w.add("12", "ControlNetLoader", "Load ControlNet Model", [T2I_DEPTH], "controlnet", control_net_name=T2I_DEPTH[0])
    w.add("13", "ControlNetApplyAdvanced", "Apply ControlNet", strength=1.0, start_percent=0.0, end_percent=1.0,
          positive=L("6"), negative=L("7"), control_net=L("12"), image=L("11"), vae=vae)
    _cn_tail(w, L("13", 0), L("13", 1), vae, seed=473294732832932)
    return w


def mixing_controlnets() -> Workflow:
    w = Workflow("mixing_controlnets", "controlnet/mixing-controlnets.md",
                 "Pose and scribble ControlNets chained on the same conditioning")
    vae = _cn_base(w, AWPAINTING, "A woman in red dress, a cat riding a scooter, detailed background, high quality",
                   "lowres, bad anatomy, worst quality, low quality", 768, 512, True)
    w.add("11", "LoadImage", "Load Image (pose)", image="mixing_pose_input.png")
    w.add("12", "ControlNetLoader", "Load ControlNet Model (openpose)", [OPENPOSE], "controlnet",
          control_net_name=OPENPOSE[0])
    w.add("13", "ControlNetApplyAdvanced", "Apply ControlNet (pose)", strength=1.0, start_percent=0.0,
          end_percent=1.0, positive=L("6"), negative=L("7"), control_net=L("12"), image=L("11"), vae=vae)
    w.add("14", "LoadImage", "Load Image (scribble)", image="mixing_scribble_input.png")
    w.add("15", "ControlNetLoader", "Load ControlNet Model (scribble)", [SCRIBBLE], "controlnet",
          control_net_name=SCRIBBLE[0])
    w.add("16", "ControlNetApplyAdvanced", "Apply ControlNet (scribble)", strength=1.0, start_percent=0.0,
          end_percent=1.0, positive=L("13", 0), negative=L("13", 1), control_net=L("15"), image=L("14"), vae=vae)
    _cn_tail(w, L("16", 0), L("16", 1), vae, seed=8566257)
    return w


def pose_controlnet_2_pass() -> Workflow:
    w = Workflow("pose_controlnet_2_pass", "controlnet/pose-controlnet-2-pass.md",
                 "Pass 1: pose ControlNet at 512x768; pass 2: Upscale Latent and a second checkpoint at denoise 0.5")
    vae = _cn_base(w, MAJICMIX, "a girl in a kimono standing in a japanese garden, best quality",
                   "lowres, bad anatomy, worst quality, low quality", 512, 768, True)
    w.add("11", "LoadImage", "Load Image", image="pose_input.png")
    w.add("12", "ControlNetLoader", "Load ControlNet Model", [OPENPOSE], "controlnet", control_net_name=OPENPOSE[0])
    w.add("13", "ControlNetApplyAdvanced", "Apply ControlNet", strength=1.0, start_percent=0.0, end_percent=1.0,
          positive=L("6"), negative=L("7"), control_net=L("12"), image=L("11"), vae=vae)
    w.add("3", "KSampler", "KSampler (pass 1)", seed=1045232521476219, steps=20, cfg=7.0, sampler_name="dpmpp_2m",
          scheduler="karras", denoise=1.0, model=L("4"), positive=L("13", 0), negative=L("13", 1),
          latent_image=L("5"))
    w.add("8", "VAEDecode", "VAE Decode (pass 1)", samples=L("3"), vae=vae)
    w.add("10", "PreviewImage", "Preview Image (pass 1)", images=L("8"))
    w.add("21", "LatentUpscale", "Upscale Latent", upscale_method="nearest-exact", width=768, height=1152,
          crop="disabled", samples=L("3"))
    w.add("22", "CheckpointLoaderSimple", "Load Checkpoint (pass 2)", [JAPANESE], "checkpoints", ckpt_name=JAPANESE[0])
    w.add("23", "CLIPTextEncode", "CLIP Text Encode (Positive, pass 2)",
          text="a girl in a kimono standing in a japanese garden, best quality, detailed", clip=L("22", 1))
    w.add("24", "CLIPTextEncode", "CLIP Text Encode (Negative, pass 2)",
          text="lowres, bad anatomy, worst quality, low quality", clip=L("22", 1))
    w.add("25", "KSampler", "KSampler (pass 2)", seed=432864234, steps=20, cfg=7.0, sampler_name="dpmpp_2m",
          scheduler="karras", denoise=0.5, model=L("22"), positive=L("23"), negative=L("24"), latent_image=L("21"))
    w.add("26", "VAEDecode", "VAE Decode (pass 2)", samples=L("25"), vae=vae)
    w.add("9", "SaveImage", "Save Image", filename_prefix="ComfyUI", images=L("26"))
    return w


WORKFLOWS = [text_to_image, image_to_image, inpaint, outpaint, upscale, upscale_txt2img, lora, multiple_loras,
             controlnet, depth_controlnet, depth_t2i_adapter, mixing_controlnets, pose_controlnet_2_pass]


def all_workflows() -> list[Workflow]:
    return [f() for f in WORKFLOWS]


def main() -> None:
    sys.path.insert(0, os.path.join(HERE, "..", "..", "src"))
    from comfyui.nodes.registry import NodeRegistry
    object_info = NodeRegistry.with_builtins().object_info()
    index = []
    for w in all_workflows():
        with open(os.path.join(HERE, f"{w.name}.api.json"), "w") as f:
            json.dump(w.api(), f, indent=2)
            f.write("\n")
        with open(os.path.join(HERE, f"{w.name}.workflow.json"), "w") as f:
            json.dump(w.ui(object_info), f, indent=2)
            f.write("\n")
        index.append({"name": w.name, "tutorial": w.tutorial, "description": w.description, "models": w.models()})
    with open(os.path.join(HERE, "index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
