"""Built-in node packs. Every module here that exports NODE_CLASS_MAPPINGS is loaded by
``NodeRegistry.load_builtins`` (modules whose name starts with ``_`` are helpers)."""
