"""``comfy.k_diffusion`` shim (``comfy.k_diffusion.sampling``)."""
