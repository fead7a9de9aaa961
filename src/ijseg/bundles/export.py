"""bioimage.io model bundles (format 0.5, and 0.4 for deepImageJ 3.0.3) that deepImageJ and
bioimageio.core run.

``rdf.yaml`` is rewritten after bioimageio.spec's packager with the types deepImageJ's reader
expects, and every bundle is checked against :mod:`ijseg.bundles.deepimagej`'s rules before it is
renamed into place.

The bundle is built with bioimageio.spec's own classes and packed with its packager. It holds:

* weights in three formats: the Keras 3 file (``keras_v3``, the source), a frozen TensorFlow
  SavedModel (``tensorflow_saved_model_bundle.zip``: no variables, tag ``serve``, signature
  ``serving_default`` taking ``input0`` and returning ``output0``; loads in TensorFlow 2.7, the
  oldest runtime deepImageJ uses) and ONNX (opset 17, converted with tf2onnx; input ``input0``,
  output ``output0``);
* the network with its sigmoid/softmax inside, axes ``b y x c`` (a 3-D model: ``b z y x c``,
  format 0.5 only); pre-processing as spec operations (``ensure_dtype`` float32,
  ``scale_range`` per sample over y/x (z/y/x) with ijseg's percentiles: the same definition as
  :class:`ijseg.preprocess.PercentileNormalizer`);
* input size ``min + k * step`` with ``step = 2**depth`` and ``min = 2 * halo + step``; an
  output halo of :func:`ijseg._tiling.halo_for` (beyond the receptive-field radius) on y and x,
  and on z with z's own step and halo (:attr:`ijseg.config.Config.divisor_z`);
* an ``id`` made from the name (deepImageJ fails without one);
* test input/output tensors (``.npy``), sample input/output (TIFF), a cover image (input | prediction), a
  README with what the model segments, how it was trained and its quality control, and the QC
  figures in ``config.ijseg.qc``.
"""

from __future__ import annotations

import datetime
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..provenance import FILE as PROVENANCE_FILE
from ..provenance import completed, file_hash, record as record_run
from ..provenance import read as read_provenance
from .._fileio import atomic_path, atomic_write_text
from .._tiling import smallest_window
from ..errors import ConfigError, DataError, ModelError
from ..models.folder import ModelFolder
from ..models.source import stored_postprocessing
from ..postprocess import PostprocessOptions
from ..preprocess import normalizer_from_dict
from . import deepimagej

__all__ = ["export_bundle", "model_postprocessing", "WEIGHT_FORMATS", "INPUT_ID", "OUTPUT_ID"]

log = logging.getLogger(__name__)

INPUT_ID = "input0"
OUTPUT_ID = "output0"
WEIGHT_FORMATS = ("keras_v3", "tensorflow_saved_model_bundle", "onnx")
ONNX_OPSET = 17
#: the 0.5 patch version written: the newest whose documentation and covers are plain file names,
#: the types deepImageJ 3.1's reader (JDLL) casts them to
JDLL_FORMAT_VERSION = "0.5.10"
#: the SavedModel zip: deepImageJ 3.0.3 looks for this name when the folder also holds an ONNX file
TF_ZIP = "tensorflow_saved_model_bundle.zip"
#: side of the test tensor (cropped from the sample image, a multiple of 2**depth)
TEST_SIZE = 256
#: a 3-D model's test tensor: at most this many planes of at most this side
TEST_DEPTH, TEST_SIZE_3D = 32, 128

_NAME_BAD = __import__("re").compile(r"[^A-Za-z0-9_+\- ()]")

UNET_CITATION = {
    "text": "Ronneberger, O., Fischer, P. & Brox, T. U-Net: Convolutional Networks for Biomedical Image "
            "Segmentation. MICCAI 2015.",
    "doi": "10.1007/978-3-319-24574-4_28",
}


