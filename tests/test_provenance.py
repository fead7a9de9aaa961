"""provenance.json of train, predict, qc and export (macro batch: tests/jvm/test_recorder.py)."""

from __future__ import annotations

import hashlib
import json
import platform
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from ijseg import __version__, provenance
from ijseg.cli import main


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_common(rec: dict, run: str) -> None:
    assert rec["ijseg_provenance"] == provenance.SCHEMA and rec["run"] == run and rec["status"] == "completed"
    assert datetime.fromisoformat(rec["started"]) <= datetime.fromisoformat(rec["ended"]) and rec["seconds"] >= 0
    v = rec["versions"]
    assert v["ijseg"] == __version__ and v["python"] == platform.python_version()
    assert v["tensorflow"] and v["numpy"] and v["keras"]
    assert v["java"] and v["java"][0].isdigit() and v["imagej"].startswith("1.")  # the command line's Java and ImageJ


@pytest.fixture(scope="module")
def trained(sim_dataset, tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp("prov") / "model"
    assert main(["-q", "train", "--data", str(sim_dataset / "train"), "--model", str(model), "--depth", "2",
                 "--base-filters", "4", "--patch-size", "32", "--batch-size", "4", "--epochs", "1",
                 "--steps-per-epoch", "2", "--no-qc"]) == 0
    return model


def test_training_records_the_data_the_configuration_and_the_weights(trained, sim_dataset):
    rec = provenance.read(trained)
    _check_common(rec, "train")
    assert rec["command_line"][:2] == ["ijseg", "-q"] and "--model" in rec["command_line"]
    assert rec["config"] == json.loads((trained / "config.json").read_text())
    split = json.loads((trained / "split.json").read_text())
    files = {f["path"]: f for f in rec["inputs"]}
    assert len(files) == 2 * (len(split["train"]) + len(split["validation"]))
    for s in split["train"] + split["validation"]:
        for key in ("image", "mask"):
            assert files[s[key]]["sha256"] == _sha(sim_dataset / "train" / s[key])
    model = {f["path"]: f["sha256"] for f in rec["model"]["files"]}
    assert model["weights_best.weights.h5"] == _sha(trained / "weights_best.weights.h5")
    assert model["config.json"] == _sha(trained / "config.json")
    assert rec["result"]["epochs_done"] == 1 and rec["earlier_runs"] == []
    assert rec["options"]["time_limit"] is None and rec["options"]["resume"] is False


def test_a_resumed_run_keeps_the_runs_before_it(trained, tmp_path, sim_dataset):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained, model)
    first = provenance.read(model)
    assert main(["-q", "train", "--data", str(sim_dataset / "train"), "--model", str(model), "--resume",
                 "--epochs", "2", "--no-qc"]) == 0
    rec = provenance.read(model)
    assert rec["options"]["resume"] is True and rec["result"]["epochs_done"] == 2
    assert rec["earlier_runs"] == [{k: v for k, v in first.items() if k != "earlier_runs"}]


def test_predict_and_qc_record_model_inputs_and_options(trained, sim_dataset, tmp_path):
    images = sorted((sim_dataset / "test" / "images").glob("*.tif"))[:3]
    src = tmp_path / "in"
    src.mkdir()
    for f in images:
        (src / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "pred"
    assert main(["-q", "predict", "--model", str(trained), "--input", str(src), "--out", str(out), "--min-size", "5"]) == 0
    rec = provenance.read(out)
    _check_common(rec, "predict")
    assert [f["sha256"] for f in rec["inputs"]] == [_sha(f) for f in images]
    assert rec["segmented"] == [f.name for f in images] and rec["failed"] == []
    assert rec["options"]["postprocessing"]["min_size"] == 5
    assert rec["config"] == json.loads((trained / "config.json").read_text())
    assert {f["path"]: f["sha256"] for f in rec["model"]["files"]}["weights_best.weights.h5"] == \
        _sha(trained / "weights_best.weights.h5")
    qc = tmp_path / "qc"
    assert main(["-q", "qc", "--model", str(trained), "--data", str(sim_dataset / "test"), "--out", str(qc)]) == 0
    rec = provenance.read(qc)
    _check_common(rec, "qc")
    assert len(rec["inputs"]) == 2 * len(list((sim_dataset / "test" / "images").glob("*.tif")))
    assert rec["summary"]["ap@0.5"] == json.loads((qc / "summary.json").read_text())["ap@0.5"]


def test_a_run_that_writes_nothing_records_nothing(trained, tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    assert main(["-q", "predict", "--model", str(trained), "--input", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def test_export_carries_the_training_record_into_the_bundle(trained, tmp_path):
    bundle = tmp_path / "b.zip"
    # a bundle refused (no weights deepImageJ runs) leaves neither the bundle nor a record
    assert main(["-q", "export", "--model", str(trained), "--out", str(bundle), "--weights", "keras_v3"]) == 1
    assert list(tmp_path.iterdir()) == []
    assert main(["-q", "export", "--model", str(trained), "--out", str(bundle), "--weights", "keras_v3",
                 "tensorflow_saved_model_bundle"]) == 0
    with zipfile.ZipFile(bundle) as z:
        inside = json.loads(z.read(provenance.FILE))
        rdf = z.read("rdf.yaml").decode()
    beside = provenance.read(tmp_path / "b.provenance.json")
    _check_common(beside, "export")
    assert inside["run"] == "export" and inside["training"] == provenance.read(trained) == beside["training"]
    assert inside["model"] == beside["model"] and inside["options"]["weights"] == ["keras_v3",
                                                                                   "tensorflow_saved_model_bundle"]
    assert beside["bundle"]["sha256"] == _sha(bundle)
    assert provenance.FILE in rdf  # listed among the bundle's attachments
