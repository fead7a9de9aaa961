"""Scale-out on Dask: `ijseg predict --cluster local:2` against the serial run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from ijseg import provenance
from ijseg.cli import main


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
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    ijseg = str(Path(sys.executable).with_name("ijseg"))
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
        proc = subprocess.run([ijseg, "-q", "macro", "batch", str(macro), "--input", str(src), "--out",
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
