"""Where a user clicks with the Labels brush to scribble on a nanowire image.

Used to drive the napari widgets the way a person does (GUI tests, the
user-guide screenshots): label 2 (nanowire) on the middle of wires, label 1
(background) well away from them, never on an edge where a person would
hesitate.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

NANOWIRE, BACKGROUND = 2, 1


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
