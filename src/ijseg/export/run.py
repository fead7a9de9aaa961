"""Running bioimage.io model bundles (zip or folder) on 2-D images, offline.

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
pipeline; the result is a ``(Y, X, C)`` map that ijseg's post-processing turns into labels.
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
from ..data.io import Image, to_model_input
from ..errors import ConfigError, DataError, ModelError

__all__ = ["BundlePredictor", "safe_extract", "is_bundle", "SUPPORTED_WEIGHTS", "MAX_UNPACKED", "MAX_FILES"]

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


class BundlePredictor:
    """A bioimage.io model bundle, loaded once, predicting ``(Y, X, C)`` maps of 2-D images.

    Has the interface of :class:`ijseg.predict.Predictor` (``config``, ``predict``), so
    ``ijseg predict`` and ``ijseg qc`` run bundles like model folders.

    Parameters
    ----------
    source
        A ``.zip`` bundle, a folder with ``rdf.yaml``, or the ``rdf.yaml`` itself.
    weight_format
        One of :data:`SUPPORTED_WEIGHTS` (default: the first the bundle has).
    """

    def __init__(self, source: str | os.PathLike, *, weight_format: str | None = None) -> None:
        self.source = Path(source).absolute()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None
        if not self.source.exists():
            raise ModelError(f"{self.source}: model not found")
        root = self._unpack()
        root = root.absolute()
        rdf_path = next((root / n for n in _RDF_NAMES if (root / n).is_file()), None)
        if rdf_path is None:
            raise ModelError(f"{self.source}: no rdf.yaml in this bundle")
        self.rdf = _read_rdf(rdf_path)
        available = [f for f in SUPPORTED_WEIGHTS if _weights_file(self.rdf, f)]
        if weight_format is not None:
            if weight_format not in SUPPORTED_WEIGHTS:
                raise ModelError(f"weight format {weight_format!r} is not supported; ijseg runs {', '.join(SUPPORTED_WEIGHTS)}")
            if weight_format not in available:
                raise ModelError(f"{self.source}: has no {weight_format} weights (has {', '.join(self.rdf.get('weights', {}))})")
            available = [weight_format]
        if not available:
            raise ModelError(
                f"{self.source}: no weights ijseg can run safely (has {', '.join(self.rdf.get('weights') or {}) or 'none'}; "
                f"supported: {', '.join(SUPPORTED_WEIGHTS)})"
            )
        self.weight_format = available[0]
        for fmt in self.rdf.get("weights") or {}:  # bioimageio.spec checks every entry: name the missing one
            wfile = _weights_file(self.rdf, fmt)
            if not isinstance(wfile, str) or "://" in wfile:
                continue
            wpath = (rdf_path.parent / wfile).resolve()
            if rdf_path.parent.resolve() not in wpath.parents or not wpath.is_file():
                raise ModelError(f"{self.source}: weights file {wfile!r} ({fmt}) is missing from the bundle")
        self._load(rdf_path)

    # ------------------------------------------------------------------------------------------
    def _unpack(self) -> Path:
        if self.source.is_file() and self.source.suffix.lower() == ".zip":
            self._tmp = tempfile.TemporaryDirectory(prefix="ijseg-bundle-")
            return safe_extract(self.source, self._tmp.name)
        if self.source.is_file() and self.source.name in _RDF_NAMES:
            return self.source.parent
        if self.source.is_dir():
            return self.source
        raise ModelError(f"{self.source}: not a model bundle (.zip, rdf.yaml, or a folder holding rdf.yaml)")

    def _load(self, rdf_path: Path) -> None:
        import contextlib

        # bioimageio.core unzips SavedModel weights into the *current* folder: give it a private one
        self._workdir = tempfile.TemporaryDirectory(prefix="ijseg-bundle-work-")
        with contextlib.chdir(self._workdir.name):
            self._load_in_workdir(rdf_path)

    def _load_in_workdir(self, rdf_path: Path) -> None:
        from bioimageio.core import create_prediction_pipeline, load_model_description
        from bioimageio.spec import InvalidDescr

        from .._tf import import_tf

        import_tf()  # quiet TensorFlow import, GPU memory growth
        try:
            descr = load_model_description(rdf_path, perform_io_checks=True)
        except Exception as err:  # pydantic/IO errors from bioimageio.spec
            raise ModelError(f"{self.source}: invalid bundle: {err}") from err
        if isinstance(descr, InvalidDescr):
            errors = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in descr.validation_summary.details for e in d.errors]
            raise ModelError(f"{self.source}: invalid bundle: " + "; ".join(errors[:5]))
        if len(descr.inputs) != 1 or len(descr.outputs) != 1:
            raise ModelError(f"{self.source}: ijseg runs models with one input and one output tensor "
                             f"(this one has {len(descr.inputs)} and {len(descr.outputs)})")
        self.descr = descr
        self.in_axes = _axis_ids(descr.inputs[0])
        self.out_axes = _axis_ids(descr.outputs[0])
        for where, axes in (("input", self.in_axes), ("output", self.out_axes)):
            extra = set(axes) - {"batch", "channel", "y", "x"}
            if extra or not {"y", "x"} <= set(axes):
                raise ModelError(f"{self.source}: not a 2-D image model ({where} axes {', '.join(axes)})")
        if isinstance(descr.inputs[0].axes, str):  # format 0.4: test tensors are listed on the model
            self.n_channels = _channels_from_test(descr.test_inputs[0], self.in_axes, rdf_path.parent)
            n_out = _channels_from_test(descr.test_outputs[0], self.out_axes, rdf_path.parent)
        else:
            self.n_channels = _n_channels(descr.inputs[0])
            n_out = _n_channels(descr.outputs[0])
        ij = ((self.rdf.get("config") or {}).get("ijseg") or {}).get("config")
        if ij:
            self.config = Config.from_dict({k: v for k, v in ij.items()})
        elif n_out == 1:
            self.config = Config(data_n_channels=self.n_channels)
        else:
            self.config = Config(data_target="classes", data_mask_type="class", data_n_classes=n_out,
                                 data_n_channels=self.n_channels)
        try:
            self.pipeline = create_prediction_pipeline(descr, weight_format=self.weight_format)
        except Exception as err:
            raise ModelError(f"{self.source}: cannot load the {self.weight_format} weights ({err})") from err
        log.info("loaded %s (%s weights)", self.source, self.weight_format)

    # ------------------------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        return self.config.n_outputs

    @property
    def name(self) -> str:
        return str(self.rdf.get("name", self.source.name))

    def _valid_size(self, n: int, axis_id: str) -> int:
        """Smallest size >= n that the input axis accepts."""
        mn, step = _size_rule(self.descr.inputs[0], axis_id)
        if step == 0:
            return mn if mn else n
        return mn if n <= mn else mn + -(-(n - mn) // step) * step

    def _layout(self, x: np.ndarray, axes: list[str]) -> np.ndarray:
        """``YXC`` array -> the tensor's axis order (with a batch axis if it has one)."""
        spatial = [a for a in axes if a != "batch"]
        arr = x if "channel" in spatial else x[..., 0]
        arr = np.transpose(arr, [("y", "x", "channel").index(a) for a in spatial])
        return np.expand_dims(arr, axes.index("batch")) if "batch" in axes else arr

    @staticmethod
    def _yxc(t) -> np.ndarray:
        """A bioimageio Tensor -> ``YXC`` float32 (first batch entry)."""
        data = t.data
        dims = [str(d) for d in data.dims]
        keep = [d for d in ("y", "x", "channel") if d in dims]
        y = data.transpose(*[d for d in dims if d not in keep], *keep).values
        y = y.reshape(y.shape[-len(keep):])
        return np.asarray(y[..., None] if y.ndim == 2 else y, np.float32)

    def _halo(self) -> int:
        for a in self.descr.outputs[0].axes if not isinstance(self.descr.outputs[0].axes, str) else ():
            if str(getattr(a, "id", "")) == "y":
                return int(getattr(a, "halo", 0) or 0)
        halo = getattr(self.descr.outputs[0], "halo", None)  # format 0.4: per axis list
        if halo:
            return int(halo[_axis_ids(self.descr.outputs[0]).index("y")])
        return 0

    def _run(self, x: np.ndarray) -> np.ndarray:
        """The network alone on a pre-processed ``YXC`` window of valid size."""
        from bioimageio.core import Sample, Tensor

        tid, oid = _tensor_id(self.descr.inputs[0]), _tensor_id(self.descr.outputs[0])
        sample = Sample(members={tid: Tensor(self._layout(x, self.in_axes), dims=self.in_axes)}, stat={}, id="tile")
        out = self.pipeline.predict_sample_without_blocking(
            sample, skip_preprocessing=True, skip_postprocessing=True, skip_input_padding=True,
            skip_output_cropping=True,
        )
        y = self._yxc(out.members[oid])
        if y.shape[:2] != x.shape[:2]:
            raise ModelError(f"{self.source}: output size {y.shape[:2]} differs from input size {x.shape[:2]}; "
                             f"ijseg runs models whose output has the input's size")
        return y

    def check_tile(self, tile: int | None) -> None:
        """Raise :class:`ConfigError` for a negative ``tile`` (smaller windows are enlarged to
        the bundle's minimum input size)."""
        if tile is not None and tile < 0:
            raise ConfigError(f"tile size {tile}: use 0 (no tiling) or a positive number of pixels")

    def predict(self, image: Image | np.ndarray, *, tile: int | None = None, progress=None) -> np.ndarray:
        """``(Y, X, C)`` output of the bundle for one image.

        The bundle's pre-processing is applied to the whole image (as in training), the image is
        mirror-padded to a size the network accepts and predicted in tiles with the bundle's
        halo, and the bundle's post-processing is applied to the stitched result.
        """
        from bioimageio.core import Sample, Tensor

        from .._tiling import DEFAULT_TILE, tile_layout

        if isinstance(image, np.ndarray):
            image = Image(image, "YX" if image.ndim == 2 else "YXC")
        x = to_model_input(image, self.n_channels)
        where = f"{image.path}: " if image.path else ""
        if float(x.max()) == float(x.min()):
            raise DataError(f"{where}image is empty (every pixel is {x.flat[0]:g})")
        tid, oid = _tensor_id(self.descr.inputs[0]), _tensor_id(self.descr.outputs[0])
        try:
            sample = Sample(members={tid: Tensor(self._layout(x, self.in_axes), dims=self.in_axes)}, stat={}, id="image")
            self.pipeline.apply_preprocessing(sample)
            xp = self._yxc(sample.members[tid])
            h, w = xp.shape[:2]
            th, tw = self._valid_size(h, "y"), self._valid_size(w, "x")
            xp = np.pad(xp, ((0, th - h), (0, tw - w), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
            mn, step = _size_rule(self.descr.inputs[0], "y")
            window = max(th, tw) if tile == 0 else max(int(tile or DEFAULT_TILE), mn)
            halo = self._halo()
            if th <= window and tw <= window or step == 0 or mn % max(step, 1):
                y = self._run(xp)
            else:
                d = step
                window = window // d * d
                halo = -(-halo // d) * d
                y = None
                for t in tile_layout((th, tw), window=window, halo=halo, divisor=d):
                    wy0, wy1, wx0, wx1 = t.window
                    # grow windows below the network's minimum (the image itself is large enough)
                    if wy1 - wy0 < mn:
                        wy0, wy1 = (max(0, wy1 - mn), max(0, wy1 - mn) + mn)
                    if wx1 - wx0 < mn:
                        wx0, wx1 = (max(0, wx1 - mn), max(0, wx1 - mn) + mn)
                    out = self._run(xp[wy0:wy1, wx0:wx1])
                    if y is None:
                        y = np.empty((th, tw, out.shape[-1]), np.float32)
                    cy0, cy1, cx0, cx1 = t.core
                    y[cy0:cy1, cx0:cx1] = out[cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0]
            if self.descr.outputs[0].postprocessing:
                res = Sample(members={oid: Tensor(self._layout(y, self.out_axes), dims=self.out_axes)}, stat={},
                             id="image")
                self.pipeline.apply_postprocessing(res)
                y = self._yxc(res.members[oid])
        except (ModelError, DataError):
            raise
        except Exception as err:
            raise ModelError(f"{self.source}: prediction failed ({err})") from err
        return np.ascontiguousarray(y[:h, :w], dtype=np.float32)

    def close(self) -> None:
        for attr in ("_tmp", "_workdir"):
            tmp = getattr(self, attr)
            if tmp is not None:
                shutil.rmtree(tmp.name, ignore_errors=True)
                setattr(self, attr, None)

    def __repr__(self) -> str:
        return f"BundlePredictor({str(self.source)!r}, weight_format={self.weight_format!r})"
