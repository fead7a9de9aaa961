"""The version of ijseg (one place: the package, pyproject.toml and provenance records read it)."""

__version__ = "0.1.0"
