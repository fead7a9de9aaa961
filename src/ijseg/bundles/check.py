"""``ijseg check``: does a bundle run in the runtimes deepImageJ uses?

deepImageJ runs bundles in Java on old runtimes: TensorFlow 2.7.0 (deepImageJ 3.0.3, and the
default TF 2 engine of the deepImageJ 3.1 GUI), TensorFlow 2.10.1 (what JDLL installs for a
TF 2 model) and onnxruntime 1.12.1 (JDLL's runtime for opset 17). The same versions install with
pip for Python 3.9, so this check builds one cached virtual environment per runtime (under
``~/.cache/ijseg/runtimes``, once), runs each weight format of the bundle there on the bundle's
test input after the bundle's own pre-processing, and compares the result with the bundle's test
output. It adds the current TensorFlow and onnxruntime, the deepImageJ rules
(:mod:`ijseg.bundles.deepimagej`), bioimageio.core's own test, and, for bundles with ImageJ
pre-processing macros (format 0.4), that macro run in ImageJ.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, IjsegError
from . import deepimagej

__all__ = ["Runtime", "RUNTIMES", "CheckRow", "check_bundle", "format_table", "runtime_python"]

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("_runtime_worker.py")
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Runtime:
    """A runtime that deepImageJ uses, and how to get it for Python."""

    name: str
    weight_format: str
    packages: tuple[str, ...] = ()  # empty: ijseg's own environment
    used_by: str = ""

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-")


RUNTIMES: tuple[Runtime, ...] = (
    Runtime("tensorflow 2.7.0", "tensorflow_saved_model_bundle", ("tensorflow-cpu==2.7.0", "numpy<1.22", "protobuf<3.20"),
            "deepImageJ 3.0.3; the deepImageJ 3.1 GUI's default TF 2 engine"),
    Runtime("tensorflow 2.10.1", "tensorflow_saved_model_bundle", ("tensorflow-cpu==2.10.1", "numpy<1.24"),
            "deepImageJ 3.1 (JDLL installs it for TF 2 models)"),
    Runtime("onnxruntime 1.12.1", "onnx", ("onnxruntime==1.12.1", "numpy<1.24"),
            "deepImageJ 3.0.3 and 3.1 (opset <= 17)"),
    Runtime("tensorflow (ijseg's)", "tensorflow_saved_model_bundle", (), "bioimageio.core, ijseg"),
    Runtime("onnxruntime (ijseg's)", "onnx", (), "bioimageio.core, ijseg"),
)


@dataclass
class CheckRow:
    """One line of the table."""

    runtime: str
    weights: str
    ok: bool
    result: str
    max_diff: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def cache_dir() -> Path:
    base = os.environ.get("IJSEG_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                         os.path.expanduser("~/.cache"), "ijseg")
    return Path(base) / "runtimes"


def runtime_python() -> str | None:
    """A Python 3.9 interpreter: ``IJSEG_PYTHON39``, pyenv's 3.9, or ``python3.9`` on the PATH."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    cands = [os.environ.get("IJSEG_PYTHON39"),
             *sorted(glob.glob(os.path.join(root, "versions", "3.9*", "bin", "python3.9")), reverse=True),
             shutil.which("python3.9")]
    for c in cands:
        if not (c and os.access(c, os.X_OK)):
            continue
        r = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"], capture_output=True,
                           text=True)
        if r.returncode == 0 and r.stdout.strip() == "True":  # a pyenv shim without a 3.9 selected fails here
            return c
    return None


