"""Classical texture statistics of a whole micrograph: pooled multiscale filters and LBP histograms.

Two sets: the classical peer's (what a user would otherwise try: a
standardised logistic regression on them; benchmarks print it beside the
plugin), and the richer texture block of the image features the few-shot
head sees (:mod:`.features`). Both need no encoder and describe contrast,
edges and lines at several widths, which transfers between microscopes
better than an encoder trained elsewhere.

The peer's values (:func:`peer_features`, 42): per image, after percentile
normalisation to [0, 1], for each scale sigma in :data:`PEER_SIGMAS` px four
filter responses (Gaussian smoothing, gradient magnitude, scale-normalised
Laplacian of Gaussian, and the larger eigenvalue of the scale-normalised
Hessian, large on a dark line of width about 2 sigma) pooled by mean and
standard deviation over pixels (32 values), then the normalised histogram of
rotation-invariant uniform local binary patterns (8 neighbours at radius 1:
10 bins).

The plugin's texture block (:func:`texture_features`, 185 values) sees more
and pools so that a pattern covering a small part of the image still counts:
scales :data:`SIGMAS`; both Hessian eigenvalues (dark and bright lines) and
the coherence of the structure tensor (how line-like the neighbourhood is)
besides smoothing, gradient and Laplacian; pooled by mean, standard deviation
and the 10th, 50th and 90th percentiles (sparse wires on an empty ground move
the 90th percentile of a line filter, hardly its mean); the global
orientation order of the gradients per scale (aligned wires vs random ones);
LBP histograms at radii 1, 2 and 4. Whole-image statistics do not depend on
orientation, and the fine filters run at full resolution so 2-3 px wires
count; from sigma 4 on, the image is first shrunk sigma/2 times by block means
(:func:`shrink_factor`) and filtered at sigma 2, which keeps the cost of the
block below one encoder pass of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..io.normalize import normalize

PEER_SIGMAS = (1.0, 2.0, 4.0, 8.0)
PEER_FILTERS = ("gaussian", "gradient", "log", "ridge")
SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)
FILTERS = ("gaussian", "gradient", "log", "dark_ridge", "bright_ridge", "coherence")
STATISTICS = ("mean", "std", "p10", "p50", "p90")
LBP_POINTS = 8
LBP_RADII = (1, 2, 4)
LBP_BINS = LBP_POINTS + 2  # "uniform" patterns 0..P, and all non-uniform ones
MIN_SHRUNK_SIDE = 32
TEXTURE = (f"filters {'+'.join(FILTERS)} at sigma {'/'.join(f'{s:g}' for s in SIGMAS)} (on the image shrunk "
           f"sigma/2 times from 4) {'+'.join(STATISTICS)}, gradient order; "
           f"LBP P={LBP_POINTS} R={'/'.join(map(str, LBP_RADII))} uniform histograms")


def texture_names() -> list[str]:
    """Names of the values of :func:`texture_features`, in order."""
    return ([f"{f}_s{s:g}_{stat}" for s in SIGMAS for f in FILTERS for stat in STATISTICS]
            + [f"order_s{s:g}" for s in SIGMAS]
            + [f"lbp_r{r}_{k}" for r in LBP_RADII for k in range(LBP_BINS)])


def peer_names() -> list[str]:
    """Names of the values of :func:`peer_features`, in order."""
    return ([f"{f}_s{s:g}_{stat}" for s in PEER_SIGMAS for f in PEER_FILTERS for stat in ("mean", "std")]
            + [f"lbp_r1_{k}" for k in range(LBP_BINS)])


def hessian(x: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The larger and the smaller eigenvalue of the scale-normalised Hessian, and the angle (radians)
    of the larger one's eigenvector from the column axis."""
    hyy = ndimage.gaussian_filter(x, sigma, order=(2, 0))
    hxx = ndimage.gaussian_filter(x, sigma, order=(0, 2))
    hxy = ndimage.gaussian_filter(x, sigma, order=(1, 1))
    mean, root = (hxx + hyy) / 2, np.sqrt(((hxx - hyy) / 2) ** 2 + hxy ** 2)
    return (mean + root) * sigma ** 2, (mean - root) * sigma ** 2, 0.5 * np.arctan2(2 * hxy, hxx - hyy)


def filter_responses(image: np.ndarray, sigma: float) -> list[np.ndarray]:
    """The :data:`PEER_FILTERS` responses of a [0, 1] ``image`` at ``sigma`` (float64, same shape)."""
    x = np.asarray(image, dtype=np.float64)
    smooth = ndimage.gaussian_filter(x, sigma)
    gradient = ndimage.gaussian_gradient_magnitude(x, sigma) * sigma
    log = ndimage.gaussian_laplace(x, sigma) * sigma ** 2
    return [smooth, gradient, log, hessian(x, sigma)[0]]


