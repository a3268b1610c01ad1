"""Data package: the Qwen2/Qwen3 BPE vocabulary files (see README.md here for the licence)."""
