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
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..provenance import record as record_run
from ..errors import DataError, IjsegError, Interrupted
from .macro import MacroError, MacroTimeout, run

__all__ = ["BatchReport", "run_batch", "run_batch_on_cluster", "DEFAULT_IMAGE_TIMEOUT"]

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

    from .._fileio import atomic_write_csv, remove_own_temporaries

    out = _prepared(inputs, Path(out))
    macro = _macro_record(code, macro_name)
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


def _prepared(inputs: list[Path], out: Path) -> Path:
    """``out``, created and rid of a killed run's temporaries, once no two inputs share a name."""
    from .._fileio import remove_stale_temporaries

    stems: dict[str, Path] = {}
    for path in inputs:
        if path.stem in stems:
            raise DataError(f"{path}: same name as {stems[path.stem]}; both would be saved as {out / path.stem}.tif")
        stems[path.stem] = path
    out.mkdir(parents=True, exist_ok=True)
    for p in remove_stale_temporaries(out):
        log.info("removed %s (left by a run that was killed)", p.name)
    return out


def _macro_record(code: str, macro_name: str) -> dict:
    return {"name": macro_name, "sha256": hashlib.sha256(code.encode()).hexdigest(), "text": code}


def run_batch_on_cluster(code: str, inputs: list[Path], out: str | os.PathLike, *, cluster: str,
                         macro_name: str = "macro", overwrite: bool = False, progress: bool = True,
                         timeout: float | None = DEFAULT_IMAGE_TIMEOUT) -> BatchReport:
    """:func:`run_batch` with the images shared out over a Dask cluster (see
    :mod:`ijseg.cluster`): each worker process hosts its own ImageJ and IJSeg engine and runs
    one macro at a time. The outputs and ``summary.csv`` are those of the serial run.

    The first macro error, or an ImageJ that could not be stopped after a timeout, stops the
    workers before their next image (the images in progress are finished) and is raised, as in
    :func:`run_batch`; a worker whose ImageJ is stuck takes no image any more. An image whose
    worker died (``KilledWorker``) fails with its name, and the others go on. Ctrl-C stops the
    workers likewise and lists the images in progress that finish within ``timeout``.

    Raises
    ------
    MacroError
        On the first image where the macro fails: names the image, the macro and the line.
    MacroTimeout
        With ``stuck`` set, when ImageJ on a worker could not be stopped after a timeout (that
        worker's process must end; a local cluster ends with the job).
    Interrupted
        After Ctrl-C, once the summary of the images done is written.
    """
    from distributed import Event, as_completed
    from tqdm.auto import tqdm

    from .._fileio import atomic_write_csv
    from ..cluster import connect, finished_after_stop

    out = _prepared(inputs, Path(out).resolve())
    todo = [p for p in inputs if overwrite or not (out / f"{p.stem}.tif").exists()]
    skipped = [p for p in inputs if p not in todo]
    settings = dict(overwrite=overwrite, timeout=timeout, cluster=cluster)
    with record_run("macro batch", out, options=settings, inputs=inputs) as rec, connect(cluster) as client:
        rec["macro"] = _macro_record(code, macro_name)
        stop = Event(f"ijseg-stop-{uuid.uuid4().hex}", client=client)
        futures = {client.submit(_macro_task, stop.name, code, str(p.resolve()), str(out), macro_name, timeout,
                                 pure=False): p for p in todo}
        bar = tqdm(total=len(todo), desc="macro batch", unit="img", disable=not progress)
        job = _Collected(stop, bar)
        try:
            for future in as_completed(futures):
                job.add(future, futures[future])
        except KeyboardInterrupt as err:
            stop.set()  # no new image; those in progress are finished and listed
            for future in finished_after_stop([f for f in futures if f.key not in job.seen], timeout or 600):
                job.add(future, futures[future])
            raise Interrupted(f"interrupted after {len(job.processed)} of {len(inputs)} image(s); "
                              f"{out / 'summary.csv'} lists the images done") from err
        finally:
            bar.close()
            atomic_write_csv(out / "summary.csv", _summary_rows(inputs, out), columns=_SUMMARY_COLUMNS)
            job.sort(inputs)
            rec.update(processed=[p.name for p in job.processed], skipped=[p.name for p in skipped],
                       failed=[{"path": str(p), "error": m} for p, m in job.failed],
                       workers=len(client.scheduler_info()["workers"]))
        if job.error is not None:
            raise job.error
    return BatchReport(job.processed, skipped, out / "summary.csv", job.failed)


class _Collected:
    """What the workers of :func:`run_batch_on_cluster` returned: the images done and failed, and
    the error that stops the job (the first macro error, or an ImageJ that is stuck)."""

    def __init__(self, stop, bar):
        self.stop, self.bar = stop, bar
        self.processed: list[Path] = []
        self.failed: list[tuple[Path, str]] = []
        self.error: MacroError | None = None
        self.seen: set = set()  # keys of the futures collected

    def add(self, future, path: Path) -> None:
        """Take in one finished task of ``path``."""
        from ..cluster import task_failure

        if future.key in self.seen:
            return
        self.seen.add(future.key)
        try:
            status, message = future.result()
        except Exception as err:  # a worker that died (KilledWorker) or an unforeseen error: that image fails
            status, message = "failed", task_failure(path, err)
        if status == "done":
            self.processed.append(path)
        elif status == "failed":
            log.error("skipped: %s", message)
            self.failed.append((path, message))
        elif status in ("error", "stuck") and self.error is None:  # stops the job
            self.error = MacroTimeout(message, stuck=True) if status == "stuck" else MacroError(message)
            self.stop.set()
        self.bar.update(1)

    def sort(self, inputs: list[Path]) -> None:
        """The images in the order of ``inputs``, whatever order the workers finished in."""
        order = {p: k for k, p in enumerate(inputs)}
        self.processed.sort(key=order.get)
        self.failed.sort(key=lambda f: order[f[0]])


#: one ImageJ per process: a worker runs one macro at a time
_IMAGEJ = threading.Lock()
#: set in a worker whose ImageJ could not be stopped after a timeout: it runs no macro any more
_STUCK = threading.Event()


def _macro_task(stop: str, code: str, path: str, out: str, macro_name: str,
                timeout: float | None) -> tuple[str, str | None]:
    """On a Dask worker: the macro on one image in the worker's own ImageJ; ("done", None),
    ("failed", why) for an image that cannot be opened or timed out, ("error", the macro error),
    ("stuck", why) when this worker's ImageJ could not be stopped after a timeout (now or on an
    earlier image: it runs nothing any more, and the job stops), or ("stopped", None) when the
    job stopped before this image."""
    from distributed import Event, get_worker

    if Event(stop).is_set():
        return "stopped", None
    with _IMAGEJ:
        if _STUCK.is_set():
            return "stuck", (f"{path}: not run: ImageJ on worker {get_worker().address} was left stuck by an "
                             "earlier timeout; restart that worker")
        try:
            _run_one(code, Path(path), Path(out), macro_name, timeout)
        except MacroTimeout as err:
            if not err.stuck:
                return "failed", str(err)
            _STUCK.set()
            Event(stop).set()  # the other workers take no new image either
            return "stuck", (f"{err}\nImageJ on worker {get_worker().address} could not be stopped, so that "
                             "worker takes no more images and the job stops")
        except DataError as err:
            return "failed", str(err)
        except MacroError as err:
            return "error", str(err)
    return "done", None


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
