"""The eight symmetries of the square, the one convention every caller uses (training crops,
feature views, PairVAE augmentation and its SAXS patterns)."""

from __future__ import annotations

import numpy as np


def dihedral(a: np.ndarray, t: int) -> np.ndarray:
    """Transform ``t`` (taken modulo 8) of the square's symmetry group on the last two axes:
    ``t % 4`` quarter turns, then a left-right flip when ``t % 8 >= 4``."""
    a = np.rot90(a, t % 4, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if t % 8 >= 4 else a)