def ensure_runtime(rt: Runtime, *, progress: Callable[[str], None] | None = None) -> str:
    """The Python of ``rt``'s environment, built once into the cache (atomically: a half-built
    environment is never used)."""
    if not rt.packages:
        return sys.executable
    final = cache_dir() / rt.slug
    py = final / "bin" / "python"
    if (final / ".ijseg-ready").is_file() and py.exists():
        return str(py)
    base = runtime_python()
    if base is None:
        raise IjsegError(f"{rt.name} needs Python 3.9 (pip has no wheels of it for newer Pythons); install it "
                         f"(e.g. pyenv install 3.9) or set IJSEG_PYTHON39 to its interpreter")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{rt.slug}.", dir=final.parent))
    if progress:
        progress(f"building the {rt.name} environment once in {final} (pip install {' '.join(rt.packages)})")
    try:
        for cmd in ([base, "-m", "venv", str(tmp)],
                    [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                     *rt.packages]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                tail = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip() and "is ignored" not in ln]
                raise IjsegError(f"cannot build the {rt.name} environment with {base}: "
                                 f"{tail[-1] if tail else 'exit code ' + str(r.returncode)}")
        (tmp / ".ijseg-ready").write_text(" ".join(rt.packages) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(py)


# ---- the bundle's own pre-processing -------------------------------------------------------------

def _axis_names(tensor: dict, v04: bool) -> list[str]:
    if v04:
        return list(tensor["axes"])
    return ["b" if a["type"] == "batch" else "c" if a["type"] == "channel" else a["id"] for a in tensor["axes"]]


def preprocess(x: np.ndarray, tensor: dict, *, v04: bool) -> np.ndarray:
    """Apply a tensor's bioimage.io pre-processing (the operations ijseg bundles use and their
    usual companions) with numpy.

    >>> t = {"axes": "byxc", "preprocessing": [{"name": "scale_range", "kwargs": {"axes": "xy",
    ...      "min_percentile": 0, "max_percentile": 100}}]}
    >>> [round(float(v), 3) for v in preprocess(np.arange(4.0).reshape(1, 2, 2, 1), t, v04=True).ravel()]
    [0.0, 0.333, 0.667, 1.0]
    """
    names = _axis_names(tensor, v04)
    x = x.astype(np.float32)
    for op in tensor.get("preprocessing") or []:
        kind = op.get("id", op.get("name"))
        kw = op.get("kwargs") or {}
        axes = kw.get("axes")
        if axes is None:
            red = tuple(i for i, n in enumerate(names) if n != "b")
        else:
            axes = [{"channel": "c", "batch": "b"}.get(a, a) for a in (list(axes) if isinstance(axes, str) else axes)]
            red = tuple(names.index(a) for a in axes)
        if kind == "ensure_dtype":
            x = x.astype(kw.get("dtype", "float32"))
        elif kind == "scale_range":
            lo = np.percentile(x, float(kw.get("min_percentile", 0)), axis=red, keepdims=True)
            hi = np.percentile(x, float(kw.get("max_percentile", 100)), axis=red, keepdims=True)
            x = (x - lo) / (hi - lo + float(kw.get("eps", 1e-6)))
        elif kind == "zero_mean_unit_variance":
            x = (x - x.mean(axis=red, keepdims=True)) / (x.std(axis=red, keepdims=True) + float(kw.get("eps", 1e-6)))
        elif kind == "scale_linear":
            x = x * float(kw.get("gain", 1)) + float(kw.get("offset", 0))
        elif kind == "clip":
            x = np.clip(x, kw.get("min"), kw.get("max"))
        else:
            raise DataError(f"pre-processing {kind!r} is not one ijseg check applies")
        x = x.astype(np.float32)
    return x


@dataclass
class _Bundle:
    root: Path
    rdf: dict
    v04: bool
    x: np.ndarray  # pre-processed test input
    expected: np.ndarray
    input_key: str
    output_key: str


def _open(bundle: Path, work: Path) -> _Bundle:
    from .load import safe_extract

    root = bundle if bundle.is_dir() else safe_extract(bundle, work / "bundle")
    if not (root / "rdf.yaml").is_file():
        raise DataError(f"{bundle}: no rdf.yaml at the bundle root")
    rdf = deepimagej.read_rdf((root / "rdf.yaml").read_bytes())
    v04 = str(rdf.get("format_version", "")).startswith("0.4")
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    if v04:
        tin, tout = rdf["test_inputs"][0], rdf["test_outputs"][0]
        ikey, okey = inp["name"], out["name"]
    else:
        tin, tout = inp["test_tensor"]["source"], out["test_tensor"]["source"]
        ikey, okey = inp["id"], out["id"]
    x = preprocess(np.load(root / tin), inp, v04=v04)
    return _Bundle(root, rdf, v04, x, np.load(root / tout).astype(np.float32), ikey, okey)


def _weights_path(b: _Bundle, fmt: str, work: Path) -> Path:
    src = b.root / b.rdf["weights"][fmt]["source"]
    if fmt == "tensorflow_saved_model_bundle" and src.suffix == ".zip":
        dest = work / "saved_model"
        if not dest.exists():
            with zipfile.ZipFile(src) as z:
                z.extractall(dest)
        return dest
    return src


def _run_runtime(rt: Runtime, b: _Bundle, work: Path, tol: float, progress) -> CheckRow:
    fmt = rt.weight_format
    try:
        py = ensure_runtime(rt, progress=progress)
    except IjsegError as err:
        return CheckRow(rt.name, fmt, False, "not run", note=str(err))
    np.save(work / "x.npy", b.x)
    out = work / f"y-{rt.slug}.npy"
    cmd = [py, str(WORKER), fmt, str(_weights_path(b, fmt, work)), str(work / "x.npy"), str(out),
           b.input_key, b.output_key]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
        return CheckRow(rt.name, fmt, False, "fails to load/run", note=why[:300])
    info = json.loads(r.stdout.strip().splitlines()[-1])
    y = np.load(out)
    if y.shape != b.expected.shape:
        return CheckRow(rt.name, fmt, False, "wrong shape", note=f"{y.shape} vs {b.expected.shape}")
    diff = float(np.abs(y - b.expected).max())
    return CheckRow(rt.name, fmt, diff <= tol, "loads", diff, note=f"{info['version']}, {rt.used_by}")


def _run_bioimageio(bundle: Path, work: Path) -> CheckRow:
    from .._tf import import_tf

    import_tf()  # quietly, before bioimageio.core imports it
    from bioimageio.core import test_model

    cwd = os.getcwd()
    os.chdir(work)  # bioimageio.core unzips TensorFlow weights into the working directory
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras' progress bars
            summary = test_model(bundle)
    finally:
        os.chdir(cwd)
    failed = [d.name for d in summary.details if d.status != "passed"]
    import bioimageio.core

    return CheckRow(f"bioimageio.core {bioimageio.core.__version__}", "all", summary.status == "passed",
                    str(summary.status), note="; ".join(failed[:3]))


def _run_imagej_macro(b: _Bundle, tol: float, run_imagej_macro: Callable) -> CheckRow:
    """The bundle's pre-processing macro in ImageJ against the bioimage.io pre-processing."""
    pre = ((b.rdf.get("config") or {}).get("deepimagej") or {}).get("prediction", {}).get("preprocess") or []
    files = [e["kwargs"] for e in pre if isinstance(e, dict) and e.get("kwargs")]
    if not files:
        return CheckRow("ImageJ macro", "-", True, "none", note="no pre-processing macro")
    tin = b.rdf["test_inputs"][0]
    raw = np.load(b.root / tin)[0]  # YXC
    code = (b.root / files[0]).read_text(encoding="utf-8")
    res = run_imagej_macro(code, np.moveaxis(raw, -1, 0) if raw.shape[-1] > 1 else raw[..., 0])
    got = np.asarray(res.image, np.float32)
    got = np.moveaxis(got, 0, -1) if got.ndim == 3 else got[..., None]
    diff = float(np.abs(got - b.x[0]).max())
    return CheckRow("ImageJ macro", files[0], diff <= tol, "runs", diff, note="vs the bundle's scale_range")


def check_bundle(bundle: str | os.PathLike, *, runtimes: tuple[Runtime, ...] = RUNTIMES,
                 tolerance: float = DEFAULT_TOLERANCE, bioimageio: bool = True, imagej: Callable | None = None,
                 progress: Callable[[str], None] | None = None) -> list[CheckRow]:
    """Run every check on a bundle and return the rows of the table.

    ``imagej`` runs a macro in ImageJ (:func:`ijseg.ij.macro.run`, which the ``ijseg check``
    command passes: the bridge sits above this module); without it the ImageJ row is left out.

    Raises
    ------
    DataError
        If the bundle cannot be read.
    """
    bundle = Path(bundle)
    if not bundle.exists():
        raise DataError(f"{bundle}: no such bundle")
    if not bundle.is_dir() and not zipfile.is_zipfile(bundle):
        raise DataError(f"{bundle}: not a bioimage.io bundle (not a zip file)")
    rows: list[CheckRow] = []
    found = deepimagej.problems(bundle)
    rows.append(CheckRow("deepImageJ rules", f"{len(deepimagej.RULES)} rules", not found,
                         "met" if not found else f"{len(found)} broken", note="; ".join(found)[:500]))
    with tempfile.TemporaryDirectory(prefix="ijseg-check-") as tmp:
        work = Path(tmp)
        b = _open(bundle, work)
        for rt in runtimes:
            if rt.weight_format in (b.rdf.get("weights") or {}):
                rows.append(_run_runtime(rt, b, work, tolerance, progress))
        if bioimageio:
            rows.append(_run_bioimageio(bundle.resolve(), work))
        if imagej is not None and b.v04:
            rows.append(_run_imagej_macro(b, tolerance, imagej))
    return rows


def format_table(rows: list[CheckRow], tolerance: float = DEFAULT_TOLERANCE) -> str:
    head = ("runtime", "weights", "result", f"max |diff| (<= {tolerance:g})", "")
    body = [(r.runtime, r.weights, ("ok   " if r.ok else "FAIL ") + r.result,
             "-" if r.max_diff is None else f"{r.max_diff:.2g}", r.note) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(4)]
    fmt = lambda x: "  ".join(str(v).ljust(w) for v, w in zip(x[:4], widths)) + (f"  {x[4]}" if x[4] else "")  # noqa: E731
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths) + ("",)), *map(fmt, body)])
