"""pseudoword: a registry and runtime for textual-inversion embeddings."""
