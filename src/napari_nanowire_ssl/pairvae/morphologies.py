"""Block-copolymer-like morphologies: the real-space half of the synthetic SAXS/SEM pairs.

Each morphology is a smooth order-parameter field ``psi(r)`` thresholded so a
chosen volume fraction ``f`` of the pixels is block A (``True``):

- ``lamellae``: one plane wave ``cos(2 pi n.r / P)``, ``f`` 0.4-0.6 (symmetric);
- ``cylinders_side_on``: the same stripes with a thin minority, ``f`` 0.2-0.32
  (cylinders lying in the plane project to stripes);
- ``cylinders_end_on``: three waves at 120 degrees, ``f`` 0.2-0.3: hexagonally
  packed dots whose first-order (10) spacing is ``P`` (six peaks at +-k);
- ``spheres``: two waves at 90 degrees (a BCC [100] projection, square
  lattice), small dots ``f`` 0.08-0.15 with stronger positional disorder;
- ``disordered``: a Gaussian random field whose spectrum is a ring at
  ``|q| = 1/P`` (Brazovskii-like, no orientation), ``f`` 0.35-0.5: the
  bicontinuous look of gyroid-like or quenched disordered films.

The ordered phases get grains (a Voronoi tiling of 1-3 grains, each with its
own orientation and a few percent of period change), undulations (a smooth
random displacement field ``u(r)`` shifts the phase of wave ``k`` by
``2 pi k.u``) and edge dislocations: adding ``+-atan2(y - y0, x - x0)`` to a
wave's phase is a phase singularity, i.e. a dislocation, at ``(y0, x0)``.
The three hexagonal wave vectors sum to zero, and so must their phases for
the maxima to be dots rather than a honeycomb: displacements keep that sum,
and a dislocation's winding is added to one wave and subtracted from another.

``P`` is in pixels; the scattering pattern of a ``size``-px image has its first
peak at ``size / P`` pixels from the centre (:mod:`.scattering`). Plain numpy
and scipy: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import NanowireSSLError

MORPHOLOGIES = ("lamellae", "cylinders_end_on", "cylinders_side_on", "spheres", "disordered")

# (low, high) volume fraction of block A, and the angles (degrees) of the lattice's waves.
_FRACTION = {
    "lamellae": (0.4, 0.6),
    "cylinders_side_on": (0.2, 0.32),
    "cylinders_end_on": (0.2, 0.3),
    "spheres": (0.08, 0.15),
    "disordered": (0.35, 0.5),
}
_WAVES = {"lamellae": (0,), "cylinders_side_on": (0,), "cylinders_end_on": (0, 120, 240), "spheres": (0, 90)}
# rms phase shift (radians) of the undulations
_PHASE_NOISE = {"lamellae": 0.6, "cylinders_side_on": 0.6, "cylinders_end_on": 0.4, "spheres": 0.9}
PERIOD_RANGE = (1 / 10, 1 / 5)  # default period as a fraction of the image side


@dataclass(frozen=True)
class Morphology:
    """A binary morphology (``True`` = block A) and the parameters that made it."""

    density: np.ndarray  # bool (size, size)
    kind: str
    period_px: float  # d-spacing of the first-order scattering peak
    volume_fraction: float  # measured fraction of True pixels
    angles_deg: tuple[float, ...]  # orientation of each grain (empty for disordered)
    n_dislocations: int


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise smoothed over ``sigma`` px."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _grain_labels(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """Voronoi tiling of the image into ``n`` grains (label per pixel)."""
    seeds = rng.uniform(0, size, (n, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    d = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    return d.argmin(axis=0)


def _ordered_field(kind, rng, size, period, angle, phase_noise, defects) -> tuple[np.ndarray, int]:
    """Sum of the kind's plane waves at orientation ``angle`` (degrees), with undulations and dislocations."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    thetas = [np.deg2rad(angle + w) for w in _WAVES[kind]]
    phases = rng.uniform(0, 2 * np.pi, len(thetas))
    if len(thetas) == 3:  # hexagonal: phases summing to 0 put the maxima on a triangular lattice
        phases[2] = -phases[0] - phases[1]
    extra = [np.zeros((size, size)) for _ in thetas]
    n_disl = 0
    if defects:
        ux, uy = (phase_noise * period / (2 * np.pi) * _smooth_noise(rng, size, size / 6) for _ in range(2))
        extra = [2 * np.pi * (np.cos(t) * ux + np.sin(t) * uy) / period for t in thetas]
        n_disl = int(rng.poisson(0.7))
        for _ in range(n_disl):
            y0, x0 = rng.uniform(0.15 * size, 0.85 * size, 2)
            winding = np.arctan2(yy - y0, xx - x0) * rng.choice((-1, 1))
            i = int(rng.integers(len(thetas)))
            extra[i] = extra[i] + winding
            if len(thetas) == 3:
                j = (i + 1) % 3
                extra[j] = extra[j] - winding
    field = np.zeros((size, size))
    for theta, phase, e in zip(thetas, phases, extra):
        field += np.cos(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase + e)
    return field, n_disl


