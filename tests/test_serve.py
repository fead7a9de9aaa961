"""`ijseg serve`: the predict/measure requests of a stand-alone ImageJ, one process for many images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from ijseg.pipeline import PredictorCache, load_predictor, segment
from ijseg.data.io import read_image

IJSEG = str(Path(sys.executable).with_name("ijseg"))


def _replies(stdout: str) -> list[tuple[int, list[str]]]:
    replies, text = [], []
    for line in stdout.splitlines()[1:]:
        if line.startswith("= "):
            replies.append((int(line[2:]), text))
            text = []
        else:
            text.append(line[2:])
    return replies


def test_serve_answers_requests_until_its_input_ends(tiny_model, sim_dataset, tmp_path):
    images = sorted((sim_dataset / "test" / "images").glob("*.tif"))[:2]
    requests = [["-q", "predict", "--model", str(tiny_model), "--input", str(f), "--out", str(tmp_path / f.stem)]
                for f in images]
    requests.append(["-q", "measure", "--labels", str(tmp_path / images[0].stem / f"{images[0].stem}_labels.tif"),
                     "--out", str(tmp_path / "table.csv")])
    requests.append(["predict", "--model", str(tmp_path / "nope"), "--input", str(images[0]), "--out", str(tmp_path)])
    lines = "".join(json.dumps(r) + "\n" for r in requests) + "[1, 2]\n"
    proc = subprocess.run([IJSEG, "serve"], input=lines, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0 and proc.stdout.startswith("ijseg serve ")
    replies = _replies(proc.stdout)
    assert [code for code, _ in replies] == [0, 0, 0, 1, 2]
    predictor = load_predictor(tiny_model)
    for f in images:
        _, seg, _ = segment(predictor, read_image(f))  # the model's own post-processing, as the CLI
        np.testing.assert_array_equal(tifffile.imread(tmp_path / f.stem / f"{f.stem}_labels.tif"), seg.labels)
    assert (tmp_path / "table.csv").is_file()
    assert replies[3][1] == [f"ijseg predict: error: {tmp_path / 'nope'}: model not found (a model folder written by "
                             f"'ijseg train', or a bundle .zip)"]
    assert "a JSON array of strings" in replies[4][1][0]


def test_predictor_cache_loads_once_and_reloads_changed_models(tiny_model, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    cache = PredictorCache(size=1)
    first = cache.get(model)
    assert cache.get(str(model)) is first and len(cache) == 1
    config = model / "config.json"
    newest = max(f.stat().st_mtime for f in model.iterdir())  # training writes postprocessing.json last
    os.utime(config, (config.stat().st_atime, newest + 10))
    assert cache.get(model) is not first and len(cache) == 1


def test_preload_loads_the_models_among_macro_arguments_once(tiny_model, tmp_path):
    """``ijseg macro run/batch`` preload the models named among the macro's arguments while
    ImageJ starts: the macro's IJSeg Predict then finds the model loaded (or waits for it), the
    network already traced; values that name no model are left alone."""
    from ijseg.ij.engine import _the_engine, preload

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    assert preload(["0.5", str(tmp_path / "nothing"), str(tmp_path), "labels"]) is None
    engine = _the_engine()
    before = engine._models.loads
    thread = preload(["0.5", str(model)])
    predictor = engine.model(str(model))  # loads it, or waits for the preload to finish loading it
    thread.join(120)
    assert not thread.is_alive()
    assert engine._models.loads == before + 1 and engine.model(str(model)) is predictor
    assert predictor.model._forward.experimental_get_tracing_count() == 1


def test_only_model_folders_are_preloaded(tiny_model, tiny_bundle, tmp_path, monkeypatch):
    """Relative folders are made absolute; bundles are left to the macro (loading one moves the
    working folder for a moment); a long text or an unreadable path is no model (and no error)."""
    from ijseg.ij.engine import _model_folder

    monkeypatch.chdir(tiny_model.parent)
    assert _model_folder(tiny_model.name) == str(tiny_model.resolve())
    assert _model_folder(str(tiny_bundle)) is None
    assert _model_folder("x" * 300) is None  # longer than a file name may be: OSError in pathlib
    assert _model_folder("0.5") is None


def test_preload_leaves_a_broken_model_to_the_macro(tmp_path, caplog):
    from ijseg.errors import ModelError
    from ijseg.ij.engine import _the_engine, preload

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    engine = _the_engine()
    before = engine._models.loads
    with caplog.at_level("DEBUG", logger="ijseg.ij.engine"):
        thread = preload([str(broken)])
        thread.join(60)
    assert not thread.is_alive() and engine._models.loads == before
    assert f"preloading {broken} failed" in caplog.text
    with pytest.raises(ModelError, match="broken"):
        engine.model(str(broken))
