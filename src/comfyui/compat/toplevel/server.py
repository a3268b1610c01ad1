"""``import server`` for custom nodes; see :mod:`comfyui.compat.server`."""
import uuid  # noqa: F401  (packs use server.uuid)

from aiohttp import web  # noqa: F401  (some packs use server.web)

from comfyui.compat.server import PromptServer, add_sink, remove_sink  # noqa: F401


class BinaryEventTypes:
    PREVIEW_IMAGE = 1
    UNENCODED_PREVIEW_IMAGE = 2
    TEXT = 3
    PREVIEW_IMAGE_WITH_METADATA = 4
