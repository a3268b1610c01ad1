"""``comfy.k_diffusion.utils``: what packs read from it."""


class FolderOfImages:
    """Upstream's dataset of the images in a folder; packs read its ``IMG_EXTENSIONS``.
    Loading images through it is not supported."""

    IMG_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}

    def __init__(self, *args, **kwargs):
        from comfyui.compat._unsupported import NotSupportedError

        raise NotSupportedError("comfy.k_diffusion.utils.FolderOfImages is not supported by comfyui "
                                "(only its IMG_EXTENSIONS)")
