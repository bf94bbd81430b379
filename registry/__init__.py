"""`pseudoword.registry`: see README "Layout"."""

# Installed as `pseudoword.registry`; the folder `registry/` imported by its own name (from the repository root)
# would be a second copy whose exception classes the real ones do not catch.
if __name__ != "pseudoword.registry":
    raise ImportError(f"import pseudoword.registry, not {__name__} (the folder registry/ is installed as pseudoword.registry)")
