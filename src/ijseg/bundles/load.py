"""Reading and running bioimage.io model bundles (zip or folder) on 2-D images and 3-D volumes
(an input with a ``z`` axis), offline.

A bundle is untrusted input. Before anything is loaded:

* a zip is extracted by :func:`safe_extract`, which refuses absolute paths, ``..``, links and
  archives that would unpack to more than :data:`MAX_UNPACKED` bytes or :data:`MAX_FILES` files;
* ``rdf.yaml`` is read with ``yaml.safe_load`` (no Python objects), must describe a model in a
  format version this ijseg knows (0.4.x or 0.5.x), and every weights file it names must be
  inside the bundle;
* bioimageio.core then validates the description and checks every file's sha256;
* only weight formats that cannot run Python code on loading are used: TensorFlow SavedModel,
  ONNX, and Keras 3 files (loaded in Keras safe mode, which refuses Lambda layers). Keras HDF5
  and PyTorch weights (pickles) are refused.

The bundle's own pre- and post-processing are applied by bioimageio.core's prediction
pipeline; :class:`BundleSource` is a :class:`~ijseg.models.source.ModelSource`, so ijseg's one
tiling (:mod:`ijseg._tiling`) runs it, and the ``(Y, X, C)`` (``(Z, Y, X, C)``) result goes to ijseg's
post-processing like a model folder's.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..config import Config
from .._tiling import default_tile
from ..errors import DataError, ModelError
from ..models.source import stored_postprocessing

__all__ = ["BundleSource", "safe_extract", "is_bundle", "SUPPORTED_WEIGHTS", "MAX_UNPACKED", "MAX_FILES"]

log = logging.getLogger(__name__)

#: weight formats ijseg runs, in order of preference
SUPPORTED_WEIGHTS = ("onnx", "tensorflow_saved_model_bundle", "keras_v3")
MAX_UNPACKED = 4 * 1024**3
MAX_FILES = 10_000
_RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


def is_bundle(path: str | os.PathLike) -> bool:
    """True for a ``.zip`` file, an ``rdf.yaml``, or a folder holding one."""
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() == ".zip" or p.name in _RDF_NAMES
    return p.is_dir() and any((p / n).is_file() for n in _RDF_NAMES)


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a bundle zip into ``dest``, refusing anything that could escape it.

    Raises
    ------
    ModelError
        For a file that is not a zip, entries with absolute paths, ``..`` or links, and
        archives over the size or file-count limits. Nothing is written in those cases.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        z = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelError(f"{archive}: not a readable zip archive ({err})") from err
    with z:
        infos = z.infolist()
        if len(infos) > MAX_FILES:
            raise ModelError(f"{archive}: {len(infos)} entries, more than the {MAX_FILES} a model bundle may have")
        total = 0
        for info in infos:
            name = info.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
                raise ModelError(f"{archive}: unsafe entry {name!r} (absolute path or '..'); refusing to extract")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ModelError(f"{archive}: entry {name!r} is a symbolic link; refusing to extract")
            total += info.file_size
            if total > MAX_UNPACKED:
                raise ModelError(f"{archive}: unpacks to more than {MAX_UNPACKED / 1024**3:.0f} GB; refusing to extract")
        root = dest.resolve()
        for info in infos:
            target = (dest / info.filename).resolve()
            if root != target and root not in target.parents:
                raise ModelError(f"{archive}: entry {info.filename!r} would land outside the target folder")
        z.extractall(dest)
    return dest


def _read_rdf(path: Path) -> dict[str, Any]:
    import yaml

    try:
        rdf = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ModelError(f"{path}: not a valid bioimage.io description ({err})") from err
    if not isinstance(rdf, dict):
        raise ModelError(f"{path}: not a bioimage.io description (expected a mapping)")
    if rdf.get("type") != "model":
        raise ModelError(f"{path}: describes a {rdf.get('type')!r}, not a model")
    version = str(rdf.get("format_version", ""))
    if not (version.startswith("0.4.") or version.startswith("0.5.")):
        raise ModelError(f"{path}: unsupported format_version {version!r}; ijseg runs bioimage.io models 0.4.x and 0.5.x")
    return rdf


_AXIS_LETTERS = {"b": "batch", "c": "channel"}


def _axis_ids(tensor) -> list[str]:
    """Axis names of a tensor description, format 0.4 (``"byxc"``) or 0.5 (axis objects)."""
    if isinstance(tensor.axes, str):
        return [_AXIS_LETTERS.get(c, c) for c in tensor.axes]
    return ["batch" if a.type == "batch" else "channel" if a.type == "channel" else str(a.id) for a in tensor.axes]


def _tensor_id(tensor):
    """The member id bioimageio.core uses for a tensor: ``id`` (0.5) or ``name`` (0.4)."""
    from bioimageio.spec.model.v0_5 import TensorId

    return TensorId(str(getattr(tensor, "id", None) or tensor.name))


def _n_channels(tensor) -> int:
    """Channel count of a format 0.5 tensor (1 without a channel axis)."""
    for a in tensor.axes:
        if a.type == "channel":
            return len(a.channel_names)
    return 1


def _channels_from_test(source, axes: list[str], root: Path) -> int:
    """Channel count of a format 0.4 tensor, read from its test tensor's shape."""
    if "channel" not in axes:
        return 1
    path = root / str(getattr(source, "path", source))
    shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    return int(shape[axes.index("channel")])


