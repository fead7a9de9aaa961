"""The ImageJ macros and Fiji scripts that ship with ijseg, found one way.

``macros/`` and ``fiji_scripts/`` sit at the top of the source tree and are installed as the
data packages ``ijseg.macros`` and ``ijseg.fiji_scripts`` (``pyproject.toml`` maps them), so the
same lookup serves a wheel, an editable install and a source checkout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import IjsegError

__all__ = ["asset_dir", "macro_file"]

_ASSETS = ("macros", "fiji_scripts")


def asset_dir(name: str) -> Path:
    """The installed folder ``macros`` or ``fiji_scripts``.

    Raises
    ------
    IjsegError
        If ijseg was installed without it (a broken installation).
    """
    if name not in _ASSETS:
        raise ValueError(f"unknown asset folder {name!r}; choose from {', '.join(_ASSETS)}")
    spec = importlib.util.find_spec(f"ijseg.{name}")
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        if Path(loc).is_dir():
            return Path(loc)
    raise IjsegError(f"ijseg's {name}/ folder is not installed (package ijseg.{name}); reinstall ijseg")


def macro_file(name: str) -> Path:
    """One of ijseg's ImageJ macros by file name.

    >>> macro_file("binarize.ijm").name
    'binarize.ijm'
    """
    path = asset_dir("macros") / name
    if not path.is_file():
        raise IjsegError(f"ImageJ macro {name} is not in {path.parent}")
    return path
