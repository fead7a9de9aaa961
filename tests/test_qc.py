"""Quality control: files, figures consistent with StarDist's matching, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from stardist.matching import matching_dataset

from ijseg.cli import main
from ijseg.data.io import read_image, read_mask
from ijseg.data.layouts import find_samples
from ijseg.errors import DataError
from ijseg.postprocess import postprocess
from ijseg.predict import Predictor
from ijseg.qc import THRESHOLDS, evaluate, verdict


def test_evaluate_writes_everything_and_agrees_with_stardist(tiny_model, sim_dataset, tmp_path):
    pred = Predictor(tiny_model)
    summary = evaluate(pred, sim_dataset / "test", tmp_path / "qc", history=tiny_model / "history.csv", progress=False)
    qc = tmp_path / "qc"
    assert json.loads((qc / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert set(summary["pixels"]["iou"]) == {"background", "interior", "boundary"}
    assert set(summary["objects"]) == {str(t) for t in THRESHOLDS}
    assert len((qc / "metrics.csv").read_text().splitlines()) == 4
    assert sorted(p.name for p in (qc / "overlays").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    report = (qc / "report.html").read_text()
    assert summary["verdict_text"].split(":")[0] in report and report.count("data:image/png;base64") >= 5
    # the same figures from StarDist's matching on independently computed labels
    samples = find_samples(sim_dataset / "test")
    truths = [read_mask(s.mask) for s in samples]
    preds = [postprocess(pred.predict(read_image(s.image)), pred.config).labels for s in samples]
    m = matching_dataset(truths, preds, thresh=0.5, show_progress=False)
    assert summary["ap@0.5"] == pytest.approx(m.accuracy) and summary["f1@0.5"] == pytest.approx(m.f1)


def test_scores_of_a_model_that_finds_the_cells(tiny_binary_model, sim_dataset, tmp_path):
    """A model that finds most cells gets a recall and pixel IoU to match, and the object figures
    are StarDist's on its labels."""
    from ijseg.postprocess import PostprocessOptions

    pred = Predictor(tiny_binary_model)
    options = PostprocessOptions(min_size=20)
    summary = evaluate(pred, sim_dataset / "test", tmp_path / "qc", options=options, progress=False)
    samples = find_samples(sim_dataset / "test")
    truths = [read_mask(s.mask) for s in samples]
    preds = [postprocess(pred.predict(read_image(s.image)), pred.config, options).labels for s in samples]
    for t in (0.5, 0.7):
        m = matching_dataset(truths, preds, thresh=t, show_progress=False)
        assert summary["objects"][str(t)]["ap"] == pytest.approx(m.accuracy)
        assert summary["objects"][str(t)]["recall"] == pytest.approx(m.recall)
    assert summary["objects"]["0.5"]["recall"] > 0.4, summary["objects"]["0.5"]
    assert summary["pixels"]["iou"]["foreground"] > 0.5, summary["pixels"]


def test_test_set_without_masks(tiny_model, sim_dataset, tmp_path):
    data = tmp_path / "t"
    shutil.copytree(sim_dataset / "test" / "images", data / "images")
    with pytest.raises(DataError, match="quality control needs ground truth, but 3 image\\(s\\) have no mask"):
        evaluate(Predictor(tiny_model), data, tmp_path / "qc", progress=False)


def test_verdict_levels():
    def s(ap):
        return {"objects": {"0.5": {"ap": ap, "recall": 0.9, "precision": 0.8}}}

    assert verdict(s(0.85))[0] == "good"
    assert verdict(s(0.7))[0] == "usable"
    level, text = verdict(s(0.3))
    assert level == "poor" and "90%" in text and "80%" in text


def test_cli_qc(tiny_model, sim_dataset, tmp_path, capsys):
    assert main(["-q", "qc", "--model", str(tiny_model), "--data", str(sim_dataset / "test"),
                 "--out", str(tmp_path / "qc")]) == 0
    out = capsys.readouterr().out
    assert "AP@0.5" in out and "report:" in out
    assert (tmp_path / "qc" / "report.html").is_file()
    assert np.isfinite(json.loads((tmp_path / "qc" / "summary.json").read_text())["ap@0.5"])