def _size_rule(tensor, axis_id: str) -> tuple[int, int]:
    """(min, step) of an input axis; step 0 for a fixed size."""
    ids = _axis_ids(tensor)
    if isinstance(tensor.axes, str):  # format 0.4
        shape = tensor.shape
        i = ids.index(axis_id)
        if isinstance(shape, (list, tuple)):
            return int(shape[i]), 0
        return int(shape.min[i]), int(shape.step[i])
    for a in tensor.axes:
        if getattr(a, "id", None) == axis_id:
            size = a.size
            if isinstance(size, int):
                return size, 0
            return int(getattr(size, "min", 1)), int(getattr(size, "step", 1))
    return 1, 1


def _weights_file(rdf: dict, fmt: str) -> str | None:
    entry = (rdf.get("weights") or {}).get(fmt)
    return entry.get("source") if isinstance(entry, dict) else None


class BundleSource:
    """A bioimage.io model bundle, loaded once, as a :class:`~ijseg.models.source.ModelSource`:
    ``Predictor(BundleSource(path))`` runs it like a model folder (``ijseg predict``, ``ijseg qc``,
    the ImageJ engine).

    The bundle's pre-processing is applied to the whole image (as in training, and as deepImageJ
    does), the network to windows of the sizes the bundle accepts with the bundle's halo, and the
    bundle's post-processing to the stitched output.

    Parameters
    ----------
    source
        A ``.zip`` bundle, a folder with ``rdf.yaml``, or the ``rdf.yaml`` itself.
    weight_format
        One of :data:`SUPPORTED_WEIGHTS` (default: the first the bundle has).

    Raises
    ------
    ModelError
        For a missing, unsafe or invalid bundle, or weights ijseg does not run.
    """

    def __init__(self, source: str | os.PathLike, *, weight_format: str | None = None) -> None:
        self.path = Path(source).absolute()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None
        if not self.path.exists():
            raise ModelError(f"{self.path}: model not found")
        root = self._unpack().absolute()
        rdf_path = next((root / n for n in _RDF_NAMES if (root / n).is_file()), None)
        if rdf_path is None:
            raise ModelError(f"{self.path}: no rdf.yaml in this bundle")
        self.rdf = _read_rdf(rdf_path)
        self.weight_format = self._pick_weights(weight_format)
        self._check_weight_files(rdf_path.parent)
        self._load(rdf_path)

    def _pick_weights(self, weight_format: str | None) -> str:
        available = [f for f in SUPPORTED_WEIGHTS if _weights_file(self.rdf, f)]
        if weight_format is not None:
            if weight_format not in SUPPORTED_WEIGHTS:
                raise ModelError(f"weight format {weight_format!r} is not supported; ijseg runs {', '.join(SUPPORTED_WEIGHTS)}")
            if weight_format not in available:
                raise ModelError(f"{self.path}: has no {weight_format} weights (has {', '.join(self.rdf.get('weights', {}))})")
            return weight_format
        if not available:
            raise ModelError(
                f"{self.path}: no weights ijseg can run safely (has {', '.join(self.rdf.get('weights') or {}) or 'none'}; "
                f"supported: {', '.join(SUPPORTED_WEIGHTS)})"
            )
        return available[0]

    def _check_weight_files(self, root: Path) -> None:
        """bioimageio.spec checks every weights entry: name the missing file first."""
        for fmt in self.rdf.get("weights") or {}:
            wfile = _weights_file(self.rdf, fmt)
            if not isinstance(wfile, str) or "://" in wfile:
                continue
            wpath = (root / wfile).resolve()
            if root.resolve() not in wpath.parents or not wpath.is_file():
                raise ModelError(f"{self.path}: weights file {wfile!r} ({fmt}) is missing from the bundle")

    # ------------------------------------------------------------------------------------------
    def _unpack(self) -> Path:
        if self.path.is_file() and self.path.suffix.lower() == ".zip":
            self._tmp = tempfile.TemporaryDirectory(prefix="ijseg-bundle-")
            return safe_extract(self.path, self._tmp.name)
        if self.path.is_file() and self.path.name in _RDF_NAMES:
            return self.path.parent
        if self.path.is_dir():
            return self.path
        raise ModelError(f"{self.path}: not a model bundle (.zip, rdf.yaml, or a folder holding rdf.yaml)")

    def _load(self, rdf_path: Path) -> None:
        # bioimageio.core unzips SavedModel weights into the *current* folder: give it a private
        # one; its Keras adapter sets KERAS_BACKEND for the whole process (torch, when its default
        # applies), which child processes such as `ijseg predict` would inherit: put both back
        self._workdir = tempfile.TemporaryDirectory(prefix="ijseg-bundle-work-")
        cwd, backend = os.getcwd(), os.environ.get("KERAS_BACKEND")
        try:
            os.chdir(self._workdir.name)
            self._load_in_workdir(rdf_path)
        finally:
            os.chdir(cwd)
            if backend is None:
                os.environ.pop("KERAS_BACKEND", None)
            else:
                os.environ["KERAS_BACKEND"] = backend

    def _describe(self, rdf_path: Path):
        from bioimageio.core import load_model_description
        from bioimageio.spec import InvalidDescr

        try:
            descr = load_model_description(rdf_path, perform_io_checks=True)
        except Exception as err:  # pydantic/IO errors from bioimageio.spec
            raise ModelError(f"{self.path}: invalid bundle: {err}") from err
        if isinstance(descr, InvalidDescr):
            errors = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in descr.validation_summary.details for e in d.errors]
            raise ModelError(f"{self.path}: invalid bundle: " + "; ".join(errors[:5]))
        if len(descr.inputs) != 1 or len(descr.outputs) != 1:
            raise ModelError(f"{self.path}: ijseg runs models with one input and one output tensor "
                             f"(this one has {len(descr.inputs)} and {len(descr.outputs)})")
        return descr

    def _load_in_workdir(self, rdf_path: Path) -> None:
        from bioimageio.core import create_prediction_pipeline

        from .._tf import import_tf

        import_tf()  # quiet TensorFlow import, GPU memory growth
        self.descr = descr = self._describe(rdf_path)
        self.in_axes = _axis_ids(descr.inputs[0])
        self.out_axes = _axis_ids(descr.outputs[0])
        for where, axes in (("input", self.in_axes), ("output", self.out_axes)):
            extra = set(axes) - {"batch", "channel", "z", "y", "x"}
            if extra or not {"y", "x"} <= set(axes):
                raise ModelError(f"{self.path}: not a 2-D image or 3-D volume model ({where} axes {', '.join(axes)})")
        #: 2, or 3 for a model over volumes (a z axis), whose z has its own size rule and halo
        self.dims = 3 if "z" in self.in_axes else 2
        if isinstance(descr.inputs[0].axes, str):  # format 0.4: test tensors are listed on the model
            n_channels = _channels_from_test(descr.test_inputs[0], self.in_axes, rdf_path.parent)
            n_out = _channels_from_test(descr.test_outputs[0], self.out_axes, rdf_path.parent)
        else:
            n_channels = _n_channels(descr.inputs[0])
            n_out = _n_channels(descr.outputs[0])
        self.config = _bundle_config(self.rdf, n_channels, n_out, self.dims)
        rule_y, rule_x = _size_rule(descr.inputs[0], "y"), _size_rule(descr.inputs[0], "x")
        if rule_x != rule_y:
            raise ModelError(f"{self.path}: the input's y and x axes take different sizes ({rule_y} and {rule_x} "
                             f"as (minimum, step)); ijseg runs models whose y and x sizes follow one rule")
        self.minimum, self.step = rule_y
        self.halo = _halo(descr.outputs[0])
        self.minimum_z, self.step_z = _size_rule(descr.inputs[0], "z") if self.dims == 3 else (1, 1)
        self.halo_z = _halo(descr.outputs[0], "z") if self.dims == 3 else 0
        # an ijseg bundle's network is known: the same default window as its model folder
        known = _ijseg_config(self.rdf) is not None
        self.default_tile = default_tile(self.config.unet_base_filters if known else None, self.step or 1)
        self.postprocessing = stored_postprocessing(
            ((self.rdf.get("config") or {}).get("ijseg") or {}).get("postprocessing") or {}, self.path)
        self._ids = _tensor_id(descr.inputs[0]), _tensor_id(descr.outputs[0])
        if self.weight_format == "onnx":  # onnxruntime >= 1.30 on Linux keeps usage telemetry unless told not to
            os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        try:
            self.pipeline = create_prediction_pipeline(descr, weight_format=self.weight_format)
        except Exception as err:
            raise ModelError(f"{self.path}: cannot load the {self.weight_format} weights ({err})") from err
        log.info("loaded %s (%s weights)", self.path, self.weight_format)

    # ------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.rdf.get("name", self.path.name))

    def _sample(self, x: np.ndarray, tensor_id, axes: list[str], name: str):
        from bioimageio.core import Sample, Tensor

        return Sample(members={tensor_id: Tensor(_layout(x, axes), dims=axes)}, stat={}, id=name)

    def check_shape(self, *sizes: int) -> None:
        """Smaller images are padded; a model of one fixed size takes no larger one (``(height,
        width)``, or ``(depth, height, width)`` for a 3-D model)."""
        rules = ((self.minimum_z, self.step_z),) * (len(sizes) - 2) + ((self.minimum, self.step),) * 2
        if any(step == 0 and n > minimum for n, (minimum, step) in zip(sizes, rules)):
            what = "volume of {} voxels" if len(sizes) == 3 else "image of {} pixels"
            raise DataError(f"{what.format('x'.join(map(str, sizes)))} is larger than the "
                            f"{'x'.join(str(m) for m, _ in rules)} this model takes")

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """The bundle's pre-processing, on the whole image."""
        tid = self._ids[0]
        try:
            sample = self._sample(x, tid, self.in_axes, "image")
            self.pipeline.apply_preprocessing(sample)
        except Exception as err:
            raise ModelError(f"{self.path}: pre-processing failed ({err})") from err
        return _yxc(sample.members[tid])

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The network alone on pre-processed ``(N, Y, X, C)`` (or ``(N, Z, Y, X, C)``) windows of sizes it
        accepts."""
        tid, oid = self._ids
        outs = []
        for x in batch:
            try:
                out = self.pipeline.predict_sample_without_blocking(
                    self._sample(x, tid, self.in_axes, "tile"), skip_preprocessing=True, skip_postprocessing=True,
                    skip_input_padding=True, skip_output_cropping=True)
            except Exception as err:
                raise ModelError(f"{self.path}: prediction failed ({err})") from err
            y = _yxc(out.members[oid])
            if y.shape[:-1] != x.shape[:-1]:
                raise ModelError(f"{self.path}: output size {y.shape[:-1]} differs from input size {x.shape[:-1]}; "
                                 f"ijseg runs models whose output has the input's size")
            outs.append(y)
        return np.stack(outs)

    def finish(self, y: np.ndarray) -> np.ndarray:
        """The bundle's post-processing, on the stitched output."""
        oid = self._ids[1]
        if not self.descr.outputs[0].postprocessing:
            return y
        try:
            res = self._sample(y, oid, self.out_axes, "image")
            self.pipeline.apply_postprocessing(res)
        except Exception as err:
            raise ModelError(f"{self.path}: post-processing failed ({err})") from err
        return _yxc(res.members[oid])

    def close(self) -> None:
        for attr in ("_tmp", "_workdir"):
            tmp = getattr(self, attr)
            if tmp is not None:
                shutil.rmtree(tmp.name, ignore_errors=True)
                setattr(self, attr, None)

    def __repr__(self) -> str:
        return f"BundleSource({str(self.path)!r}, weight_format={self.weight_format!r})"


