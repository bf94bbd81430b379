"""`pseudoword.cli`: see README "Layout"."""

# Installed as `pseudoword.cli`; the folder `cli/` imported by its own name (from the repository root)
# would be a second copy whose exception classes the real ones do not catch.
if __name__ != "pseudoword.cli":
    raise ImportError(f"import pseudoword.cli, not {__name__} (the folder cli/ is installed as pseudoword.cli)")
