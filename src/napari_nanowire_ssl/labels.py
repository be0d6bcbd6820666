"""Label and mask conventions: the one place that says what the values mean.

- Training labels (scribbles, Labels layers): 0 = not labelled, 1 = background,
  2 = nanowire.
- Mask files and layers: nonzero = nanowire. Predicted masks: uint8, 1 = nanowire.
- "Is this scribbles?" (asked of training labels and Labels layers, never of mask
  files): values within {0, 1, 2} with both 1 and 2 present. Then only 2 is wire;
  otherwise every nonzero value is.

:func:`read_mask_values` reads any mask file (TIFF, PNG, JPEG, BMP) once; the
CLI, batch runs, the Analyse tab and the tests all go through these functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ImageReadError, check_file

UNLABELLED, BACKGROUND, NANOWIRE = 0, 1, 2
SCRIBBLE_VALUES = frozenset({UNLABELLED, BACKGROUND, NANOWIRE})
# Telling an image given for a mask from a mask. A mask file whose horizontal neighbours differ more
# often than MAX_MASK_CHANGES (or any JPEG) with more than two values, not scribbles, is an image unless
# MIN_TWO_LEVEL_SHARE of its pixels lie within an eighth of its range of its lowest or highest value
# (a two-level mask under compression noise or anti-aliasing). On ../shared/data/real: expert masks
# differ at most 3 % of the time and micrographs at least 47 %; micrographs have at most 74 % of their
# pixels near the two ends, JPEG (quality 50) copies of generated masks at least 95 %.
MAX_MASK_CHANGES = 0.3
MIN_TWO_LEVEL_SHARE = 0.9
PREDICTED_WIRE = 1  # value of wire pixels in the predicted mask files the plugin writes
TRUTH_KEY = "truth"  # layer metadata: True on a ground-truth (reference) mask


def is_scribbles(values) -> bool:
    """Whether integer label ``values`` (an array) are scribbles: within {0, 1, 2}, with 1 and 2 both present."""
    values = np.asarray(values)
    if values.dtype.kind not in "uib":
        if values.dtype.kind != "f" or not np.array_equal(values, np.round(values)):
            return False
    present = set(np.unique(values).tolist())
    return present <= SCRIBBLE_VALUES and {BACKGROUND, NANOWIRE} <= present


def wire_pixels(values) -> np.ndarray:
    """Boolean wire mask of label values: label 2 of scribbles, else every nonzero value."""
    values = np.asarray(values)
    return values == NANOWIRE if is_scribbles(values) else values != 0


def labels_from_mask(mask) -> np.ndarray:
    """Training labels of a full mask: every pixel labelled, nonzero = nanowire (2), else background (1)."""
    return np.where(np.asarray(mask) != 0, NANOWIRE, BACKGROUND).astype(np.uint8)


def training_labels(values) -> tuple[np.ndarray, bool]:
    """``(labels, were_scribbles)``: scribbles kept as they are, a full mask turned into labels."""
    values = np.asarray(values)
    if values.ndim == 2 and is_scribbles(values):
        return values.astype(np.uint8), True
    return labels_from_mask(wire_pixels(values)), False


def read_mask_values(path) -> np.ndarray:
    """The values of a 2D mask file as read (colour masks: their largest colour channel, alpha
    ignored; JPEG masks: 1 above the middle of their two levels, the compression noise gone);
    :class:`ImageReadError` naming the file when it is not one, or is an image or a probability map
    (see :data:`MAX_MASK_CHANGES`), which would otherwise read as wire wherever it is not 0."""
    path = check_file(Path(path), ImageReadError, "mask file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                data = np.asarray(im)
    except Exception as exc:  # PIL and tifffile raise many types for bad files
        raise ImageReadError(f"{path}: cannot be read as a mask image ({type(exc).__name__})") from None
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        data = data[..., :3].max(axis=-1)
    if data.ndim != 2 or min(data.shape) == 0:
        raise ImageReadError(f"{path}: expected a 2D mask, got shape {data.shape}")
    if data.dtype.kind == "f":
        odd = data[~np.isfinite(data) | (data != np.round(data))]
        if odd.size:
            raise ImageReadError(f"{path}: holds values such as {odd[0]:.4g}, as an image or a probability map "
                                 "does; a mask holds whole numbers (0 = background)")
    lossy = path.suffix.lower() in (".jpg", ".jpeg")
    if lossy or (data.shape[1] > 1 and np.mean(data[:, 1:] != data[:, :-1]) > MAX_MASK_CHANGES):
        levels = np.unique(data)
        if levels.size > 2 and not set(levels.tolist()) <= SCRIBBLE_VALUES:
            lo, hi = float(levels[0]), float(levels[-1])
            margin = (hi - lo) / 8
            if np.mean((data <= lo + margin) | (data >= hi - margin)) < MIN_TWO_LEVEL_SHARE:
                raise ImageReadError(f"{path}: looks like an image, not a mask: its values spread between "
                                     f"{lo:g} and {hi:g}, where a mask is flat regions (0 = background)")
            if lossy:  # compression noise around the mask's two levels: not wire
                data = (data > (lo + hi) / 2).astype(np.uint8)
    return data


def read_mask(path) -> np.ndarray:
    """A mask file as a 2D bool array: nonzero = nanowire (never read as scribbles: a mask file
    may hold instance numbers 1, 2, ...). One with no 0 at all is refused: it is almost surely an
    image given for a mask, which would read as one solid wire."""
    mask = read_mask_values(path) != 0
    if mask.all():
        raise ImageReadError(f"{path}: no pixel is 0 (background), so every pixel would be nanowire: "
                             "an image rather than a mask?")
    return mask


def read_training_labels(path) -> tuple[np.ndarray, bool]:
    """Training labels of a mask or scribble file (see :func:`training_labels`)."""
    return training_labels(read_mask_values(path))
