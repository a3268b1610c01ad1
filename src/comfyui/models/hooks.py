"""Hooks: weight patches (a LoRA, another checkpoint's weights) that apply only to the conds
they are attached to, with a strength that follows keyframes over the sampling steps
(upstream's ``comfy.hooks``, the part its nodes use: weight hooks).

A ``HookGroup`` is what HOOKS sockets carry; conds carry one under ``"hooks"``. While sampling,
``calc_cond_batch`` evaluates the conds of each hook group separately and, before each model
call, asks the model's patcher to switch its weights to that group
(:meth:`ModelPatcher.apply_hooks`): the hooked weights are the patched model's weights plus
``strength * keyframe strength * delta`` of each hook. Conds without hooks see the plain model.
A CLIP with hooks (SetClipHooks) encodes text with its hooked weights, optionally once per
keyframe range (``schedule_clip``), the conds then limited to that range of steps.
"""
from __future__ import annotations

import enum
import itertools
import math

import torch


class EnumWeightTarget(enum.Enum):
    Model = "model"
    Clip = "clip"


class _HookRef:
    """Identity shared by the clones of one hook (clones differ only in their keyframes)."""


class HookKeyframe:
    """From ``start_percent`` of the sampling on, the hook's strength is multiplied by
    ``strength``; the keyframe stays current for at least ``guarantee_steps`` model steps."""

    def __init__(self, strength: float, start_percent: float = 0.0, guarantee_steps: int = 1):
        self.strength = float(strength)
        self.start_percent = float(start_percent)
        self.start_t = 999999999.9  # as a sigma, set when sampling starts
        self.guarantee_steps = guarantee_steps

    def effective_guarantee_steps(self, max_sigma: float) -> int:
        # a keyframe that starts before this sampling's first step guarantees nothing
        return 0 if self.start_t > max_sigma else self.guarantee_steps

    def clone(self) -> HookKeyframe:
        c = HookKeyframe(self.strength, self.start_percent, self.guarantee_steps)
        c.start_t = self.start_t
        return c


class HookKeyframeGroup:
    """Keyframes sorted by start_percent and the one current at the running step."""

    def __init__(self):
        self.keyframes: list[HookKeyframe] = []
        self._current: HookKeyframe | None = None
        self._current_index = 0
        self._used_steps = 0
        self._curr_t = -1.0

    @property
    def strength(self) -> float:
        return self._current.strength if self._current is not None else 1.0

    def add(self, keyframe: HookKeyframe) -> None:
        self.keyframes.append(keyframe)
        self.keyframes.sort(key=lambda k: k.start_percent)  # stable: equal percents keep their order
        self._current = self.keyframes[0]

    def is_empty(self) -> bool:
        return not self.keyframes

    def clone(self) -> HookKeyframeGroup:
        c = HookKeyframeGroup()
        c.keyframes = [k.clone() for k in self.keyframes]
        c._current = c.keyframes[0] if c.keyframes else None
        return c

    def reset(self) -> None:
        self._current = self.keyframes[0] if self.keyframes else None
        self._current_index = 0
        self._used_steps = 0
        self._curr_t = -1.0

    def initialize_timesteps(self, model_sampling) -> None:
        for k in self.keyframes:
            k.start_t = float(model_sampling.percent_to_sigma(k.start_percent))

    def prepare_current_keyframe(self, curr_t: float, max_sigma: float) -> bool:
        """Move to the keyframe of step sigma ``curr_t``; True when the strength changed."""
        if self.is_empty() or curr_t == self._curr_t:
            return False
        before = self.strength
        if self._used_steps >= self._current.effective_guarantee_steps(max_sigma):
            for i in range(self._current_index + 1, len(self.keyframes)):
                k = self.keyframes[i]
                if k.start_t < curr_t:  # sigmas fall: this keyframe starts later
                    break
                self._current_index = i
                self._current = k
                self._used_steps = 0
                if k.effective_guarantee_steps(max_sigma) > 0:
                    break
        self._used_steps += 1
        self._curr_t = curr_t
        return before != self.strength


