"""``latent_preview``: sampling previews (:mod:`comfyui.sampling.preview`) under upstream's names.
``TAESD`` (upstream's encoder + decoder wrapper) is importable and not supported."""
from comfy.taesd.taesd import TAESD  # noqa: F401
from comfyui.sampling.preview import (MAX_PREVIEW_RESOLUTION, Latent2RGBPreviewer, LatentPreviewer,  # noqa: F401
                                      get_previewer, prepare_callback, preview_to_image)
from comfyui.sampling.preview import TAESDPreviewer as TAESDPreviewerImpl  # noqa: F401
