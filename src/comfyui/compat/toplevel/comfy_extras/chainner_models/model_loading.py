"""``comfy_extras.chainner_models.model_loading``: upscale model state dicts through spandrel, as upstream."""
from __future__ import annotations


def load_state_dict(state_dict: dict):
    """The spandrel model descriptor of an upscale model's ``state_dict``, in eval mode."""
    from spandrel import ModelLoader

    return ModelLoader().load_from_state_dict(state_dict).eval()
