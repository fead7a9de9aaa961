"""ImageJ macros in a real ImageJ 1.x (Debian's imagej, under Xvfb) against the Python code.

Runs in its own pytest process (``make test`` does this) with ``-p no:faulthandler``: the JVM
uses signals that pytest's faulthandler intercepts, and it starts once per process.
"""

from __future__ import annotations

import numpy as np
import pytest

from ijseg.data.io import read_image
from ijseg.data.simulate import SimParams, simulate_image
from ijseg.ij import MacroError, run_macro
from ijseg.preprocess import PercentileNormalizer

pytestmark = pytest.mark.jvm

from conftest import REPO  # noqa: E402

MACROS = REPO / "macros"


def _macro(name: str) -> str:
    return (MACROS / name).read_text()


@pytest.mark.parametrize("kind", ["uint8-dsb", "uint16-sim", "float32"])
def test_percentile_normalisation_macro_equals_python(kind, dsb_dir):
    if kind == "uint8-dsb":
        img = read_image(sorted((dsb_dir / "images").iterdir())[3]).data
    elif kind == "uint16-sim":
        img, _ = simulate_image(SimParams(shape=(200, 180), dynamic_range=4000), rng=2)
    else:
        img = np.random.default_rng(1).gamma(2, 30, (150, 170)).astype(np.float32)
    out = run_macro(_macro("scale_range.ijm"), img)
    expected = PercentileNormalizer(1, 99.8)(img)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.abs(out - expected).max() < 1e-5


def test_percentile_arguments_and_errors():
    img = np.random.default_rng(2).random((40, 50)).astype(np.float32) * 1000
    out = run_macro(_macro("scale_range.ijm").replace('getArgument()', '"pmin=2 pmax=99"'), img)
    assert np.abs(out - PercentileNormalizer(2, 99)(img)).max() < 1e-5
    bad = _macro("scale_range.ijm").replace('getArgument()', '"pmin=50 pmax=10"')
    with pytest.raises(MacroError, match="stopped"):
        run_macro(bad, img)


def test_bundle_macros_with_the_models_own_parameters_equal_python(tiny_model, tmp_path):
    """What deepImageJ 3.0.3 runs: the bundle's macros without arguments, with non-default values
    written in by the export; multi-channel normalisation per channel."""
    import zipfile

    from stardist.matching import matching

    from ijseg.config import Config
    from ijseg.bundles import export_bundle
    from ijseg.bundles.deepimagej import render_macro
    from ijseg.postprocess import PostprocessOptions, postprocess

    # normalisation with other percentiles and eps, on a 2-channel image (channels as slices)
    img = np.random.default_rng(5).gamma(2, 30, (2, 70, 90)).astype(np.float32)
    img[1] *= 9
    code = render_macro(_macro("scale_range.ijm"), pmin=3, pmax=97.5, eps=0.01)
    out = run_macro(code, img)
    expected = PercentileNormalizer(3, 97.5, eps=0.01)(np.moveaxis(img, 0, -1))
    assert out.shape == img.shape
    assert np.abs(np.moveaxis(out, 0, -1) - expected).max() < 1e-5
    # the bundle's own post-processing macro with a non-default seed threshold
    bundle = export_bundle(tiny_model, tmp_path / "b.zip", format_version="0.4",
                           postprocess=PostprocessOptions(seed_threshold=0.6))
    post = zipfile.ZipFile(bundle).read("3class_to_instances.ijm").decode()
    from ijseg.data.simulate import PRESETS
    from ijseg.data.targets import labels_to_3class

    _, lab = simulate_image(PRESETS["sim3k-100"].params, rng=8)
    cls = labels_to_3class(lab, 2)
    prob = np.full((*cls.shape, 3), 0.05, np.float32)
    np.put_along_axis(prob, cls[..., None].astype(int), 0.9, axis=-1)
    prob /= prob.sum(-1, keepdims=True)
    weak = (lab % 2 == 1) & (cls == 1)  # every other nucleus: interior probability 0.7, a seed only below 0.7
    prob[weak] = [0.15, 0.7, 0.15]
    cfg = Config(data_target="3class", data_n_classes=3)
    py = postprocess(prob, cfg, PostprocessOptions(seed_threshold=0.6)).labels
    default = postprocess(prob, cfg).labels
    got = run_macro(post, np.moveaxis(prob, -1, 0))
    assert matching(py, got.astype(np.int64), thresh=0.5).f1 > 0.99
    assert int(got.max()) == int(py.max()) > int(default.max())  # the threshold matters on these maps


def test_binarize_macro_equals_python_threshold():
    prob = np.random.default_rng(3).random((64, 80)).astype(np.float32)
    prob[0, :4] = [0.5, np.nextafter(np.float32(0.5), np.float32(1)), 0.4999999, 1.0]
    out = run_macro(_macro("binarize.ijm"), prob)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, (prob > 0.5).astype(np.uint8) * 255)


