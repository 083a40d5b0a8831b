"""Corpora: the builtin synthetic email corpus."""
