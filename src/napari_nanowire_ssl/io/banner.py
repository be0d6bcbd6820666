"""Instrument banners: the data bar that SEMs burn in below the micrograph.

FEI, Hitachi, Zeiss and JEOL instruments append a band of rows holding the
acquisition settings and a scale bar, drawn as text on a uniform fill (black,
white or gray). Left in, its text and bar read as "wire" and its fill as
background. :func:`detect_banner` finds such a band at the bottom of an
image; the widgets and commands propose it as the bottom crop, which the
user can always change.

A row belongs to the band when one exact value fills much of it (the fill
between letters). Rows of a micrograph are noisy and almost never do. Text
burnt straight onto the micrograph, without a fill, is not detected: the
user sets that crop by hand.
"""

from __future__ import annotations

import numpy as np

from ..errors import NanowireSSLError

# A row is banner fill when its most common exact value covers this fraction of it.
FILL_FRACTION = 0.3
# Rows of tall letters may hide the fill: gaps of up to this many rows inside a band are bridged.
MAX_GAP_ROWS = 12
# The band must reach the last rows of the image (a band higher up is part of the picture).
MAX_BOTTOM_MARGIN_ROWS = 2
# A band covering more than this fraction of the height is no banner (a blank or saturated image).
MAX_BANNER_FRACTION = 0.35
# Column segments that must each hold the fill (a corner label box is no banner).
SEGMENTS = 8
# The rows just above a band: a micrograph's rows have almost no exactly equal pixels, so a
# filled region whose fill fades upwards (a black vacuum area, a saturated region) is no banner.
EDGE_ROWS = 3
MAX_FILL_ABOVE = 0.25
# A frame line at the top of a band is at most this many rows thick.
MAX_BORDER_ROWS = 4
# ... and its rows vary at most this fraction as much as the micrograph's rows do.
BORDER_FLATNESS = 0.3
# Bands thinner than this are a border or a single line, not a data bar.
MIN_BANNER_ROWS = 8


def fill_fraction(rows: np.ndarray, segments: int = 1) -> np.ndarray:
    """For each row of a 2D array, the fraction of its pixels equal to the row's most common value.

    With ``segments`` > 1, the smallest such fraction over that many equal
    column segments of the row (the mode still taken over the whole row): a
    fill spanning the width scores high, a label box in one corner does not.
    """
    rows = np.asarray(rows)
    n, w = rows.shape
    ordered = np.sort(rows, axis=1)
    new_run = np.ones((n, w), bool)
    new_run[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    run = np.cumsum(new_run, axis=1) - 1 + (np.arange(n) * w)[:, None]  # unique run ids
    lengths = np.bincount(run.ravel(), minlength=n * w).reshape(n, w)
    longest = lengths.argmax(axis=1)  # the run id (within its row) of the mode
    first = np.argmax(run - (np.arange(n) * w)[:, None] == longest[:, None], axis=1)
    equal = rows == ordered[np.arange(n), first][:, None]
    starts = np.linspace(0, w, min(segments, w) + 1).astype(int)[:-1]  # no empty segment in a narrow image
    counts = np.add.reduceat(equal, starts, axis=1)
    return (counts / np.diff(np.append(starts, w))).min(axis=1)


def detect_banner(image: np.ndarray) -> int:
    """Number of rows at the bottom of ``image`` (2D, raw intensities) that are an instrument banner (0: none)."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"detect_banner: expected a 2D image, got shape {image.shape}")
    h = image.shape[0]
    depth = max(int(h * MAX_BANNER_FRACTION), 1)
    bottom = image[h - depth:]
    fill = fill_fraction(bottom, SEGMENTS)
    rows = np.flatnonzero(fill[::-1] >= FILL_FRACTION)  # distances from the last row
    if rows.size == 0 or rows[0] > MAX_BOTTOM_MARGIN_ROWS:
        return 0
    top = rows[0]
    for distance in rows[1:]:
        if distance - top > MAX_GAP_ROWS + 1:
            break
        top = distance
    size = int(top) + 1
    if size < MIN_BANNER_ROWS or size + EDGE_ROWS > depth:
        return 0
    # A data bar starts at a straight edge: the micrograph rows just above it are not filled.
    above = fill[::-1][size:size + EDGE_ROWS]
    if above.max() >= MAX_FILL_ABOVE:
        return 0
    return size + _border_rows(image[: h - size])


def _border_rows(picture: np.ndarray) -> int:
    """Rows of a frame line drawn on top of a band (anti-aliased, so not one exact value):
    rows just above the band that are much flatter than the micrograph's rows."""
    reference = picture[-(MAX_BORDER_ROWS + 40):-MAX_BORDER_ROWS].astype(np.float64)
    if len(reference) < 10:
        return 0
    typical_std = np.median(reference.std(axis=1))
    rows = 0
    for row in picture[::-1][:MAX_BORDER_ROWS].astype(np.float64):
        if row.std() >= BORDER_FLATNESS * typical_std:
            break
        rows += 1
    return rows


AUTO = "auto"  # the default bottom crop of every command and tab: the detected banner


def banner_crop(image: np.ndarray, setting: int | str = AUTO, *, name: str = "image") -> int:
    """Rows to leave out at the bottom of ``image``: the detected banner for ``"auto"``, else
    ``setting`` rows (checked against the image's height, the error naming ``name``)."""
    if setting == AUTO:
        return detect_banner(image) if np.ndim(image) == 2 else 0
    h = np.shape(image)[0]
    if isinstance(setting, bool) or not isinstance(setting, (int, np.integer)) or not 0 <= setting < h:
        raise NanowireSSLError(f"{name}: the bottom crop must be 'auto' or a whole number of rows in 0..{h - 1}, "
                         f"got {setting!r}")
    return int(setting)


def without_banner(image: np.ndarray, rows: int) -> np.ndarray:
    """The micrograph above a ``rows``-row banner (a view; the image itself when ``rows`` is 0)."""
    return image[: image.shape[0] - rows] if rows else image


def with_banner_rows(result: np.ndarray, rows: int) -> np.ndarray:
    """A per-pixel result for the micrograph above a banner, padded with ``rows`` rows of zeros
    (no wire, probability 0), so it lines up with the whole image again."""
    if not rows:
        return result
    return np.concatenate([result, np.zeros((rows, *result.shape[1:]), result.dtype)])
