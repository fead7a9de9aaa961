"""Ctrl-C, SIGTERM and SIGKILL in the middle of predict and macro batch: what was done is kept
(``summary.csv``), nothing half-written stays, no process outlives ijseg, and a later run
cleans up after a killed one."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tifffile
from conftest import orphaned_xvfb, xvfb_pids

IJSEG = str(Path(sys.executable).with_name("ijseg"))


@pytest.fixture(scope="module")
def many_images(sim_dataset, tmp_path_factory) -> Path:
    """24 images of 384x384 (tiles of a test image): long enough a run to interrupt."""
    src = tifffile.imread(sorted((sim_dataset / "test" / "images").glob("*.tif"))[0])
    big = np.tile(src, (4, 4))[:384, :384]
    folder = tmp_path_factory.mktemp("many")
    for i in range(24):
        tifffile.imwrite(folder / f"img{i:02d}.tif", np.roll(big, 7 * i, axis=1))
    return folder


def _wait_for(path_glob, folder: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(folder.glob(path_glob)) if folder.exists() else []:
            return
        if proc.poll() is not None:
            raise AssertionError(f"ended early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {path_glob} in {folder}")


def _summary(path: Path) -> list[str]:
    return [line.split(",")[0] for line in path.read_text().splitlines()[1:]]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_predict_interrupted_writes_the_summary_of_what_was_done(tiny_model, many_images, tmp_path, sig, code):
    out = tmp_path / "out"
    proc = subprocess.Popen([IJSEG, "-q", "predict", "--model", str(tiny_model), "--input", str(many_images),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for("*_labels.tif", out, proc)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code and time.monotonic() - t0 < 10, err
    done = sorted(p.name.replace("_labels.tif", ".tif") for p in out.glob("*_labels.tif"))
    assert 1 <= len(done) < 24
    assert f"interrupted after {len(done)} of 24 image(s)" in err and "Traceback" not in err
    assert sorted(_summary(out / "summary.csv")) == done
    for name in done:  # every image done has all its outputs
        stem = name[:-4]
        assert (out / f"{stem}_measurements.csv").is_file() and (out / f"{stem}_rois.zip").is_file()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_predict_after_sigkill_removes_the_temporary_files(tiny_model, many_images, tmp_path):
    out = tmp_path / "out"
    cmd = [IJSEG, "-q", "predict", "--model", str(tiny_model), "--input", str(many_images), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for("*_labels.tif", out, proc)
    proc.kill()
    proc.communicate(timeout=30)
    (out / f".img99_labels.ijseg{proc.pid}.x1y2.tmp.tif").write_bytes(b"")  # as if killed while writing
    for name in (p.name for p in out.glob("*_labels.tif")):  # an image has all its outputs or none
        assert (out / name.replace("_labels.tif", "_rois.zip")).is_file()
    r = subprocess.run([*cmd[:-2], "--input", str(many_images / "img00.tif"), "--out", str(out)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_macro_batch_interrupted_keeps_the_summary_and_no_xvfb(many_images, tmp_path, sig, code):
    macro = tmp_path / "slow.ijm"
    macro.write_text('run("Gaussian Blur...", "sigma=2"); wait(300);\n')
    out = tmp_path / "out"
    before = xvfb_pids()
    proc = subprocess.Popen([IJSEG, "-q", "macro", "batch", str(macro), "--input", str(many_images), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _wait_for("img01.tif", out, proc)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code and time.monotonic() - t0 < 10, err
    assert "Traceback" not in err and "summary.csv lists the images done" in err
    done = sorted(p.name for p in out.glob("img*.tif"))
    assert _summary(out / "summary.csv") == done and 2 <= len(done) < 24
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    assert not list(tmp_path.glob("hs_err_pid*.log"))  # the JVM did not crash
    time.sleep(0.5)
    assert not orphaned_xvfb(xvfb_pids() - before, proc.pid)


def test_xvfb_ends_with_a_killed_ijseg(many_images, tmp_path):
    macro = tmp_path / "slow.ijm"
    macro.write_text("wait(300);\n")
    out = tmp_path / "out"
    before = xvfb_pids()
    proc = subprocess.Popen([IJSEG, "-q", "macro", "batch", str(macro), "--input", str(many_images), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    _wait_for("img00.tif", out, proc)
    ours = {p for p in xvfb_pids() - before if psutil.Process(p).ppid() == proc.pid}
    assert ours  # the private display is up
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 5
    while any(psutil.pid_exists(p) for p in ours) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in ours if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    shutil.rmtree(out)