def _disordered_field(rng, size, period) -> np.ndarray:
    """Gaussian random field with a ring spectrum at ``|q| = 1/period`` (relative width 0.15)."""
    q = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    ring = np.exp(-0.5 * ((q - 1 / period) / (0.15 / period)) ** 2)
    noise = np.fft.fft2(rng.standard_normal((size, size)))
    return np.real(np.fft.ifft2(noise * ring))


def generate_morphology(
    kind: str,
    size: int = 64,
    *,
    seed: int | np.random.Generator | None = None,
    period: float | None = None,
    angle: float | None = None,
    volume_fraction: float | None = None,
    grains: int | None = None,
    defects: bool = True,
) -> Morphology:
    """One random morphology of ``kind`` (see the module docstring).

    Unset parameters are drawn: ``period`` uniform in ``PERIOD_RANGE`` x
    ``size``, ``angle`` uniform, ``volume_fraction`` in the kind's range,
    ``grains`` 1 (60 %), 2 or 3. ``defects=False`` with ``grains=1`` gives
    a perfect lattice (tests compare its peaks to hand-computed positions).
    """
    if kind not in MORPHOLOGIES:
        raise NanowireSSLError(f"unknown morphology {kind!r}; choose one of {', '.join(MORPHOLOGIES)}")
    if size < 32:
        raise NanowireSSLError(f"morphology size must be at least 32 px, got {size}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    period = float(period if period is not None else rng.uniform(*PERIOD_RANGE) * size)
    if not 2 <= period <= size / 2:
        raise NanowireSSLError(f"period must be between 2 px and half the image ({size / 2:g} px), got {period:g}")
    f = float(volume_fraction if volume_fraction is not None else rng.uniform(*_FRACTION[kind]))
    if not 0 < f < 1:
        raise NanowireSSLError(f"volume fraction must be between 0 and 1, got {f}")
    angles: tuple[float, ...] = ()
    n_disl = 0
    if kind == "disordered":
        field = _disordered_field(rng, size, period)
    else:
        n_grains = int(grains if grains is not None else rng.choice((1, 2, 3), p=(0.6, 0.25, 0.15)))
        labels = _grain_labels(rng, size, n_grains)
        field = np.zeros((size, size))
        angle_list = []
        for g in range(n_grains):
            a = float(angle if angle is not None and g == 0 else rng.uniform(0, 180))
            grain_period = period * (rng.uniform(0.95, 1.05) if defects and g > 0 else 1.0)
            grain_field, k = _ordered_field(kind, rng, size, grain_period, a, _PHASE_NOISE[kind], defects)
            field[labels == g] = grain_field[labels == g]
            angle_list.append(a)
            n_disl += k
        angles = tuple(angle_list)
    density = field > np.quantile(field, 1 - f)
    return Morphology(density, kind, period, float(density.mean()), angles, n_disl)


def sem_image(density: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """A plausible SEM rendering of a morphology: float32 in [0, 1].

    Block A bright (as a stained or etched phase), a 0.5-px Gaussian probe
    blur and additive Gaussian noise (std 0.06); :func:`.data.binarize`
    (Otsu) recovers the morphology from it.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    image = 0.25 + 0.5 * ndimage.gaussian_filter(density.astype(np.float64), 0.5)
    image += rng.normal(0, 0.06, density.shape)
    return np.clip(image, 0, 1).astype(np.float32)