class WeightHook:
    """Weight patches with a model and a CLIP strength. ``weights``: a LoRA file's tensors
    (turned into patches for the target's keys when registered) or, with
    ``need_weight_init=False``, ready patches for the model (``weights``) and CLIP
    (``weights_clip``)."""

    def __init__(self, strength_model: float = 1.0, strength_clip: float = 1.0):
        self.hook_ref = _HookRef()
        self.hook_keyframe = HookKeyframeGroup()
        self.weights: dict | None = None
        self.weights_clip: dict | None = None
        self.need_weight_init = True
        self._strength_model = strength_model
        self._strength_clip = strength_clip

    @property
    def strength(self) -> float:
        return self.hook_keyframe.strength

    @property
    def strength_model(self) -> float:
        return self._strength_model * self.strength

    @property
    def strength_clip(self) -> float:
        return self._strength_clip * self.strength

    def base_strength(self, target: EnumWeightTarget) -> float:
        return self._strength_clip if target == EnumWeightTarget.Clip else self._strength_model

    def initialize_timesteps(self, model_sampling) -> None:
        self.hook_keyframe.reset()
        self.hook_keyframe.initialize_timesteps(model_sampling)

    def reset(self) -> None:
        self.hook_keyframe.reset()

    def patches_for(self, patcher, target: EnumWeightTarget) -> dict:
        """{target key: patch} of this hook for ``patcher``'s module."""
        from . import lora as lora_mod
        if not self.need_weight_init:
            return (self.weights_clip if target == EnumWeightTarget.Clip else self.weights) or {}
        if self.weights is None:
            return {}
        if target == EnumWeightTarget.Clip:
            key_map = lora_mod.model_lora_keys_clip(patcher.model, {})
        else:
            key_map = lora_mod.model_lora_keys_unet(patcher.model, {})
        return lora_mod.load_lora(lora_mod.convert_lora(self.weights), key_map, log_missing=False)

    def clone(self) -> WeightHook:
        c = WeightHook(self._strength_model, self._strength_clip)
        c.hook_ref = self.hook_ref
        c.hook_keyframe = self.hook_keyframe
        c.weights = self.weights
        c.weights_clip = self.weights_clip
        c.need_weight_init = self.need_weight_init
        return c

    def __eq__(self, other) -> bool:
        return isinstance(other, WeightHook) and other.hook_ref is self.hook_ref

    def __hash__(self) -> int:
        return hash(self.hook_ref)


class HookGroup:
    """The hooks a HOOKS socket carries (no two clones of one hook)."""

    def __init__(self):
        self.hooks: list[WeightHook] = []

    def __len__(self) -> int:
        return len(self.hooks)

    def add(self, hook: WeightHook) -> None:
        if hook not in self.hooks:
            self.hooks.append(hook)

    def contains(self, hook: WeightHook) -> bool:
        return hook in self.hooks

    def clone(self) -> HookGroup:
        c = HookGroup()
        for h in self.hooks:
            c.add(h.clone())
        return c

    def clone_and_combine(self, other: HookGroup | None) -> HookGroup:
        c = self.clone()
        if other is not None:
            for h in other.hooks:
                c.add(h.clone())
        return c

    def set_keyframes_on_hooks(self, hook_kf: HookKeyframeGroup | None) -> None:
        """All hooks share one copy of ``hook_kf`` (None: no keyframes, strength 1)."""
        hook_kf = HookKeyframeGroup() if hook_kf is None else hook_kf.clone()
        for h in self.hooks:
            h.hook_keyframe = hook_kf

    def reset(self) -> None:
        for h in self.hooks:
            h.reset()

    @staticmethod
    def combine_all_hooks(groups: list[HookGroup | None]) -> HookGroup | None:
        present = [g for g in groups if g is not None]
        if not present:
            return None
        if len(present) == 1:
            return present[0]
        out = present[0].clone()
        for g in present[1:]:
            out = out.clone_and_combine(g)
        return out

    def clip_schedule(self) -> list[tuple[tuple[float, float], list[tuple[WeightHook, HookKeyframe | None]]]]:
        """The ranges of sampling percent over which every hook keeps one keyframe, each with
        (hook, keyframe) for its hooks: text is encoded once per range (upstream's
        ``get_hooks_for_clip_schedule``)."""
        per_hook: dict[WeightHook, list[tuple[tuple[float, float], HookKeyframe | None]]] = {}
        for hook in self.hooks:
            kfs = hook.hook_keyframe.keyframes
            if not kfs:
                per_hook[hook] = [((0.0, 1.0), None)]
                continue
            ranges = []
            prev = kfs[0]
            for kf in kfs:
                if kf.start_percent > prev.start_percent and not math.isclose(kf.strength, prev.strength):
                    ranges.append(((prev.start_percent, kf.start_percent), prev))
                    prev = kf
                elif kf.start_percent == prev.start_percent:
                    prev = kf
            if not math.isclose(prev.start_percent, 1.0):
                ranges.append(((prev.start_percent, 1.0), prev))
            per_hook[hook] = ranges
        bounds = sorted(set(itertools.chain.from_iterable(r for rs in per_hook.values() for r, _ in rs)) | {0.0})
        out = []
        for lo, hi in itertools.pairwise(bounds):
            chosen = []
            for hook, rs in per_hook.items():
                kf = next((k for (a, b), k in rs if a < hi and b > lo), None)
                chosen.append((hook, kf))
            out.append(((lo, hi), chosen))
        return out


