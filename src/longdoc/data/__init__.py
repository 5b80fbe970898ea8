"""Corpus input/output, the demo corpus, deterministic splits and the data version."""
