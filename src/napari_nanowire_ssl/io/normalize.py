"""Robust intensity normalisation of micrographs for the networks.

Percentile scaling to [0, 1] is robust to hot pixels, saturated scale bars and
the different bit depths of microscope files (8-bit JPEG, 16-bit TIFF, float
DM). NaN and infinite pixels (dead detector pixels, failed reconstructions) do
not take part in the percentiles and are set to 0 afterwards.
"""

from __future__ import annotations

import numpy as np

from ..errors import NanowireSSLError

# The encoders downsample by 32: smaller images have no deepest feature map.
ENCODER_STRIDE = 32
MIN_SIDE_PX = ENCODER_STRIDE


def normalize(image: np.ndarray, *, low: float = 0.5, high: float = 99.5, name: str = "image") -> np.ndarray:
    """Scale intensities so the ``low``/``high`` percentiles map to 0 and 1 (clipped), as float32.

    Percentiles are taken per image (per slice for a stack). Raises
    :class:`NanowireSSLError` naming ``name`` when an image has no finite
    pixels or is constant: nothing can be learnt from it and dividing by a
    zero range would silently produce garbage.
    """
    if not 0 <= low < high <= 100:
        raise NanowireSSLError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        return np.stack([normalize(s, low=low, high=high, name=f"{name} slice {i}") for i, s in enumerate(image)])
    finite = np.isfinite(image)
    if not finite.any():
        raise NanowireSSLError(f"{name}: no finite pixel values (all NaN or infinite)")
    values = image[finite] if not finite.all() else image
    lo, hi = np.percentile(values, [low, high])
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            raise NanowireSSLError(f"{name}: the image is constant (every pixel is {lo:g}); nothing to analyse")
    out = (image - np.float32(lo)) / np.float32(hi - lo)  # float32 scalars: numpy 2 keeps float32
    out = np.clip(out, 0.0, 1.0, out=out)
    out[~finite] = 0.0
    return out


def check_network_input(image: np.ndarray, *, name: str = "image") -> None:
    """Refuse images the encoder cannot take: smaller than 32 px on a side."""
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE_PX:
        raise NanowireSSLError(
            f"{name}: is {h}x{w} px; the encoder needs at least {MIN_SIDE_PX}x{MIN_SIDE_PX} px"
        )