def rich_responses(image: np.ndarray, sigma: float, hessian_at_sigma=None) -> tuple[list[np.ndarray], float]:
    """(the :data:`FILTERS` responses at ``sigma``, the orientation order of the gradients in [0, 1]);
    ``hessian_at_sigma``: :func:`hessian` of the image at ``sigma``, when computed already."""
    x = np.asarray(image, dtype=np.float64)
    smooth = ndimage.gaussian_filter(x, sigma)
    gy = ndimage.gaussian_filter(x, sigma, order=(1, 0))
    gx = ndimage.gaussian_filter(x, sigma, order=(0, 1))
    gradient = np.hypot(gx, gy) * sigma
    log = ndimage.gaussian_laplace(x, sigma) * sigma ** 2
    dark, bright, _ = hessian(x, sigma) if hessian_at_sigma is None else hessian_at_sigma
    jxx, jyy, jxy = (ndimage.gaussian_filter(v, 2 * sigma) for v in (gx * gx, gy * gy, gx * gy))
    trace = jxx + jyy
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (trace + 1e-12)
    order = float(np.hypot((jxx - jyy).mean(), 2 * jxy.mean()) / (trace.mean() + 1e-12))
    return [smooth, gradient, log, dark, bright, coherence], order


def lbp_histogram(image: np.ndarray, radius: int = 1) -> np.ndarray:
    """Normalised histogram (:data:`LBP_BINS` bins) of the uniform LBP codes of a [0, 1] image."""
    from skimage.feature import local_binary_pattern

    quantised = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    codes = local_binary_pattern(quantised, LBP_POINTS, radius, method="uniform")
    hist = np.bincount(codes.astype(int).ravel(), minlength=LBP_BINS)[:LBP_BINS]
    return hist / max(hist.sum(), 1)


def unit_image(image, name: str, normalized: bool) -> np.ndarray:
    """float64 pixels in [0, 1]: ``image`` as it is when ``normalized``, else percentile-normalised."""
    return np.asarray(image, dtype=np.float64) if normalized else normalize(image, name=name).astype(np.float64)


def peer_features(image: np.ndarray, *, name: str = "image", normalized: bool = False) -> np.ndarray:
    """The classical peer's 42 values of one 2D image (see the module docstring), float64."""
    x = unit_image(image, name, normalized)
    values = [v for sigma in PEER_SIGMAS for r in filter_responses(x, sigma) for v in (r.mean(), r.std())]
    return np.concatenate([values, lbp_histogram(x, 1)])


def shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor`` x ``factor`` blocks (the image cropped to whole blocks)."""
    if factor == 1:
        return image
    h, w = (d // factor * factor for d in image.shape)
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def shrink_factor(sigma: float, shape) -> int:
    """How many times the image is shrunk before filtering at ``sigma``: sigma / 2 from sigma 4 on (the
    filters then run at sigma 2, several times faster), keeping at least :data:`MIN_SHRUNK_SIDE` px."""
    return int(max(1, min(sigma // 2, min(shape) // MIN_SHRUNK_SIDE)))


@dataclass(frozen=True)
class Scale:
    """One scale of a [0, 1] image as the texture and line blocks filter it: ``image`` is the image
    shrunk by :func:`shrink_factor`, filtered at ``sigma`` px of it; ``hessian`` of that image there."""

    sigma: float
    image: np.ndarray
    hessian: tuple[np.ndarray, np.ndarray, np.ndarray]


def scale_space(x: np.ndarray, sigmas=SIGMAS) -> dict[float, Scale]:
    """The :class:`Scale` of a [0, 1] float64 image at each of ``sigmas``, computed once for both blocks."""
    out = {}
    for sigma in sigmas:
        factor = shrink_factor(sigma, x.shape)
        shrunk = shrink(x, factor)
        out[sigma] = Scale(sigma / factor, shrunk, hessian(shrunk, sigma / factor))
    return out


def texture_features(image: np.ndarray, *, name: str = "image", normalized: bool = False,
                     scales: dict[float, Scale] | None = None) -> np.ndarray:
    """The 185 values of the plugin's texture block of one 2D image (see the module docstring), float64.

    ``normalized``: the image is already scaled to [0, 1] (a window of a
    normalised image): used as it is. ``scales``: its :func:`scale_space`, when computed already.
    """
    x = unit_image(image, name, normalized)
    scales = scale_space(x) if scales is None else scales
    pooled, orders = [], []
    for sigma in SIGMAS:
        scale = scales[sigma]
        responses, order = rich_responses(scale.image, scale.sigma, scale.hessian)
        orders.append(order)
        for r in responses:
            p10, p50, p90 = np.percentile(r, (10, 50, 90))
            pooled += [r.mean(), r.std(), p10, p50, p90]
    return np.concatenate([pooled, orders, *(lbp_histogram(x, r) for r in LBP_RADII)])
