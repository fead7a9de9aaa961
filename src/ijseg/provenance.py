"""``provenance.json``: what made a run's outputs, written next to them.

Every ``train``, ``predict``, ``qc``, ``export`` and ``macro batch`` run (command line or Python
API) records the versions of ijseg, Python and the libraries that computed the results (and of
Java and ImageJ where known), the full configuration and options, SHA-256 hashes of the model
and of every input file, start and end times, and for a macro run the macro's text. A run that
is interrupted or fails after writing outputs says so in ``"status"``; a run refused for bad
input before writing anything writes no record either. ``ijseg export`` carries the training
run's record into the bundle.

The command line (``ijseg ...``) adds its argument list, and the Java and ImageJ it would use;
:func:`set_context` does the same for other callers (the ImageJ bridge sets the versions of
the JVM it starts).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._fileio import atomic_write_text
from .errors import Interrupted

__all__ = ["FILE", "SCHEMA", "record", "completed", "file_hash", "files_hashes", "store_hash", "model_hash",
           "versions", "cpu_name", "set_context", "read"]

#: the file name
FILE = "provenance.json"
#: the record's schema version
SCHEMA = 1

#: what the caller adds to every record (command line; java and imagej, as values or as
#: functions called once when a record is written)
_context: dict[str, Any] = {}

#: the libraries recorded, and the distributions that provide each
_LIBRARIES = {name: (name,) for name in ("numpy", "scipy", "scikit-image", "keras", "stardist", "csbdeep", "tifffile",
                                         "bioimageio.core", "bioimageio.spec", "onnxruntime", "tf2onnx", "scyjava",
                                         "jpype1", "pyimagej", "dask", "distributed")}
_LIBRARIES["tensorflow"] = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly")


def set_context(*, keep: bool = False, **fields: Any) -> None:
    """Fields added to every record from now on: ``command_line`` (a list), ``java`` and
    ``imagej`` (version strings, or functions that give one, called when first needed); with
    ``keep``, fields already set stay as they are."""
    for name, value in fields.items():
        if not (keep and name in _context):
            _context[name] = value


def _resolved(name: str) -> Any:
    value = _context.get(name)
    if callable(value):
        try:
            value = value()
        except Exception:  # a version that cannot be read is unknown, not an error of the run
            value = None
        _context[name] = value
    return value


def versions() -> dict[str, Any]:
    """ijseg, Python, the libraries installed (those not installed are left out), Java and
    ImageJ (None where not known), the platform and the CPU."""
    from importlib import metadata

    from ._version import __version__

    libs = {}
    for name, distributions in _LIBRARIES.items():
        for dist in distributions:
            try:
                libs[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                pass
    return {"ijseg": __version__, "python": platform.python_version(), **libs,
            "java": _resolved("java"), "imagej": _resolved("imagej"),
            "platform": platform.platform(), "machine": platform.machine(), "cpu": cpu_name(),
            "cpu_count": os.cpu_count()}


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "a"; _ = p.write_bytes(b"abc")
    >>> file_hash(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_hashes(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """``{path, bytes, sha256}`` of each file (the path relative to ``root`` where it lies in it)."""
    out = []
    for p in paths:
        p = Path(p)
        name = str(p)
        if root is not None:
            with contextlib.suppress(ValueError):
                name = str(p.resolve().relative_to(Path(root).resolve()))
        try:
            out.append({"path": name, "bytes": p.stat().st_size, "sha256": file_hash(p)})
        except OSError as err:  # the run reports the file; the record says it could not be read
            out.append({"path": name, "error": err.strerror or str(err)})
    return out


def store_hash(path: str | os.PathLike) -> dict[str, Any]:
    """``{path, files, bytes, sha256}`` of a folder that is one input (a Zarr store): the SHA-256
    of its files' relative paths and hashes, in sorted order.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = (d / "a").write_bytes(b"abc")
    >>> h = store_hash(d); h["files"], h["bytes"], len(h["sha256"])
    (1, 3, 64)
    """
    root = Path(path)
    if not root.is_dir():
        return files_hashes([root])[0]
    h = hashlib.sha256()
    n = size = 0
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(root).as_posix()}\0{file_hash(p)}\n".encode())
        n, size = n + 1, size + p.stat().st_size
    return {"path": str(root), "files": n, "bytes": size, "sha256": h.hexdigest()}


def model_hash(path: str | os.PathLike) -> dict[str, Any]:
    """The model a run used: a bundle's SHA-256, or a model folder's files that define it
    (configuration, weights, post-processing), each hashed."""
    path = Path(path)
    if path.is_file():
        return {"path": str(path.resolve()), "sha256": file_hash(path)}
    names = ("config.json", "weights_best.weights.h5", "weights_last.weights.h5", "postprocessing.json", "rdf.yaml")
    files = [path / n for n in names if (path / n).is_file()]
    return {"path": str(path.resolve()), "files": files_hashes(files, path)}


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


@contextlib.contextmanager
def record(run: str, where: str | os.PathLike, *, options: dict[str, Any] | None = None,
           config: dict[str, Any] | None = None, model: str | os.PathLike | None = None,
           inputs: Iterable[str | os.PathLike] = (), root: str | os.PathLike | None = None,
           finish: Callable[[dict[str, Any]], None] | None = None, partial: bool = True) -> Iterator[dict[str, Any]]:
    """Record a run: yields the record (the caller may add to it), written to ``where`` (a
    folder gets ``provenance.json``; a ``.json`` path is written as it is) when the block ends.

    ``model`` and ``inputs`` are hashed at the start (``inputs`` relative to ``root``);
    ``finish`` is called with the record just before it is written. A run that returns after
    a clean stop sets ``record["interrupted"] = True``; one that wrote nothing ``"discard"``.
    A run that is interrupted, or fails, once ``where``'s folder exists writes its record with
    ``"status"`` ``"interrupted"`` or ``"failed"`` (and the error): its outputs so far are on
    disk. With ``partial`` False (a run whose one output is written last, like a bundle), only
    a completed run writes a record.
    """
    started = time.time()
    rec: dict[str, Any] = {
        "ijseg_provenance": SCHEMA, "run": run, "status": "running", "started": _now(), "ended": None,
        "seconds": None, "command_line": _context.get("command_line"), "cwd": os.getcwd(),
        "options": _jsonable(options or {}), "config": _jsonable(config) if config is not None else None,
        "model": model_hash(model) if model is not None else None,
        "inputs": files_hashes(inputs, root),
    }
    target = Path(where)
    target = target if target.suffix == ".json" else target / FILE
    try:
        yield rec
    except BaseException as err:
        if partial and target.parent.is_dir():
            stopped = isinstance(err, (KeyboardInterrupt, Interrupted))
            if not stopped:
                rec["error"] = f"{type(err).__name__}: {err}"
            _write(target, rec, "interrupted" if stopped else "failed", started, finish)
        raise
    _write(target, rec, "completed", started, finish)


def _write(target: Path, rec: dict[str, Any], status: str, started: float,
           finish: Callable[[dict[str, Any]], None] | None) -> None:
    if rec.pop("discard", False):  # a run that wrote nothing
        return
    if rec.pop("interrupted", False) and status == "completed":  # a run that stops cleanly and returns (training)
        status = "interrupted"
    rec.update(completed(rec, started), status=status)
    if finish is not None:
        finish(rec)
    atomic_write_text(target, json.dumps(rec, indent=1, default=str) + "\n")


def completed(rec: dict[str, Any], started: float | None = None) -> dict[str, Any]:
    """The record as it reads once the run completes now (for a copy written before the end,
    such as the one inside a bundle)."""
    if started is None:
        started = datetime.fromisoformat(rec["started"]).timestamp()
    return {**rec, "status": "completed", "ended": _now(), "seconds": round(time.time() - started, 3),
            "versions": versions()}


def _jsonable(value: Any) -> Any:
    """Paths, tuples and numpy scalars as JSON values."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def read(where: str | os.PathLike) -> dict[str, Any] | None:
    """A folder's (or a file's) record; None where there is none."""
    path = Path(where)
    path = path if path.suffix == ".json" else path / FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
