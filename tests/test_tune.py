"""Post-processing chosen on the validation images at the end of training, and used wherever
no options are given: Python API, command line, quality control, bundles."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import _train_model
from stardist.matching import matching_dataset

from ijseg.data.io import read_image, read_mask
from ijseg.data.layouts import find_samples
from ijseg.models.folder import ModelFolder
from ijseg.pipeline import load_predictor, segment
from ijseg.postprocess import PostprocessOptions, postprocess
from ijseg.qc.tune import BEYOND, IOUS, TUNED

IJSEG = str(Path(sys.executable).with_name("ijseg"))


@pytest.fixture(scope="module")
def trained(sim_dataset, tmp_path_factory) -> Path:
    """A small 3-class model trained long enough (40 steps) to find cells."""
    return _train_model(sim_dataset / "train", tmp_path_factory.mktemp("tune") / "m", data_target="3class",
                        unet_base_filters=8, train_patch_size=48, train_epochs=4, train_steps_per_epoch=10,
                        train_learning_rate=0.01)


def test_training_keeps_the_seed_threshold_with_the_best_validation_ap(trained, sim_dataset):
    stored = json.loads((trained / ModelFolder.POSTPROCESSING).read_text())
    tuned, options = stored["tuned"], PostprocessOptions(**stored["postprocessing"])
    name, grid = TUNED["3class"]
    tried = [float(v) for v in tuned["scores"]]
    assert tuned["option"] == name == "seed_threshold" and tried[:len(grid)] == list(grid)
    assert tried[len(grid):] == list(BEYOND["3class"][:len(tried) - len(grid)])  # past the top while best there
    best = max(tuned["scores"].values())
    assert best > 0 and tuned["scores"][f"{tuned['value']:g}"] == best == max(tuned["scores"].values())
    assert options == dataclasses.replace(PostprocessOptions(), seed_threshold=tuned["value"])
    predictor = load_predictor(trained)
    assert predictor.postprocessing == options
    # the stored score is StarDist's matching on the validation images of the split, segmented so
    names = [s["image"] for s in json.loads((trained / ModelFolder.SPLIT).read_text())["validation"]]
    samples = [s for s in find_samples(sim_dataset / "train") if s.image.name in {Path(n).name for n in names}]
    assert len(samples) == tuned["n_images"] > 0
    truths = [read_mask(s.mask) for s in samples]
    preds = [postprocess(predictor.predict(read_image(s.image)), predictor.config, options).labels for s in samples]
    ap = np.mean([matching_dataset(truths, preds, thresh=t, show_progress=False).accuracy for t in IOUS])
    assert ap == pytest.approx(best, abs=1e-4)


@pytest.fixture
def retuned(trained, tmp_path) -> Path:
    """The model with post-processing unlike the defaults, as if training had chosen it."""
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    options = PostprocessOptions(seed_threshold=0.55, min_size=6)
    (model / ModelFolder.POSTPROCESSING).write_text(json.dumps({"postprocessing": dataclasses.asdict(options),
                                                                 "tuned": {}}))
    return model


def test_the_models_postprocessing_applies_where_none_is_given(retuned, sim_dataset, tmp_path):
    image = sorted((sim_dataset / "test" / "images").glob("*.tif"))[0]
    predictor = load_predictor(retuned)
    own = PostprocessOptions(seed_threshold=0.55, min_size=6)
    assert predictor.postprocessing == own
    expected = segment(predictor, read_image(image), own)[1].labels
    assert not np.array_equal(expected, segment(predictor, read_image(image), PostprocessOptions())[1].labels)
    np.testing.assert_array_equal(segment(predictor, read_image(image))[1].labels, expected)
    for flags, options in (([], own), (["--seed-threshold", "0.7"], dataclasses.replace(own, seed_threshold=0.7))):
        out = tmp_path / f"out{len(flags)}"
        r = subprocess.run([IJSEG, "-q", "predict", "--model", str(retuned), "--input", str(image), "--out", str(out),
                            *flags], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        np.testing.assert_array_equal(tifffile.imread(out / f"{image.stem}_labels.tif"),
                                      segment(predictor, read_image(image), options)[1].labels)
    r = subprocess.run([IJSEG, "-q", "qc", "--model", str(retuned), "--data", str(sim_dataset / "test"), "--out",
                        str(tmp_path / "qc")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "qc" / "summary.json").read_text())["postprocessing"] == dataclasses.asdict(own)


def test_a_bundle_carries_the_models_postprocessing(retuned, tmp_path):
    from ijseg.bundles import export_bundle
    from ijseg.bundles.deepimagej import read_rdf

    bundle = export_bundle(retuned, tmp_path / "b.zip")
    import zipfile

    rdf = read_rdf(zipfile.ZipFile(bundle).read("rdf.yaml"))
    assert rdf["config"]["ijseg"]["postprocessing"]["seed_threshold"] == 0.55
    assert load_predictor(bundle).postprocessing == PostprocessOptions(seed_threshold=0.55, min_size=6)
    # --seed-threshold on export replaces only that value
    r = subprocess.run([IJSEG, "-q", "export", "--model", str(retuned), "--out", str(tmp_path / "c.zip"),
                        "--seed-threshold", "0.65"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert load_predictor(tmp_path / "c.zip").postprocessing == PostprocessOptions(seed_threshold=0.65, min_size=6)


def test_unreadable_postprocessing_is_one_clear_error(retuned, sim_dataset):
    (retuned / ModelFolder.POSTPROCESSING).write_text("{not json")
    image = sorted((sim_dataset / "test" / "images").glob("*.tif"))[0]
    r = subprocess.run([IJSEG, "predict", "--model", str(retuned), "--input", str(image), "--out",
                        str(retuned.parent / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"{retuned / ModelFolder.POSTPROCESSING}: unreadable post-processing settings" in r.stderr


def test_from_mapping_keeps_the_base_for_absent_values():
    base = PostprocessOptions(seed_threshold=0.9, min_size=4, fill_holes=True)
    got = PostprocessOptions.from_mapping({"seed_threshold": None, "min_size": "7", "fill_holes": None}, base=base)
    assert got == PostprocessOptions(seed_threshold=0.9, min_size=7, fill_holes=True)
