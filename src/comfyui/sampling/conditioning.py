"""Conditioning -> model inputs, and classifier-free guidance.

A CONDITIONING value is a list of ``[tensor, dict]``; for sampling each entry becomes a
dict (``convert_cond``) with ``cross_attn`` (the tensor), the entry's options (``area``,
``mask``, ``strength``, ``start_percent``/``end_percent``, ``pooled_output``, ...) and
``model_conds``: the model's inputs as COND objects (``c_crossattn``, ``y``, ``c_concat``...)
built once per sampling by the model's ``extra_conds`` (or a default: the cross-attention
tensor, plus ``y`` from ``encode_adm`` when the model has one).

At every model call ``calc_cond_batch`` evaluates all active entries of the cond and the
uncond, batching the ones with compatible shapes into one ``apply_model`` call, and blends
them by area, mask and strength; ``cfg_function`` then combines cond and uncond.
"""
from __future__ import annotations

import math
import uuid
from typing import Any, Callable, NamedTuple

import torch

from comfyui.models.wrappers import APPLY_MODEL, CALC_COND_BATCH, call_wrapped


# ----------------------------------------------------------------------------------------
# COND wrappers (ComfyUI's comfy.conds)
# ----------------------------------------------------------------------------------------
def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    if tensor.shape[dim] > batch_size:
        return tensor.narrow(dim, 0, batch_size)
    if tensor.shape[dim] < batch_size:
        reps = [1] * tensor.ndim
        reps[dim] = math.ceil(batch_size / tensor.shape[dim])
        return tensor.repeat(reps).narrow(dim, 0, batch_size)
    return tensor


class CONDRegular:
    def __init__(self, cond: torch.Tensor):
        self.cond = cond

    def _copy_with(self, cond):
        return self.__class__(cond)

    def process_cond(self, batch_size, device=None, area=None, **kwargs):
        c = repeat_to_batch_size(self.cond, batch_size)
        return self._copy_with(c.to(device) if device is not None else c)

    def can_concat(self, other) -> bool:
        return self.cond.shape == other.cond.shape

    def concat(self, others):
        return torch.cat([self.cond] + [o.cond for o in others])

    def size(self):
        return list(self.cond.size())


class CONDNoiseShape(CONDRegular):
    """Spatial conditioning (e.g. inpainting ``c_concat``), cropped to the area."""

    def process_cond(self, batch_size, device=None, area=None, **kwargs):
        data = self.cond
        if area is not None:
            dims = len(area) // 2
            for i in range(dims):
                data = data.narrow(i + 2, area[i + dims], area[i])
        data = repeat_to_batch_size(data, batch_size)
        return self._copy_with(data.to(device) if device is not None else data)


