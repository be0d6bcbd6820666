"""Pretraining-corpus building blocks: shrunk crops of large micrographs, varied synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.ssl.corpus import scale_crops, varied_synthetic


def test_scale_crops_average_blocks_and_skip_factors_that_do_not_fit():
    image = np.arange(600 * 700, dtype=np.float32).reshape(600, 700)  # a ramp: block means are exact
    crops = scale_crops(image, np.random.default_rng(0), side=100, factors=(2, 4, 7), per_factor=3)
    assert len(crops) == 6 and all(c.shape == (100, 100) and c.dtype == np.float32 for c in crops)  # 700 > 600
    # A 2x shrunk crop of the ramp: pixel (i, j) is the mean of a 2 x 2 block, so a step of 2 rows is 2 * 700.
    for crop in crops[:3]:
        assert np.allclose(np.diff(crop, axis=0), 1400) and np.allclose(np.diff(crop, axis=1), 2)
    for crop in crops[3:]:
        assert np.allclose(np.diff(crop, axis=0), 2800) and np.allclose(np.diff(crop, axis=1), 4)
    assert scale_crops(np.zeros((300, 300), np.float32), np.random.default_rng(0), side=256) == []
    with pytest.raises(NanowireSSLError, match=r"scale crops need a 2D image, got shape \(2, 64, 64\)"):
        scale_crops(np.zeros((2, 64, 64)), np.random.default_rng(0))


def test_varied_synthetic_images_differ_in_style_and_are_reproducible():
    images = list(varied_synthetic(4, size=96, seed=3))
    again = list(varied_synthetic(4, size=96, seed=3))
    assert len(images) == 4 and all(im.shape == (96, 96) for im in images)
    assert all(np.array_equal(a, b) for a, b in zip(images, again))
    spreads = [float(im.std()) for im in images]
    assert max(spreads) > 1.3 * min(spreads)  # contrast, noise and film vary from image to image
