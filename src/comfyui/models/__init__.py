"""Model files, detection, architectures (UNet, VAE, CLIP text encoders), patching and
memory management. See ``base`` (MODEL contract), ``patcher`` (ModelPatcher), ``clip``
(CLIP object), ``vae`` (VAE object), ``sd`` (loaders), ``memory`` (devices)."""
