"""The IJSeg commands in a real ImageJ 1.x: in-process (Python engine) and in a stand-alone ImageJ
(command-line engine), the shipped macros, errors, and the interactive session."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ijseg.data.io import Image, read_image
from ijseg.ij import MacroError, jclass, run, start_jvm
from ijseg.ij._xvfb import Xvfb
from ijseg.ij.engine import install_engine
from ijseg.measure import measure
from ijseg.pipeline import load_predictor, segment

pytestmark = pytest.mark.jvm

from conftest import REPO, orphaned_xvfb, xvfb_pids  # noqa: E402

IJSEG = str(Path(sys.executable).with_name("ijseg"))


@pytest.fixture(scope="module")
def images(sim_dataset) -> list[Path]:
    return sorted((sim_dataset / "test" / "images").glob("*.tif"))


def _predict_macro(model, extra: str = "") -> str:
    return f'run("IJSeg Predict", "model=[{model}] output=labels threshold=0.50 {extra}");\n'


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int32, np.uint32, ">u2"])
def test_pixels_reach_imagej_bit_for_bit(dtype):
    from ijseg.ij import from_imageplus, to_imageplus

    start_jvm(display=True)
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    full = (rng.integers(info.min, info.max, (9, 14), endpoint=True) if info is not None
            else rng.normal(0, 1e3, (9, 14))).astype(dtype)
    plane = full[1::2, ::3]  # not contiguous
    back = from_imageplus(to_imageplus(plane, "x"))
    assert back.shape == plane.shape
    expected = plane if np.dtype(dtype) in (np.uint8, np.uint16) else plane.astype(np.float32)
    assert back.dtype == expected.dtype and np.array_equal(back, expected)
    stack = from_imageplus(to_imageplus(np.stack([plane, plane[::-1]]), "c"))
    assert np.array_equal(stack, np.stack([plane, plane[::-1]]).astype(np.float32))


def test_plugin_commands_are_installed():
    start_jvm(display=True)
    run("x = 1;")  # builds ImageJ's menus
    commands = jclass("ij.Menus").getCommands()
    assert str(commands.get("IJSeg Predict")) == "ijseg.PredictCommand"
    assert str(commands.get("IJSeg Measure")) == "ijseg.MeasureCommand"
    assert str(commands.get("IJSeg Models")) == "ijseg.ModelsCommand"
    assert "ijseg in Python" in str(jclass("ijseg.Bridge").engine())


def test_predict_and_measure_in_process_equal_python(tiny_model, images):
    img = read_image(images[0])
    code = _predict_macro(tiny_model) + 'run("IJSeg Measure", "labels=[cells_labels] intensity=[cells.tif]");\n'
    r = run(code, img.data, title="cells.tif")
    assert set(r.images) == {"cells.tif", "cells_labels"}
    _, seg, _ = segment(load_predictor(tiny_model), img)  # the model's post-processing: seed not given
    np.testing.assert_array_equal(r.images["cells_labels"], seg.labels)
    table = measure(seg.labels, img.data)
    assert len(r.results) == seg.n_objects > 0
    for col in ("Area", "Mean", "X", "Y", "Perim.", "Feret", "Circ.", "Solidity"):
        np.testing.assert_allclose(r.results[col].to_numpy(), table[col], rtol=1e-5, err_msg=col)


def test_model_is_loaded_once(tiny_model, images, tmp_path):
    """Two macro runs load the model once; changed files load it again."""
    import shutil

    model = tmp_path / "model"  # a path no other test has loaded
    shutil.copytree(tiny_model, model)
    engine = install_engine()
    img = read_image(images[1]).data
    before = engine._models.loads
    first = run(_predict_macro(model), img).image
    run(_predict_macro(model, "size=5-Infinity"), img)
    assert engine._models.loads == before + 1
    weights = model / "weights_best.weights.h5"
    os.utime(weights, (weights.stat().st_atime, weights.stat().st_mtime + 10))
    again = run(_predict_macro(model), img).image
    assert engine._models.loads == before + 2
    np.testing.assert_array_equal(again, first)


def test_probabilities_from_macro_equal_ijseg_predict(tiny_model, images, tmp_path):
    out = tmp_path / "cli"
    subprocess.run([IJSEG, "-q", "predict", "--model", str(tiny_model), "--input", str(images[2]), "--out", str(out),
                    "--output", "probabilities"], check=True, capture_output=True)
    expected = tifffile.imread(out / f"{images[2].stem}_prob.tif")
    r = run(f'open("{images[2]}");\n' + _predict_macro(tiny_model).replace("output=labels", "output=probabilities"))
    prob = r.images[f"{images[2].stem}_prob"]
    assert expected.shape[0] == 3 and prob.shape == expected.shape  # CYX: background, interior, boundary
    assert np.abs(prob - expected).max() < 1e-5


def test_engine_errors_are_macro_errors_with_line(tiny_model):
    img = np.zeros((64, 64), np.float32)
    with pytest.raises(MacroError, match=r"line 2: IJSeg Predict: model not found: /no/such/model"):
        run('x = 1;\nrun("IJSeg Predict", "model=[/no/such/model] output=labels");\nprint("not reached");', img)
    with pytest.raises(MacroError, match="threshold must be between 0 and 1"):
        run(_predict_macro(tiny_model).replace("threshold=0.50", "threshold=1.5"), img)
    with pytest.raises(MacroError, match="size must be min-max"):
        run(_predict_macro(tiny_model, "size=big"), img)
    with pytest.raises(MacroError, match="IJSeg Predict: .*image is empty"):
        run(_predict_macro(tiny_model), img)
    with pytest.raises(MacroError, match=r"line 3: Undefined variable\n    3: y = nothing \+ 1;"):
        run("a = 1;\nb = 2;\ny = nothing + 1;\nprint(y);")


def test_measure_of_a_label_image_without_objects():
    from ijseg.ij import to_imageplus

    start_jvm(display=True)
    engine = install_engine()
    labels = to_imageplus(np.zeros((16, 16), np.uint16), "empty")
    table = jclass("ij.measure.ResultsTable")()
    table.incrementCounter()  # rows already there are kept
    assert engine.measure(labels, None, table) is None
    assert int(table.size()) == 1
    r = run('run("IJSeg Measure", "labels=[e]");\nprint("rows " + nResults);', np.zeros((8, 8), np.uint16), title="e")
    assert r.log.strip().endswith("rows 0") and len(r.results) == 0


def test_results_dataframe_and_log():
    img = (np.arange(40 * 50).reshape(40, 50) % 7 == 0).astype(np.uint8) * 255
    r = run('setThreshold(255, 255);\nrun("Set Measurements...", "area centroid redirect=None decimal=3");\n'
            'run("Analyze Particles...", "display clear");\nprint("found " + nResults);', img)
    assert list(r.results.columns)[:3] == ["Area", "X", "Y"]
    assert len(r.results) > 0 and r.log.rstrip().splitlines()[-1] == f"found {len(r.results)}"


@pytest.mark.parametrize("server", [True, False], ids=["serve", "process-per-call"])
def test_standalone_imagej_runs_the_command_line(tiny_model, images, tmp_path, server):
    """ImageJ on its own (java -jar ij.jar) with the plugin: IJSeg Predict calls the ijseg command
    line, in one `ijseg serve` process for the session or (-Dijseg.noserver=true, or an ijseg
    without serve) in a process per call; both give the labels of Python."""
    out = [tmp_path / f"labels{i}.tif" for i in range(2)]
    macro = tmp_path / "standalone.ijm"
    code = ""
    for i in range(2):  # two images: the second one reuses the server and its loaded model
        code += (f'open("{images[i]}");\n' + _predict_macro(tiny_model) + f'saveAs("Tiff", "{out[i]}");\n')
    macro.write_text(code + f'print("engine: " + call("ijseg.Bridge.engine"));\n'
                     f'run("IJSeg Measure", "labels=[labels1.tif] intensity=[{images[1].name}]");\n'
                     'print("objects: " + nResults);\n')
    proc = _standalone(macro, server)
    engine = next(line for line in proc.stdout.splitlines() if line.startswith("engine: "))
    assert engine.startswith("engine: ijseg command line (") and ("server pid" in engine) == server, engine
    predictor = load_predictor(tiny_model)
    for i in range(2):
        _, seg, _ = segment(predictor, read_image(images[i]))
        np.testing.assert_array_equal(tifffile.imread(out[i]), seg.labels)
    assert f"objects: {seg.n_objects}" in proc.stdout


def _standalone(macro: Path, server: bool = True) -> subprocess.CompletedProcess:
    """``macro`` in ImageJ on its own (java -jar ij.jar -batch) with the plugin and the ijseg
    command line as its engine."""
    state = start_jvm(display=True)
    xvfb = Xvfb.start()
    try:
        env = dict(os.environ, DISPLAY=xvfb.display, IJSEG_EXECUTABLE=IJSEG)
        proc = subprocess.run(["java", f"-Dplugins.dir={state['plugins'].parent}", f"-Dijseg.noserver={not server}",
                               "-jar", str(state["jar"]), "-batch", str(macro)],
                              env=env, capture_output=True, text=True, timeout=300)
    finally:
        xvfb.stop()
    assert proc.returncode == 0, proc.stderr
    return proc


def test_standalone_imagej_segments_volumes_and_planes_of_stacks(tiny_model3d, tiny_model, sim3d_dataset, tmp_path):
    """In a stand-alone ImageJ, a 3-D model gets the whole stack and IJSeg Measure the label
    stack (3D Objects Counter's table, as in Python); a 2-D model gets the current plane, of a
    stack and of a hyperstack of 2 channels x 6 planes, as in the in-process engine."""
    import pandas as pd

    vol = sorted((sim3d_dataset / "test" / "images").glob("*.tif"))[0]
    data = read_image(vol).data
    table = tmp_path / "table.csv"
    hyper = ('run("Stack to Hyperstack...", "order=xyczt(default) channels=2 slices=6 frames=1 display=Grayscale");\n'
             'Stack.setPosition(2, 4, 1);\n')
    code = (f'open("{vol}");\n' + _predict_macro(tiny_model3d) + f'saveAs("Tiff", "{tmp_path / "l3d.tif"}");\n'
            f'run("IJSeg Measure", "labels=[l3d.tif] intensity=[{vol.name}]");\nsaveAs("Results", "{table}");\n'
            'close("*");\n')
    for name, position in (("plane", "setSlice(5);\n"), ("hyper", hyper)):
        code += (f'open("{vol}");\n' + position + _predict_macro(tiny_model) + f'saveAs("Tiff", "{tmp_path / name}.tif");\n'
                 'close("*");\n')
    macro = tmp_path / "stacks.ijm"
    macro.write_text(code)
    _standalone(macro)
    _, seg, expected = segment(load_predictor(tiny_model3d), read_image(vol))
    labels = read_image(tmp_path / "l3d.tif")
    np.testing.assert_array_equal(labels.data, seg.labels)
    assert labels.voxel_size == pytest.approx((1.25, 0.5, 0.5)) and seg.n_objects > 0
    got = pd.read_csv(table)
    assert len(got) == len(expected)
    for col in expected.columns:  # saveAs("Results") writes 3 decimals
        np.testing.assert_allclose(got[col].to_numpy(), expected[col], rtol=1e-5, atol=5e-4, err_msg=col)
    predictor = load_predictor(tiny_model)
    for name, plane in (("plane", 4), ("hyper", 7)):
        _, seg, _ = segment(predictor, Image(data[plane], "YX"))
        np.testing.assert_array_equal(tifffile.imread(tmp_path / f"{name}.tif"), seg.labels, err_msg=name)


def test_batch_segment_script_without_display(tiny_model, sim_dataset, tmp_path):
    src = sim_dataset / "test" / "images"
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.run([IJSEG, "macro", "run", str(REPO / "fiji_scripts" / "batch_segment.ijm"),
                           "--arg", f"input={src}", "--arg", f"output={out}", "--arg", f"model={tiny_model}",
                           "--arg", "min_size=3"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    files = sorted(src.glob("*.tif"))
    predictor = load_predictor(tiny_model)
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0] == "Slice,Count,Total Area,Average Size,%Area,Mean" and len(summary) == len(files) + 1
    for f, line in zip(files, summary[1:]):
        _, seg, _ = segment(predictor, read_image(f), dataclasses.replace(predictor.postprocessing, min_size=3))
        np.testing.assert_array_equal(tifffile.imread(out / f"{f.stem}_labels.tif"), seg.labels)
        rows = (out / f"{f.stem}_results.csv").read_text().splitlines()
        assert len(rows) == seg.n_objects + 1 and line.startswith(f"{f.name},{seg.n_objects},")


def test_batch_script_with_relative_paths(tiny_model, tiny_bundle, images, tmp_path):
    """Input, output and model given relative to the working folder, with a model folder (loaded
    while ImageJ starts) and with a bundle (whose loading moves the working folder for a moment:
    the make demo run that preloaded a bundle lost its relative input folder)."""
    import shutil

    work = tmp_path / "work"
    (work / "in").mkdir(parents=True)
    for f in images[:3]:
        shutil.copy(f, work / "in" / f.name)
    shutil.copytree(tiny_model, work / "model")
    shutil.copy(tiny_bundle, work / "bundle.zip")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    for model in ("model", "bundle.zip"):
        proc = subprocess.run([IJSEG, "-q", "macro", "run", str(REPO / "fiji_scripts" / "batch_segment.ijm"),
                               "--arg", "input=in", "--arg", f"output=out-{model}", "--arg", f"model={model}"],
                              cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert len((work / f"out-{model}" / "summary.csv").read_text().splitlines()) == 4


def test_executable_ends_without_teardown_but_cleans_up(tiny_bundle, images, tmp_path):
    """The ijseg executable ends the process with os._exit after its command (no JVM or TensorFlow
    teardown), yet the exit handlers still run (the bundle's unpacked copy is gone), everything
    the macro printed reached the pipe, and our Xvfb ends with the process. (Stopping the Xvfb
    before ``os._exit`` let AWT end the process with status 1 in 5 of 10 runs over 100 images,
    never in runs over a few: the display is now left to end with the process.)"""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["TMPDIR"] = str(tmp)
    before = xvfb_pids()
    proc = subprocess.Popen([IJSEG, "-q", "macro", "run", str(REPO / "fiji_scripts" / "batch_segment.ijm"),
                             "--arg", f"input={images[0].parent}", "--arg", f"output={out}",
                             "--arg", f"model={tiny_bundle}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"{len(images)} images segmented" in stdout.splitlines()[-1]
    assert len((out / "summary.csv").read_text().splitlines()) == len(images) + 1
    assert list(tmp.iterdir()) == []
    for _ in range(40):  # the kernel ends our Xvfb with the process; give it a moment
        if not orphaned_xvfb(xvfb_pids() - before, proc.pid):
            break
        time.sleep(0.1)
    assert not orphaned_xvfb(xvfb_pids() - before, proc.pid)


def test_batch_script_errors_name_the_line(tiny_model, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([IJSEG, "macro", "run", str(REPO / "fiji_scripts" / "batch_segment.ijm"),
                           "--arg", f"input={tmp_path / 'empty'}", "--arg", f"output={tmp_path / 'o'}",
                           "--arg", f"model={tiny_model}"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "batch_segment.ijm" in proc.stderr and "No .tif images in" in proc.stderr


def test_segment_and_measure_macro_counts_every_object(tiny_model, images, tmp_path):
    proc = subprocess.run([IJSEG, "macro", "run", str(REPO / "macros" / "segment_and_measure.ijm"),
                           "--arg", f"image={images[0]}", "--arg", f"model={tiny_model}", "--arg",
                           f"output={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    _, seg, _ = segment(load_predictor(tiny_model), read_image(images[0]))
    count_mask = tifffile.imread(tmp_path / f"{images[0].stem}_count_mask.tif")
    assert count_mask.max() == seg.n_objects
    rows = (tmp_path / f"{images[0].stem}_results.csv").read_text().splitlines()
    assert len(rows) == seg.n_objects + 1


def test_interactive_session_opens_and_closes(tmp_path):
    report = tmp_path / "menu.txt"
    macro = tmp_path / "check.ijm"
    macro.write_text(f'List.setCommands;\nFile.saveString(List.get("IJSeg Predict") + "\\n" + '
                     f'call("ijseg.Bridge.engine"), "{report}");\nrun("Quit");\n')
    xvfb = Xvfb.start()
    try:
        proc = subprocess.run([IJSEG, "imagej", "--macro", str(macro)], env=dict(os.environ, DISPLAY=xvfb.display),
                              capture_output=True, text=True, timeout=300)
    finally:
        xvfb.stop()
    assert proc.returncode == 0, proc.stderr
    lines = report.read_text().splitlines()
    assert lines[0] == "ijseg.PredictCommand" and "ijseg in Python" in lines[1]


def test_interactive_session_needs_a_display():
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.run([IJSEG, "imagej"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "needs a display" in proc.stderr


def test_an_abort_that_lands_before_the_macro_starts_still_stops_it(tmp_path):
    """Ctrl-C while the worker thread has not entered the interpreter yet: the macro must not run
    on and save its output after the batch has cleaned up."""
    import threading
    import time

    from ijseg.ij.macro import _stop_worker

    start_jvm(display=True)
    written = tmp_path / "written.txt"
    interp = jclass("ij.macro.Interpreter")()
    outcome: dict = {}
    ended = threading.Event()

    def work():
        time.sleep(0.5)  # the interrupt comes first
        outcome["thread"] = jclass("java.lang.Thread").currentThread()
        try:
            interp.runBatchMacro(f'wait(1000); File.saveString("late", "{written}");', None)
        except Exception as err:
            outcome["error"] = err
        finally:
            ended.set()

    threading.Thread(target=work, daemon=True).start()
    assert _stop_worker(ended, interp, outcome)
    time.sleep(1.5)
    assert not written.exists()


def test_predict_and_measure_a_volume_in_imagej(tiny_model3d, sim3d_dataset, tmp_path):
    """IJSeg Predict on a stack with a 3-D model gives the label stack of `ijseg predict` with the
    input's voxel size; IJSeg Measure on it gives the 3D Objects Counter table of `ijseg predict`."""
    import pandas as pd

    vol = sorted((sim3d_dataset / "test" / "images").glob("*.tif"))[0]
    out = tmp_path / "cli"
    subprocess.run([IJSEG, "-q", "predict", "--model", str(tiny_model3d), "--input", str(vol), "--out", str(out)],
                   check=True, capture_output=True)
    expected = tifffile.imread(out / f"{vol.stem}_labels.tif")
    table = pd.read_csv(out / f"{vol.stem}_measurements.csv")
    code = (f'open("{vol}");\n' + _predict_macro(tiny_model3d)
            + 'getVoxelSize(w, h, d, unit);\nprint("voxel " + w + " " + h + " " + d + " " + unit + " " + nSlices);\n'
            + f'run("IJSeg Measure", "labels=[{vol.stem}_labels] intensity=[{vol.name}]");\n')
    r = run(code)
    np.testing.assert_array_equal(r.images[f"{vol.stem}_labels"], expected)
    assert "voxel 0.5 0.5 1.25 microns 12" in r.log  # getVoxelSize gives the plural
    assert expected.max() > 0 and len(r.results) == len(table)
    for col in table.columns:
        np.testing.assert_allclose(r.results[col].to_numpy(), table[col], rtol=1e-5, err_msg=col)


def test_a_2d_model_segments_the_current_plane_of_a_stack(tiny_model, sim3d_dataset):
    """Of a Z stack, and of a hyperstack of 2 channels x 6 planes (at channel 2, plane 4: stack
    index 8), a 2-D model segments the current plane, as ImageJ's own commands do."""
    vol = sorted((sim3d_dataset / "test" / "images").glob("*.tif"))[0]
    data = read_image(vol).data
    predictor = load_predictor(tiny_model)
    hyper = ('run("Stack to Hyperstack...", "order=xyczt(default) channels=2 slices=6 frames=1 display=Grayscale");\n'
             'Stack.setPosition(2, 4, 1);\n')
    for position, plane in (("setSlice(5);\n", 4), (hyper, 7)):
        r = run(f'open("{vol}");\n' + position + _predict_macro(tiny_model))
        _, seg, _ = segment(predictor, Image(data[plane], "YX"))
        (labels,) = [v for k, v in r.images.items() if k.endswith("_labels")]
        assert labels.shape == data.shape[1:] and seg.n_objects > 0
        np.testing.assert_array_equal(labels, seg.labels)


def test_batch_segment_3d_script_and_macro_batch_over_stacks(tiny_model3d, sim3d_dataset, tmp_path):
    """The shipped 3-D batch script, and a recorded one-line macro through `ijseg macro batch`,
    over a folder of stacks: the label stacks of `ijseg predict` with their voxel size, the 3-D
    tables and the summary of `ijseg predict`."""
    import pandas as pd

    src = sim3d_dataset / "test" / "images"
    files = sorted(src.glob("*.tif"))
    subprocess.run([IJSEG, "-q", "predict", "--model", str(tiny_model3d), "--input", str(src), "--out",
                    str(tmp_path / "cli")], check=True, capture_output=True)
    out = tmp_path / "script"
    proc = subprocess.run([IJSEG, "macro", "run", str(REPO / "fiji_scripts" / "batch_segment_3d.ijm"),
                           "--arg", f"input={src}", "--arg", f"output={out}", "--arg", f"model={tiny_model3d}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected_summary = pd.read_csv(tmp_path / "cli" / "summary.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["Slice", "Count", "Total Volume", "Average Volume", "%Volume", "Mean"]
    for col in summary.columns[1:]:
        np.testing.assert_allclose(summary[col], expected_summary[col], rtol=1e-5, err_msg=col)
    for f in files:
        with tifffile.TiffFile(out / f"{f.stem}_labels.tif") as tif:
            np.testing.assert_array_equal(tif.asarray(), tifffile.imread(tmp_path / "cli" / f"{f.stem}_labels.tif"))
            assert tif.imagej_metadata["spacing"] == pytest.approx(1.25)
        assert len(pd.read_csv(out / f"{f.stem}_results.csv")) == len(
            pd.read_csv(tmp_path / "cli" / f"{f.stem}_measurements.csv"))

    recorded = tmp_path / "recorded.ijm"
    recorded.write_text(f'run("IJSeg Predict", "model=[{tiny_model3d}] output=labels");\n')
    proc = subprocess.run([IJSEG, "-q", "macro", "batch", str(recorded), "--input", str(src), "--out",
                           str(tmp_path / "batch")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for f in files:
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "batch" / f"{f.stem}.tif"),
                                      tifffile.imread(tmp_path / "cli" / f"{f.stem}_labels.tif"))


# A macro's options as ImageJ's GenericDialog reads them (macro mode) against the commands' own
# reading of literal options, which skips building the dialog: equal wherever the latter reads
# them, and left to the dialog (None) where it could differ.
_LITERAL_PREDICT_OPTIONS = [
    "model=[/m] output=labels threshold=0.50 size=0-Infinity",
    "model=/m",
    "model=[/a b/m] output=mask threshold=0.3 seed=0.7 size=50-500 tile=256",
    "model=[/m] output=probabilities threshold=1e-1 size=[10-Infinity]",
    "model=[/m] seed_threshold=0.2 threshold=0.4",
    "model=[/m] threshold=0.5000 tile=512.0 unknown=3",
    "model=[/m] threshold=NaN size=[20 - 500]",
    "size=7-9 model=[/m] output=mask",
]
_DIALOG_PREDICT_OPTIONS = [
    "model=[/m] watershed", "model=[/m] fill", "model=[/m] exclude", "model=[/m] threshold=t", "model=&m",
    "model=[/m] threshold=&t", "model=[/m] output=Labels", "threshold=0.5", "model=[/m] size=range", "model=",
    "model=[/m] tile=0x10",
]


@pytest.fixture()
def macro_thread():
    """This thread named and given options as a macro's run() call gives them to a command."""
    start_jvm(display=True)
    thread = jclass("java.lang.Thread").currentThread()
    name = str(thread.getName())
    thread.setName("Run$_test")  # the name ImageJ's Macro.getOptions() requires
    macro = jclass("ij.Macro")
    yield lambda options: macro.setOptions(thread, options) or str(macro.getOptions())
    macro.setOptions(thread, None)
    thread.setName(name)


def _values(v) -> tuple:
    return (str(v.model), str(v.output), str(v.size), float(v.threshold), float(v.seed), float(v.tile),
            bool(v.watershed), bool(v.fill), bool(v.exclude))


@pytest.mark.parametrize("options", _LITERAL_PREDICT_OPTIONS)
def test_predict_reads_literal_options_as_the_dialog(macro_thread, options):
    command = jclass("ijseg.PredictCommand")
    given = macro_thread(options)
    fast = command.fromMacro(given)
    assert fast is not None, options
    dialog = _values(command.fromDialog("image", True))
    assert str(_values(fast)) == str(dialog)  # as text: NaN equals NaN


@pytest.mark.parametrize("options", _DIALOG_PREDICT_OPTIONS)
def test_predict_leaves_checkboxes_variables_and_bad_values_to_the_dialog(macro_thread, options):
    assert jclass("ijseg.PredictCommand").fromMacro(macro_thread(options)) is None


@pytest.mark.parametrize("options, expected", [
    ("labels=b intensity=a", (1, 0)), ("labels=[a b] intensity=None", (2, -1)), ("labels=a", (0, -1)),
    ("labels=b intensity=b", (1, 1)), ("labels=dup intensity=dup", (3, 3)), ("intensity=a labels=b", (1, 0)),
    ("labels=a intensity=None", (0, -1)), ("labels=None intensity=None", (5, -1)),
])
def test_measure_reads_literal_titles_as_the_dialog(macro_thread, options, expected):
    command = jclass("ijseg.MeasureCommand")
    titles = jpype_strings(["a", "b", "a b", "dup", "dup", "None"])
    given = macro_thread(options)
    fast = command.fromMacro(given, titles)
    assert fast is not None and tuple(fast) == expected
    assert tuple(command.fromDialog(titles, "a")) == expected


@pytest.mark.parametrize("options", ["intensity=a", "labels=c", "labels=&t", "labels=A"])
def test_measure_leaves_other_titles_to_the_dialog(macro_thread, options):
    titles = jpype_strings(["a", "b"])
    assert jclass("ijseg.MeasureCommand").fromMacro(macro_thread(options), titles) is None


def jpype_strings(items):
    import jpype

    return jpype.JArray(jpype.JString)(items)


def test_options_with_macro_variables_reach_the_engine(tiny_model, images):
    """Variables (bare names and &name) go through ImageJ's dialog and reach the engine; an
    unknown name is ImageJ's macro error."""
    img = read_image(images[0]).data
    literal = run(f'run("IJSeg Predict", "model=[{tiny_model}] threshold=0.3 size=2-Infinity");', img).image
    code = (f't = 0.3; m = "{tiny_model}"; s = "2-Infinity";\n'
            'run("IJSeg Predict", "model=&m threshold=t size=&s");')
    assert np.array_equal(run(code, img).image, literal)
    with pytest.raises(MacroError, match="Numeric value expected|nosuch"):
        run(f'run("IJSeg Predict", "model=[{tiny_model}] threshold=nosuch");', img)
