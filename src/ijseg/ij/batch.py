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
half-written output; a second run skips the images whose ``NAME.tif`` exists (resume). The
first macro error stops the job (as in ImageJ) with the image's path and the macro's line.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, IjsegError
from .macro import MacroError, run

__all__ = ["BatchReport", "run_batch"]

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    """What :func:`run_batch` did: images processed now, skipped (already done), and the summary."""

    processed: list[Path]
    skipped: list[Path]
    summary: Path


def _macro_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_batch(code: str, inputs: list[Path], out: str | os.PathLike, *, macro_name: str = "macro",
              overwrite: bool = False, progress: bool = True) -> BatchReport:
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

    Raises
    ------
    MacroError
        On the first image where the macro fails: names the image, the macro and the line.
    DataError
        When a macro leaves no image to save.
    """
    from tqdm.auto import tqdm

    from .._fileio import atomic_path, atomic_write_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stems: dict[str, Path] = {}
    for path in inputs:
        if path.stem in stems:
            raise DataError(f"{path}: same name as {stems[path.stem]}; both would be saved as {out / path.stem}.tif")
        stems[path.stem] = path
    processed, skipped = [], []
    for path in tqdm(inputs, desc="macro batch", unit="img", disable=not progress):
        target = out / f"{path.stem}.tif"
        if target.exists() and not overwrite:
            skipped.append(path)
            continue
        with atomic_path(target) as tmp:
            # on the macro's first line, so that error line numbers stay those of the macro file
            prefix = f'run("Clear Results"); open({_macro_string(str(path.resolve()))}); '
            suffix = f'\nif (nImages > 0) saveAs("Tiff", {_macro_string(str(tmp))});\n'
            try:
                result = run(prefix + code + suffix)
            except MacroError as err:
                raise MacroError(f"{path}: {macro_name}: {err}") from err
            if result.image is None:
                raise DataError(f"{path}: {macro_name} left no image open to save")
            results = out / f"{path.stem}_results.csv"
            if len(result.results):
                with atomic_path(results) as tmp_csv:
                    result.results.to_csv(tmp_csv, index=False)
            elif results.exists():  # from an earlier run with another macro
                results.unlink()
        processed.append(path)
    rows = []
    for path in inputs:
        target, results = out / f"{path.stem}.tif", out / f"{path.stem}_results.csv"
        if not target.exists():
            continue
        n = _count_rows(results) if results.exists() else 0
        rows.append({"Image": path.name, "Results rows": n, "Saved image": target.name,
                     "Results": results.name if results.exists() else ""})
    summary = out / "summary.csv"
    atomic_write_csv(summary, rows)
    return BatchReport(processed, skipped, summary)


def _count_rows(csv: Path) -> int:
    try:
        with open(csv, encoding="utf-8") as f:
            return max(sum(1 for line in f if line.strip()) - 1, 0)
    except OSError as err:
        raise IjsegError(f"{csv}: cannot read: {err}") from err
