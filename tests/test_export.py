"""bioimage.io bundles: the official validator, halo, formats agree, errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from ijseg.cli import main
from ijseg.errors import ConfigError, DataError
from ijseg.bundles import export_bundle


def _rdf(bundle: Path) -> dict:
    with zipfile.ZipFile(bundle) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


@pytest.mark.parametrize("weight_format", ["keras_v3", "tensorflow_saved_model_bundle", "onnx"])
def test_bioimageio_core_passes_every_weight_format(tiny_bundle, weight_format, in_tmp_dir):
    from bioimageio.core import test_model

    summary = test_model(tiny_bundle, weight_format=weight_format)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed


def test_rdf_content(tiny_bundle, tiny_model):
    rdf = _rdf(tiny_bundle)
    assert rdf["format_version"].startswith("0.5") and rdf["type"] == "model"
    assert rdf["id"].startswith("ijseg-")
    assert rdf["inputs"][0]["sample_tensor"]["source"] == "sample_input.tif"
    assert [a["name"] for a in rdf["authors"]] == ["Test Author"]
    assert rdf["cite"][0]["doi"] == "10.1007/978-3-319-24574-4_28"
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert inp["id"] == "input0" and out["id"] == "output0"
    assert [a.get("id", a["type"]) for a in inp["axes"]] == ["batch", "y", "x", "channel"]
    scale = [p for p in inp["preprocessing"] if p["id"] == "scale_range"][0]["kwargs"]
    assert (scale["min_percentile"], scale["max_percentile"], scale["axes"]) == (1.0, 99.8, ["y", "x"])
    cfg = json.loads((tiny_model / "config.json").read_text())
    halo = out["axes"][1]["halo"]
    assert inp["axes"][1]["size"]["step"] == 2 ** cfg["unet_depth"]
    assert inp["axes"][1]["size"]["min"] > 2 * halo
    assert out["axes"][3]["channel_names"] == ["background", "interior", "boundary"]
    w = rdf["weights"]
    assert set(w) == {"keras_v3", "tensorflow_saved_model_bundle", "onnx"}
    assert w["onnx"]["opset_version"] == 17 and w["onnx"]["parent"] == "keras_v3"
    assert rdf["config"]["ijseg"]["config"]["unet_depth"] == cfg["unet_depth"]
    with zipfile.ZipFile(tiny_bundle) as z:
        names = set(z.namelist())
        assert {"README.md", "cover.png", "test_input.npy", "test_output.npy", "model.onnx"} <= names
        readme = z.read("README.md").decode()
    # the steps trained, summed over history.csv (an epoch cut by the time limit has fewer)
    rows = list(csv.DictReader((tiny_model / "history.csv").read_text().splitlines()))
    steps = sum(int(r["steps"]) for r in rows)
    assert steps > 0 and f"{len(rows)} epoch(s), {steps} steps of batch {cfg['train_batch_size']}" in readme


def test_halo_covers_an_impulse_response(tiny_bundle):
    """The change an impulse causes in the exported network stays within the declared halo."""
    import keras

    rdf = _rdf(tiny_bundle)
    halo = rdf["outputs"][0]["axes"][1]["halo"]
    with zipfile.ZipFile(tiny_bundle) as z, z.open("model.keras") as f:
        data = f.read()
    path = Path(__import__("tempfile").mkdtemp()) / "m.keras"
    path.write_bytes(data)
    model = keras.models.load_model(path, safe_mode=True)
    x = np.zeros((1, 160, 160, 1), np.float32)
    x2 = x.copy()
    x2[0, 80, 80, 0] = 50.0
    changed = np.abs(np.asarray(model(x2)) - np.asarray(model(x))).max(axis=-1)[0] > 1e-7
    ys, xs = np.nonzero(changed)
    reach = max(np.abs(ys - 80).max(), np.abs(xs - 80).max())
    assert 0 < reach <= halo


def test_onnx_and_savedmodel_agree_with_keras(tiny_bundle, tmp_path):
    import onnxruntime as ort
    import tensorflow as tf

    with zipfile.ZipFile(tiny_bundle) as z:
        z.extractall(tmp_path)
    x = np.load(tmp_path / "test_input.npy")
    x = (x - np.percentile(x, 1)) / (np.percentile(x, 99.8) - np.percentile(x, 1) + 1e-6)
    expected = np.load(tmp_path / "test_output.npy")
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"))
    (onnx_out,) = sess.run(["output0"], {"input0": x.astype(np.float32)})
    assert np.abs(onnx_out - expected).max() < 1e-4
    with zipfile.ZipFile(tmp_path / "tensorflow_saved_model_bundle.zip") as z:
        z.extractall(tmp_path / "sm")
    assert (tmp_path / "sm" / "variables").is_dir()  # deepImageJ checks it exists
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:  # as Java's SavedModelBundle.load reads it
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(tmp_path / "sm"))
        sig = meta.signature_def["serving_default"]
        assert list(sig.inputs) == ["input0"] and list(sig.outputs) == ["output0"]
        ops = {n.op for n in meta.graph_def.node}
        assert not ops & {"VarHandleOp", "ReadVariableOp", "DisableCopyOnRead"}  # TF 2.7 cannot read these
        sm_out = sess.run(sig.outputs["output0"].name, {sig.inputs["input0"].name: x.astype(np.float32)})
    assert np.abs(sm_out - expected).max() < 1e-4


def test_export_errors(tiny_model, sim_dataset, tmp_path, capsys):
    with pytest.raises(ConfigError, match="model name 'nuclei: v2': bioimage.io names may only contain"):
        export_bundle(tiny_model, tmp_path / "b.zip", name="nuclei: v2")
    assert main(["export", "--model", str(tiny_model), "--out", str(tmp_path / "b.zip"), "--name", "a/b"]) == 1
    err = capsys.readouterr().err
    assert "bioimage.io names may only contain" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="must be a .zip"):
        export_bundle(tiny_model, tmp_path / "b.tar")
    with pytest.raises(ConfigError, match="unknown weight format"):
        export_bundle(tiny_model, tmp_path / "b.zip", weights=("pytorch_state_dict",))
    moved = tmp_path / "moved_model"
    shutil.copytree(tiny_model, moved)
    split = json.loads((moved / "split.json").read_text())
    split["data"] = str(tmp_path / "gone")
    for part in ("train", "validation"):
        for s in split[part]:
            s["image"] = f"images/{Path(s['image']).name}"
    (moved / "split.json").write_text(json.dumps(split))
    with pytest.raises(DataError, match="no sample image .* give one"):
        export_bundle(moved, tmp_path / "b.zip")
    zs = json.loads((moved / "config.json").read_text())
    zs["data_normalizer"] = {"name": "zscore"}
    (moved / "config.json").write_text(json.dumps(zs))
    with pytest.raises(ConfigError, match="only models trained with percentile normalisation"):
        export_bundle(moved, tmp_path / "b.zip", sample=next((sim_dataset / "test" / "images").iterdir()))
    assert not (tmp_path / "b.zip").exists()


def test_cli_export_and_bioimageio_command(tiny_model, sim_dataset, tmp_path, capsys, in_tmp_dir):
    out = tmp_path / "cli.zip"
    sample = sorted((sim_dataset / "test" / "images").iterdir())[0]
    assert main(["-q", "export", "--model", str(tiny_model), "--out", str(out), "--sample", str(sample),
                 "--weights", "keras_v3", "onnx", "--name", "CLI bundle"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert set(_rdf(out)["weights"]) == {"keras_v3", "onnx"} and _rdf(out)["name"] == "CLI bundle"
    r = subprocess.run([str(Path(sys.executable).parent / "bioimageio"), "test", str(out)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "passed" in r.stdout


@pytest.mark.parametrize("weight_format", ["keras_hdf5", "tensorflow_saved_model_bundle", "onnx"])
def test_format_04_for_deepimagej_validates_and_passes(tiny_bundle_04, weight_format, in_tmp_dir):
    from bioimageio.core import test_model

    summary = test_model(tiny_bundle_04, weight_format=weight_format)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    assert str(summary.format_version).startswith("0.4")


def test_format_04_deepimagej_block(tiny_bundle_04):
    rdf = _rdf(tiny_bundle_04)
    assert rdf["format_version"].startswith("0.4")
    dij = rdf["config"]["deepimagej"]
    assert dij["pyramidal_model"] is False and dij["allow_tiling"] is True
    assert dij["model_keys"]["tensorflow_siganture_def"].endswith("DEFAULT_SERVING_SIGNATURE_DEF_KEY")
    assert dij["prediction"]["preprocess"][0] == {"spec": "ij.IJ::runMacroFile", "kwargs": "scale_range.ijm"}
    assert dij["prediction"]["postprocess"][0]["kwargs"] == "3class_to_instances.ijm"
    assert dij["test_information"]["inputs"][0]["name"] == "test_input.npy"
    assert rdf["config"]["bioimageio"]["nickname"]
    with zipfile.ZipFile(tiny_bundle_04) as z:
        assert {"scale_range.ijm", "3class_to_instances.ijm"} <= set(z.namelist())
    assert rdf["inputs"][0]["axes"] == "byxc" and rdf["outputs"][0]["halo"][1] > 0


def test_format_04_bundle_runs_in_ijseg(tiny_model, tiny_bundle_04, in_tmp_dir):
    from ijseg._tiling import valid_size
    from ijseg.pipeline import load_predictor
    from ijseg.predict import Predictor

    img = np.random.default_rng(4).gamma(2, 30, (200, 184)).astype(np.float32)
    b = load_predictor(tiny_bundle_04)
    assert b.model.in_axes == ["batch", "y", "x", "channel"] and b.config.data_target == "3class"
    ref = Predictor(tiny_model).predict(img)
    assert b.config.data_n_channels == 1 and b.n_outputs == 3
    assert np.abs(b.predict(img) - ref).max() < 1e-4
    assert np.abs(b.predict(img, tile=valid_size(90, minimum=b.model.minimum, step=b.model.step)) - ref).max() < 1e-4