class InterpolationMethod:
    LINEAR = "linear"
    EASE_IN = "ease_in"
    EASE_OUT = "ease_out"
    EASE_IN_OUT = "ease_in_out"
    _LIST = [LINEAR, EASE_IN, EASE_OUT, EASE_IN_OUT]

    @classmethod
    def get_weights(cls, num_from: float, num_to: float, length: int, method: str) -> torch.Tensor:
        index = torch.linspace(0, 1, length)
        diff = num_to - num_from
        if method == cls.LINEAR:
            return torch.linspace(num_from, num_to, length)
        if method == cls.EASE_IN:
            return diff * index ** 2 + num_from
        if method == cls.EASE_OUT:
            return diff * (1 - (1 - index) ** 2) + num_from
        if method == cls.EASE_IN_OUT:
            return diff * ((1 - torch.cos(index * math.pi)) / 2) + num_from
        raise ValueError(f"Unrecognized interpolation method '{method}'.")


# ------------------------------------------------------------------------------- creating
def create_hook_lora(lora: dict[str, torch.Tensor], strength_model: float, strength_clip: float) -> HookGroup:
    group = HookGroup()
    hook = WeightHook(strength_model, strength_clip)
    hook.weights = lora
    group.add(hook)
    return group


def create_hook_model_as_lora(weights_model: dict | None, weights_clip: dict | None, strength_model: float,
                              strength_clip: float) -> HookGroup:
    """A hook whose delta is (the other checkpoint's weight - the hooked model's own weight)."""
    group = HookGroup()
    hook = WeightHook(strength_model, strength_clip)
    hook.weights = {k: ("model_as_lora", (v,)) for k, v in weights_model.items()} if weights_model else None
    hook.weights_clip = {k: ("model_as_lora", (v,)) for k, v in weights_clip.items()} if weights_clip else None
    hook.need_weight_init = False
    group.add(hook)
    return group


def get_patch_weights_from_model(patcher) -> dict[str, torch.Tensor] | None:
    if patcher is None:
        return None
    # the module's own weights, not those of patches some other clone has applied
    return {k: v.detach() for k, v in patcher.model_state_dict().items() if not k.startswith("model_sampling")}


# ---------------------------------------------------------------------- on conditioning
def _set_values(cond: list, values: dict) -> list:
    return [[t[0], {**t[1], **values}] for t in cond]


def set_hooks_for_conditioning(cond: list, hooks: HookGroup | None, cache: dict | None = None) -> list:
    """Attach ``hooks`` to every entry; entries that have hooks get the combination (one
    combined group per pair of groups, so equal entries still batch together)."""
    if hooks is None:
        return cond
    cache = {} if cache is None else cache
    out = []
    for t in cond:
        d = dict(t[1])
        old = d.get("hooks")
        if old is None:
            d["hooks"] = hooks
        else:
            key = (id(old), id(hooks))
            if key not in cache:
                cache[key] = old.clone_and_combine(hooks)
            d["hooks"] = cache[key]
        out.append([t[0], d])
    return out


def set_timesteps_for_conditioning(cond: list, timesteps_range: tuple[float, float] | None) -> list:
    if timesteps_range is None:
        return cond
    return _set_values(cond, {"start_percent": timesteps_range[0], "end_percent": timesteps_range[1]})


def set_mask_for_conditioning(cond: list, mask: torch.Tensor | None, set_cond_area: str, strength: float) -> list:
    if mask is None:
        return cond
    if mask.ndim < 3:
        mask = mask.unsqueeze(0)
    return _set_values(cond, {"mask": mask, "set_area_to_bounds": set_cond_area != "default",
                              "mask_strength": strength})


def set_conds_props(conds: list, strength: float, set_cond_area: str, mask=None, hooks=None,
                    timesteps_range=None) -> list:
    cache: dict = {}
    out = []
    for c in conds:
        c = set_hooks_for_conditioning(c, hooks, cache)
        c = set_mask_for_conditioning(c, mask, set_cond_area, strength)
        out.append(set_timesteps_for_conditioning(c, timesteps_range))
    return out


def set_conds_props_and_combine(conds: list, new_conds: list, strength: float = 1.0, set_cond_area: str = "default",
                                mask=None, hooks=None, timesteps_range=None) -> list:
    new = set_conds_props(new_conds, strength, set_cond_area, mask, hooks, timesteps_range)
    return [c + n for c, n in zip(conds, new)]


def set_default_conds_and_combine(conds: list, new_conds: list, hooks=None, timesteps_range=None) -> list:
    """The new conds become "default" conds: sampled only where the other conds' masks leave
    room (and with the given hooks)."""
    cache: dict = {}
    out = []
    for c, n in zip(conds, new_conds):
        n = set_hooks_for_conditioning(n, hooks, cache)
        n = _set_values(n, {"default": True})
        n = set_timesteps_for_conditioning(n, timesteps_range)
        out.append(c + n)
    return out


def hooks_in_conds(conds: dict[str, list[dict]]) -> HookGroup:
    """Every hook attached to some cond of a sampling run."""
    group = HookGroup()
    for entries in conds.values():
        for c in entries or []:
            for h in (c.get("hooks") or HookGroup()).hooks:
                group.add(h)
    return group
