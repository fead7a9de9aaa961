"""A recorded macro as a batch job over a folder: ImageJ's Process > Batch > Macro, headless.

The Macro Recorder writes what a user did to the image in front (``run("IJSeg Predict", ...)``,
``run("Analyze Particles...", ...)``). :func:`run_batch` opens each image of a folder with
ImageJ's own opener (calibration included), makes it the current image, runs the macro in
batch mode and saves

* ``OUT/NAME.tif``: the image in front when the macro ends (as ImageJ's Batch Macro does);
* ``OUT/NAME_results.csv``: ImageJ's Results table, if the macro filled it (cleared before each
  image, so rows do not pile up across images);
* ``OUT/summary.csv``: per image, the number of Results rows and the files written.

Each file is written to a temporary name and renamed, so an interrupted run leaves no
half-written output (and temporary files of a run that was killed are removed by the next); a
second run skips the images whose ``NAME.tif`` exists (resume). An image that cannot be opened
(checked before ImageJ reads it: ImageJ 1.53t loops for ever on some truncated TIFFs) or whose
macro run exceeds the timeout is reported and skipped; the first macro error stops the job (as
in ImageJ) with the image's path and the macro's line. ``summary.csv`` is written in every
case, also after Ctrl-C, for the images done.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..provenance import record as record_run
from ..errors import DataError, IjsegError, Interrupted
from .macro import MacroError, MacroTimeout, run

__all__ = ["BatchReport", "run_batch", "DEFAULT_IMAGE_TIMEOUT"]

#: seconds after which the macro run of one image is given up
DEFAULT_IMAGE_TIMEOUT = 600.0
_OPEN_FAILED = "ijseg: ImageJ could not open the image"
_SUMMARY_COLUMNS = ["Image", "Results rows", "Saved image", "Results"]

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    """What :func:`run_batch` did: images processed now, skipped (already done), and the summary."""

    processed: list[Path]
    skipped: list[Path]
    summary: Path
    failed: list[tuple[Path, str]]


def _macro_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_batch(code: str, inputs: list[Path], out: str | os.PathLike, *, macro_name: str = "macro",
              overwrite: bool = False, progress: bool = True, timeout: float | None = DEFAULT_IMAGE_TIMEOUT
              ) -> BatchReport:
    """Run macro ``code`` on each of ``inputs``; see the module docstring for the outputs.

    Parameters
    ----------
    code
        Macro source (``#@`` parameters already filled); it works on the current image.
    inputs
        Image files that ImageJ opens (TIFF, PNG, JPEG...).
    out
        Output folder (created).
    macro_name
        Named in error messages (the macro file).
    overwrite
        Process images whose output exists too (default: skip them, to resume a run).
    timeout
        Seconds allowed per image (None: no limit).

    Raises
    ------
    MacroError
        On the first image where the macro fails: names the image, the macro and the line.
    MacroTimeout
        With ``stuck`` set, when ImageJ could not be stopped after a timeout (the caller must
        end the process).
    Interrupted
        After Ctrl-C or SIGTERM, once the summary of the images done is written.
    """
    from tqdm.auto import tqdm

    from .._fileio import atomic_write_csv, remove_own_temporaries, remove_stale_temporaries

    out = Path(out)
    stems: dict[str, Path] = {}
    for path in inputs:
        if path.stem in stems:
            raise DataError(f"{path}: same name as {stems[path.stem]}; both would be saved as {out / path.stem}.tif")
        stems[path.stem] = path
    out.mkdir(parents=True, exist_ok=True)
    for p in remove_stale_temporaries(out):
        log.info("removed %s (left by a run that was killed)", p.name)
    macro = {"name": macro_name, "sha256": hashlib.sha256(code.encode()).hexdigest(), "text": code}
    with record_run("macro batch", out, options=dict(overwrite=overwrite, timeout=timeout), inputs=inputs
                           ) as rec:
        rec["macro"] = macro
        processed, skipped, failed = [], [], []
        try:
            for path in tqdm(inputs, desc="macro batch", unit="img", disable=not progress):
                if (out / f"{path.stem}.tif").exists() and not overwrite:
                    skipped.append(path)
                    continue
                try:
                    _run_one(code, path, out, macro_name, timeout)
                except (DataError, MacroTimeout) as err:
                    if getattr(err, "stuck", False):
                        raise
                    log.error("skipped: %s", err)
                    failed.append((path, str(err)))
                    continue
                processed.append(path)
        except KeyboardInterrupt as err:
            remove_own_temporaries(out)
            raise Interrupted(f"interrupted after {len(processed)} of {len(inputs)} image(s); "
                              f"{out / 'summary.csv'} lists the images done") from err
        finally:
            atomic_write_csv(out / "summary.csv", _summary_rows(inputs, out), columns=_SUMMARY_COLUMNS)
            rec.update(processed=[p.name for p in processed], skipped=[p.name for p in skipped],
                       failed=[{"path": str(p), "error": m} for p, m in failed])
    return BatchReport(processed, skipped, out / "summary.csv", failed)


def _run_one(code: str, path: Path, out: Path, macro_name: str, timeout: float | None) -> None:
    """Open ``path``, run the macro, save the image in front and the Results of one image."""
    from .._fileio import atomic_path

    _check_openable(path)
    target = out / f"{path.stem}.tif"
    with atomic_path(target) as tmp:
        # on the macro's first line, so that error line numbers stay those of the macro file
        prefix = (f'run("Clear Results"); open({_macro_string(str(path.resolve()))}); '
                  f'if (nImages == 0) exit({_macro_string(_OPEN_FAILED)}); ')
        suffix = f'\nif (nImages > 0) saveAs("Tiff", {_macro_string(str(tmp))});\n'
        try:
            result = run(prefix + code + suffix, timeout=timeout, source=code)
        except MacroTimeout as err:
            raise MacroTimeout(f"{path}: {macro_name}: {err}", stuck=err.stuck) from err
        except MacroError as err:
            if _OPEN_FAILED in str(err):
                raise DataError(f"{path}: ImageJ cannot open this file") from err
            raise MacroError(f"{path}: {macro_name}: {err}") from err
        if result.image is None:
            raise MacroError(f"{path}: {macro_name} left no image open to save")
        results = out / f"{path.stem}_results.csv"
        if len(result.results):
            with atomic_path(results) as tmp_csv:
                result.results.to_csv(tmp_csv, index=False)
        elif results.exists():  # from an earlier run with another macro
            results.unlink()


def _check_openable(path: Path) -> None:
    """Refuse, before ImageJ reads it, a file that is missing, empty, or a TIFF that is corrupt,
    truncated or too large (see :func:`ijseg.data.io.check_tiff`)."""
    from ..data.io import check_file, check_tiff

    if path.suffix.lower() in (".tif", ".tiff"):
        check_tiff(path)
    else:
        check_file(path)


def _summary_rows(inputs: list[Path], out: Path) -> list[dict]:
    rows = []
    for path in inputs:
        target, results = out / f"{path.stem}.tif", out / f"{path.stem}_results.csv"
        if not target.exists():
            continue
        n = _count_rows(results) if results.exists() else 0
        rows.append({"Image": path.name, "Results rows": n, "Saved image": target.name,
                     "Results": results.name if results.exists() else ""})
    return rows


def _count_rows(csv: Path) -> int:
    try:
        with open(csv, encoding="utf-8") as f:
            return max(sum(1 for line in f if line.strip()) - 1, 0)
    except OSError as err:
        raise IjsegError(f"{csv}: cannot read: {err}") from err
