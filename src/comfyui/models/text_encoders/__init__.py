"""Text encoders: the recipe table, the CLIP object, and one module per encoder architecture."""
