"""Scale-out on Dask: `ijseg predict --cluster local:2` against the serial run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ijseg import provenance
from ijseg.cli import main

IJSEG = str(Path(sys.executable).with_name("ijseg"))


def test_predict_on_a_local_cluster_equals_the_serial_run(tiny_model, sim_dataset, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    images = sorted((sim_dataset / "test" / "images").glob("*.tif"))[:4]
    for f in images:
        shutil.copy(f, src / f.name)
    (src / "0001b.tif").write_bytes(b"not a tiff")  # a bad image among them: reported, the rest done
    common = ["-q", "predict", "--model", str(tiny_model), "--input", str(src), "--min-size", "3"]
    assert main([*common, "--out", str(tmp_path / "serial")]) == 1
    serial_err = capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "cluster"), "--cluster", "local:2"]) == 1
    err = capsys.readouterr().err
    assert "0001b.tif" in err and "0001b.tif" in serial_err and "Traceback" not in err
    a, b = tmp_path / "serial", tmp_path / "cluster"
    assert (a / "summary.csv").read_text() == (b / "summary.csv").read_text()
    assert len((b / "summary.csv").read_text().splitlines()) == len(images) + 1
    for f in images:
        np.testing.assert_array_equal(tifffile.imread(b / f"{f.stem}_labels.tif"), tifffile.imread(a / f"{f.stem}_labels.tif"))
        assert (b / f"{f.stem}_measurements.csv").read_text() == (a / f"{f.stem}_measurements.csv").read_text()
        assert (b / f"{f.stem}_rois.zip").read_bytes() == (a / f"{f.stem}_rois.zip").read_bytes()
    rec = provenance.read(b)
    assert rec["options"]["cluster"] == "local:2" and rec["workers"] == 2
    assert rec["segmented"] == [f.name for f in images] and [x["path"] for x in rec["failed"]] == [str(src / "0001b.tif")]


@pytest.mark.parametrize("spec", ["cluster", "local:0", "http://x"])
def test_a_bad_cluster_is_one_line(tiny_model, sim_dataset, tmp_path, capsys, spec):
    image = sorted((sim_dataset / "test" / "images").glob("*.tif"))[0]
    assert main(["-q", "predict", "--model", str(tiny_model), "--input", str(image), "--out", str(tmp_path / "o"),
                 "--cluster", spec]) == 1
    err = capsys.readouterr().err
    assert "--cluster" in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_macro_batch_on_a_local_cluster_equals_the_serial_run(tiny_model, sim_dataset, tmp_path):
    """Each worker hosts its own ImageJ and IJSeg engine; the saved images, Results tables and
    summary.csv are the serial run's; a file ImageJ cannot open is reported and the others done."""
    import pandas as pd

    src = tmp_path / "in"
    src.mkdir()
    images = sorted((sim_dataset / "test" / "images").glob("*.tif"))[:4]
    for f in images:
        shutil.copy(f, src / f.name)
    (src / "0001b.tif").write_bytes(b"not a tiff")
    macro = tmp_path / "segment.ijm"
    macro.write_text(f'run("IJSeg Predict", "model=[{tiny_model}] output=labels");\n'
                     'run("IJSeg Measure", "labels=[" + getTitle() + "]");\n')
    runs = {}
    for name, extra in (("serial", []), ("cluster", ["--cluster", "local:2"])):
        proc = subprocess.run([IJSEG, "-q", "macro", "batch", str(macro), "--input", str(src), "--out",
                               str(tmp_path / name), *extra], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 1 and "0001b.tif" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        runs[name] = tmp_path / name
    a, b = runs["serial"], runs["cluster"]
    assert (a / "summary.csv").read_text() == (b / "summary.csv").read_text()
    assert len(pd.read_csv(b / "summary.csv")) == len(images)
    for f in images:
        np.testing.assert_array_equal(tifffile.imread(b / f.name), tifffile.imread(a / f.name))
        assert (b / f"{f.stem}_results.csv").read_text() == (a / f"{f.stem}_results.csv").read_text()
    rec = provenance.read(b)
    assert rec["options"]["cluster"] == "local:2" and rec["processed"] == [f.name for f in images]
    assert rec["macro"]["text"] == macro.read_text() and rec["workers"] == 2
    assert [x["path"] for x in rec["failed"]] == [str(src / "0001b.tif")] == [x["path"] for x in provenance.read(a)["failed"]]
    assert "0001b.tif" in rec["failed"][0]["error"]


#: a plugin call that ignores the macro's abort and Thread.stop: ImageJ cannot be stopped
_HANG_JAVA = """
public class IjsegTestHang {
    public static String sleep(String ms) {
        long end = System.currentTimeMillis() + Long.parseLong(ms);
        while (System.currentTimeMillis() < end) {
            try {
                while (System.currentTimeMillis() < end) Thread.sleep(20);
            } catch (Throwable t) {
            }
        }
        return "";
    }
}
"""


@pytest.fixture(scope="module")
def hang_env(tmp_path_factory) -> dict[str, str]:
    """The environment of an ijseg whose ImageJ has ``IjsegTestHang.sleep(ms)`` among its plugins
    (in a copy of the IJSeg plugin's ImageJ home, ``$IJSEG_CACHE``)."""
    from ijseg.ij._jars import find_ij_jar, find_java_tool
    from ijseg.ij.plugin import plugin_home

    home = plugin_home(find_ij_jar())
    cache = tmp_path_factory.mktemp("cache")
    shutil.copytree(home, cache / home.name)
    source = cache / "IjsegTestHang.java"
    source.write_text(_HANG_JAVA)
    subprocess.run([find_java_tool("javac"), "-d", str(cache / home.name / "plugins"), str(source)], check=True,
                   capture_output=True, timeout=120)
    return {**os.environ, "IJSEG_CACHE": str(cache)}


def _batch(macro, images, out, *extra, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([IJSEG, "-q", "macro", "batch", str(macro), "--input", str(images), "--out", str(out),
                           "--cluster", "local:1", *extra], capture_output=True, text=True, timeout=timeout, env=env)


def test_macro_batch_on_a_cluster_stops_where_imagej_cannot_be_stopped(hang_env, sim_dataset, tmp_path):
    """A worker whose ImageJ could not be stopped after a timeout takes no other image: the job
    stops with that error, as the serial run does (every image would hang here)."""
    macro = tmp_path / "hang.ijm"
    macro.write_text('call("IjsegTestHang.sleep", "15000");\nrun("Invert");\n')
    out = tmp_path / "out"
    proc = _batch(macro, sim_dataset / "test" / "images", out, "--timeout", "2", env=hang_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "did not finish within 2 s" in proc.stderr and "could not be stopped" in proc.stderr
    assert "failed:" not in proc.stderr  # not skipped as one image: the job stopped
    assert not list(out.glob("0*.tif"))
    rec = provenance.read(out)
    assert rec["status"] == "failed" and "could not be stopped" in rec["error"]
    assert rec["processed"] == [] and rec["failed"] == []


def test_macro_batch_on_a_cluster_survives_a_worker_that_dies(sim_dataset, tmp_path):
    """An image whose worker dies (``KilledWorker``, here on the first death) fails with a line
    naming it; the others are done on the restarted worker."""
    macro = tmp_path / "kill.ijm"
    macro.write_text('if (getTitle() == "0001.tif") exec("kill", "-9", call("java.lang.ProcessHandle.current"));\n'
                     'run("Invert");\n')
    src, out = sim_dataset / "test" / "images", tmp_path / "out"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
           "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}  # one image at a time on the worker
    proc = _batch(macro, src, out, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{src / '0001.tif'}: KilledWorker: " in proc.stderr
    rec = provenance.read(out)
    failed = [Path(x["path"]).name for x in rec["failed"]]
    assert "0001.tif" in failed and all(": KilledWorker: " in x["error"] for x in rec["failed"])
    names = sorted(p.name for p in src.glob("*.tif"))
    assert rec["processed"] == [n for n in names if n not in failed] and rec["processed"]
    assert sorted(p.name for p in out.glob("0*.tif")) == rec["processed"]


def test_macro_batch_on_a_cluster_interrupted_while_imagej_hangs(hang_env, sim_dataset, tmp_path):
    """Ctrl-C while an image outlasts the wait for the images in progress: the interruption is
    reported (not the wait's timeout), with the summary of what was done."""
    started = tmp_path / "started"
    macro = tmp_path / "hang.ijm"
    macro.write_text(f'File.saveString("x", "{started}");\ncall("IjsegTestHang.sleep", "15000");\n')
    out = tmp_path / "out"
    proc = subprocess.Popen([IJSEG, "-q", "macro", "batch", str(macro), "--input", str(sim_dataset / "test" / "images"),
                             "--out", str(out), "--cluster", "local:1", "--timeout", "2"], env=hang_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), proc.communicate(timeout=60)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted after 0 of 3 image(s)" in err and (out / "summary.csv").is_file()
    assert provenance.read(out)["status"] == "interrupted"