def test_macro_errors_carry_imagejs_message():
    with pytest.raises(MacroError, match="ImageJ macro error in line 2: Undefined variable"):
        run_macro("x = 1;\ny = undefinedThing + 1;", np.zeros((4, 4), np.float32))
    with pytest.raises(MacroError, match='line 1: Unrecognized command: "No Such Command"'):
        run_macro('run("No Such Command");', np.zeros((4, 4), np.float32))


def test_3class_to_instances_macro_agrees_with_python():
    """On simulated touching nuclei the macro finds ijseg's objects; only a few border pixels may
    differ (the macro quantises the flooding priority to 1000 levels, Python's watershed does not)."""
    from stardist.matching import matching

    from ijseg.config import Config
    from ijseg.data.simulate import PRESETS
    from ijseg.data.targets import labels_to_3class
    from ijseg.postprocess import postprocess

    _, lab = simulate_image(PRESETS["sim3k-100"].params, rng=21)
    cls = labels_to_3class(lab, 2)
    rng = np.random.default_rng(0)
    prob = np.full((*cls.shape, 3), 0.05, np.float32)
    np.put_along_axis(prob, cls[..., None].astype(int), 0.9, axis=-1)
    prob += rng.uniform(0, 0.08, prob.shape).astype(np.float32)  # not a clean one-hot map
    prob /= prob.sum(-1, keepdims=True)
    py = postprocess(prob, Config(data_target="3class", data_n_classes=3)).labels
    out = run_macro(_macro("3class_to_instances.ijm"), np.moveaxis(prob, -1, 0))
    assert out.dtype == np.uint16 and out.shape == lab.shape
    assert int(out.max()) == int(py.max())
    m = matching(py, out.astype(np.int64), thresh=0.5)
    assert m.f1 == 1.0 and m.mean_matched_score > 0.99, m
    same = sum(int((out[py == i] == np.bincount(out[py == i]).argmax()).sum()) for i in range(1, int(py.max()) + 1))
    assert same >= 0.995 * int((py > 0).sum())
    with pytest.raises(MacroError, match="stopped"):
        run_macro(_macro("3class_to_instances.ijm"), prob[..., 0])


def test_macro_run_command_fills_script_parameters(tmp_path, capfd):
    from ijseg.cli import main

    macro = tmp_path / "hello.ijm"
    macro.write_text('#@ File (label="Output folder", style="directory") output\n#@ Integer (value=3) n\n'
                     '#@ String (value="cells") name\nnewImage(name, "8-bit black", 32, 32, 1);\n'
                     'for (i = 0; i < n; i++) setPixel(i, i, 255);\n'
                     'saveAs("Tiff", output + File.separator + name + ".tif");\nprint("saved " + n);\n')
    assert main(["macro", "run", str(macro), "--arg", f"output={tmp_path}", "--arg", "n=5"]) == 0
    assert "saved 5" in capfd.readouterr().out  # ImageJ prints to the process's stdout
    assert int((read_image(tmp_path / "cells.tif").data == 255).sum()) == 5
    assert main(["macro", "run", str(macro), "--arg", "n=x", "--arg", "bogus=1"]) == 1
    err = capfd.readouterr().err
    assert "unknown parameter 'bogus'" in err and "'output' (File, Output folder) needs a value" in err
    assert "n (Integer) needs a number, got 'x'" in err
    bad = tmp_path / "bad.ijm"
    bad.write_text("x = 1;\ny = nothing + 2;\n")
    assert main(["macro", "run", str(bad)]) == 1
    assert "bad.ijm: ImageJ macro error in line 2: Undefined variable\n    2: y = nothing + 2;" in capfd.readouterr().err
    assert main(["macro", "run", str(tmp_path / "none.ijm")]) == 1
    assert "none.ijm: macro file not found" in capfd.readouterr().err


def test_imagej_opens_a_simulated_volume_with_its_voxel_size(tmp_path):
    """ImageJ itself reads what `ijseg simulate --preset sim3d` writes: a stack of planes with
    the voxel depth, and the labels as a 16-bit stack."""
    from ijseg.data.simulate import simulate_dataset
    from ijseg.ij import jclass, start_jvm

    out = simulate_dataset(tmp_path / "v", "sim3d", n_train=1, n_test=0, overrides={"shape": (6, 32, 40)},
                           progress=False)
    start_jvm(display=True)
    for kind, bits in (("images", 8), ("masks", 16)):
        imp = jclass("ij.IJ").openImage(str(out / "train" / kind / "0000.tif"))
        cal = imp.getCalibration()
        shape = (imp.getNSlices(), imp.getNChannels(), imp.getHeight(), imp.getWidth())
        assert tuple(int(n) for n in shape) == (6, 1, 32, 40)
        assert int(imp.getBitDepth()) == bits
        voxel = (float(cal.pixelDepth), float(cal.pixelHeight), float(cal.pixelWidth))
        assert voxel == pytest.approx((1.25, 0.5, 0.5))
        assert str(cal.getUnit()) in ("micron", "\u00b5m")
