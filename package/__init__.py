"""pseudoword: a registry and runtime for textual-inversion embeddings."""

# Installed as `pseudoword`; the folder `package/` imported by its own name (from the repository root)
# would be a second copy whose exception classes the real ones do not catch.
if __name__ != "pseudoword":
    raise ImportError(f"import pseudoword, not {__name__} (the folder package/ is installed as pseudoword)")
