"""Prediction over a Dask ``distributed`` cluster: many images, one model loaded per worker.

``ijseg predict --cluster local:2`` (or ``tcp://SCHEDULER:8786``) sends each image to a worker.
A worker plugin loads the model once in each worker; each task segments one file and writes its
outputs, so the output folder (and the model and images) must be on a file system that every
worker sees. The results, ``summary.csv`` included, are those of the serial run: the summary
keeps the order of the inputs, whatever order the workers finish in. A bad image is reported
and the others are done; Ctrl-C cancels what has not started and writes the summary of what is
done.

``local[:N]`` starts a :class:`distributed.LocalCluster` of N worker processes (default: one
per CPU core, as many as fit at 3 GB each), each with one task at a time and TensorFlow's
threads shared out between them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

from .errors import ConfigError, IjsegError, Interrupted

__all__ = ["parse_cluster", "connect", "PredictorPlugin", "register_model", "predict_files_on_cluster",
           "task_failure", "finished_after_stop"]

log = logging.getLogger(__name__)

_LOCAL = re.compile(r"^local(?::(\d+))?$")


def parse_cluster(spec: str) -> tuple[str, int | str]:
    """``("local", N)`` or ``("remote", address)`` from ``local``, ``local:N`` or a scheduler's
    address (``tcp://host:port``, ``tls://...``).

    >>> parse_cluster("local:2"), parse_cluster("tcp://10.0.0.5:8786")
    (('local', 2), ('remote', 'tcp://10.0.0.5:8786'))
    """
    m = _LOCAL.match(spec.strip())
    if m:
        n = int(m.group(1)) if m.group(1) else _local_workers()
        if n < 1:
            raise ConfigError(f"--cluster {spec}: a local cluster needs at least 1 worker")
        return "local", n
    if re.match(r"^(tcp|tls|inproc|ucx|ws|wss)://\S+$", spec.strip()):
        return "remote", spec.strip()
    raise ConfigError(f"--cluster {spec!r}: expected local, local:N or a scheduler address such as "
                      f"tcp://host:8786")


def _local_workers() -> int:
    """Workers of ``local``: one per core, as many as fit at 3 GB of memory each (a worker holds
    TensorFlow, the model and an image)."""
    cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return cores
    return max(1, min(cores, int(memory // 3e9)))


@contextmanager
def connect(spec: str) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``spec`` (see :func:`parse_cluster`), closed at the end
    of the block (a local cluster is stopped with it)."""
    from distributed import Client, LocalCluster

    kind, where = parse_cluster(spec)
    cluster = None
    try:
        if kind == "local":
            # one task per worker process; the workers share the cores out among TensorFlow's threads
            # no memory limit per worker: Dask's would kill a worker on a large volume
            cluster = LocalCluster(n_workers=int(where), threads_per_worker=1, processes=True, memory_limit=0,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
        else:
            client = Client(where, timeout="30s")
    except OSError as err:
        raise IjsegError(f"--cluster {spec}: cannot reach the scheduler ({err})") from err
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class PredictorPlugin(WorkerPlugin):
    """Loads the model once in each worker, with TensorFlow's threads set for its share of the
    cores; tasks find it as ``get_worker().plugins[name].predictor``. A worker that runs several
    tasks at once (``--nthreads`` > 1) runs them one after the other on the model."""

    def __init__(self, model: str, which: str = "best", threads: int | None = None):
        self.model, self.which, self.threads = model, which, threads
        self.predictor = self.lock = None
        # one plugin per model: clients of one scheduler that use other models keep theirs
        self.name = "ijseg-" + hashlib.sha1(f"{model}|{which}".encode()).hexdigest()[:16]

    def setup(self, worker=None) -> None:
        if self.threads:
            from ._tf import import_tf

            tf, _ = import_tf()
            tf.config.threading.set_intra_op_parallelism_threads(self.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        from .pipeline import load_predictor

        self.lock = threading.Lock()
        self.predictor = load_predictor(self.model, which=self.which)


def task_failure(path: str | os.PathLike, err: BaseException) -> str:
    """One line that names the file whose task raised ``err`` instead of returning (a worker that
    died: ``KilledWorker``; an unforeseen error).

    >>> task_failure("a/x.tif", RuntimeError("worker lost\\nmore"))
    'a/x.tif: RuntimeError: worker lost'
    """
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{path}: {type(err).__name__}: {first}" if first else f"{path}: {type(err).__name__}"


def finished_after_stop(futures: list, timeout: float) -> list:
    """Of ``futures``, those done within ``timeout`` seconds: after Ctrl-C, the images in progress
    that finished. Running out of time, or a second Ctrl-C, ends the wait without an error, so that
    the caller's :class:`~ijseg.errors.Interrupted` is what is raised."""
    from distributed import wait

    try:
        wait(futures, timeout=timeout)
    except (TimeoutError, KeyboardInterrupt):
        log.warning("not waiting for the %d image(s) still in progress", sum(not f.done() for f in futures))
    return [f for f in futures if f.done()]


def _segment(plugin: str, stop: str, path: str, out: str, kwargs: dict[str, Any]) -> tuple[dict | None, str | None]:
    """On a worker: segment one file with the worker's model; (summary row, None), (None, error),
    or (None, None) when the run was stopped before this file."""
    from distributed import Event, get_worker

    from .pipeline import failure_message, predict_file

    if Event(stop).is_set():
        return None, None
    loaded = get_worker().plugins[plugin]
    with loaded.lock:
        try:
            return predict_file(loaded.predictor, Path(path), Path(out), **kwargs), None
        except IjsegError as err:
            return None, failure_message(Path(path), err)


def predict_files_on_cluster(predictor, inputs: list[Path], out: str | os.PathLike, *, cluster: str,
                             which: str = "best", output: str = "labels", options=None, tile: int | None = None,
                             plane: int | None = None, channel: int | None = None,
                             progress: bool = True) -> tuple[list[dict], list[tuple[Path, str]]]:
    """:func:`ijseg.pipeline.predict_files` with the images shared out over a Dask cluster.

    ``predictor`` is the model loaded here (its configuration and post-processing); each worker
    loads the same model folder (``which`` weights) or bundle once. Ctrl-C stops the workers
    before their next image and waits for the images in progress, so that ``summary.csv``
    lists every image whose outputs are written."""
    import dataclasses

    from distributed import Event, as_completed
    from tqdm.auto import tqdm

    from .provenance import record as record_run
    from ._fileio import atomic_write_csv, remove_stale_temporaries
    from .pipeline import OUTPUTS

    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    out = Path(out).resolve()
    created = not out.exists()
    pp = options or predictor.postprocessing
    kwargs = dict(output=output, options=pp, tile=tile, plane=plane, channel=channel)
    settings = dict(output=output, tile=tile, plane=plane, channel=channel, cluster=cluster,
                    postprocessing=dataclasses.asdict(pp))
    results: dict[int, tuple[dict | None, str | None]] = {}
    with record_run("predict", out, options=settings, config=predictor.config.to_dict(),
                           model=predictor.path, inputs=inputs) as rec, connect(cluster) as client:
        out.mkdir(parents=True, exist_ok=True)
        for p in remove_stale_temporaries(out):
            log.info("removed %s (left by a run that was killed)", p.name)
        plugin = register_model(client, predictor, cluster, which)
        workers = len(client.scheduler_info()["workers"]) or 1
        stop = Event(f"ijseg-stop-{uuid.uuid4().hex}", client=client)
        futures = [client.submit(_segment, plugin, stop.name, str(Path(p).resolve()), str(out), kwargs,
                                 pure=False) for p in inputs]
        index = {f.key: k for k, f in enumerate(futures)}

        def collect(future) -> None:
            k = index[future.key]
            try:
                results[k] = future.result()
            except Exception as err:  # a worker's crash or an unforeseen error: that image fails
                results[k] = (None, task_failure(inputs[k], err))
            if results[k][1] is not None and len(inputs) > 1:
                log.error("skipped: %s", results[k][1])

        bar = tqdm(total=len(inputs), desc=f"predict ({workers} workers)", unit="img", disable=not progress)
        try:
            for future in as_completed(futures):
                collect(future)
                bar.update(1)
        except KeyboardInterrupt as err:
            stop.set()  # the workers take no new image; those in progress are finished and listed
            for future in finished_after_stop([f for k, f in enumerate(futures) if k not in results], 600):
                collect(future)
            done = sum(1 for r in results.values() if r[0] is not None)
            raise Interrupted(f"interrupted after {done} of {len(inputs)} image(s); "
                              f"{out / 'summary.csv'} lists them") from err
        finally:
            bar.close()
            rows = [results[k][0] for k in sorted(results) if results[k][0] is not None]
            failures = [(inputs[k], results[k][1]) for k in sorted(results) if results[k][1] is not None]
            if rows:
                atomic_write_csv(out / "summary.csv", rows)
            elif created and not any(out.iterdir()):
                out.rmdir()  # a run that wrote nothing leaves no empty folder behind
            rec.update(workers=workers, segmented=[r["Slice"] for r in rows],
                       failed=[{"path": str(p), "error": m} for p, m in failures], discard=not rows)
    return rows, failures


def register_model(client, predictor, cluster: str, which: str = "best") -> str:
    """Have every worker of ``client`` load ``predictor``'s model (``which`` weights) once, with
    TensorFlow's threads shared out among a local cluster's workers; returns the plugin's name."""
    kind, _ = parse_cluster(cluster)
    workers = len(client.scheduler_info()["workers"]) or 1
    threads = max(1, (os.cpu_count() or 1) // workers) if kind == "local" else None
    plugin = PredictorPlugin(str(Path(predictor.path).resolve()), which, threads)
    client.register_plugin(plugin, name=plugin.name)
    return plugin.name