def _require(module: str, pip_name: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ModelError(f"exporting needs {pip_name}: pip install {pip_name}") from err


def _sample_image(folder: ModelFolder, sample: str | os.PathLike | None) -> tuple[np.ndarray, Path]:
    """A raw image for test tensors: the given one, else the first validation image."""
    from ..data.io import read_image, to_model_input

    cfg = folder.config()
    path: Path | None = Path(sample) if sample is not None else None
    if path is None:
        split = folder / ModelFolder.SPLIT
        if split.is_file():
            d = json.loads(split.read_text(encoding="utf-8"))
            root = Path(d.get("data", "."))
            for s in d.get("validation", []) + d.get("train", []):
                cand = Path(s["image"])
                cand = cand if cand.is_absolute() else root / cand
                if cand.is_file():
                    path = cand
                    break
    if path is None:
        raise DataError(
            f"{folder.path}: no sample image for the bundle's test tensors (the training images are gone); "
            f"give one", options=("sample",)
        )
    x = to_model_input(read_image(path), cfg.data_n_channels, dims=cfg.unet_dims)
    return x, path


def _test_rules(predictor) -> list[tuple[int, int, int]]:
    """(step, smallest input, largest test size) per spatial axis of the bundle's input."""
    m = predictor.model
    xy = (m.step, smallest_window(m.halo, m.step), TEST_SIZE if predictor.dims == 2 else TEST_SIZE_3D)
    if predictor.dims == 2:
        return [xy, xy]
    return [(m.step_z, smallest_window(m.halo_z, m.step_z), TEST_DEPTH), xy, xy]


def _crop_for_test(x: np.ndarray, rules: list[tuple[int, int, int]]) -> np.ndarray:
    """The test input: the centre of the sample, at most the rule's size along each axis (or the
    bundle's minimum input size, if larger), a size the bundle accepts (``minimum + k * step``);
    a sample smaller than the minimum is mirror-padded to it.

    >>> _crop_for_test(np.zeros((300, 90, 1)), [(8, 48, 256), (8, 48, 256)]).shape
    (256, 88, 1)
    """
    sizes = x.shape[: len(rules)]
    if any(n < step for n, (step, _, _) in zip(sizes, rules)):
        raise DataError(f"sample image of {'x'.join(map(str, sizes))} pixels is smaller than the network's minimum "
                        f"{'x'.join(str(step) for step, _, _ in rules)}")
    crop = []
    for n, (step, minimum, largest) in zip(sizes, rules):
        side = min(max(largest, minimum), n // step * step)
        crop.append(slice((n - side) // 2, (n - side) // 2 + side))
    c = x[tuple(crop)]
    pad = [(0, max(0, minimum - n)) for n, (_, minimum, _) in zip(c.shape, rules)] + [(0, 0)] * (c.ndim - len(rules))
    return np.pad(c, pad, mode="reflect")


def _save_keras(model, path: Path) -> None:
    model.save(path)


def _save_savedmodel(model, path: Path, n_channels: int, dims: int = 2) -> None:
    """A frozen SavedModel that TensorFlow 2.7 to the current version load.

    SavedModels that Keras 3 writes read their variables through ``DisableCopyOnRead``, an op
    that TensorFlow 2.7 (deepImageJ 3.0.3's and the deepImageJ 3.1 GUI's default engine) does not
    know. Here the variables are folded into constants and the graph is written as a TF1-style
    SavedModel without resource variables (default attributes stripped): tag ``serve``,
    signature ``serving_default`` with input key ``input0`` and output key ``output0``, an empty
    ``variables/`` folder, as Java's ``SavedModelBundle.load`` and bioimageio.core read it.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from .._tf import import_tf

    tf, _ = import_tf()
    fn = tf.function(lambda x: model(x, training=False))
    shape = [None] * (dims + 1) + [n_channels]
    concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    graph = tf.Graph()
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the TF1 builder's deprecation notices
    try:
        with graph.as_default():
            x = tf.compat.v1.placeholder(tf.float32, shape, name=INPUT_ID)
            (y,) = tf.graph_util.import_graph_def(graph_def, input_map={frozen.inputs[0].name: x},
                                                  return_elements=[frozen.outputs[0].name], name="frozen")
            y = tf.identity(y, name=OUTPUT_ID)
            with tf.compat.v1.Session(graph=graph) as sess:
                builder = tf.compat.v1.saved_model.Builder(str(path))
                sig = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def({INPUT_ID: x}, {OUTPUT_ID: y})
                builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig},
                                                     strip_default_attrs=True)
                builder.save()
    finally:
        logger.setLevel(level)
    (path / "variables").mkdir(exist_ok=True)


def _save_onnx(model, path: Path, n_channels: int, dims: int = 2) -> None:
    from .._tf import import_tf

    tf, _ = import_tf()
    tf2onnx = _require("tf2onnx", "tf2onnx onnx")
    onnx = _require("onnx", "onnx")
    spec = (tf.TensorSpec([None] * (dims + 1) + [n_channels], tf.float32, name=INPUT_ID),)
    fn = tf.function(lambda x: model(x, training=False))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=ONNX_OPSET)
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [OUTPUT_ID if o == old else o for o in node.output]
    proto.graph.output[0].name = OUTPUT_ID
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _zip_dir(src: Path, dst: Path) -> None:
    """Zip a folder's content at the archive root, folders as entries of their own (deepImageJ
    checks that ``variables/`` exists after unzipping, even when it is empty)."""
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(src.rglob("*")):
            if p.is_dir():
                z.writestr(p.relative_to(src).as_posix() + "/", b"")
            else:
                z.write(p, p.relative_to(src).as_posix())


def _cover(x: np.ndarray, prob: np.ndarray, path: Path) -> None:
    """Input | prediction side by side (PNG, 2:1; of a volume, its middle plane)."""
    import imageio.v3 as iio

    if x.ndim == 4:
        x, prob = x[x.shape[0] // 2], prob[prob.shape[0] // 2]
    g = x[..., 0]
    lo, hi = np.percentile(g, [1, 99.8])
    g = np.clip((g - lo) / (hi - lo + 1e-6), 0, 1)
    if prob.shape[-1] == 1:
        p = np.repeat(prob[..., :1], 3, axis=-1)
    else:
        colours = np.array([[0, 0, 0], [0.2, 0.9, 0.3], [1.0, 0.3, 0.8]] + [[0.5, 0.5, 1.0]] * 8)[: prob.shape[-1]]
        p = prob @ colours
    left = np.repeat(g[..., None], 3, axis=-1)
    img = (np.concatenate([left, np.clip(p, 0, 1)], axis=1) * 255).astype(np.uint8)
    iio.imwrite(path, img, extension=".png")


def _readme(cfg, norm, name: str, description: str, qc: dict | None, history: list[dict], halo: int,
            halo_z: int = 0) -> str:
    target = {
        "binary": "a foreground probability (sigmoid, one channel); threshold at 0.5 and label connected components",
        "3class": "background / interior / boundary probabilities (softmax, three channels); instances are the "
                  "interiors grown back over the boundary, which keeps touching objects apart",
        "distance": "a distance map (each object's distance to its border, 1 at its centre)",
        "classes": f"probabilities of {cfg.data_n_classes} classes (softmax)",
    }[cfg.data_target]
    if cfg.unet_dims == 3:
        size = (f"one volume (ZYX) with {cfg.data_n_channels} channel(s), any depth that is a multiple of "
                f"{cfg.divisor_z} planes and any width and height that are multiples of {cfg.divisor} pixels (halo "
                f"{halo_z} planes and {halo} pixels for tiling; z step / xy step {cfg.unet_anisotropy:g})")
        patch = f"{cfg.train_patch_depth}x{cfg.train_patch_size}x{cfg.train_patch_size}"
    else:
        size = (f"one image with {cfg.data_n_channels} channel(s), any size that is a multiple of {cfg.divisor} "
                f"pixels (halo {halo} pixels for tiling)")
        patch = f"{cfg.train_patch_size}x{cfg.train_patch_size}"
    # an epoch cut by the time limit has fewer steps (history.csv's "steps"; older folders lack it)
    steps = sum(int(r.get("steps", cfg.train_steps_per_epoch)) for r in history)
    lines = [
        f"# {name}", "", description, "",
        "## What it does", "",
        f"A {cfg.unet_dims}-D U-Net ({cfg.unet_depth} levels, {cfg.unet_base_filters} base filters, "
        f"{cfg.n_params or '?'} parameters) trained with ijseg. Input: {size}. Output: {target}.", "",
        "Pre-processing (inside the bundle): percentile normalisation per image "
        f"({norm.pmin:g} / {norm.pmax:g}, bioimage.io "
        "`scale_range`).", "",
        "## Training", "",
        f"- loss {cfg.loss}, optimiser {cfg.train_optimizer} (learning rate {cfg.train_learning_rate}), "
        f"{len(history)} epoch(s), {steps} steps of batch {cfg.train_batch_size}, patches "
        f"{patch}, augmentation {'on' if cfg.train_augment else 'off'}",
    ]
    if history:
        last = history[-1]
        lines.append(f"- final validation loss {last.get('val_loss', float('nan')):.4g}, foreground IoU "
                     f"{last.get('val_fg_iou', float('nan')):.3f}")
    if qc:
        lines += ["", "## Quality control", "",
                  f"On {qc['n_images']} image(s) with ground truth ({qc.get('data', '')}; StarDist matching, "
                  f"AP = TP / (TP + FP + FN)):", "",
                  "| IoU threshold | AP | F1 | precision | recall |", "|---|---|---|---|---|"]
        for t, m in qc["objects"].items():
            lines.append(f"| {t} | {m['ap']:.3f} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} |")
        lines += ["", "Pixel IoU: " + ", ".join(f"{k} {v:.3f}" for k, v in qc["pixels"]["iou"].items()), "",
                  qc.get("verdict_text", "")]
    lines += ["", "## Use", "",
              "In Fiji with deepImageJ 3.1+, or in Python with bioimageio.core, or with ijseg: "
              "`ijseg predict --model this.zip --input IMAGE --out DIR`.", "",
              "Cite: " + UNET_CITATION["text"], ""]
    return "\n".join(lines)


def export_bundle(
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    sample: str | os.PathLike | None = None,
    name: str | None = None,
    description: str | None = None,
    authors: list[str] | None = None,
    license: str = "CC-BY-4.0",
    weights: tuple[str, ...] = WEIGHT_FORMATS,
    format_version: str = "0.5",
    postprocess: PostprocessOptions | None = None,
) -> Path:
    """Write a bioimage.io model bundle (zip) for a trained model folder; returns its path.

    Parameters
    ----------
    model_dir
        Model folder written by ``ijseg train``.
    out
        Output ``.zip`` (written atomically).
    sample
        Image for the test tensors and the cover (default: the first validation image).
    name, description, authors, license
        Metadata; defaults describe the model from its configuration.
    weights
        Weight formats to include (``keras_v3`` is always included as the source; in format
        0.4, which has no Keras 3 entry, the Keras weights are a legacy HDF5 file).
    format_version
        ``"0.5"`` (bioimage.io, deepImageJ 3.1+) or ``"0.4"`` (with the ``config.deepimagej``
        block and ImageJ macros that deepImageJ up to 3.0.3 reads).
    postprocess
        Thresholds of the model's post-processing, written into ``config.ijseg.postprocessing``
        and into the bundle's ImageJ macros (default: :func:`model_postprocessing`).

    Raises
    ------
    ModelError, DataError, ConfigError
        For an unusable model folder, missing sample image, or unknown options.
    """
    spec = _require("bioimageio.spec", "bioimageio.spec")

    from .._tf import import_tf
    from ..predict import Predictor

    out = _checked_out(out, format_version, weights)
    folder, cfg = _exportable(model_dir, format_version)
    name = _checked_name(name, cfg, folder, format_version)
    norm = normalizer_from_dict(cfg.data_normalizer)
    predictor = Predictor(folder)
    halo, halo_z = predictor.halo, getattr(predictor.model, "halo_z", 0)
    raw, sample_path = _sample_image(folder, sample)
    test_raw = _crop_for_test(raw, _test_rules(predictor))
    prob, qc = predictor.predict(test_raw, tile=0), _qc_summary(folder)
    pp = dataclasses.asdict(postprocess or model_postprocessing(folder))
    description = description or _default_description(cfg)
    ijseg_config = _ijseg_block(cfg, qc=qc, sample=sample_path, halo=(halo_z, halo), postprocessing=pp)

    settings = dict(format_version=format_version, weights=list(weights), name=name, description=description,
                    authors=authors, license=license, postprocessing=pp)
    with _record(out, settings, cfg, folder, sample_path) as rec, \
            tempfile.TemporaryDirectory(prefix="ijseg-export-") as tmpdir:
        tmp = Path(tmpdir)
        _write_files(tmp, test_raw, prob, _readme(cfg, norm, name, description, qc, folder.history(), halo, halo_z))
        _write_provenance(tmp, rec, folder)
        entries = _write_weights(tmp, predictor.model.keras, cfg, weights, format_version, *import_tf())
        if format_version == "0.4":
            descr = _descr_v04(tmp, cfg, name=name, description=description, authors=authors, license=license,
                               weights=tuple(entries), halo=halo, test_shape=test_raw.shape, qc=qc,
                               norm=norm, postprocess=pp, extra=ijseg_config)
        else:
            descr = _descr_v05(tmp, cfg, entries, _attachments(tmp, folder), name=name, description=description,
                               authors=authors, license=license, halo=(halo_z, halo), norm=norm,
                               ijseg_config=ijseg_config)
        with atomic_path(out) as tmp_zip:
            spec.save_bioimageio_package(descr, output_path=tmp_zip)
            _finish_for_deepimagej(tmp_zip, out)
            _check_for_deepimagej(tmp_zip, out)
    log.info("wrote %s (format %s: %s)", out, format_version, ", ".join(entries))
    return out


def _record(out: Path, settings: dict, cfg, folder: ModelFolder, sample: Path):
    """The export's provenance record: ``NAME.provenance.json`` beside the bundle, with the
    bundle's hash, written only once the bundle is."""
    return record_run("export", out.with_name(f"{out.stem}.provenance.json"), options=settings, config=cfg.to_dict(),
                      model=folder.path, inputs=[sample], partial=False,
                      finish=lambda r: r.update(bundle={"path": str(out.resolve()), "sha256": file_hash(out)}))


def _write_provenance(tmp: Path, rec: dict, folder: ModelFolder) -> None:
    """The bundle's copy of the export record, with the training run's record in it."""
    rec["training"] = read_provenance(folder.path)
    atomic_write_text(tmp / PROVENANCE_FILE, json.dumps(completed(rec), indent=1, default=str) + "\n")


def _ijseg_block(cfg, *, qc: dict | None, sample: Path, halo: tuple[int, int], postprocessing: dict) -> dict:
    """``config.ijseg``: the configuration, QC, sample, halo and receptive field (along z too for
    a 3-D model) and the post-processing."""
    from ..models.unet import receptive_field

    block = {"config": cfg.to_dict(), "qc": qc, "sample": str(sample), "halo": halo[1],
             "receptive_field": receptive_field(cfg), "postprocessing": postprocessing}
    if cfg.unet_dims == 3:
        block.update(halo_z=halo[0], receptive_field_z=receptive_field(cfg, "z"))
    return block


def _exportable(model_dir, format_version: str) -> tuple[ModelFolder, Any]:
    """The model folder and its configuration, if bioimage.io can describe its pre-processing
    (and, for format 0.4, it is a 2-D model)."""
    folder = ModelFolder(model_dir)
    cfg = folder.config()
    if format_version == "0.4" and cfg.unet_dims == 3:
        raise ConfigError(f"{folder.path}: a 3-D model is exported in format 0.5 only (deepImageJ 3.1 and later); "
                          f"ijseg's format 0.4 macros for deepImageJ 3.0.3 work on 2-D images", options=("format",))
    if cfg.data_normalizer.get("name") != "percentile":
        raise ConfigError(
            f"{folder.path}: only models trained with percentile normalisation can be exported (bioimage.io "
            f"scale_range); this one uses {cfg.data_normalizer.get('name')!r}"
        )
    return folder, cfg


def _qc_summary(folder: ModelFolder) -> dict | None:
    path = folder / ModelFolder.QC / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def model_postprocessing(model_dir: str | os.PathLike | ModelFolder) -> PostprocessOptions:
    """A model folder's post-processing: the options training chose on the validation images
    (``MODEL/postprocessing.json``), else those of its QC (``MODEL/qc/summary.json``, models
    trained before the tuning), else the defaults."""
    folder = model_dir if isinstance(model_dir, ModelFolder) else ModelFolder(model_dir)
    stored = folder.postprocessing() or ((_qc_summary(folder) or {}).get("postprocessing") or {})
    return stored_postprocessing(stored, folder.path)


def _default_description(cfg) -> str:
    kind = "instance" if cfg.data_target in ("3class", "distance", "binary") else "semantic"
    what = "3-D fluorescence microscopy volumes" if cfg.unet_dims == 3 else "2-D fluorescence microscopy images"
    return f"U-Net for {kind} segmentation of {what} ({cfg.data_target} target), trained with ijseg."


def _checked_out(out, format_version: str, weights: tuple[str, ...]) -> Path:
    if format_version not in ("0.5", "0.4"):
        raise ConfigError(f"format_version must be 0.5 or 0.4, got {format_version!r}")
    unknown = sorted(set(weights) - set(WEIGHT_FORMATS))
    if unknown:
        raise ConfigError(f"unknown weight format(s) {', '.join(unknown)}; choose from {', '.join(WEIGHT_FORMATS)}")
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise ConfigError(f"{out}: the bundle must be a .zip file")
    return out


def _checked_name(name: str | None, cfg, folder: ModelFolder, format_version: str) -> str:
    """The model's name (default: from its target and folder), checked for bioimage.io and deepImageJ."""
    if name is None:
        name = _NAME_BAD.sub("-", f"ijseg {cfg.data_target} U-Net {folder.path.name}")
    elif _NAME_BAD.search(name) or not name.strip():
        raise ConfigError(
            f"model name {name!r}: bioimage.io names may only contain letters, digits, spaces and _+-()"
        )
    clashes = deepimagej.macro_keys_in(name)
    if format_version == "0.4" and clashes:
        raise ConfigError(f"model name {name!r}: deepImageJ 3.0.3 cannot run a model whose name contains "
                          f"{', '.join(repr(k) for k in clashes)} (it cuts its macro options at these words); choose "
                          f"another name", options=("name",))
    return name


def _write_files(tmp: Path, test_raw: np.ndarray, prob: np.ndarray, readme: str) -> None:
    """Test tensors, samples for people (imageio-readable, one dimension per axis: b (z) y x c), cover, README."""
    import tifffile

    np.save(tmp / "test_input.npy", test_raw[None].astype(np.float32))
    np.save(tmp / "test_output.npy", prob[None].astype(np.float32))
    tifffile.imwrite(tmp / "sample_input.tif", test_raw[None].astype(np.float32), photometric="minisblack")
    tifffile.imwrite(tmp / "sample_output.tif", prob[None].astype(np.float32), photometric="minisblack")
    _cover(test_raw, prob, tmp / "cover.png")
    (tmp / "README.md").write_text(readme, encoding="utf-8")


def _write_weights(tmp: Path, model, cfg, weights: tuple[str, ...], format_version: str, tf, keras) -> dict[str, Any]:
    """The weight files and their descriptions (Keras always, as the source of the others)."""
    from bioimageio.spec.model import v0_5 as m

    _save_keras(model, tmp / "model.keras")
    if format_version == "0.4":
        model.save(tmp / "model.h5")  # format 0.4 knows Keras weights only as HDF5
    entries: dict[str, Any] = {
        "keras_v3": m.KerasV3WeightsDescr(
            source=tmp / "model.keras", keras_version=m.Version(keras.__version__),
            backend=("tensorflow", m.Version(tf.__version__)),
        )
    }
    if "tensorflow_saved_model_bundle" in weights:
        _save_savedmodel(model, tmp / "tf_saved_model", cfg.data_n_channels, cfg.unet_dims)
        _zip_dir(tmp / "tf_saved_model", tmp / TF_ZIP)
        shutil.rmtree(tmp / "tf_saved_model")
        entries["tensorflow_saved_model_bundle"] = m.TensorflowSavedModelBundleWeightsDescr(
            source=tmp / TF_ZIP, tensorflow_version=m.Version(tf.__version__), parent="keras_v3",
            comment="frozen SavedModel (no variables), tag serve, signature serving_default: input0 -> output0; "
                    "loads in TensorFlow 2.7 and later",
        )
    if "onnx" in weights:
        _save_onnx(model, tmp / "model.onnx", cfg.data_n_channels, cfg.unet_dims)
        entries["onnx"] = m.OnnxWeightsDescr(source=tmp / "model.onnx", opset_version=ONNX_OPSET,
                                             parent="keras_v3", comment="converted with tf2onnx")
    return entries


def _attachments(tmp: Path, folder: ModelFolder) -> list:
    """The cover, the provenance (of the export, with the training's), the learning curves and the
    QC report of the model folder."""
    from bioimageio.spec.model import v0_5 as m

    attachments = [m.FileDescr(source=tmp / "cover.png"), m.FileDescr(source=tmp / PROVENANCE_FILE)]
    for extra in (folder / ModelFolder.CURVES, folder / ModelFolder.QC / "report.html"):
        if extra.is_file():
            dst = tmp / (extra.name if extra.parent == folder.path else f"qc_{extra.name}")
            shutil.copy(extra, dst)
            attachments.append(m.FileDescr(source=dst))
    return attachments


def _output_names(cfg) -> list[str]:
    return {"binary": ["foreground"], "distance": ["distance"], "3class": ["background", "interior", "boundary"]
            }.get(cfg.data_target, [f"class{c}" for c in range(cfg.n_outputs)])


def _descr_v05(tmp: Path, cfg, entries: dict[str, Any], attachments: list, *, name: str, description: str,
               authors, license: str, halo: tuple[int, int], norm, ijseg_config: dict):
    """The format 0.5 model description (``halo``: along z and along y and x)."""
    from bioimageio.spec.model import v0_5 as m

    out_names = _output_names(cfg)
    channel_names = [m.Identifier(f"channel{c}") for c in range(cfg.data_n_channels)]
    # the smallest tile must leave a core inside the halo on both sides
    rules = {"y": (halo[1], cfg.divisor), "x": (halo[1], cfg.divisor)}
    if cfg.unet_dims == 3:
        rules = {"z": (halo[0], cfg.divisor_z), **rules}
    spatial = [m.AxisId(a) for a in rules]
    inp = m.InputTensorDescr(
        id=m.TensorId(INPUT_ID),
        description="raw volume" if cfg.unet_dims == 3 else "raw image",
        axes=[m.BatchAxis(),
              *(m.SpaceInputAxis(id=m.AxisId(a), size=m.ParameterizedSize(min=smallest_window(h, s), step=s))
                for a, (h, s) in rules.items()),
              m.ChannelAxis(channel_names=channel_names)],
        test_tensor=m.FileDescr(source=tmp / "test_input.npy"),
        sample_tensor=m.FileDescr(source=tmp / "sample_input.tif"),
        preprocessing=[
            m.EnsureDtypeDescr(kwargs=m.EnsureDtypeKwargs(dtype="float32")),
            m.ScaleRangeDescr(kwargs=m.ScaleRangeKwargs(
                axes=spatial,
                min_percentile=float(norm.pmin), max_percentile=float(norm.pmax), eps=float(norm.eps),
            )),
        ],
    )
    ref = {"tensor_id": m.TensorId(INPUT_ID)}
    outp = m.OutputTensorDescr(
        id=m.TensorId(OUTPUT_ID),
        description=f"{cfg.final_activation} output: {', '.join(out_names)}",
        axes=[m.BatchAxis(),
              *(m.SpaceOutputAxisWithHalo(id=m.AxisId(a), halo=h, size=m.SizeReference(axis_id=m.AxisId(a), **ref))
                for a, (h, _) in rules.items()),
              m.ChannelAxis(channel_names=[m.Identifier(n) for n in out_names])],
        test_tensor=m.FileDescr(source=tmp / "test_output.npy"),
        sample_tensor=m.FileDescr(source=tmp / "sample_output.tif"),
    )
    return _validated(m.ModelDescr,
        id=m.ModelId(_nickname(name)),  # deepImageJ needs an id
        name=name,
        description=description,
        authors=[m.Author(name=a) for a in (authors or ["ijseg user"])],
        cite=[m.CiteEntry(text=UNET_CITATION["text"], doi=m.Doi(UNET_CITATION["doi"]))],
        license=m.LicenseId(license),
        documentation=m.FileDescr(source=tmp / "README.md"),
        covers=[m.FileDescr(source=tmp / "cover.png")],
        attachments=attachments,
        tags=["unet", "segmentation", f"{cfg.unet_dims}d", "fluorescence-light-microscopy", "ijseg", cfg.data_target],
        inputs=[inp],
        outputs=[outp],
        weights=m.WeightsDescr(**entries),
        timestamp=m.Datetime(datetime.datetime.now(datetime.timezone.utc)),
        config=m.Config(ijseg=ijseg_config),
    )


def _render_macros(tmp: Path, cfg, norm, pp: dict) -> tuple[list[Path], str, str | None]:
    """The pre/post-processing macros with this model's parameters as their defaults."""
    from .._resources import macro_file

    pre = macro_file("scale_range.ijm")
    (tmp / pre.name).write_text(deepimagej.render_macro(
        pre.read_text(encoding="utf-8"), pmin=norm.pmin, pmax=norm.pmax, eps=norm.eps), encoding="utf-8")
    macros = [tmp / pre.name]
    post_name = {"binary": "binarize.ijm", "3class": "3class_to_instances.ijm"}.get(cfg.data_target)
    if post_name is None or (cfg.data_target == "binary" and cfg.final_activation != "sigmoid"):
        return macros, pre.name, None
    values = {"threshold": pp["threshold"]} if cfg.data_target == "binary" else {"seed": pp["seed_threshold"]}
    post = macro_file(post_name)
    (tmp / post.name).write_text(deepimagej.render_macro(post.read_text(encoding="utf-8"), **values), encoding="utf-8")
    macros.append(tmp / post.name)
    return macros, pre.name, post.name


def _readme_macro_lines(rdf: dict, out: Path) -> str:
    """The README section with the macro lines that run the bundle (from its final rdf)."""
    lines = deepimagej.macro_lines(rdf, bundle_path=str(out.resolve()))
    text = "\n## Macro lines\n\n" + "".join(f"{who}:\n\n```\n{line}\n```\n\n" for who, line in lines.items())
    if "deepImageJ 3.0.3" in lines:
        text += ("deepImageJ 3.0.3 runs the bundle's macros without arguments: they carry this model's own "
                 "normalisation percentiles and thresholds as their defaults. The tile satisfies its rules "
                 "(tile = min + k * step, larger than twice the halo).\n")
    return text


def _finish_for_deepimagej(bundle: Path, out: Path) -> None:
    """Rewrite ``rdf.yaml`` in the zip with the types deepImageJ 3.1 (JDLL) casts to, and add the
    macro lines (read from that final description) to the README.

    bioimageio.spec writes ``documentation`` and ``covers`` as ``{source, sha256}`` maps; JDLL
    casts ``documentation`` to a String and the covers to Strings (ClassCastException). Both are
    valid bioimage.io as plain file names (so the README carries no checksum and can be completed
    here). The file is written with YAML 1.1 scalars (PyYAML), so that SnakeYAML reads numbers as
    numbers (``1e-06`` would be a string in YAML 1.1).
    """
    import ruyaml
    import yaml

    with zipfile.ZipFile(bundle) as z:
        entries = [(i, z.read(i.filename)) for i in z.infolist()]
    (rdf_bytes,) = [data for info, data in entries if info.filename == "rdf.yaml"]
    rdf = ruyaml.YAML(typ="safe", pure=True).load(rdf_bytes.decode("utf-8"))
    if isinstance(rdf.get("documentation"), dict):
        rdf["documentation"] = rdf["documentation"]["source"]
    rdf["covers"] = [c["source"] if isinstance(c, dict) else c for c in rdf.get("covers") or []]
    if str(rdf.get("format_version", "")).startswith("0.5"):
        # 0.5.11 made documentation and covers {source, sha256} maps; bioimageio.spec still reads
        # plain file names from a 0.5.10 description (and validates it as its current 0.5 patch)
        rdf["format_version"] = JDLL_FORMAT_VERSION
    text = "# bioimage.io model description, written for bioimageio.spec and deepImageJ (JDLL)\n" + yaml.safe_dump(
        rdf, sort_keys=False, allow_unicode=True, width=110)
    replaced = {"rdf.yaml": text.encode("utf-8")}
    readme = next((data for info, data in entries if info.filename == rdf.get("documentation")), None)
    if readme is not None:
        replaced[rdf["documentation"]] = readme + _readme_macro_lines(deepimagej.read_rdf(text), out).encode("utf-8")
    tmp = bundle.with_name(bundle.name + ".rdf")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in entries:
            z.writestr(info, replaced.get(info.filename, data))
    os.replace(tmp, bundle)


def _check_for_deepimagej(bundle: Path, out: Path) -> None:
    found = deepimagej.problems(bundle)
    if found:
        raise ModelError(f"{out}: the bundle would not load in deepImageJ: " + "; ".join(found))


def _descr_v04(tmp: Path, cfg, *, name, description, authors, license, weights, halo, test_shape, qc, extra,
               norm, postprocess):
    """Format 0.4 description with deepImageJ's configuration block and .ijm macros."""
    from bioimageio.spec.model import v0_4 as m4

    from .._tf import import_tf

    tf, _ = import_tf()
    macros, pre_name, post_name = _render_macros(tmp, cfg, norm, postprocess)
    post_entries = [{"spec": "ij.IJ::runMacroFile", "kwargs": post_name}] if post_name else None
    h, w, c = test_shape
    n_out = cfg.n_outputs
    wmap: dict[str, Any] = {
        "keras_hdf5": m4.KerasHdf5WeightsDescr(source=tmp / "model.h5", tensorflow_version=m4.Version(tf.__version__)),
    }
    if "tensorflow_saved_model_bundle" in weights:
        wmap["tensorflow_saved_model_bundle"] = m4.TensorflowSavedModelBundleWeightsDescr(
            source=tmp / TF_ZIP, tensorflow_version=m4.Version(tf.__version__), parent="keras_hdf5")
    if "onnx" in weights:
        wmap["onnx"] = m4.OnnxWeightsDescr(source=tmp / "model.onnx", opset_version=ONNX_OPSET, parent="keras_hdf5")
    dij_block = {
        "pyramidal_model": False,
        "allow_tiling": True,
        "model_keys": {
            "tensorflow_model_tag": "tf.saved_model.tag_constants.SERVING",
            # deepImageJ reads this key with its historical spelling
            "tensorflow_siganture_def": "tf.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY",
        },
        "test_information": {
            "inputs": [{"name": "test_input.npy", "size": f"{w} x {h} x 1 x {c}",
                        "pixel_size": {"x": "1 pixel", "y": "1 pixel", "z": "1 pixel"}}],
            "outputs": [{"name": "test_output.npy", "type": "image", "size": f"{w} x {h} x 1 x {n_out}"}],
        },
        "prediction": {
            "preprocess": [{"spec": "ij.IJ::runMacroFile", "kwargs": pre_name}],
            "postprocess": post_entries or [{"spec": None}],
        },
    }
    step = cfg.divisor
    mn = smallest_window(halo, step)
    return _validated(m4.ModelDescr,
        name=name,
        description=description,
        authors=[m4.Author(name=a) for a in (authors or ["ijseg user"])],
        cite=[m4.CiteEntry(text=UNET_CITATION["text"], doi=m4.Doi(UNET_CITATION["doi"]))],
        license=m4.LicenseId(license),
        documentation=tmp / "README.md",
        covers=[tmp / "cover.png"],
        attachments=m4.AttachmentsDescr(files=macros + [tmp / "cover.png", tmp / PROVENANCE_FILE]),
        tags=["unet", "segmentation", "2d", "fluorescence-light-microscopy", "ijseg", "deepimagej", cfg.data_target],
        test_inputs=[tmp / "test_input.npy"],
        test_outputs=[tmp / "test_output.npy"],
        inputs=[m4.InputTensorDescr(
            name=m4.TensorName(INPUT_ID), axes="byxc", data_type="float32",
            shape=m4.ParameterizedInputShape(min=[1, mn, mn, cfg.data_n_channels], step=[0, step, step, 0]),
            preprocessing=[m4.ScaleRangeDescr(kwargs=m4.ScaleRangeKwargs(
                mode="per_sample", axes="xy",
                min_percentile=float(norm.pmin), max_percentile=float(norm.pmax), eps=float(norm.eps)))],
        )],
        outputs=[m4.OutputTensorDescr(
            name=m4.TensorName(OUTPUT_ID), axes="byxc", data_type="float32",
            shape=m4.ImplicitOutputShape(reference_tensor=m4.TensorName(INPUT_ID), scale=[1.0, 1.0, 1.0, 0.0],
                                         offset=[0.0, 0.0, 0.0, n_out / 2]),
            halo=[0, halo, halo, 0],
        )],
        weights=m4.WeightsDescr(**wmap),
        timestamp=m4.Datetime(datetime.datetime.now(datetime.timezone.utc)),
        config={"deepimagej": dij_block, "bioimageio": {"nickname": _nickname(name)},
                "ijseg": {"config": cfg.to_dict(), "qc": qc, **extra}},
    )


def _nickname(name: str) -> str:
    """A lower-case id from the model name (deepImageJ needs an id or nickname)."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "ijseg-model"


def _validated(cls, **fields):
    """Build a bioimageio.spec description; its validation errors become one ConfigError."""
    import pydantic

    try:
        return cls(**fields)
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:5])
        raise ConfigError(f"the bundle description is not valid bioimage.io: {problems}") from err
