"""``comfy_api.v0_0_1``: the schema API pinned at version 0.0.1 (ComfyUI's stable template
version; it behaves as 0.0.2)."""
from comfy_api.v0_0_2 import ComfyAPIAdapter_v0_0_2, ComfyAPISyncAdapter_v0_0_2, Input  # noqa: F401


class ComfyAPIAdapter_v0_0_1(ComfyAPIAdapter_v0_0_2):  # noqa: N801 - ComfyUI's name
    VERSION = "0.0.1"
    STABLE = True


class ComfyAPISyncAdapter_v0_0_1(ComfyAPISyncAdapter_v0_0_2):  # noqa: N801
    VERSION = "0.0.1"
    STABLE = True


ComfyAPI = ComfyAPIAdapter_v0_0_1
ComfyAPISync = ComfyAPISyncAdapter_v0_0_1

__all__ = ["ComfyAPI", "ComfyAPISync", "ComfyAPIAdapter_v0_0_1", "Input"]
