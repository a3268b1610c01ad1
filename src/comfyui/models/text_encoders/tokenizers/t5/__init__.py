"""T5 tokenizer.json (Apache-2.0; see README.md): package data."""
