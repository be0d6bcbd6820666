"""How close generated counterparts are: SAXS pixel error and the two-point correlation of SEM morphologies.

- SAXS: mean absolute error of the [0, 1] (log-scaled) intensities, pixel by pixel.
- SEM: a generated morphology is a representative one, not a pixel copy (its
  position is arbitrary), so it is compared through a statistic that ignores
  position: the two-point correlation function ``S2(r)``, the probability
  that two points ``r`` apart both lie in block A. It is computed with
  periodic boundaries as the FFT autocorrelation of the binary image divided
  by the number of pixels, then averaged over displacements whose length
  rounds to each integer ``r`` from 0 to ``N // 2 - 1``. ``S2(0)`` is the
  volume fraction; for a random image ``S2(r)`` tends to its square. The
  metric is the mean absolute difference of the two curves.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..errors import NanowireSSLError


def autocorrelation(binary: np.ndarray) -> np.ndarray:
    """Periodic ``S2`` for every displacement: ``mean_x a(x) a(x + d)``, (H, W) with d = 0 at [0, 0]."""
    a = np.asarray(binary, dtype=np.float64)
    f = np.fft.fft2(a)
    return np.real(np.fft.ifft2(f * np.conj(f))) / a.size


def _radial_bins(shape: tuple[int, int]) -> np.ndarray:
    """Rounded length of each periodic displacement of an array of ``shape``."""
    dy = np.fft.fftfreq(shape[0], 1 / shape[0])
    dx = np.fft.fftfreq(shape[1], 1 / shape[1])
    return np.rint(np.hypot(*np.meshgrid(dy, dx, indexing="ij"))).astype(int)


def two_point_correlation(binary: np.ndarray) -> np.ndarray:
    """Radially averaged ``S2(r)`` for r = 0 .. min(H, W) // 2 - 1 (see the module docstring)."""
    binary = np.asarray(binary)
    if binary.ndim != 2:
        raise NanowireSSLError(f"S2 needs a 2D binary image, got shape {binary.shape}")
    s2 = autocorrelation(binary != 0)
    bins = _radial_bins(binary.shape)
    n = min(binary.shape) // 2
    sums = np.bincount(bins.ravel(), weights=s2.ravel(), minlength=n)[:n]
    counts = np.bincount(bins.ravel(), minlength=n)[:n]
    return sums / counts


def s2_mae(generated: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute difference of the radially averaged S2 curves of two binary images."""
    return float(np.abs(two_point_correlation(generated) - two_point_correlation(true)).mean())


def saxs_mae(generated: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute pixel difference of two [0, 1] SAXS images."""
    return float(np.abs(np.asarray(generated, np.float64) - np.asarray(true, np.float64)).mean())


def grouped_errors(saxs_pred, saxs_true, sem_pred, sem_true, groups) -> dict[str, dict[str, float]]:
    """Per group and over ``"all"``: ``n``, mean ``saxs_mae`` (SEM->SAXS) and ``s2_mae`` (SAXS->SEM)."""
    per = defaultdict(lambda: {"saxs_mae": [], "s2_mae": []})
    for i, group in enumerate(groups):
        for key in (group, "all"):
            per[key]["saxs_mae"].append(saxs_mae(saxs_pred[i], saxs_true[i]))
            per[key]["s2_mae"].append(s2_mae(sem_pred[i], sem_true[i]))
    order = sorted(k for k in per if k != "all") + ["all"]
    return {k: {"n": len(per[k]["saxs_mae"]), **{m: float(np.mean(v)) for m, v in per[k].items()}} for k in order}


def evaluate(vae, encoder, saxs: np.ndarray, sem: np.ndarray, groups) -> dict[str, dict[str, float]]:
    """:func:`grouped_errors` of a PairVAE's cross-reconstructions of held-out pairs."""
    from .model import generate

    return grouped_errors(generate(vae, encoder, sem, "sem"), saxs, generate(vae, encoder, saxs, "saxs"), sem, groups)


def format_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of :func:`grouped_errors` output."""
    lines = ["| morphology | n | SAXS MAE (SEM->SAXS) | S2 MAE (SAXS->SEM) |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['saxs_mae']:.4f} | {v['s2_mae']:.4f} |" for k, v in results.items()]
    return "\n".join(lines)
