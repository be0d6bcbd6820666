"""Building blocks of a pretraining corpus: several scales of large micrographs, varied synthetic images.

The pretraining loop draws windows in proportion to image area at the
images' own resolution. A large micrograph seen only at its native scale
teaches the encoder one magnification; :func:`scale_crops` adds random crops
of it shrunk 2x and 4x (one field of view per crop, resized with area
averaging, as a lower magnification would record it). :func:`varied_synthetic`
draws generator images with widely spread geometry and imaging parameters,
so that the synthetic minority of a corpus is not one style.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import NanowireSSLError

SHRINK_FACTORS = (2, 4)


def scale_crops(image: np.ndarray, rng: np.random.Generator, *, side: int = 256,
                factors: tuple[int, ...] = SHRINK_FACTORS, per_factor: int = 4) -> list[np.ndarray]:
    """Random ``factor * side`` px crops of ``image`` shrunk ``factor`` times to ``side`` px (area averaging).

    Factors whose crop does not fit in the image are skipped, so a small
    image gives nothing. Returns float32 arrays in the image's own range.
    """
    if image.ndim != 2:
        raise NanowireSSLError(f"scale crops need a 2D image, got shape {image.shape}")
    h, w = image.shape
    crops = []
    for factor in factors:
        big = factor * side
        if big > min(h, w):
            continue
        for _ in range(per_factor):
            y, x = int(rng.integers(0, h - big + 1)), int(rng.integers(0, w - big + 1))
            window = torch.from_numpy(np.ascontiguousarray(image[y:y + big, x:x + big], dtype=np.float32))
            crops.append(F.avg_pool2d(window[None, None], factor)[0, 0].numpy())
    return crops


def varied_synthetic(n: int, *, size: int = 384, seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` generator images, morphologies in turn, each with its own random widths, lengths,
    curvature, contrast, background, illumination, film, blur and dose (ranges well beyond the defaults)."""
    from ..synth.generator import CLASSES, generate

    rng = np.random.default_rng(seed)
    scale = size / 256
    for i in range(n):
        width = float(rng.uniform(1.5, 12.0)) * scale
        params = {
            "width": (width, width * float(rng.uniform(1.0, 1.8))),
            "curvature": float(rng.uniform(0.0, 1.2)),
            "contrast": float(rng.uniform(0.15, 0.9)),
            "background": float(rng.uniform(0.3, 0.9)),
            "illumination": float(rng.uniform(0.0, 0.4)),
            "film": float(rng.uniform(0.0, 0.2)),
            "grain": float(rng.uniform(0.5, 3.0)) * scale,
            "blur": float(rng.uniform(0.3, 2.5)) * scale,
            "dose": float(np.exp(rng.uniform(np.log(30), np.log(3000)))),
        }
        morphology = CLASSES[i % len(CLASSES)]
        try:
            sample = generate(morphology, size=size, seed=int(rng.integers(2**31)), **params)
        except NanowireSSLError:  # some draws are impossible (say, very wide wires that must not touch)
            sample = generate(morphology, size=size, seed=int(rng.integers(2**31)))
        yield sample.image
