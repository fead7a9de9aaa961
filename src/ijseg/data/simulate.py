"""Simulated fluorescence images of cells/nuclei with instance labels, for teaching and tests.

Each object is a star-convex blob: an ellipse of random size, elongation and orientation whose
radius is modulated by a few random Fourier harmonics, so outlines are irregular rather than
discs. Objects have their own brightness, a smooth internal texture and a slight fall-off
towards the edge. The image is blurred by a Gaussian PSF, put on an uneven background, scaled
to a photon count (the dynamic range), given Poisson shot noise and Gaussian read noise, and
quantised to uint8 or uint16.

With ``touching > 0`` some objects are placed so that they overlap a neighbour; every pixel
claimed by two objects goes to the one whose centre is nearer in the object's own normalised
radius, so neighbours share a straight-ish border, like packed nuclei.

Volumes (a ``shape`` of three sizes, ``ZYX``) are made the same way in 3-D: ellipsoids with a
random orientation and a modulated radius, in physical space, sampled on planes ``z_ratio`` times
farther apart than the pixels. The PSF is ``axial_blur`` times longer along z than across, and
the signal can fade with depth (``depth_attenuation``), as in a confocal stack.

Presets (:data:`PRESETS`) mirror the course's datasets: ``sim2k-10``, ``sim2k-100`` (separated
objects, binary segmentation), ``sim3k-100`` (touching objects, 3-class segmentation) and
``sim3d`` (touching nuclei in anisotropic volumes).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .._fileio import atomic_write_text
from .io import write_tiff

__all__ = ["SimParams", "PRESETS", "simulate_image", "simulate_dataset"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimParams:
    """Parameters of the image simulator.

    Attributes
    ----------
    shape
        Image size (rows, columns), or volume size (planes, rows, columns).
    n_objects
        Range (min, max) of the number of objects per image, at ``scale`` 1 on 256x256 pixels;
        scaled with the image area and ``1/scale**2``. For volumes: per 128x128 pixels and a
        depth of 80 pixel sizes (32 planes at ``z_ratio`` 2.5), scaled with the physical volume
        and ``1/scale**3``.
    radius
        Range of mean object radii in pixels at ``scale`` 1.
    elongation
        Range of the major/minor axis ratio.
    irregularity
        Amplitude of the outline's Fourier harmonics, relative to the radius.
    touching
        Fraction of objects placed against a neighbour (0 = all separated).
    intensity
        Range of relative object brightness (1 = brightest).
    texture
        Relative amplitude of the smooth internal texture.
    background
        Mean background level relative to the brightest object.
    background_gradient
        Amplitude of the uneven (low-frequency) background, relative to the brightest object.
    blur
        Standard deviation of the Gaussian PSF in pixels at ``scale`` 1.
    dynamic_range
        Expected photon count of the brightest object; sets the Poisson noise level and the
        grey-value range (images are uint8 if it is at most 255, else uint16).
    noise
        Multiplier of the noise (0: no noise at all; 1: default shot and read noise).
    read_noise
        Standard deviation of the Gaussian read noise, in grey values at ``noise`` 1.
    scale
        Pixel scale: objects are ``scale`` times larger in pixels (finer sampling). The written
        pixel size is ``pixel_size / scale``.
    pixel_size
        Pixel size in microns at ``scale`` 1.
    z_ratio
        Volumes: distance between planes over the pixel size (1 for images).
    axial_blur
        Volumes: the PSF's standard deviation along z over the one across, in physical units.
    depth_attenuation
        Volumes: fraction of the signal lost from the first plane to the last (0..1).
    """

    shape: tuple[int, int] = (256, 256)
    n_objects: tuple[int, int] = (12, 30)
    radius: tuple[float, float] = (6.0, 13.0)
    elongation: tuple[float, float] = (1.0, 1.6)
    irregularity: float = 0.06
    touching: float = 0.0
    intensity: tuple[float, float] = (0.45, 1.0)
    texture: float = 0.15
    background: float = 0.08
    background_gradient: float = 0.08
    blur: float = 1.2
    dynamic_range: float = 200.0
    noise: float = 1.0
    read_noise: float = 3.0
    scale: float = 1.0
    pixel_size: float = 0.5
    z_ratio: float = 1.0
    axial_blur: float = 3.0
    depth_attenuation: float = 0.0

    def __post_init__(self) -> None:
        errors = []
        if len(self.shape) == 3:
            if self.shape[0] < 4 or min(self.shape[1:]) < 16:
                errors.append(f"a volume's shape must be >= 4 planes of >= 16x16 pixels, got {self.shape}")
            if not self.z_ratio > 0:
                errors.append(f"z_ratio must be > 0, got {self.z_ratio}")
            if not self.axial_blur > 0:
                errors.append(f"axial_blur must be > 0, got {self.axial_blur}")
            if not 0 <= self.depth_attenuation <= 1:
                errors.append(f"depth_attenuation must be in [0, 1], got {self.depth_attenuation}")
        elif len(self.shape) != 2 or min(self.shape) < 16:
            errors.append(f"shape must be two sizes >= 16 (or three for a volume), got {self.shape}")
        elif self.z_ratio != 1 or self.depth_attenuation != 0:
            errors.append("z_ratio and depth_attenuation apply to volumes (a shape of three sizes)")
        for name in ("n_objects", "radius", "elongation", "intensity"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                errors.append(f"{name} must be a range (min <= max, min >= 0), got {(lo, hi)}")
        if not 0 <= self.touching <= 1:
            errors.append(f"touching must be in [0, 1], got {self.touching}")
        if self.dynamic_range < 2:
            errors.append(f"dynamic_range must be >= 2, got {self.dynamic_range}")
        if self.noise < 0:
            errors.append(f"noise must be >= 0, got {self.noise}")
        if self.scale <= 0:
            errors.append(f"scale must be > 0, got {self.scale}")
        if self.elongation[0] < 1:
            errors.append(f"elongation must be >= 1, got {self.elongation}")
        if errors:
            raise ValueError("invalid simulation parameters: " + "; ".join(errors))


@dataclass(frozen=True)
class Preset:
    """A named dataset recipe: train/test sizes and simulation parameters."""

    n_train: int
    n_test: int
    params: SimParams = field(default_factory=SimParams)
    description: str = ""


PRESETS: dict[str, Preset] = {
    "sim2k-10": Preset(10, 10, SimParams(), "10 + 10 images 256x256, separated cells (binary)"),
    "sim2k-100": Preset(100, 40, SimParams(), "100 + 40 images 256x256, separated cells (binary)"),
    "sim3k-100": Preset(
        100,
        40,
        SimParams(n_objects=(20, 40), touching=0.6),
        "100 + 40 images 256x256, touching cells (3 classes)",
    ),
    "sim3d": Preset(
        40,
        10,
        SimParams(shape=(32, 128, 128), n_objects=(70, 110), radius=(7.0, 11.0), touching=0.6, z_ratio=2.5,
                  axial_blur=3.0, depth_attenuation=0.3),
        "40 + 10 volumes 32x128x128, touching nuclei, planes 2.5x farther apart than the pixels (3 classes)",
    ),
}


def _object_count(p: SimParams, factor: float, rng: np.random.Generator) -> int:
    """How many objects to place: ``n_objects`` scaled by ``factor`` (the image's share of the
    reference area or volume), drawn uniformly."""
    n_lo, n_hi = (max(1, int(round(v * factor))) for v in p.n_objects)
    return int(rng.integers(n_lo, n_hi + 1))


def _attempts(p: SimParams, n: int, objs: list[dict], rng: np.random.Generator):
    """Radius and elongation of each attempt to place an object, until ``objs`` holds ``n`` or
    200 attempts per object were made."""
    for _ in range(200 * n):
        if len(objs) >= n:
            return
        yield rng.uniform(*p.radius) * p.scale, rng.uniform(*p.elongation)


def _place_objects(p: SimParams, rng: np.random.Generator) -> list[dict]:
    """Random object geometry (centre, radii, angle, harmonics), touching or separated."""
    h, w = p.shape
    n = _object_count(p, (h * w) / (256 * 256) / p.scale**2, rng)
    objs: list[dict] = []
    for r, elong in _attempts(p, n, objs, rng):
        obj = {
            "r": r,
            "a": r * np.sqrt(elong),
            "b": r / np.sqrt(elong),
            "theta": rng.uniform(0, np.pi),
            "harm": [
                (k, rng.normal(0, p.irregularity / k**0.5), rng.uniform(0, 2 * np.pi)) for k in range(2, 6)
            ],
        }
        margin = 0.4 * r
        if objs and rng.random() < p.touching:
            # against a random existing object, overlapping by 10-30 % of the two radii
            other = objs[int(rng.integers(len(objs)))]
            d = (other["r"] + r) * rng.uniform(0.7, 0.9)
            phi = rng.uniform(0, 2 * np.pi)
            cy, cx = other["cy"] + d * np.sin(phi), other["cx"] + d * np.cos(phi)
            if not (-margin <= cy < h + margin and -margin <= cx < w + margin):
                continue
            if any(
                np.hypot(cy - o["cy"], cx - o["cx"]) < 0.6 * (o["r"] + r) for o in objs if o is not other
            ):
                continue
        else:
            cy, cx = rng.uniform(-margin, h + margin), rng.uniform(-margin, w + margin)
            gap = 2.0 * p.scale
            if any(np.hypot(cy - o["cy"], cx - o["cx"]) < o["r"] * 1.3 + r * 1.3 + gap for o in objs):
                continue
        obj["cy"], obj["cx"] = cy, cx
        objs.append(obj)
    return objs


def _rasterise(objs: list[dict], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels and each pixel's normalised radius (0 centre, 1 outline)."""
    h, w = shape
    labels = np.zeros(shape, np.int32)
    nrad = np.full(shape, np.inf, np.float32)
    for i, o in enumerate(objs, start=1):
        ext = 1.5 * max(o["a"], o["b"]) + 2
        y0, y1 = int(max(0, np.floor(o["cy"] - ext))), int(min(h, np.ceil(o["cy"] + ext) + 1))
        x0, x1 = int(max(0, np.floor(o["cx"] - ext))), int(min(w, np.ceil(o["cx"] + ext) + 1))
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - o["cy"], xx - o["cx"]
        ct, st = np.cos(o["theta"]), np.sin(o["theta"])
        u, v = dx * ct + dy * st, -dx * st + dy * ct
        rho = np.hypot(u / o["a"], v / o["b"])
        ang = np.arctan2(v / o["b"], u / o["a"])
        mod = 1.0 + sum(amp * np.cos(k * ang + ph) for k, amp, ph in o["harm"])
        _claim(labels, nrad, (slice(y0, y1), slice(x0, x1)), rho / np.maximum(mod, 0.5), i)
    return labels, nrad


