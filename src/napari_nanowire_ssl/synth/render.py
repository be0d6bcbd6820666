"""Bright-field TEM image formation for a wire absorbance map.

Mass-thickness contrast: the transmitted intensity is
``background * illumination * film * exp(-k * absorbance)``, with ``k`` chosen
so the core of a single wire transmits ``1 - contrast`` of the background.
Overlapping wires are darker. The carbon film is fine-grained texture, the
illumination a smooth field (gradient plus low-frequency waves). The PSF is a
Gaussian; the detector adds Poisson shot noise at ``dose`` electrons per pixel
(for intensity 1) and Gaussian read noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Imaging:
    """Imaging conditions; lengths in pixels. ``dose=None`` switches shot noise off."""

    contrast: float = 0.55
    background: float = 0.7
    illumination: float = 0.15
    film: float = 0.06
    grain: float = 1.2
    blur: float = 1.0
    dose: float | None = 300.0
    read_noise: float = 0.015


def illumination_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A smooth field in about [-1, 1]: a linear gradient plus three waves of < 1.5 cycles per image."""
    h, w = shape
    y = np.linspace(-0.5, 0.5, h)[:, None]
    x = np.linspace(-0.5, 0.5, w)[None, :]
    phi = rng.uniform(0, 2 * math.pi)
    field = math.cos(phi) * x + math.sin(phi) * y
    for _ in range(3):
        fy, fx = rng.uniform(-1.5, 1.5, size=2)
        phase = rng.uniform(0, 2 * math.pi)
        u, v = 2 * math.pi * fy * y + phase, 2 * math.pi * fx * x
        # cos(u + v) = cos u cos v - sin u sin v: outer products, no full-size trig.
        field = field + (np.cos(u) * np.cos(v) - np.sin(u) * np.sin(v)) * rng.uniform(0.1, 0.3)
    return field / max(float(np.abs(field).max()), 1e-9)


def tem_image(absorbance: np.ndarray, rng: np.random.Generator, imaging: Imaging) -> np.ndarray:
    """Render ``absorbance`` (wire core = 1) as a noisy float32 TEM micrograph in [0, 1]."""
    shape = absorbance.shape
    k = -math.log(1.0 - imaging.contrast)
    intensity = np.exp(-k * absorbance.astype(np.float64))
    intensity *= imaging.background * (1.0 + imaging.illumination * illumination_field(rng, shape))
    if imaging.film > 0:
        texture = ndimage.gaussian_filter(rng.standard_normal(shape), imaging.grain)
        intensity *= 1.0 + imaging.film * texture / max(float(texture.std()), 1e-12)
    if imaging.blur > 0:
        intensity = ndimage.gaussian_filter(intensity, imaging.blur)
    np.clip(intensity, 0.0, None, out=intensity)
    if imaging.dose is not None:
        intensity = rng.poisson(intensity * imaging.dose) / imaging.dose
    if imaging.read_noise > 0:
        intensity = intensity + rng.normal(0.0, imaging.read_noise, size=shape)
    return np.clip(intensity, 0.0, 1.0).astype(np.float32)
