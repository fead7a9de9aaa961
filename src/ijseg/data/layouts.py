"""Finding image/mask pairs in the usual dataset layouts (see :func:`find_samples`):

* paired folders matched by file stem: ``images/`` + ``masks/`` (also ``labels/``),
  ZeroCostDL4Mic's ``Training_source/`` + ``Training_target/``;
* the Cell Tracking Challenge layout: ``01/t000.tif`` with ``01_GT/SEG/man_seg000.tif``
  (only frames that have a ground-truth segmentation are used).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .io import IMAGE_SUFFIXES, MASK_SUFFIXES

__all__ = ["Sample", "find_samples", "list_images", "MASK_NAME_SUFFIXES"]

#: Suffixes by which a mask's name may differ from its image's (``cell01_mask.tif``).
MASK_NAME_SUFFIXES = ("", "_mask", "_masks", "_label", "_labels", "_seg", "_gt")


@dataclass(frozen=True)
class Sample:
    """One training or test sample: an image file and its mask file."""

    name: str
    image: Path
    mask: Path | None


_PAIRED_LAYOUTS = (
    ("images", "masks"),
    ("images", "labels"),
    ("training_source", "training_target"),
    ("source", "target"),
)
_CTC_SEQ = re.compile(r"^\d{2,}$")
_CTC_FRAME = re.compile(r"^t(\d+)$")
_CTC_GT = re.compile(r"^man_seg_?(\d+)$")


def list_images(folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files in ``folder`` (not recursive), sorted, hidden and macOS ``._`` files skipped."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def _child(root: Path, name: str) -> Path | None:
    """Sub-folder of ``root`` whose name equals ``name`` ignoring case."""
    for p in root.iterdir():
        if p.is_dir() and p.name.lower() == name:
            return p
    return None


def _few(names: list[str], k: int = 5) -> str:
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more


def _paired_samples(img_dir: Path, mask_dir: Path, require_masks: bool) -> list[Sample]:
    images = list_images(img_dir)
    if not images:
        raise DataError(f"{img_dir}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    masks = list_images(mask_dir, MASK_SUFFIXES) if mask_dir.is_dir() else []
    if require_masks and not masks:
        raise DataError(f"{mask_dir}: no masks found (looked for {', '.join(MASK_SUFFIXES)})")
    by_stem: dict[str, Path] = {}
    for m in masks:
        by_stem.setdefault(m.stem, m)
    used: set[Path] = set()
    samples: list[Sample] = []
    missing: list[str] = []
    for img in images:
        mask = next((by_stem[img.stem + s] for s in MASK_NAME_SUFFIXES if img.stem + s in by_stem), None)
        if mask is None:
            missing.append(img.name)
        else:
            used.add(mask)
        samples.append(Sample(img.stem, img, mask))
    if require_masks and missing:
        raise DataError(
            f"{img_dir}: {len(missing)} image(s) have no mask with the same name in {mask_dir}: {_few(missing)}"
        )
    orphans = [m.name for m in masks if m not in used]
    if orphans:
        raise DataError(
            f"{mask_dir}: {len(orphans)} mask(s) have no image with the same name in {img_dir}: {_few(orphans)}"
        )
    stems = [s.name for s in samples]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise DataError(f"{img_dir}: several images share the name(s) {_few(dup)} (different extensions?)")
    return samples


def _ctc_samples(root: Path, seqs: list[Path], require_masks: bool) -> list[Sample]:
    samples: list[Sample] = []
    for seq in seqs:
        gt_dir = root / f"{seq.name}_GT" / "SEG"
        frames = {}
        for p in list_images(seq, (".tif", ".tiff")):
            m = _CTC_FRAME.match(p.stem)
            if m:
                frames[int(m.group(1))] = p
        if not frames:
            raise DataError(f"{seq}: no frames named t000.tif found (Cell Tracking Challenge layout)")
        if not gt_dir.is_dir():
            if require_masks:
                raise DataError(f"{seq}: no ground truth folder {gt_dir}")
            samples += [Sample(f"{seq.name}_{p.stem}", p, None) for _, p in sorted(frames.items())]
            continue
        n_gt = 0
        for p in list_images(gt_dir, (".tif", ".tiff")):
            m = _CTC_GT.match(p.stem)
            if not m:
                continue
            t = int(m.group(1))
            if t not in frames:
                raise DataError(f"{p}: ground truth for frame {t} but {seq} has no frame t{m.group(1)}.tif")
            samples.append(Sample(f"{seq.name}_t{m.group(1)}", frames[t], p))
            n_gt += 1
        if n_gt == 0 and require_masks:
            raise DataError(f"{gt_dir}: no ground-truth files named man_seg000.tif")
    return samples


def find_samples(root: str | os.PathLike, *, require_masks: bool = True) -> list[Sample]:
    """Find image/mask pairs in a dataset folder.

    Parameters
    ----------
    root
        A folder in one of the layouts listed in the module docstring. A folder of plain
        images is accepted when ``require_masks`` is False (samples then have ``mask=None``).
    require_masks
        Raise if an image has no mask.

    Returns
    -------
    list of Sample
        Sorted by name.

    Raises
    ------
    DataError
        For a missing or empty folder, an unknown layout, images without masks (when
        required) and masks without images.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; give the dataset folder (with images/ and masks/)")
    for img_name, mask_name in _PAIRED_LAYOUTS:
        img_dir = _child(root, img_name)
        if img_dir is None:
            continue
        mask_dir = _child(root, mask_name)
        if mask_dir is None:
            if img_name == "images" and mask_name == "masks" and _child(root, "labels") is not None:
                continue
            if require_masks:
                raise DataError(f"{root}: found {img_dir.name}/ but no {mask_name}/ folder beside it")
            mask_dir = root / mask_name
        return _paired_samples(img_dir, mask_dir, require_masks)
    seqs = sorted(p for p in root.iterdir() if p.is_dir() and _CTC_SEQ.match(p.name))
    if seqs:
        return _ctc_samples(root, seqs, require_masks)
    if not require_masks:
        images = list_images(root)
        if images:
            return [Sample(p.stem, p, None) for p in images]
    if not any(root.iterdir()):
        raise DataError(f"{root}: dataset folder is empty")
    raise DataError(
        f"{root}: no dataset found; expected images/ + masks/ (or Training_source/ + "
        f"Training_target/), or the Cell Tracking Challenge layout 01/ + 01_GT/SEG/"
    )
