"""``comfy_extras.chainner_models`` (upstream: deprecated, replaced by spandrel)."""