def _claim(labels: np.ndarray, nrad: np.ndarray, window: tuple[slice, ...], nr: np.ndarray, i: int) -> None:
    """Give object ``i`` the pixels of ``window`` inside its outline (normalised radius ``nr``
    below 1) that are nearer its centre than any object's so far."""
    win_lab, win_nr = labels[window], nrad[window]
    claim = (nr < 1.0) & (nr < win_nr)
    win_lab[claim] = i
    win_nr[claim] = nr[claim]


def _relabel(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Keep each label's largest connected piece, drop tiny ones, number 1..N in scan order."""
    out = np.zeros(labels.shape, np.uint16)
    next_id = 1
    slices = ndi.find_objects(labels)
    for lab_id, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        obj = labels[sl] == lab_id
        cc, n = ndi.label(obj)
        if n > 1:
            sizes = np.bincount(cc.ravel())[1:]
            obj = cc == (int(np.argmax(sizes)) + 1)
        if obj.sum() < min_area:
            continue
        out[sl][obj] = next_id
        next_id += 1
    # renumber in raster order of first pixel, as connected-component labelling would
    ids = out.ravel()
    order = np.unique(ids[ids > 0], return_index=True)
    ranked = np.argsort(order[1])
    lut = np.zeros(int(out.max()) + 1, np.uint16)
    lut[order[0][ranked]] = np.arange(1, ranked.size + 1, dtype=np.uint16)
    return lut[out]


def _smooth_noise(shape: tuple[int, ...], sigma: float | tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    field_ = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="reflect")
    sd = field_.std()
    return field_ / sd if sd > 0 else field_


def _unit_vector(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _place_objects_3d(p: SimParams, rng: np.random.Generator) -> list[dict]:
    """:func:`_place_objects` in a volume, in physical coordinates (z in pixel sizes): centre,
    radii, rotation and harmonics of each ellipsoid."""
    d, h, w = p.shape
    n = _object_count(p, (d * p.z_ratio * h * w) / (80 * 128 * 128) / p.scale**3, rng)
    size = np.array([d * p.z_ratio, h, w])
    objs: list[dict] = []
    for r, elong in _attempts(p, n, objs, rng):
        rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))  # columns: the object's axes
        obj = {
            "r": r,
            "radii": r * np.array([np.sqrt(elong), 1.0, 1.0 / np.sqrt(elong)]),
            "rotation": rotation,
            "harm": [(k, rng.normal(0, p.irregularity / k**0.5), _unit_vector(rng), rng.uniform(0, 2 * np.pi))
                     for k in range(2, 5)],
        }
        margin = 0.4 * r
        if objs and rng.random() < p.touching:
            other = objs[int(rng.integers(len(objs)))]
            centre = other["centre"] + (other["r"] + r) * rng.uniform(0.7, 0.9) * _unit_vector(rng)
            if np.any(centre < -margin) or np.any(centre >= size + margin):
                continue
            if any(np.linalg.norm(centre - o["centre"]) < 0.6 * (o["r"] + r) for o in objs if o is not other):
                continue
        else:
            centre = rng.uniform(-margin, size + margin)
            gap = 2.0 * p.scale
            if any(np.linalg.norm(centre - o["centre"]) < o["r"] * 1.3 + r * 1.3 + gap for o in objs):
                continue
        obj["centre"] = centre
        objs.append(obj)
    return objs


