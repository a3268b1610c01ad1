"""``comfy_api.v0_0_2``: the schema API pinned at version 0.0.2, which is ``latest`` today."""
from comfyui.nodes.io import ComfyAPI, ComfyAPISync, ComfyExtension, Input, io, ui  # noqa: F401


class ComfyAPIAdapter_v0_0_2(ComfyAPI):  # noqa: N801 - ComfyUI's name
    VERSION = "0.0.2"
    STABLE = False


class ComfyAPISyncAdapter_v0_0_2(ComfyAPISync):  # noqa: N801
    VERSION = "0.0.2"
    STABLE = False


ComfyAPI = ComfyAPIAdapter_v0_0_2  # noqa: F811
ComfyAPISync = ComfyAPISyncAdapter_v0_0_2  # noqa: F811

__all__ = ["ComfyAPI", "ComfyAPISync", "ComfyAPIAdapter_v0_0_2", "ComfyExtension", "Input", "io", "ui"]
