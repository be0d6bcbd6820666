"""Wire geometry: smooth centrelines and their exact rasterisation.

A wire is a polyline centreline with a width. Pixel ``(row, col)`` has its
centre at those coordinates and belongs to the wire when its Euclidean distance
to the centreline is at most ``width / 2`` (round end caps). The same distance
field gives the anti-aliased absorbance (coverage ``clip(r + 0.5 - d, 0, 1)``,
which is >= 0.5 exactly on the mask), so the ground truth is what is drawn.
Each wire is computed in short pieces over their own bounding boxes, never over
the whole image.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Wire:
    """One wire: centreline vertices ``path`` (K x 2, row/col px), ``width`` px, bundle ``group`` (-1: none)."""

    path: np.ndarray
    width: float
    group: int = -1


@dataclass(frozen=True, eq=False)
class Footprint:
    """Distances ``dist`` from the pixels of ``box`` (row, col slices) to one wire's centreline."""

    wire: Wire
    box: tuple[slice, slice]
    dist: np.ndarray


def smooth_path(rng: np.random.Generator, length: float, curvature: float, step: float, corr: float) -> np.ndarray:
    """A smooth random centreline of arc length ``length`` starting at (0, 0) in a random direction.

    The curvature (rad/px) is an Ornstein-Uhlenbeck process of RMS
    ``curvature`` and correlation length ``corr`` px, so the heading wanders
    smoothly instead of kinking; ``curvature=0`` gives a straight wire.
    """
    n = max(2, math.ceil(length / step))
    ds = length / n
    a = math.exp(-ds / corr)
    drive = curvature * rng.standard_normal(n)
    drive[1:] *= math.sqrt(1 - a * a)  # kappa[i] = a * kappa[i-1] + drive[i], stationary from the start
    kappa = np.fromiter(itertools.accumulate(drive.tolist(), lambda k, x: a * k + x), float, n)
    heading = rng.uniform(0, 2 * math.pi) + np.concatenate([[0.0], np.cumsum(kappa[:-1] * ds)])
    steps = ds * np.stack([np.sin(heading), np.cos(heading)], axis=1)
    return np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])


def offset_path(path: np.ndarray, offset: float) -> np.ndarray:
    """The parallel curve at signed distance ``offset`` px (left of the direction of travel)."""
    tangent = np.gradient(path, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    return path + offset * normal


def footprint(wire: Wire, shape: tuple[int, int], reach: float) -> Footprint | None:
    """Distances to ``wire`` over its bounding box grown by ``reach`` px; inf further than ~reach.

    None when the wire lies wholly outside the image.
    """
    path = np.asarray(wire.path, dtype=np.float64)
    h, w = shape
    r0 = max(0, math.floor(path[:, 0].min() - reach))
    r1 = min(h, math.ceil(path[:, 0].max() + reach) + 1)
    c0 = max(0, math.floor(path[:, 1].min() - reach))
    c1 = min(w, math.ceil(path[:, 1].max() + reach) + 1)
    if r0 >= r1 or c0 >= c1:
        return None
    d2 = np.full((r1 - r0, c1 - c0), np.inf)
    a, b = path[:-1], path[1:]
    seg_len = np.linalg.norm(b - a, axis=1)
    # Pieces about 2 * reach long: small boxes, few Python iterations.
    per_chunk = max(1, int(2 * reach / max(float(seg_len.mean()), 1e-9)))
    starts = np.arange(0, len(a), per_chunk)
    ends = np.minimum(starts + per_chunk, len(a))
    lo = np.minimum(np.minimum.reduceat(a, starts, axis=0), path[ends])
    hi = np.maximum(np.maximum.reduceat(a, starts, axis=0), path[ends])
    y0s = np.clip(np.floor(lo[:, 0] - reach), r0, r1).astype(int).tolist()
    y1s = np.clip(np.ceil(hi[:, 0] + reach) + 1, r0, r1).astype(int).tolist()
    x0s = np.clip(np.floor(lo[:, 1] - reach), c0, c1).astype(int).tolist()
    x1s = np.clip(np.ceil(hi[:, 1] + reach) + 1, c0, c1).astype(int).tolist()
    for i, e, y0, y1, x0, x1 in zip(starts.tolist(), ends.tolist(), y0s, y1s, x0s, x1s):
        if y0 >= y1 or x0 >= x1:
            continue
        pa, pb = a[i:e], b[i:e]
        yy = np.arange(y0, y1, dtype=np.float64)[None, :, None]
        xx = np.arange(x0, x1, dtype=np.float64)[None, None, :]
        ay, ax = pa[:, 0, None, None], pa[:, 1, None, None]
        dy, dx = (pb - pa)[:, 0, None, None], (pb - pa)[:, 1, None, None]
        len2 = np.maximum(dy * dy + dx * dx, 1e-12)
        t = np.clip(((yy - ay) * dy + (xx - ax) * dx) / len2, 0.0, 1.0)
        piece = ((yy - ay - t * dy) ** 2 + (xx - ax - t * dx) ** 2).min(axis=0)
        view = d2[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0]
        np.minimum(view, piece, out=view)
    return Footprint(wire, (slice(r0, r1), slice(c0, c1)), np.sqrt(d2))


class Canvas:
    """Wires drawn so far: the union ``mask`` and summed ``absorbance`` (overlaps are darker)."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = (int(shape[0]), int(shape[1]))
        self.mask = np.zeros(self.shape, dtype=bool)
        self.absorbance = np.zeros(self.shape, dtype=np.float32)
        self.wires: list[Wire] = []

    def footprint(self, wire: Wire, gap: float = 0.0) -> Footprint | None:
        """The wire's distance field, reaching far enough to draw it and to test ``gap``."""
        return footprint(wire, self.shape, wire.width / 2 + max(gap, 1.0))

    def on_wire(self, path: np.ndarray) -> bool:
        """True when a centreline vertex lies on a drawn wire pixel: a cheap early rejection."""
        idx = np.rint(path).astype(int)
        inside = (idx >= 0).all(axis=1) & (idx[:, 0] < self.shape[0]) & (idx[:, 1] < self.shape[1])
        return bool(self.mask[idx[inside, 0], idx[inside, 1]].any())

    def clear_of(self, fp: Footprint, gap: float) -> bool:
        """True when no wire pixel drawn so far lies within ``gap`` px of this wire's edge."""
        near = fp.dist <= fp.wire.width / 2 + gap
        return not self.mask[fp.box][near].any()

    def add(self, fp: Footprint, darkness: float = 1.0) -> None:
        """Draw the wire: mask where distance <= width/2, anti-aliased cylinder-like absorbance."""
        r = fp.wire.width / 2
        d = fp.dist
        near = d < r + 0.5
        dn = d[near]
        coverage = np.clip(r + 0.5 - dn, 0.0, 1.0)
        thickness = np.sqrt(np.clip(1.0 - (dn / r) ** 2, 0.0, 1.0))
        self.absorbance[fp.box][near] += (darkness * coverage * (0.4 + 0.6 * thickness)).astype(np.float32)
        self.mask[fp.box] |= d <= r
        self.wires.append(fp.wire)


def rasterize(wires, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mask (bool) and absorbance (float32) of ``wires`` on an image of ``shape``."""
    canvas = Canvas(shape)
    for wire in wires:
        fp = canvas.footprint(wire)
        if fp is not None:
            canvas.add(fp)
    return canvas.mask, canvas.absorbance
