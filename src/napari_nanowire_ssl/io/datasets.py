"""Data sets on disk, as the commands and batch runs read and write them.

- Segmentation training: ``DIR/images/<stem>.*`` and ``DIR/masks/<stem>.*`` (same stems).
- Outputs: ``OUT/<stem>.tif`` per input, two inputs of one stem refused.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NanowireSSLError
from ..labels import read_training_labels
from .banner import AUTO as BANNER_AUTO, banner_crop, without_banner
from .reader import IMAGE_SUFFIXES


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            if f.stem in found:
                raise NanowireSSLError(f"{f}: two {what} files have the stem '{f.stem}' ({found[f.stem].name})")
            found[f.stem] = f
    return found


def training_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) files of ``root/images`` and ``root/masks``, matched by stem; one-line errors."""
    if not root.is_dir():
        raise NanowireSSLError(f"{root}: no such folder")
    images_dir, masks_dir = root / "images", root / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise NanowireSSLError(f"{root}: expected sub-folders images/ and masks/ (with the same file stems); "
                                   f"{d.name}/ is missing")
    images, masks = _by_stem(images_dir, "image"), _by_stem(masks_dir, "mask")
    if not images and not masks:
        raise NanowireSSLError(f"{root}: images/ and masks/ hold no image files: nothing to train on")
    for stem, f in images.items():
        if stem not in masks:
            raise NanowireSSLError(f"{f}: has no mask (expected {masks_dir / stem}.<ext>)")
    for stem, f in masks.items():
        if stem not in images:
            raise NanowireSSLError(f"{f}: has no image (expected {images_dir / stem}.<ext>)")
    return [(images[s], masks[s]) for s in sorted(images)]


def load_training_set(root: Path, *, crop_bottom: int | str = BANNER_AUTO):
    """``(images, labels, names, n_scribble_masks)`` of a training folder (names: the image files, for
    error messages). Masks follow :mod:`..labels`: scribbles kept, full masks labelled everywhere.
    Images and masks lose the bottom rows of the image's banner (:func:`.banner.banner_crop`)."""
    from .reader import read_image

    images, labels, names, scribbles = [], [], [], 0
    for image_file, mask_file in training_pairs(root):
        image = read_image(image_file).data
        if image.ndim != 2:
            raise NanowireSSLError(f"{image_file}: training images must be 2D, this is a stack of shape {image.shape}")
        lab, is_scribble = read_training_labels(mask_file)
        if lab.shape != image.shape:
            raise NanowireSSLError(f"{mask_file}: mask has shape {lab.shape} but its image {image_file.name} "
                                   f"has shape {image.shape}")
        rows = banner_crop(image, crop_bottom, name=str(image_file))
        images.append(without_banner(image, rows))
        labels.append(without_banner(lab, rows))
        names.append(str(image_file))
        scribbles += is_scribble
    return images, labels, names, scribbles


def output_paths(files: list[Path], out: Path) -> list[Path]:
    """``out/<stem>.tif`` per input; refuses two inputs with the same stem."""
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise NanowireSSLError(f"{f}: same stem as {seen[f.stem]}; both would be written to "
                                   f"{out / (f.stem + '.tif')}")
        seen[f.stem] = f
    return [out / f"{f.stem}.tif" for f in files]