class CONDCrossAttn(CONDRegular):
    """Token sequences along dim 1 (the context [B,L,D], or its per-token attention bias
    [B,L]); different lengths batch together by repetition up to their lcm."""

    def can_concat(self, other) -> bool:
        s1, s2 = self.cond.shape, other.cond.shape
        if s1 != s2:
            if s1[0] != s2[0] or s1[2:] != s2[2:]:
                return False
            lcm = math.lcm(s1[1], s2[1])
            if lcm // min(s1[1], s2[1]) > 4:
                return False
        return True

    def concat(self, others):
        conds = [self.cond] + [o.cond for o in others]
        max_len = conds[0].shape[1]
        for c in conds[1:]:
            max_len = math.lcm(max_len, c.shape[1])
        out = []
        for c in conds:
            if c.shape[1] < max_len:
                c = c.repeat(1, max_len // c.shape[1], *([1] * (c.ndim - 2)))
            out.append(c)
        return torch.cat(out)


class CONDConstant(CONDRegular):
    def process_cond(self, batch_size, device=None, area=None, **kwargs):
        return self._copy_with(self.cond)

    def can_concat(self, other) -> bool:
        return self.cond == other.cond

    def concat(self, others):
        return self.cond

    def size(self):
        return [1]


class CONDList(CONDRegular):
    """A list of tensors (e.g. Flux Kontext's reference latents), each repeated to the batch;
    entries batch together when their lists have the same shapes."""

    def process_cond(self, batch_size, device=None, area=None, **kwargs):
        return self._copy_with([repeat_to_batch_size(c, batch_size).to(device) if device is not None
                                else repeat_to_batch_size(c, batch_size) for c in self.cond])

    def can_concat(self, other) -> bool:
        return len(self.cond) == len(other.cond) and all(
            a.shape == b.shape for a, b in zip(self.cond, other.cond))

    def concat(self, others):
        return [torch.cat([c] + [o.cond[i] for o in others]) for i, c in enumerate(self.cond)]

    def size(self):
        return [1, sum(c.numel() for c in self.cond)]


def wrap_model_cond(name: str, value: Any):
    """Model-cond values may be COND objects or raw tensors (wrapped by name)."""
    if hasattr(value, "process_cond"):
        return value
    if isinstance(value, list) and value and all(isinstance(v, torch.Tensor) for v in value):
        return CONDList(value)
    if not isinstance(value, torch.Tensor):
        return CONDConstant(value)
    if name in ("c_crossattn", "cross_attn_bias", "crossattn_controlnet"):
        return CONDCrossAttn(value)
    if name == "c_concat":
        return CONDNoiseShape(value)
    return CONDRegular(value)


# ----------------------------------------------------------------------------------------
# preparing conds for a sampling run
# ----------------------------------------------------------------------------------------
def convert_cond(cond: list) -> list[dict]:
    out = []
    for c in cond:
        temp = dict(c[1])
        model_conds = dict(temp.get("model_conds", {}))
        if c[0] is not None:
            temp["cross_attn"] = c[0]
        temp["model_conds"] = model_conds
        temp["uuid"] = uuid.uuid4()
        out.append(temp)
    return out


def get_mask_aabb(masks: torch.Tensor):
    if masks.numel() == 0:
        return torch.zeros((0, 4), device=masks.device, dtype=torch.int), torch.zeros((0,), dtype=torch.bool)
    b = masks.shape[0]
    boxes = torch.zeros((b, 4), device=masks.device, dtype=torch.int)
    is_empty = torch.zeros((b,), device=masks.device, dtype=torch.bool)
    for i in range(b):
        mask = masks[i]
        if mask.numel() == 0:
            continue
        if torch.max(mask != 0) == False:  # noqa: E712
            is_empty[i] = True
            continue
        y, x = torch.where(mask)
        boxes[i, 0] = torch.min(x)
        boxes[i, 1] = torch.min(y)
        boxes[i, 2] = torch.max(x)
        boxes[i, 3] = torch.max(y)
    return boxes, is_empty


def resolve_areas_and_cond_masks(conditions: list[dict], dims: tuple, device) -> None:
    """Turn percentage areas into latent units and resize masks to the latent size."""
    for i in range(len(conditions)):
        c = conditions[i]
        if "area" in c:
            area = c["area"]
            if area[0] == "percentage":
                a = area[1:]
                half = len(a) // 2
                new_area = tuple(max(1, round(a[d] * dims[d])) for d in range(len(dims)))
                new_area += tuple(round(a[d + half] * dims[d]) for d in range(len(dims)))
                c = dict(c)
                c["area"] = new_area
                conditions[i] = c
        if "mask" in c:
            mask = c["mask"].to(device=device)
            modified = dict(c)
            if len(dims) == 3 and mask.ndim == 3:
                # video latent: the mask's frames are stretched over the T latent frames (one frame: all)
                mask = mask.reshape((1, 1) + tuple(mask.shape))
                if tuple(mask.shape[2:]) != tuple(dims):
                    mask = torch.nn.functional.interpolate(mask.float(), size=tuple(dims), mode="trilinear")
                mask = mask.squeeze(1)
            if mask.ndim == len(dims):
                mask = mask.unsqueeze(0)
            if tuple(mask.shape[1:]) != tuple(dims):
                if mask.ndim == 4 and len(dims) == 3:  # [B,T,H,W]: spatial resize of each frame
                    mask = torch.nn.functional.interpolate(mask.float(), size=tuple(dims[-2:]), mode="bilinear",
                                                           align_corners=False)
                else:
                    mask = torch.nn.functional.interpolate(mask.unsqueeze(1).float(), size=tuple(dims),
                                                           mode="bilinear", align_corners=False).squeeze(1)
            if modified.get("set_area_to_bounds", False):
                bounds = torch.max(torch.abs(mask), dim=0).values.unsqueeze(0)
                boxes, is_empty = get_mask_aabb(bounds)
                if is_empty[0]:
                    modified["area"] = (8, 8, 0, 0)
                else:
                    box = boxes[0]
                    h, w = int(box[3] - box[1] + 1), int(box[2] - box[0] + 1)
                    modified["area"] = (max(8, h), max(8, w), int(box[1]), int(box[0]))
            modified["mask"] = mask
            conditions[i] = modified


def calculate_start_end_timesteps(model_sampling, conds: list[dict]) -> None:
    for t in range(len(conds)):
        x = conds[t]
        if "clip_start_percent" in x:  # text encoded for one range of a CLIP hook schedule
            start = model_sampling.percent_to_sigma(max(x["clip_start_percent"], x.get("start_percent", 0.0)))
            end = model_sampling.percent_to_sigma(min(x["clip_end_percent"], x.get("end_percent", 1.0)))
        else:
            start = model_sampling.percent_to_sigma(x["start_percent"]) if "start_percent" in x else None
            end = model_sampling.percent_to_sigma(x["end_percent"]) if "end_percent" in x else None
        if start is not None or end is not None:
            n = dict(x)
            if start is not None:
                n["timestep_start"] = start
            if end is not None:
                n["timestep_end"] = end
            conds[t] = n


def _default_extra_conds(model, params: dict) -> dict:
    out = {}
    cross = params.get("cross_attn")
    if cross is not None:
        out["c_crossattn"] = CONDCrossAttn(cross)
    encode_adm = getattr(model, "encode_adm", None)
    if encode_adm is not None:
        y = encode_adm(**params)
        if y is not None:
            out["y"] = CONDRegular(y)
    return out


def encode_model_conds(model, conds: list[dict], noise: torch.Tensor, device, prompt_type: str, **kwargs) -> list[dict]:
    """Build each entry's ``model_conds`` with the model's ``extra_conds``."""
    fn: Callable | None = getattr(model, "extra_conds", None)
    for t in range(len(conds)):
        x = conds[t]
        params = dict(x)
        params["device"] = device
        params["noise"] = noise
        params["width"] = params.get("width", noise.shape[3] * 8 if noise.ndim >= 4 else None)
        params["height"] = params.get("height", noise.shape[2] * 8)
        params["prompt_type"] = params.get("prompt_type", prompt_type)
        for k, v in kwargs.items():
            params.setdefault(k, v)
        out = fn(**params) if fn is not None else _default_extra_conds(model, params)
        x = dict(x)
        model_conds = dict(x["model_conds"])
        for k, v in (out or {}).items():
            if v is not None:
                model_conds[k] = wrap_model_cond(k, v)
        x["model_conds"] = model_conds
        conds[t] = x
    return conds


def _area_inside(a, area_cmp) -> bool:
    dims = len(a) // 2
    for i in range(dims):
        if a[i] + a[i + dims] > area_cmp[i] + area_cmp[i + dims]:
            return False
        if a[i + dims] < area_cmp[i + dims]:
            return False
    return True


def create_cond_with_same_area_if_none(conds: list[dict], c: dict) -> None:
    """Give the opposite side an entry covering the same area (so area blends balance)."""
    if "area" not in c:
        return
    c_area = c["area"]
    smallest = None
    for x in conds:
        if "area" in x:
            a = x["area"]
            if _area_inside(c_area, a):
                if smallest is None or "area" not in smallest:
                    smallest = x
                elif math.prod(smallest["area"][:len(a) // 2]) > math.prod(a[:len(a) // 2]):
                    smallest = x
        elif smallest is None:
            smallest = x
    if smallest is None:
        return
    if "area" in smallest and tuple(smallest["area"]) == tuple(c_area):
        return
    out = dict(c)
    out["model_conds"] = dict(smallest["model_conds"])
    conds.append(out)


def apply_empty_x_to_equal_area(conds: list[dict], uncond: list[dict], name: str, fill: Callable) -> None:
    """Give area-less uncond entries the ``name`` objects (ControlNets, GLIGEN) of the
    area-less cond entries, so cond and uncond evaluate with the same control."""
    cond_objs = [x[name] for x in conds if "area" not in x and x.get(name) is not None]
    uncond_other = []
    for t, x in enumerate(uncond):
        if "area" in x:
            continue
        if x.get(name) is not None:
            return  # the uncond already has its own
        uncond_other.append((x, t))
    if not uncond_other:
        return
    for i in range(len(cond_objs)):
        o, t = uncond_other[i % len(uncond_other)]
        n = dict(o)
        n[name] = fill(cond_objs, i)
        if o.get(name) is not None:
            uncond.append(n)
        else:
            uncond[t] = n


def process_conds(model, noise, conds: dict[str, list], device, latent_image=None, denoise_mask=None, seed=None):
    for k in conds:
        conds[k] = conds[k][:]
        resolve_areas_and_cond_masks(conds[k], tuple(noise.shape[2:]), device)
    for k in conds:
        calculate_start_end_timesteps(model.model_sampling, conds[k])
    for k in conds:
        conds[k] = encode_model_conds(model, conds[k], noise, device, k, latent_image=latent_image,
                                      denoise_mask=denoise_mask, seed=seed)
    for k in conds:
        for c in list(conds[k]):
            for kk in conds:
                if k != kk:
                    create_cond_with_same_area_if_none(conds[kk], c)
    for k in conds:
        for c in conds[k]:
            for hook in (c["hooks"].hooks if c.get("hooks") is not None else []):
                hook.initialize_timesteps(model.model_sampling)
    for k in conds:
        for c in conds[k]:
            control = c.get("control")
            if control is not None and hasattr(control, "pre_run"):
                control.pre_run(model, lambda a: model.model_sampling.percent_to_sigma(a))
    if "positive" in conds:
        positive = conds["positive"]
        for k in conds:
            if k != "positive":
                apply_empty_x_to_equal_area([c for c in positive if c.get("control_apply_to_uncond", False)],
                                            conds[k], "control", lambda objs, i: objs[i])
                apply_empty_x_to_equal_area(positive, conds[k], "gligen", lambda objs, i: objs[i])
    return conds


# ----------------------------------------------------------------------------------------
# per-call evaluation
# ----------------------------------------------------------------------------------------
class CondObj(NamedTuple):
    input_x: torch.Tensor
    mult: torch.Tensor
    conditioning: dict
    area: list | None
    control: Any
    patches: Any
    uuid: Any
    hooks: Any = None


def get_area_and_mult(conds: dict, x_in: torch.Tensor, timestep_in: torch.Tensor) -> CondObj | None:
    dims = tuple(x_in.shape[2:])
    area = None
    strength = 1.0
    if "timestep_start" in conds and timestep_in[0] > conds["timestep_start"]:
        return None
    if "timestep_end" in conds and timestep_in[0] < conds["timestep_end"]:
        return None
    if "area" in conds:
        area = list(conds["area"])
    if "strength" in conds:
        strength = conds["strength"]
    input_x = x_in
    if area is not None:
        for i in range(len(dims)):
            area[i] = min(input_x.shape[i + 2] - area[len(dims) + i], area[i])
            input_x = input_x.narrow(i + 2, area[len(dims) + i], area[i])
    if "mask" in conds:
        mask_strength = conds.get("mask_strength", 1.0)
        mask = conds["mask"]
        assert tuple(mask.shape[1:]) == tuple(x_in.shape[2:])
        mask = mask[:input_x.shape[0]]
        if area is not None:
            for i in range(len(dims)):
                mask = mask.narrow(i + 1, area[len(dims) + i], area[i])
        mask = mask * mask_strength
        mask = mask.unsqueeze(1).repeat((input_x.shape[0] // mask.shape[0], input_x.shape[1]) + (1,) * len(dims))
        mask = mask.to(input_x.dtype)
    else:
        mask = torch.ones_like(input_x)
    mult = mask * strength
    if "mask" not in conds and area is not None:
        # an area's inner edges (those not on the latent's border) fade in over 8 latent pixels,
        # or a quarter of the area's size along that axis when that is less (ComfyUI's rule)
        for i in range(len(dims)):
            rr = min(8, mult.shape[2 + i] // 4)
            if area[len(dims) + i] != 0:
                for t in range(rr):
                    m = mult.narrow(i + 2, t, 1)
                    m *= (1.0 / rr) * (t + 1)
            if (area[i] + area[len(dims) + i]) < x_in.shape[i + 2]:
                for t in range(rr):
                    m = mult.narrow(i + 2, area[i] - 1 - t, 1)
                    m *= (1.0 / rr) * (t + 1)
    conditioning = {}
    for name, c in conds["model_conds"].items():
        conditioning[name] = c.process_cond(batch_size=x_in.shape[0], device=x_in.device, area=area)
    patches = None
    gligen = conds.get("gligen")
    if gligen is not None:  # ("position" | "empty", GLIGEN patcher, boxes): a middle_patch for the UNet
        gm = getattr(gligen[1], "model", gligen[1])
        if gligen[0] == "position":
            fn = gm.set_position(tuple(input_x.shape), gligen[2], input_x.device)
        else:
            fn = gm.set_empty(tuple(input_x.shape), input_x.device)
        patches = {"middle_patch": [fn]}
    return CondObj(input_x, mult, conditioning, area, conds.get("control"), patches, conds.get("uuid"),
                   conds.get("hooks"))


def can_concat_cond(c1: CondObj, c2: CondObj) -> bool:
    if c1.input_x.shape != c2.input_x.shape:
        return False
    if (c1.control is None) != (c2.control is None) or (c1.control is not None and c1.control is not c2.control):
        return False
    if c1.patches != c2.patches:
        return False
    if set(c1.conditioning) != set(c2.conditioning):
        return False
    return all(c1.conditioning[k].can_concat(c2.conditioning[k]) for k in c1.conditioning)


def cond_cat(c_list: list[dict]) -> dict:
    temp: dict[str, list] = {}
    for x in c_list:
        for k, v in x.items():
            temp.setdefault(k, []).append(v)
    return {k: v[0].concat(v[1:]) for k, v in temp.items()}


def _batch_limit(model, first_shape, n: int, device) -> int:
    mem_fn = getattr(model, "memory_required", None)
    if mem_fn is None or device is None or torch.device(device).type == "cpu":
        return n
    try:
        from comfyui.models import memory
        free = memory.get_free_memory(device)
    except Exception:
        return n
    for i in range(1, n + 1):
        amount = n // i
        shape = [amount * first_shape[0]] + list(first_shape)[1:]
        if mem_fn(shape) * 1.5 < free:
            return amount
    return 1


def calc_cond_batch(model, conds: list, x_in: torch.Tensor, timestep: torch.Tensor, model_options: dict) -> list:
    """Evaluate the model for each list of cond entries in ``conds`` (None = skip) and
    return one blended prediction per list (zeros where a list is None). With a context handler
    (ContextWindowsManual) on a long enough input, per window, blended."""
    handler = model_options.get("context_handler")
    if handler is not None and handler.should_use_context(x_in):
        return handler.execute(_calc_cond_batch_wrapped, model, conds, x_in, timestep, model_options)
    return _calc_cond_batch_wrapped(model, conds, x_in, timestep, model_options)


def _calc_cond_batch_wrapped(model, conds: list, x_in: torch.Tensor, timestep: torch.Tensor, model_options: dict):
    return call_wrapped(CALC_COND_BATCH, model_options.get("transformer_options"), _calc_cond_batch, None,
                        model, conds, x_in, timestep, model_options)


def _calc_cond_batch(model, conds: list, x_in: torch.Tensor, timestep: torch.Tensor, model_options: dict) -> list:
    out_conds = []
    out_counts = []
    all_to_run = []
    default_conds = []
    for i, cond in enumerate(conds):
        out_conds.append(torch.zeros_like(x_in))
        out_counts.append(torch.ones_like(x_in) * 1e-37)
        defaults = []
        for x in cond or []:
            if "default" in x:
                defaults.append(x)
                continue
            p = get_area_and_mult(x, x_in, timestep)
            if p is None:
                continue
            all_to_run.append((p, i))
        default_conds.append(defaults)
    if any(default_conds):
        all_to_run += _default_conds_to_run(all_to_run, default_conds, x_in, timestep)
    # conds with different hooks run with different weights: one group per HookGroup
    patcher = getattr(model, "current_patcher", None)
    use_hooks = patcher is not None and bool(getattr(patcher, "hook_patches", None))
    groups: dict[int, tuple[Any, list]] = {}
    for item in all_to_run:
        groups.setdefault(id(item[0].hooks), (item[0].hooks, []))[1].append(item)
    max_sigma = None
    for hooks, to_run in groups.values():
        if use_hooks:
            if hooks is not None:
                if max_sigma is None:
                    sample_sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
                    max_sigma = float(sample_sigmas.max()) if sample_sigmas is not None else float(timestep.max())
                for hook in hooks.hooks:
                    hook.hook_keyframe.prepare_current_keyframe(float(timestep[0]), max_sigma)
            patcher.apply_hooks(hooks)
        _run_batches(model, to_run, x_in, timestep, model_options, out_conds, out_counts)
    for i in range(len(out_conds)):
        out_conds[i] = out_conds[i] / out_counts[i]
    return out_conds


def _default_conds_to_run(to_run: list, default_conds: list[list[dict]], x_in: torch.Tensor, timestep) -> list:
    """Default conds (ConditioningSetDefaultCombine) fill what the other conds' masks and
    areas leave uncovered: their mult is 1 - the others' mults, clamped at 0."""
    remaining = [torch.ones_like(x_in) for _ in default_conds]
    for p, i in to_run:
        if not default_conds[i]:
            continue
        target = remaining[i]
        if p.area is not None:
            dims = len(p.area) // 2
            for d in range(dims):
                target = target.narrow(d + 2, p.area[d + dims], p.area[d])
        target -= p.mult
    out = []
    for i, defaults in enumerate(default_conds):
        if not defaults:
            continue
        mult = torch.relu(remaining[i])
        if torch.max(mult) == 0.0:
            continue
        for x in defaults:
            p = get_area_and_mult(x, x_in, timestep)
            if p is not None:
                out.append((p._replace(mult=mult), i))
    return out


def _run_batches(model, to_run: list, x_in: torch.Tensor, timestep, model_options: dict, out_conds: list,
                 out_counts: list) -> None:
    while to_run:
        first = to_run[0]
        first_shape = first[0].input_x.shape
        to_batch_temp = [x for x in range(len(to_run)) if can_concat_cond(to_run[x][0], first[0])]
        to_batch_temp.reverse()
        limit = _batch_limit(model, first_shape, len(to_batch_temp), x_in.device)
        to_batch = to_batch_temp[:max(1, limit)]
        input_x, mult, c, cond_or_uncond, uuids, area = [], [], [], [], [], []
        control = None
        patches = None
        for x in to_batch:
            p, idx = to_run.pop(x)
            patches = p.patches
            input_x.append(p.input_x)
            mult.append(p.mult)
            c.append(p.conditioning)
            area.append(p.area)
            cond_or_uncond.append(idx)
            uuids.append(p.uuid)
            control = p.control
        batch_chunks = len(cond_or_uncond)
        input_x = torch.cat(input_x)
        c = cond_cat(c)
        timestep_ = torch.cat([timestep] * batch_chunks)
        transformer_options = dict(model_options.get("transformer_options", {}))
        transformer_options["cond_or_uncond"] = cond_or_uncond[:]
        transformer_options["uuids"] = uuids[:]
        transformer_options["sigmas"] = timestep
        if patches is not None:
            merged = dict(transformer_options.get("patches", {}))
            for k, v in patches.items():
                merged[k] = list(merged.get(k, [])) + list(v)
            transformer_options["patches"] = merged
        c["transformer_options"] = transformer_options
        if control is not None and hasattr(control, "get_control"):
            c["control"] = control.get_control(input_x, timestep_, c, len(cond_or_uncond), transformer_options)
        if "model_function_wrapper" in model_options:
            output = model_options["model_function_wrapper"](
                model.apply_model, {"input": input_x, "timestep": timestep_, "c": c, "cond_or_uncond": cond_or_uncond})
        else:
            output = call_wrapped(APPLY_MODEL, transformer_options, model.apply_model, model, input_x, timestep_, **c)
        output = output.chunk(batch_chunks)
        for o in range(batch_chunks):
            ci = cond_or_uncond[o]
            a = area[o]
            if a is None:
                out_conds[ci] += output[o] * mult[o]
                out_counts[ci] += mult[o]
            else:
                out_c = out_conds[ci]
                out_cts = out_counts[ci]
                dims = len(a) // 2
                for i in range(dims):
                    out_c = out_c.narrow(i + 2, a[i + dims], a[i])
                    out_cts = out_cts.narrow(i + 2, a[i + dims], a[i])
                out_c += output[o] * mult[o]
                out_cts += mult[o]


def cfg_function(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options=None, cond=None, uncond=None):
    model_options = model_options or {}
    if "sampler_cfg_function" in model_options:
        args = {"cond": x - cond_pred, "uncond": x - uncond_pred, "cond_scale": cond_scale, "timestep": timestep,
                "input": x, "sigma": timestep, "cond_denoised": cond_pred, "uncond_denoised": uncond_pred,
                "model": model, "model_options": model_options}
        cfg_result = x - model_options["sampler_cfg_function"](args)
    else:
        cfg_result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        args = {"denoised": cfg_result, "cond": cond, "uncond": uncond, "cond_scale": cond_scale, "model": model,
                "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": timestep,
                "model_options": model_options, "input": x}
        cfg_result = fn(args)
    return cfg_result


def sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options=None, seed=None):
    """One guided denoiser evaluation. cfg == 1 skips the uncond pass (unless a sampler
    asked for it with ``disable_cfg1_optimization``)."""
    model_options = model_options or {}
    if math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False):
        uncond_ = None
    else:
        uncond_ = uncond
    conds = [cond, uncond_]
    if "sampler_calc_cond_batch_function" in model_options:
        args = {"conds": conds, "input": x, "sigma": timestep, "model": model, "model_options": model_options}
        out = model_options["sampler_calc_cond_batch_function"](args)
    else:
        out = calc_cond_batch(model, conds, x, timestep, model_options)
    for fn in model_options.get("sampler_pre_cfg_function", []):
        args = {"conds": conds, "conds_out": out, "cond_scale": cond_scale, "timestep": timestep, "input": x,
                "sigma": timestep, "model": model, "model_options": model_options}
        out = fn(args)
    return cfg_function(model, out[0], out[1], cond_scale, x, timestep, model_options=model_options,
                        cond=cond, uncond=uncond_)