def _ijseg_config(rdf: dict) -> dict | None:
    """The ijseg configuration an ijseg bundle was exported with (None for other bundles)."""
    return ((rdf.get("config") or {}).get("ijseg") or {}).get("config") or None


def _bundle_config(rdf: dict, n_channels: int, n_out: int, dims: int = 2) -> Config:
    """ijseg's configuration of a bundle: the one it was exported with, else what its tensors say."""
    ij = _ijseg_config(rdf)
    if ij:
        return Config.from_dict(dict(ij))
    kw = dict(data_n_channels=n_channels, unet_dims=dims, unet_anisotropy=1.0)
    if n_out == 1:
        return Config(data_target="binary", **kw)
    return Config(data_target="classes", data_mask_type="class", data_n_classes=n_out, **kw)


def _layout(x: np.ndarray, axes: list[str]) -> np.ndarray:
    """``YXC`` (or ``ZYXC``) array -> the tensor's axis order (with a batch axis if it has one)."""
    spatial = [a for a in axes if a != "batch"]
    arr = x if "channel" in spatial else x[..., 0]
    have = ("z", "y", "x", "channel")[4 - x.ndim:] if "channel" in spatial else ("z", "y", "x")[4 - x.ndim:]
    arr = np.transpose(arr, [have.index(a) for a in spatial])
    return np.expand_dims(arr, axes.index("batch")) if "batch" in axes else arr


def _yxc(t) -> np.ndarray:
    """A bioimageio Tensor -> ``YXC`` (with a z axis: ``ZYXC``) float32, first batch entry."""
    data = t.data
    dims = [str(d) for d in data.dims]
    keep = [d for d in ("z", "y", "x", "channel") if d in dims]
    y = data.transpose(*[d for d in dims if d not in keep], *keep).values
    y = y.reshape(y.shape[-len(keep):])
    return np.asarray(y if "channel" in keep else y[..., None], np.float32)


def _halo(output, axis: str = "y") -> int:
    """The halo of an output tensor along ``axis`` (0.5: on the axis; 0.4: one value per axis)."""
    if not isinstance(output.axes, str):
        for a in output.axes:
            if str(getattr(a, "id", "")) == axis:
                return int(getattr(a, "halo", 0) or 0)
        return 0
    halo = getattr(output, "halo", None)
    return int(halo[_axis_ids(output).index(axis)]) if halo else 0
