"""What the wires of a whole micrograph measure, from a classical line mask: the image features' line block.

Morphology classes (one wire, dispersed wires, a network, a bundle) differ in
how much wire there is, how it connects and how it is aligned, not in the
texture of the ground it lies on. Pooled filter statistics mix both: a
mottled carbon film moves them as much as the wires do. This block measures
the wires themselves, on a mask any image gives without labels or models:

- **Line mask**, per scale sigma of :data:`SCALES` and per polarity (dark and
  bright wires): the line strength of the scale-normalised Hessian
  (``larger - |smaller|`` eigenvalue for dark lines, ``-smaller - |larger|`` for
  bright ones; a round blob, whose eigenvalues are alike, scores near 0),
  divided by a robust noise level of the image's own Hessian response
  (1.4826 x its median absolute deviation), hysteresis-thresholded at
  :data:`LOW` and :data:`HIGH` (8-connected), specks under ``MIN_AREA x sigma^2`` px dropped. The
  threshold follows each image's own noise and texture, so contrast and
  microscope do not move it. The scales are the texture block's
  (:func:`.texture.scale_space`: from sigma 4 on, filtered on the shrunk image), and so are the Hessians.
- **Measures** of the mask and its skeleton (:data:`MEASURES`, 11 per scale and
  polarity): covered fraction, wire length per area (the Vossepoel-Smeulders
  length of :mod:`..analysis.wires`), clusters per area, mean cluster length,
  the largest cluster's share of the length and its extent (1: it spans the
  image), branch and end pixels per length, the global nematic order of the
  Hessian's orientation on the skeleton, the mean local order in
  :data:`WINDOW` px windows (bundles are locally aligned, dispersed wires
  not), and the mean line strength on the skeleton. Counts and lengths are
  log-scaled (``log1p``).

Cost: a few tens of milliseconds for a 256 px image, far below one encoder pass.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .texture import Scale, hessian, scale_space, unit_image

SCALES = (1.0, 2.0, 4.0)
POLARITIES = ("dark", "bright")
LOW, HIGH = 2.0, 4.0  # hysteresis thresholds, in robust noise levels
MIN_AREA = 6.0  # specks smaller than MIN_AREA * sigma^2 px are not wires
MIN_NOISE = 1e-3  # floor of the noise level (flat images): a fraction of the [0, 1] range
WINDOW = 32  # px of the filtered image, for the local order
WINDOW_MIN_PIXELS = 8  # skeleton pixels a window needs to count in the local order
MEASURES = ("covered", "length", "clusters", "mean_cluster_length", "largest_share", "largest_extent",
            "branch_pixels", "end_pixels", "order", "local_order", "strength")
LINES = (f"line masks (Hessian line strength / robust noise, hysteresis {LOW:g}-{HIGH:g}) at sigma "
         f"{'/'.join(f'{s:g}' for s in SCALES)}, dark and bright: {'+'.join(MEASURES)}")
_EIGHT = np.ones((3, 3), dtype=bool)


def line_names() -> list[str]:
    """Names of the values of :func:`line_features`, in order."""
    return [f"lines_{p}_s{s:g}_{m}" for s in SCALES for p in POLARITIES for m in MEASURES]


def line_masks(image: np.ndarray, sigma: float,
               hessian_at_sigma=None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per polarity, ``(mask, strength in noise levels, Hessian orientation)`` of a [0, 1] ``image`` at
    ``sigma``; ``hessian_at_sigma``: :func:`.texture.hessian` of the image there, when computed already."""
    larger, smaller, angle = (hessian(np.asarray(image, dtype=np.float64), sigma) if hessian_at_sigma is None
                              else hessian_at_sigma)
    out = {}
    for polarity in POLARITIES:
        response, other = (larger, smaller) if polarity == "dark" else (-smaller, -larger)
        noise = max(1.4826 * float(np.median(np.abs(response - np.median(response)))), MIN_NOISE)
        strength = np.maximum(response - np.abs(other), 0.0) / noise
        # Hysteresis: the 8-connected regions above LOW that reach HIGH somewhere and are not specks.
        labels, n = ndimage.label(strength > LOW, _EIGHT)
        flat = labels.ravel()
        keep = ((np.bincount(flat, weights=(strength > HIGH).ravel(), minlength=n + 1) > 0)
                & (np.bincount(flat, minlength=n + 1) >= MIN_AREA * sigma ** 2))
        keep[0] = False
        out[polarity] = (keep[labels], strength, angle)
    return out


def mask_measures(mask: np.ndarray, strength: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """The :data:`MEASURES` of one line mask (all 0 without wires)."""
    from skimage.morphology import skeletonize

    from ..analysis.wires import length_weights

    skeleton = skeletonize(mask)
    if not skeleton.any():
        return np.zeros(len(MEASURES))
    h, w = mask.shape
    weight = length_weights(skeleton)
    total = float(weight.sum())
    labels, n = ndimage.label(skeleton, _EIGHT)
    lengths = np.bincount(labels.ravel(), weights=weight.ravel(), minlength=n + 1)[1:]
    rows, cols = np.nonzero(labels == int(np.argmax(lengths)) + 1)
    extent = max((np.ptp(rows) + 1) / h, (np.ptp(cols) + 1) / w)
    neighbours = ndimage.convolve(skeleton.astype(np.int32), _EIGHT.astype(np.int32), mode="constant") - 1
    branch, ends = ((neighbours >= 3) & skeleton).sum(), ((neighbours == 1) & skeleton).sum()
    ys, xs = np.nonzero(skeleton)
    phase = np.exp(2j * angle[ys, xs])
    order = abs(phase.mean())
    wy, wx = h // WINDOW, w // WINDOW
    inside = (ys < wy * WINDOW) & (xs < wx * WINDOW)  # whole windows only
    window = (ys[inside] // WINDOW) * wx + xs[inside] // WINDOW
    counts = np.bincount(window, minlength=wy * wx)
    sums = np.abs(np.bincount(window, phase[inside].real, wy * wx)
                  + 1j * np.bincount(window, phase[inside].imag, wy * wx))
    full = counts >= WINDOW_MIN_PIXELS
    local = float((sums[full] / counts[full]).mean()) if full.any() else order
    return np.array([mask.mean(), np.log1p(total / (h * w) * 1e4), np.log1p(n / (h * w) * 65536),
                     np.log1p(lengths.mean()), lengths.max() / total, extent,
                     branch / total * 100, ends / total * 100, order, local, np.log1p(strength[skeleton].mean())])


def line_features(image: np.ndarray, *, name: str = "image", normalized: bool = False,
                  scales: dict[float, Scale] | None = None) -> np.ndarray:
    """The line block of one 2D image (:func:`line_names` order; see the module docstring), float64.

    ``normalized``: the image is already scaled to [0, 1] (a window of a normalised image): used
    as it is. ``scales``: its :func:`.texture.scale_space` (holding :data:`SCALES`), when computed already.
    """
    if scales is None:
        scales = scale_space(unit_image(image, name, normalized), SCALES)
    values = []
    for sigma in SCALES:
        scale = scales[sigma]
        masks = line_masks(scale.image, scale.sigma, scale.hessian)
        values += [mask_measures(*masks[p]) for p in POLARITIES]
    return np.concatenate(values)
