"""Tokenizers and their shipped vocabularies."""
