"""Pixel density of wires, over the whole image or a region of interest.

The paper's density is wire pixels / all pixels; microscope images often carry
an instrument banner at the bottom, which ``crop_bottom`` leaves out. With a
known pixel size the same numbers come in physical units: wire area and wire
length (skeleton) per unit area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NanowireSSLError
from .percolation import as_mask


@dataclass(frozen=True)
class DensityResult:
    """Wire coverage of a region; physical fields are None without a pixel size."""

    pixel_density: float
    wire_pixels: int
    region_pixels: int
    wire_area_um2: float | None = None
    region_area_um2: float | None = None
    length_per_area_um: float | None = None  # wire length (um) per um^2 of region


def region(shape: tuple[int, int], *, roi=None, crop_bottom: int = 0) -> np.ndarray:
    """Boolean region of interest: ``roi`` (nonzero = inside) minus the bottom ``crop_bottom`` rows."""
    h, w = shape
    whole = isinstance(crop_bottom, (int, np.integer)) and not isinstance(crop_bottom, bool)
    if not whole or not 0 <= crop_bottom < h:
        raise NanowireSSLError(
            f"crop_bottom: must be a whole number of rows in 0..{h - 1}, got {crop_bottom!r}"
        )
    if roi is None:
        inside = np.ones(shape, dtype=bool)
    else:
        inside = np.asarray(roi) != 0
        if inside.shape != tuple(shape):
            raise NanowireSSLError(f"roi: shape {inside.shape} differs from the mask's {tuple(shape)}")
    if crop_bottom:
        inside = inside.copy()
        inside[h - crop_bottom :] = False
    if not inside.any():
        raise NanowireSSLError("roi: the region of interest is empty")
    return inside


def pixel_density(mask, *, roi=None, crop_bottom: int = 0) -> float:
    """Fraction of the region's pixels that are wire (nonzero)."""
    return density(mask, roi=roi, crop_bottom=crop_bottom).pixel_density


def density(
    mask,
    *,
    pixel_size_nm: float | None = None,
    roi=None,
    crop_bottom: int = 0,
    length_px: float | None = None,
) -> DensityResult:
    """Wire density of ``mask`` within the region; ``length_px`` is the skeleton
    length inside the region (see :func:`.wires.skeleton_length`), needed for
    the length per area."""
    mask = as_mask(mask)
    inside = region(mask.shape, roi=roi, crop_bottom=crop_bottom)
    wire = int(np.count_nonzero(mask & inside))
    total = int(np.count_nonzero(inside))
    result = DensityResult(wire / total, wire, total)
    if pixel_size_nm is None:
        return result
    px_um = check_pixel_size(pixel_size_nm) / 1000.0
    region_um2 = total * px_um**2
    return DensityResult(
        result.pixel_density,
        wire,
        total,
        wire_area_um2=wire * px_um**2,
        region_area_um2=region_um2,
        length_per_area_um=None if length_px is None else length_px * px_um / region_um2,
    )


def check_pixel_size(pixel_size_nm) -> float:
    """``pixel_size_nm`` as a positive finite float, or raise."""
    try:
        value = float(pixel_size_nm)
    except (TypeError, ValueError):
        raise NanowireSSLError(f"pixel size: must be a number of nanometres, got {pixel_size_nm!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise NanowireSSLError(f"pixel size: must be a positive number of nanometres, got {pixel_size_nm!r}")
    return value
