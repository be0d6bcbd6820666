"""Where a user paints with the Labels brush on a nanowire image, simulated from its true mask.

Used to drive the napari widgets and the segmentation benchmark the way a
person works: :func:`brush_clicks` (single clicks, for GUI tests and the
user-guide screenshots), :func:`scribbles` (a first set of strokes) and
:func:`correction_strokes` (strokes on what a first prediction got wrong,
before training on). Label 2 = nanowire, 1 = background, 0 = not painted;
nobody paints the background right at a wire's edge, where a person would
hesitate.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

NANOWIRE, BACKGROUND = 2, 1
EDGE_GAP = 2  # px: background strokes keep more than this from any wire


def brush_clicks(mask: np.ndarray, n: int = 25, *, seed: int = 0, wire_depth: float = 3.0,
                 background_gap: float = 8.0) -> list[tuple[int, int, int]]:
    """``n`` clicks per class as ``(row, column, label)``.

    Nanowire clicks lie at least ``wire_depth`` px inside a wire, background
    clicks at least ``background_gap`` px from any wire. Deterministic per seed.
    """
    mask = np.asarray(mask).astype(bool)
    rng = np.random.default_rng(seed)
    clicks = []
    for label, where in ((NANOWIRE, ndimage.distance_transform_edt(mask) >= wire_depth),
                         (BACKGROUND, ndimage.distance_transform_edt(~mask) >= background_gap)):
        ys, xs = np.nonzero(where)
        if ys.size < n:
            raise ValueError(f"only {ys.size} pixels qualify for label {label}, {n} clicks asked")
        for k in rng.choice(ys.size, size=n, replace=False):
            clicks.append((int(ys[k]), int(xs[k]), label))
    return clicks


def disc(shape, y: int, x: int, radius: float) -> np.ndarray:
    """Boolean array of ``shape``, True within ``radius`` px of ``(y, x)``."""
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2


def _along_wire(skeleton: np.ndarray, mask: np.ndarray, y: int, x: int) -> np.ndarray:
    """A 3 px wide nanowire stroke: the skeleton within 15 px of ``(y, x)``, kept inside the wire."""
    return ndimage.binary_dilation(skeleton & disc(mask.shape, y, x, 15)) & mask


def scribbles(mask: np.ndarray, rng: np.random.Generator, *, n_wire: int = 8, n_open: int = 6,
              n_edge: int = 6) -> np.ndarray:
    """Labels 0/1/2 as a user first paints them, on about 3.5 % of a 256 px image's pixels:

    - ``n_wire`` nanowire strokes (2) along wire centre lines (:func:`_along_wire`: a fine brush on a thin wire);
    - ``n_open`` background strokes (1) across open background with the widget's 5 px brush: straight,
      up to 70 px, through a random point more than 4 px from any wire and ending where the line
      comes within 4 px of one; the brush keeps more than 2 px away from wires;
    - ``n_edge`` background strokes (1) beside a wire: the piece, within 12 px of a random point, of
      the band more than 2 and at most 4 px from the nearest wire pixel (about 2 px wide), where a
      user marks where a wire ends.

    Background within 2 px of a wire is never labelled, nor are the edges of wires wider than 3 px.
    """
    from skimage.morphology import skeletonize

    mask = np.asarray(mask).astype(bool)
    h, w = mask.shape
    lab = np.zeros(mask.shape, np.uint8)
    skel = skeletonize(mask)
    ys, xs = np.nonzero(skel)
    for k in rng.choice(ys.size, size=min(n_wire, ys.size), replace=False):
        lab[_along_wire(skel, mask, ys[k], xs[k])] = NANOWIRE
    dist = ndimage.distance_transform_edt(~mask)
    far = dist > 4
    fy, fx = np.nonzero(far)
    for k in rng.choice(fy.size, size=min(n_open, fy.size), replace=False):
        angle = rng.uniform(0, 2 * np.pi)
        line = np.zeros(mask.shape, bool)
        for direction in (1, -1):
            for r in range(35):
                y = int(round(fy[k] + direction * r * np.sin(angle)))
                x = int(round(fx[k] + direction * r * np.cos(angle)))
                if not (0 <= y < h and 0 <= x < w) or not far[y, x]:
                    break
                line[y, x] = True
        lab[ndimage.binary_dilation(line, iterations=2) & (dist > EDGE_GAP)] = BACKGROUND
    band = (dist > EDGE_GAP) & (dist <= 4)
    by, bx = np.nonzero(band)
    for k in rng.choice(by.size, size=min(n_edge, by.size), replace=False):
        pieces, _ = ndimage.label(band & disc(mask.shape, by[k], bx[k], 12))
        lab[(pieces == pieces[by[k], bx[k]]) & (lab == 0)] = BACKGROUND
    return lab


def correction_strokes(prediction: np.ndarray, mask: np.ndarray, labels: np.ndarray, *, n: int = 3,
                       min_pixels: int = 20) -> np.ndarray:
    """``labels`` plus the strokes a user adds after looking at a first ``prediction`` (boolean, True = wire).

    The user corrects the ``n`` largest wrong regions (8-connected, at least
    ``min_pixels`` px): on wire predicted where there is none (more than 2 px
    from a true wire) a background disc of radius 12 px around the region's
    deepest point; on a missed wire a nanowire stroke along its centre line
    (:func:`_along_wire`) around the middle of the missed part. Painted pixels
    are never changed.
    """
    from skimage.morphology import skeletonize

    prediction, mask = np.asarray(prediction).astype(bool), np.asarray(mask).astype(bool)
    labels = np.array(labels, dtype=np.uint8)
    gap = ndimage.distance_transform_edt(~mask)
    regions = []
    for label, wrong in ((BACKGROUND, prediction & ~mask & (gap > EDGE_GAP)), (NANOWIRE, ~prediction & mask)):
        pieces, count = ndimage.label(wrong, structure=np.ones((3, 3)))
        sizes = ndimage.sum(wrong, pieces, range(1, count + 1))
        regions += [(int(size), label, pieces == j + 1) for j, size in enumerate(sizes) if size >= min_pixels]
    regions.sort(key=lambda r: -r[0])
    unpainted, skeleton = labels == 0, skeletonize(mask)
    for _, label, region in regions[:n]:
        if label == BACKGROUND:
            depth = ndimage.distance_transform_edt(region)
            y, x = np.unravel_index(depth.argmax(), depth.shape)
            labels[region & disc(mask.shape, y, x, 12) & unpainted] = BACKGROUND
        else:
            ys, xs = np.nonzero(skeletonize(region))
            if ys.size:
                middle = ys.size // 2
                labels[_along_wire(skeleton, mask, ys[middle], xs[middle]) & unpainted] = NANOWIRE
    return labels
