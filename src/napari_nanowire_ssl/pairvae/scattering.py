"""2D small-angle scattering patterns computed from a morphology.

In the kinematic (Born) approximation the scattered intensity is the squared
modulus of the Fourier transform of the scattering-length-density contrast:
``I(q) = |FT[w(r) (rho(r) - <rho>)]|^2``. Here:

- ``rho`` is the binary morphology (block A = 1); subtracting its mean removes
  the forward (q = 0) spike, which the beam stop would block anyway;
- ``w`` is the finite beam: a separable Hann window, so the illuminated area
  fades smoothly instead of being cut (a sharp cut would add streaks along the
  axes); its transform is the instrumental resolution, which broadens peaks
  to about 2 px;
- the pattern is centred (``fftshift``): pixel ``(N/2, N/2)`` is q = 0 and a
  period of ``P`` px along a direction gives peaks ``N / P`` px from the centre
  along that direction (q in cycles per pixel = offset / N);
- counts: the intensity is scaled so the brightest pixel expects
  ``peak_counts`` photons, a flat ``background`` (counts per pixel, air and
  detector) is added, and each pixel is a Poisson draw; the beam stop, a disc
  of ``beam_stop_px`` radius at the centre, then records zero.

:func:`log_scale` maps counts to [0, 1] as ``log1p(I) / log1p(max I)``, the
usual way of looking at (and, here, learning from) SAXS images.
"""

from __future__ import annotations

import numpy as np

from ..errors import NanowireSSLError

DEFAULT_PEAK_COUNTS = 1e4
DEFAULT_BACKGROUND = 0.5
DEFAULT_BEAM_STOP_PX = 2.0


def beam_window(size: int) -> np.ndarray:
    """The finite beam: a separable Hann window (size, size), symmetric under index reversal."""
    w = np.hanning(size)
    return np.outer(w, w)


def beam_stop_mask(size: int, radius: float) -> np.ndarray:
    """True inside the beam stop: pixels within ``radius`` of the centre ``(size // 2, size // 2)``."""
    yy, xx = np.mgrid[0:size, 0:size] - size // 2
    return np.hypot(yy, xx) <= radius


def intensity(density: np.ndarray) -> np.ndarray:
    """Noise-free centred intensity ``|FT[w (rho - <rho>)]|^2`` of a square 2D density (float64)."""
    rho = np.asarray(density, dtype=np.float64)
    if rho.ndim != 2 or rho.shape[0] != rho.shape[1]:
        raise NanowireSSLError(f"scattering needs a square 2D density, got shape {rho.shape}")
    amplitude = np.fft.fftshift(np.fft.fft2(beam_window(rho.shape[0]) * (rho - rho.mean())))
    return np.abs(amplitude) ** 2


def detector_counts(
    density: np.ndarray,
    *,
    rng: np.random.Generator | int | None = None,
    peak_counts: float = DEFAULT_PEAK_COUNTS,
    background: float = DEFAULT_BACKGROUND,
    beam_stop_px: float = DEFAULT_BEAM_STOP_PX,
    noise: bool = True,
) -> np.ndarray:
    """Detector image of the morphology's scattering: float32 counts (see the module docstring).

    ``noise=False`` gives the expected counts instead of a Poisson draw.
    """
    expected = intensity(density)
    top = expected.max()
    expected = expected * (peak_counts / top if top > 0 else 0.0) + background
    if noise:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        counts = rng.poisson(expected).astype(np.float64)
    else:
        counts = expected
    counts[beam_stop_mask(counts.shape[0], beam_stop_px)] = 0.0
    return counts.astype(np.float32)


def log_scale(counts: np.ndarray) -> np.ndarray:
    """Counts to [0, 1]: ``log1p(I) / log1p(max I)``; negatives (masked pixels) and NaN count as 0."""
    counts = np.nan_to_num(np.asarray(counts, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    counts = np.clip(counts, 0, None)
    top = np.log1p(counts.max())
    if top == 0:
        return np.zeros(counts.shape, np.float32)
    return (np.log1p(counts) / top).astype(np.float32)


def saxs_dihedral(pattern: np.ndarray, t: int) -> np.ndarray:
    """The pattern of a morphology transformed by ``fewshot.symmetry.dihedral(., t)``.

    Rotating or flipping the sample rotates or flips q about q = 0, which sits
    at pixel ``N // 2``, not at the array's centre ``(N - 1) / 2``: the same
    array operation followed by the roll that brings q = 0 back in place is exact.
    """
    from ..fewshot.symmetry import dihedral

    size = pattern.shape[-1]
    centre = np.zeros((size, size), bool)
    centre[size // 2, size // 2] = True
    y, x = np.argwhere(dihedral(centre, t))[0]
    return np.roll(dihedral(pattern, t), (size // 2 - y, size // 2 - x), axis=(-2, -1))
