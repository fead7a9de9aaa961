"""Fiji-style ``#@`` script parameters for ImageJ macros run by the embedded backend.

Fiji fills ``#@ Type (attributes) name`` lines before a macro runs; ImageJ 1.x does not know
them. :func:`fill_parameters` replaces each such line, *in place* (so line numbers in error
messages stay those of the file), by an assignment of the value given on the command line
(``--arg name=value``) or of the parameter's ``value=`` default. The same file therefore runs in
Fiji (``ImageJ-linux64 --headless --run file.ijm 'name=value'``) and through ``ijseg macro run``.

Examples
--------
>>> code = '#@ File (style="directory") input\\n#@ Float (label="Threshold (0-1)", value=0.5) threshold\\nprint(input);'
>>> print(fill_parameters(code, {"input": "/data/a b"}))
input = "/data/a b";
threshold = 0.5;
print(input);
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError, IjsegError

__all__ = ["ScriptParameter", "parse_parameters", "fill_parameters", "read_macro"]

_PARAM = re.compile(r'^\s*#@\s*(?P<type>\w+)\s*(?:\((?P<attrs>(?:"(?:[^"\\]|\\.)*"|[^)"])*)\))?\s*(?P<name>\w+)\s*$')
_ATTR = re.compile(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]+)')
_NUMERIC = {"int", "integer", "long", "short", "byte", "float", "double", "number"}
_TEXT = {"string", "file", "path"}
_BOOL = {"boolean", "bool"}


def read_macro(path) -> str:
    """The text of a macro file: UTF-8 (with or without a byte-order mark), else Latin-1, the
    encoding of macros written on Windows (Latin-1 decodes any byte, so this never fails on
    the text).

    Raises
    ------
    IjsegError
        If the file is missing or unreadable.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise IjsegError(f"{path}: macro file not found")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise IjsegError(f"{path}: cannot read the macro: {err.strerror}") from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(frozen=True)
class ScriptParameter:
    """One ``#@`` line."""

    line: int
    type: str
    name: str
    default: str | None
    label: str | None


def parse_parameters(code: str) -> list[ScriptParameter]:
    """The ``#@`` parameters of a macro, in order (output parameters ``#@output`` are skipped)."""
    params = []
    for i, line in enumerate(code.splitlines(), start=1):
        if not line.lstrip().startswith("#@"):
            continue
        if line.lstrip().startswith("#@output"):
            continue
        m = _PARAM.match(line)
        if m is None:
            raise ConfigError(f"line {i}: cannot read the script parameter {line.strip()!r}")
        attrs = {k.lower(): v.strip().strip('"') for k, v in _ATTR.findall(m.group("attrs") or "")}
        params.append(ScriptParameter(i, m.group("type"), m.group("name"), attrs.get("value"), attrs.get("label")))
    return params


def _literal(param: ScriptParameter, value: str) -> str:
    kind = param.type.lower()
    if kind in _NUMERIC:
        try:
            float(value)
        except ValueError as err:
            raise ConfigError(f"parameter {param.name} ({param.type}) needs a number, got {value!r}") from err
        return value
    if kind in _BOOL:
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"parameter {param.name} (Boolean) needs true or false, got {value!r}")
        return "true" if value.lower() in ("true", "1", "yes") else "false"
    if kind in _TEXT:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise ConfigError(f"parameter {param.name}: type {param.type} is not supported by ijseg macro run "
                      f"(use String, File, Integer, Float, Double or Boolean)")


def fill_parameters(code: str, values: dict[str, str]) -> str:
    """Replace each ``#@`` line by an assignment; see the module docstring.

    Raises
    ------
    ConfigError
        For values given for unknown parameters, parameters without a value or default, and
        values of the wrong type (listing all of them).
    """
    params = parse_parameters(code)
    names = {p.name for p in params}
    errors = [f"unknown parameter {k!r} (the macro has: {', '.join(sorted(names)) or 'none'})"
              for k in values if k not in names]
    lines = code.splitlines()
    for p in params:
        value = values.get(p.name, p.default)
        if value is None:
            errors.append(f"parameter {p.name!r} ({p.type}{', ' + p.label if p.label else ''}) needs a value "
                          f"({p.name}=...)")
            continue
        try:
            lines[p.line - 1] = f"{p.name} = {_literal(p, value)};"
        except ConfigError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError("; ".join(errors))
    return "\n".join(lines) + ("\n" if code.endswith("\n") else "")
