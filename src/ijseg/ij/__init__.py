"""The ImageJ bridge: ImageJ 1.x in a JVM hosted by Python (embedded backend), the IJSeg
commands, and macros run on numpy images."""

from ._java import jclass, start_jvm
from ._images import from_imageplus, to_imageplus
from .macro import MacroError, MacroResult, results_table, run, run_macro

__all__ = ["start_jvm", "jclass", "run", "run_macro", "MacroResult", "MacroError", "results_table", "to_imageplus",
           "from_imageplus"]
