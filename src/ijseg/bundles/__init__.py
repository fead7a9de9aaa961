"""Export to bioimage.io model bundles (deepImageJ, BioImage Model Zoo)."""

from .export import export_bundle

__all__ = ["export_bundle"]