def _rasterise_3d(objs: list[dict], shape: tuple[int, int, int], z_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rasterise` of ellipsoids on planes ``z_ratio`` pixel sizes apart."""
    labels = np.zeros(shape, np.int32)
    nrad = np.full(shape, np.inf, np.float32)
    step = np.array([z_ratio, 1.0, 1.0])
    for i, o in enumerate(objs, start=1):
        ext = 1.5 * float(o["radii"].max()) + 2
        lo = np.maximum(0, np.floor((o["centre"] - ext) / step)).astype(int)
        hi = np.minimum(shape, np.ceil((o["centre"] + ext) / step) + 1).astype(int)
        if np.any(lo >= hi):
            continue
        grids = np.meshgrid(*(np.arange(a, b) * s - c for a, b, s, c in zip(lo, hi, step, o["centre"])),
                            indexing="ij")
        q = (np.stack(grids, axis=-1).astype(np.float32) @ o["rotation"].astype(np.float32)) / o["radii"]
        rho = np.sqrt((q**2).sum(axis=-1))
        direction = q / np.maximum(rho, 1e-6)[..., None]
        mod = 1.0 + sum(amp * np.cos(k * np.arccos(np.clip(direction @ axis, -1, 1)) + ph)
                        for k, amp, axis, ph in o["harm"])
        _claim(labels, nrad, tuple(slice(a, b) for a, b in zip(lo, hi)), rho / np.maximum(mod, 0.5), i)
    return labels, nrad


def _simulate_volume(p: SimParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`simulate_image` for a ``ZYX`` shape."""
    d, h, w = p.shape
    objs = _place_objects_3d(p, rng)
    labels, nrad = _rasterise_3d(objs, p.shape, p.z_ratio)
    smallest = 0.15 * 4 / 3 * np.pi * (p.radius[0] * p.scale) ** 3 / p.z_ratio
    labels = _relabel(labels, min_area=max(8, int(smallest)))

    per_axis = np.array([1.0 / p.z_ratio, 1.0, 1.0])  # a physical length in planes, rows, columns
    signal = np.zeros(p.shape, np.float32)
    fg = labels > 0
    if fg.any():
        bright = rng.uniform(*p.intensity, size=int(labels.max()) + 1).astype(np.float32)
        texture = _smooth_noise(p.shape, tuple(1.5 * p.scale * per_axis), rng) * p.texture
        profile = 1.0 - 0.25 * np.clip(nrad, 0, 1) ** 2
        signal[fg] = bright[labels[fg]] * profile[fg] * (1.0 + texture[fg])
    signal = np.clip(signal, 0, None)
    psf = p.blur * p.scale * per_axis * np.array([p.axial_blur, 1.0, 1.0])
    signal = ndi.gaussian_filter(signal, tuple(psf), mode="reflect")
    signal *= (1.0 - p.depth_attenuation * np.linspace(0, 1, d, dtype=np.float32))[:, None, None]

    # uneven background: a tilted plane in y and x, a slope along z, very smooth blobs
    zz, yy, xx = np.meshgrid(*(np.linspace(-0.5, 0.5, n, dtype=np.float32) for n in p.shape), indexing="ij")
    slope = rng.normal(0, 1, 3)
    tilt = (slope[0] * 0.3 * zz + slope[1] * yy + slope[2] * xx) * 0.5
    blobs = _smooth_noise(p.shape, tuple(min(h, w) / 6 * per_axis), rng) * 0.5
    bg = p.background + p.background_gradient * (tilt + blobs)
    expected = np.clip(signal + bg, 0, None) * p.dynamic_range
    return _detect(expected, p, rng), labels


def _detect(expected: np.ndarray, p: SimParams, rng: np.random.Generator) -> np.ndarray:
    """Photon counts with shot and read noise, quantised to uint8 or uint16."""
    if p.noise > 0:
        # shot noise with variance scaled by noise**2 around the expected count, then read noise
        shot = rng.poisson(expected).astype(np.float32) - expected
        counts = expected + p.noise * shot + rng.normal(0, p.noise * p.read_noise, expected.shape)
    else:
        counts = expected
    dtype = np.uint8 if p.dynamic_range <= 255 else np.uint16
    return np.clip(np.round(counts), 0, np.iinfo(dtype).max).astype(dtype)


def simulate_image(params: SimParams | None = None, *, rng: np.random.Generator | int | None = None):
    """Simulate one image (or volume, for a ``shape`` of three sizes) and its instance labels.

    Parameters
    ----------
    params
        Simulation parameters (defaults: :class:`SimParams`).
    rng
        A numpy Generator or a seed.

    Returns
    -------
    image : numpy.ndarray
        uint8 (``dynamic_range <= 255``) or uint16 image (``ZYX`` for a volume).
    labels : numpy.ndarray
        uint16 instance labels, 0 background, 1..N (6-connected objects in a volume).

    Examples
    --------
    >>> img, lab = simulate_image(SimParams(shape=(64, 64)), rng=0)
    >>> img.shape, img.dtype, lab.dtype, int(lab.max()) > 0
    ((64, 64), dtype('uint8'), dtype('uint16'), True)
    """
    p = params or SimParams()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if len(p.shape) == 3:
        return _simulate_volume(p, rng)
    objs = _place_objects(p, rng)
    labels, nrad = _rasterise(objs, p.shape)
    labels = _relabel(labels, min_area=max(4, int(0.15 * np.pi * (p.radius[0] * p.scale) ** 2)))

    # fluorescence: per-object brightness, smooth texture, slight fall-off to the edge
    signal = np.zeros(p.shape, np.float32)
    fg = labels > 0
    if fg.any():
        bright = rng.uniform(*p.intensity, size=int(labels.max()) + 1).astype(np.float32)
        texture = _smooth_noise(p.shape, 1.5 * p.scale, rng) * p.texture
        profile = 1.0 - 0.25 * np.clip(nrad, 0, 1) ** 2
        signal[fg] = bright[labels[fg]] * profile[fg] * (1.0 + texture[fg])
    signal = np.clip(signal, 0, None)
    signal = ndi.gaussian_filter(signal, p.blur * p.scale, mode="reflect")

    # uneven background: a tilted plane plus very smooth blobs
    h, w = p.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    slope = rng.normal(0, 1, 2)
    plane = (slope[0] * (yy / h - 0.5) + slope[1] * (xx / w - 0.5)) * 0.5
    blobs = _smooth_noise(p.shape, min(h, w) / 6, rng) * 0.5
    bg = p.background + p.background_gradient * (plane + blobs)
    expected = np.clip(signal + bg, 0, None) * p.dynamic_range
    return _detect(expected, p, rng), labels


def simulate_dataset(
    out: str | os.PathLike,
    preset: str | Preset = "sim2k-10",
    *,
    seed: int = 0,
    overrides: dict | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a simulated dataset: ``OUT/{train,test}/{images,masks}/NNNN.tif``.

    Parameters
    ----------
    out
        Output folder (created). Existing files of the same names are replaced.
    preset
        A name from :data:`PRESETS` or a :class:`Preset`.
    seed
        Random seed; the same seed gives the same dataset.
    overrides
        :class:`SimParams` fields to change (``{"noise": 2.0, "scale": 1.5}``).
    n_train, n_test
        Override the preset's numbers of images.
    progress
        Show a tqdm progress bar.
    callback
        Called as ``callback(done, total)`` after each image.

    Returns
    -------
    Path
        The output folder. It also holds ``simulation.json`` with every parameter.
    """
    from tqdm.auto import tqdm

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        name, preset = preset, PRESETS[preset]
    else:
        name = "custom"
    params = replace(preset.params, **(overrides or {}))
    n_train = preset.n_train if n_train is None else n_train
    n_test = preset.n_test if n_test is None else n_test
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise ValueError(f"need at least one image, got n_train={n_train}, n_test={n_test}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    px = params.pixel_size / params.scale
    volume = len(params.shape) == 3
    axes, z_spacing = ("ZYX", px * params.z_ratio) if volume else ("YX", None)
    jobs = [("train", i) for i in range(n_train)] + [("test", i) for i in range(n_test)]
    bar = tqdm(jobs, desc=f"simulate {name}", unit="volume" if volume else "img", disable=not progress)
    for k, (split, i) in enumerate(bar, start=1):
        img, lab = simulate_image(params, rng=rng)
        stem = f"{i:04d}"
        for kind, data in (("images", img), ("masks", lab)):
            write_tiff(out / split / kind / f"{stem}.tif", data, axes, pixel_size=(px, px), unit="micron",
                       z_spacing=z_spacing)
        if callback is not None:
            callback(k, len(jobs))
    meta = {
        "preset": name,
        "description": preset.description,
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
        "params": asdict(params),
        "pixel_size_um": px,
        **({"voxel_size_um": [z_spacing, px, px]} if volume else {}),
    }
    atomic_write_text(out / "simulation.json", json.dumps(meta, indent=2) + "\n")
    log.info("wrote %d + %d simulated images to %s", n_train, n_test, out)
    return out
