"""The models layer: model families (``registry`` lists them; ``stable_diffusion`` is one)
over shared parts: ``base`` (MODEL contract), ``family`` (what a family declares), ``ops``
(weight dtypes), ``patcher`` (ModelPatcher), ``text_encoders`` (recipes and the CLIP object),
``vae`` (VAE object), ``memory`` (devices); ``sd`` holds the loaders."""
