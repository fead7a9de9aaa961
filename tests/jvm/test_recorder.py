"""The Macro Recorder test: a user's session under Xvfb, recorded, then replayed headless.

ImageJ's Recorder is opened, and IJSeg Predict, Set Measurements and Analyze Particles are run
from the menu (in their own threads, as a menu click runs them) with their dialogs filled in and
confirmed. The recorded macro is saved and run headless by ``ijseg macro batch`` over a folder:
on the recorded image it gives the session's count mask and Results table again, and on the
other images what ijseg's Python pipeline gives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.measure import label

import awt_driver as gui
from ijseg.data.io import read_image
from ijseg.ij import from_imageplus, jclass, results_table, run, start_jvm
from ijseg.postprocess import PostprocessOptions
from ijseg.pipeline import load_predictor, segment

pytestmark = pytest.mark.jvm

IJSEG = str(Path(sys.executable).with_name("ijseg"))
MEASUREMENTS = ["Area", "Centroid", "Perimeter", "Shape descriptors", "Feret's diameter"]


def _menu(command: str, **dialog) -> None:
    """Plugins/Analyze menu click on ``command``, then fill and confirm its dialog."""
    jclass("ij.IJ").doCommand(command)
    gui.fill_dialog(command.rstrip("."), **dialog)
    gui.wait_until_done(command)


@pytest.fixture
def recorded_session(tiny_binary_model, sim_dataset):
    """Record the course pipeline on the first test image; returns (macro text, count mask, Results)."""
    start_jvm(display=True)
    run("x = 1;")  # builds ImageJ's menus
    image = sorted((sim_dataset / "test" / "images").glob("*.tif"))[0]
    wm = jclass("ij.WindowManager")
    imp = jclass("ij.IJ").openImage(str(image))
    imp.show()
    gui.wait_for_window("ij.gui.ImageWindow", image.name)
    recorder = jclass("ij.plugin.frame.Recorder")()
    try:
        _menu("IJSeg Predict", strings={"Model": str(tiny_binary_model)}, choices={"Output": "mask"},
              numbers={"Threshold": 0.5})
        assert str(wm.getCurrentImage().getTitle()) == f"{image.stem}_mask"
        _menu("Set Measurements...", checkboxes={k: True for k in MEASUREMENTS}, uncheck_others=True,
              choices={"Redirect to": "None"}, numbers={"Decimal places": 3})
        _menu("Analyze Particles...", strings={"Size": "5-Infinity", "Circularity": "0.00-1.00"},
              choices={"Show": "Count Masks"},
              checkboxes={"Display results": True, "Clear results": True, "Summarize": True}, uncheck_others=True)
        count_mask = from_imageplus(wm.getCurrentImage())
        table = results_table()
        text = str(recorder.getText())
    finally:
        recorder.close()
        wm.closeAllWindows()
    return image, text, count_mask, table


def test_recorded_session_replays_headless(recorded_session, tiny_binary_model, sim_dataset, tmp_path):
    image, text, count_mask, table = recorded_session
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines[0].startswith('run("IJSeg Predict", "model=') and "output=mask threshold=0.5 " in lines[0]
    assert lines[1].startswith('run("Set Measurements...", "area centroid perimeter shape feret')
    assert lines[2] == 'run("Analyze Particles...", "size=5-Infinity show=[Count Masks] display clear summarize");'
    assert len(lines) == 3
    assert count_mask.max() > 0 and len(table) == count_mask.max()
    macro = tmp_path / "recorded.ijm"
    macro.write_text(text)

    folder = tmp_path / "images"
    shutil.copytree(sim_dataset / "test" / "images", folder)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.run([IJSEG, "-q", "macro", "batch", str(macro), "--input", str(folder), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = sorted(folder.glob("*.tif"))
    assert f"on {len(files)} image(s)" in proc.stdout

    # the recorded image: the session's own result again
    np.testing.assert_array_equal(tifffile.imread(out / image.name), count_mask)
    replayed = pd.read_csv(out / f"{image.stem}_results.csv")
    assert list(replayed.columns) == list(table.columns)
    np.testing.assert_allclose(replayed.to_numpy(float), table.to_numpy(float), rtol=1e-9)

    # the other images: Analyze Particles on ijseg's mask, as scikit-image labels the same mask
    predictor = load_predictor(tiny_binary_model)
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["Image"]) == [f.name for f in files]
    for f, n_rows in zip(files, summary["Results rows"]):
        img = read_image(f)
        pixel_area = img.pixel_size[0] * img.pixel_size[1]
        objects = label(segment(predictor, img, PostprocessOptions(threshold=0.5))[1].mask > 0, connectivity=2)
        keep = np.bincount(objects.ravel()) * pixel_area >= 5  # size=5-Infinity is in calibrated units
        keep[0] = False
        expected = label(keep[objects], connectivity=2)
        np.testing.assert_array_equal(tifffile.imread(out / f.name), expected, err_msg=f.name)
        results = pd.read_csv(out / f"{f.stem}_results.csv")
        assert n_rows == len(results) == expected.max()
        np.testing.assert_allclose(results["Area"], np.bincount(expected.ravel())[1:] * pixel_area, rtol=1e-6)


def test_batch_resumes_and_stops_at_the_first_error(sim_dataset, tmp_path):
    from ijseg.ij import MacroError
    from ijseg.ij.batch import run_batch

    files = sorted((sim_dataset / "test" / "images").glob("*.tif"))
    code = 'run("Invert");\nrun("Measure");\n'
    report = run_batch(code, files, tmp_path, progress=False)
    assert report.processed == files and not report.skipped
    (tmp_path / files[1].name).unlink()
    report = run_batch(code, files, tmp_path, progress=False)
    assert report.processed == [files[1]] and report.skipped == [files[0], files[2]]
    summary = pd.read_csv(report.summary)
    assert list(summary["Results rows"]) == [1, 1, 1]  # the Results table is cleared for each image
    inverted = tifffile.imread(tmp_path / files[0].name)
    assert inverted.shape == tifffile.imread(files[0]).shape
    # provenance.json: the macro's text, the inputs' hashes, the Java and ImageJ that ran
    import hashlib

    from ijseg import provenance
    from ijseg.ij import jclass

    rec = provenance.read(tmp_path)
    assert rec["run"] == "macro batch" and rec["status"] == "completed" and rec["macro"]["text"] == code
    assert rec["processed"] == [files[1].name] and rec["skipped"] == [files[0].name, files[2].name]
    assert [f["sha256"] for f in rec["inputs"]] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert rec["versions"]["java"] == str(jclass("java.lang.System").getProperty("java.version"))
    assert rec["versions"]["imagej"] == str(jclass("ij.IJ").getVersion())

    with pytest.raises(MacroError, match=rf"{files[0]}: bad.ijm: .*line 2: Undefined variable"):
        run_batch('run("Invert");\nx = y + 1;\n', files, tmp_path / "bad", macro_name="bad.ijm", progress=False)
    # nothing half-written; the summary lists what was done (nothing), the record says why
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["provenance.json", "summary.csv"]
    rec = provenance.read(tmp_path / "bad")
    assert rec["status"] == "failed" and "Undefined variable" in rec["error"] and rec["processed"] == []
    assert pd.read_csv(tmp_path / "bad" / "summary.csv").empty
