"""Running bioimage.io bundles: equality with model folders, foreign bundles, untrusted input."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from ijseg.cli import main
from ijseg.data.io import read_image
from ijseg.errors import ModelError
from ijseg._tiling import valid_size
from ijseg.bundles.load import BundleSource, safe_extract
from ijseg.predict import Predictor


def test_bundle_gives_the_same_labels_as_the_model_folder(tiny_model, tiny_bundle, sim_dataset, tmp_path):
    src = sim_dataset / "test" / "images"
    assert main(["-q", "predict", "--model", str(tiny_model), "--input", str(src), "--out", str(tmp_path / "a")]) == 0
    assert main(["-q", "predict", "--model", str(tiny_bundle), "--input", str(src), "--out", str(tmp_path / "b")]) == 0
    for f in sorted((tmp_path / "a").glob("*_labels.tif")):
        np.testing.assert_array_equal(read_image(f).data, read_image(tmp_path / "b" / f.name).data)
    assert (tmp_path / "a" / "summary.csv").read_text() == (tmp_path / "b" / "summary.csv").read_text()


@pytest.mark.parametrize("weight_format", ["tensorflow_saved_model_bundle", "onnx", "keras_v3"])
def test_every_weight_format_matches_and_tiles(tiny_model, tiny_bundle, weight_format, in_tmp_dir):
    img = np.random.default_rng(3).gamma(2, 30, (300, 260)).astype(np.float32)
    ref = Predictor(tiny_model).predict(img)
    b = Predictor(BundleSource(tiny_bundle, weight_format=weight_format))
    assert b.model.weight_format == weight_format
    assert np.abs(b.predict(img) - ref).max() < 1e-4
    assert np.abs(b.predict(img, tile=valid_size(100, minimum=b.model.minimum, step=b.model.step)) - ref).max() < 1e-4


def _plain_keras_bundle(tmp: Path) -> tuple[Path, object]:
    """A bundle built by hand from a plain Keras model with channel-first axes, z-score
    pre-processing and binarize post-processing (not an ijseg model)."""
    import keras
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as m

    inp = keras.Input((1, None, None))
    x = keras.layers.Permute((2, 3, 1))(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=1))(x)
    x = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=2))(x)
    out = keras.layers.Permute((3, 1, 2))(x)
    model = keras.Model(inp, out)
    model.save(tmp / "plain.keras")
    rng = np.random.default_rng(0)
    x_test = rng.gamma(2, 20, (1, 1, 64, 64)).astype(np.float32)
    z = (x_test - x_test.mean()) / (x_test.std() + 1e-6)
    y_test = (np.asarray(model(z)) > 0.5).astype(np.float32)
    np.save(tmp / "in.npy", x_test)
    np.save(tmp / "out.npy", y_test)
    (tmp / "README.md").write_text("# plain\nA plain Keras model.\n")
    size = m.ParameterizedSize(min=16, step=8)
    descr = m.ModelDescr(
        name="plain keras", description="test model", authors=[m.Author(name="T")],
        cite=[m.CiteEntry(text="none", doi=m.Doi("10.1007/978-3-319-24574-4_28"))], license=m.LicenseId("MIT"),
        documentation=m.FileDescr(source=tmp / "README.md"),
        inputs=[m.InputTensorDescr(
            id=m.TensorId("raw"),
            axes=[m.BatchAxis(), m.ChannelAxis(channel_names=[m.Identifier("c0")]),
                  m.SpaceInputAxis(id=m.AxisId("y"), size=size), m.SpaceInputAxis(id=m.AxisId("x"), size=size)],
            test_tensor=m.FileDescr(source=tmp / "in.npy"),
            preprocessing=[m.ZeroMeanUnitVarianceDescr(kwargs=m.ZeroMeanUnitVarianceKwargs(
                axes=[m.AxisId("channel"), m.AxisId("y"), m.AxisId("x")]))],
        )],
        outputs=[m.OutputTensorDescr(
            id=m.TensorId("mask"),
            axes=[m.BatchAxis(), m.ChannelAxis(channel_names=[m.Identifier("fg")]),
                  m.SpaceOutputAxis(id=m.AxisId("y"), size=m.SizeReference(tensor_id=m.TensorId("raw"), axis_id=m.AxisId("y"))),
                  m.SpaceOutputAxis(id=m.AxisId("x"), size=m.SizeReference(tensor_id=m.TensorId("raw"), axis_id=m.AxisId("x")))],
            test_tensor=m.FileDescr(source=tmp / "out.npy"),
            postprocessing=[m.BinarizeDescr(kwargs=m.BinarizeKwargs(threshold=0.5))],
        )],
        weights=m.WeightsDescr(keras_v3=m.KerasV3WeightsDescr(
            source=tmp / "plain.keras", keras_version=m.Version(keras.__version__),
            backend=("tensorflow", m.Version(__import__("tensorflow").__version__)))),
    )
    return save_bioimageio_package(descr, output_path=tmp / "plain.zip"), model


def test_a_plain_keras_bundle_built_by_hand(tmp_path, in_tmp_dir):
    from bioimageio.core import test_model

    bundle, model = _plain_keras_bundle(tmp_path)
    assert test_model(bundle).status == "passed"
    b = Predictor(BundleSource(bundle))
    assert (b.model.in_axes, b.config.data_target, b.config.data_n_channels) == (["batch", "channel", "y", "x"], "binary", 1)
    img = np.random.default_rng(5).gamma(2, 20, (70, 90)).astype(np.float32)  # padded to 72 x 96 inside
    y = b.predict(img)
    assert y.shape == (70, 90, 1) and set(np.unique(y)) <= {0.0, 1.0}
    assert 0 < y.mean() < 1
    out = tmp_path / "pred"
    tif = tmp_path / "img.tif"
    import tifffile

    tifffile.imwrite(tif, img)
    assert main(["-q", "predict", "--model", str(bundle), "--input", str(tif), "--out", str(out)]) == 0
    assert read_image(out / "img_labels.tif").data.max() >= 1


# --- untrusted input ------------------------------------------------------------------------------


def _zip(path: Path, entries: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            z.writestr(info, "/etc/passwd")
    return path


def test_zip_slip_absolute_paths_and_links_are_refused(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    evil = _zip(tmp_path / "evil.zip", {"rdf.yaml": b"type: model", "../escaped.txt": b"x"})
    with pytest.raises(ModelError, match="unsafe entry '../escaped.txt'"):
        safe_extract(evil, dest)
    assert not (tmp_path / "escaped.txt").exists() and not any(dest.iterdir())
    with pytest.raises(ModelError, match="unsafe entry '/tmp/ijseg_abs.txt'"):
        safe_extract(_zip(tmp_path / "abs.zip", {"/tmp/ijseg_abs.txt": b"x"}), dest)
    assert not Path("/tmp/ijseg_abs.txt").exists()
    with pytest.raises(ModelError, match="symbolic link"):
        safe_extract(_zip(tmp_path / "link.zip", {"rdf.yaml": b"x"}, symlink="passwd"), dest)
    with pytest.raises(ModelError, match="unsafe entry"):
        BundleSource(evil)
    (tmp_path / "not.zip").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable zip archive"):
        BundleSource(tmp_path / "not.zip")
    with pytest.raises(ModelError, match="model not found"):
        BundleSource(tmp_path / "none.zip")


def _unpacked(bundle: Path, tmp: Path) -> Path:
    d = tmp / "unpacked"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(d)
    return d


def test_missing_weights_wrong_sha256_unknown_version_and_unsafe_yaml(tiny_bundle, tmp_path):
    d = _unpacked(tiny_bundle, tmp_path)
    (d / "tensorflow_saved_model_bundle.zip").unlink()
    with pytest.raises(ModelError, match="weights file 'tensorflow_saved_model_bundle.zip' .* is missing from the bundle"):
        BundleSource(d)
    with zipfile.ZipFile(tiny_bundle) as z:
        z.extract("tensorflow_saved_model_bundle.zip", d)
    with open(d / "model.onnx", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ModelError, match="(?i)sha256"):
        BundleSource(d, weight_format="onnx")
    rdf = yaml.safe_load((d / "rdf.yaml").read_text())
    rdf["format_version"] = "9.1.0"
    (d / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(ModelError, match="unsupported format_version '9.1.0'"):
        BundleSource(d)
    (d / "rdf.yaml").write_text("!!python/object/apply:os.system ['touch /tmp/ijseg_pwned']\n")
    with pytest.raises(ModelError, match="not a valid bioimage.io description"):
        BundleSource(d)
    assert not os.path.exists("/tmp/ijseg_pwned")
    with pytest.raises(ModelError, match="has no onnx weights|not supported"):
        BundleSource(tiny_bundle, weight_format="pytorch_state_dict")


def test_keras_lambda_layers_are_not_deserialised(tmp_path):
    """A .keras file with a Lambda layer would run code when loaded: Keras safe mode refuses it."""
    import keras

    bundle, _ = _plain_keras_bundle(tmp_path)
    d = _unpacked(bundle, tmp_path)
    inp = keras.Input((1, None, None))
    out = keras.layers.Lambda(lambda t: t * 0 + 1)(inp)
    keras.Model(inp, out).save(d / "plain.keras")
    rdf = yaml.safe_load((d / "rdf.yaml").read_text())
    rdf["weights"]["keras_v3"].pop("sha256", None)
    (d / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(ModelError, match="cannot load the keras_v3 weights .*Lambda"):
        Predictor(BundleSource(d)).predict(np.random.default_rng(0).random((32, 32)).astype(np.float32))
    shutil.rmtree(d)


def test_running_a_bundle_leaves_the_working_folder_clean(tiny_bundle, in_tmp_dir):
    b = Predictor(BundleSource(tiny_bundle, weight_format="tensorflow_saved_model_bundle"))
    b.predict(np.random.default_rng(0).random((64, 64)).astype(np.float32))
    assert list(in_tmp_dir.iterdir()) == []
    b.close()


@pytest.mark.parametrize("weight_format", ["keras_v3", "onnx"])
def test_loading_a_bundle_leaves_the_process_environment_alone(tiny_bundle, weight_format, monkeypatch):
    """bioimageio.core's Keras adapter sets KERAS_BACKEND (torch by default) process-wide, and it
    unzips weights into the current folder: a child `ijseg predict` then failed to import
    TensorFlow. Both are put back."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    cwd = os.getcwd()
    pred = Predictor(BundleSource(tiny_bundle, weight_format=weight_format))
    pred.predict(np.random.default_rng(0).random((64, 64), np.float32))
    assert "KERAS_BACKEND" not in os.environ and os.getcwd() == cwd
