"""The ImageJ bridge: ImageJ 1.x in a JVM hosted by Python (embedded backend)."""

from ._java import jclass, start_jvm
from .macro import MacroError, from_imageplus, run_macro, to_imageplus

__all__ = ["start_jvm", "jclass", "run_macro", "MacroError", "to_imageplus", "from_imageplus"]
