"""Model-aware routing: a prompt goes to a worker that holds its checkpoint when one is free.

Workers advertise the checkpoints they hold loaded (:func:`loaded_checkpoints`, in their
``worker`` state messages); a frontend picks a free worker holding every checkpoint of the
prompt (:func:`pick_worker`) and publishes it to that worker's own queue. A routed prompt that
its worker does not take within the queue's TTL (the worker became busy or died) falls back
to the shared prompts queue, where any worker takes it.
"""
from __future__ import annotations

import os
import random
import time
from typing import Any

# loader inputs that name a model file worth routing for -> its models folder
MODEL_INPUTS = {"ckpt_name": "checkpoints", "unet_name": "diffusion_models"}


def checkpoints_of(prompt: dict) -> list[str]:
    names = set()
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for key in MODEL_INPUTS:
            value = (inputs or {}).get(key)
            if isinstance(value, str):
                names.add(value)
    return sorted(names)


def model_folders(prompt: dict) -> dict[str, str]:
    """name -> models folder of the model files the prompt loads."""
    found = {}
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for key, folder in MODEL_INPUTS.items():
            value = (inputs or {}).get(key)
            if isinstance(value, str):
                found[value] = folder
    return found


def loaded_checkpoints(runtime: Any, candidates: dict[str, str]) -> list[str]:
    """Which of ``candidates`` (name -> folder: the model files of prompts this worker ran)
    it still holds loaded."""
    loaded = runtime.loaded_model_paths()
    if not loaded:
        return []
    held = []
    for name, folder in candidates.items():
        path = runtime.folders.get_full_path(folder, name)
        if path is not None and os.path.realpath(path) in loaded:
            held.append(name)
    return sorted(held)


def pick_worker(workers: dict, checkpoints: list[str], stale_s: float) -> Any:
    """A live worker with a free slot that holds every one of ``checkpoints``, or None."""
    if not checkpoints:
        return None
    now = time.time()
    free = [w for w in workers.values() if w.state == "ready" and now - w.at < stale_s
            and len(w.running) < w.concurrency and set(checkpoints) <= set(w.checkpoints)]
    return random.choice(free) if free else None
