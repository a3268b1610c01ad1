"""Model-aware routing: which checkpoint files a prompt loads."""
from __future__ import annotations

# loader inputs that name a model file whose load is worth routing for
MODEL_INPUTS = ("ckpt_name", "unet_name")


def checkpoints_of(prompt: dict) -> list[str]:
    names = set()
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for key in MODEL_INPUTS:
            value = (inputs or {}).get(key)
            if isinstance(value, str):
                names.add(value)
    return sorted(names)
