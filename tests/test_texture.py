"""Classical texture statistics (fewshot.texture) against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire_ssl.fewshot.texture import (
    FILTERS,
    LBP_BINS,
    LBP_RADII,
    SIGMAS,
    STATISTICS,
    filter_responses,
    lbp_histogram,
    peer_features,
    peer_names,
    rich_responses,
    shrink,
    shrink_factor,
    texture_features,
    texture_names,
)


def test_ridge_response_on_a_dark_gaussian_line_matches_the_formula():
    # I(y) = 1 - exp(-y^2 / 2 s0^2) smoothed by sigma: 1 - (s0 / S) exp(-y^2 / 2 S^2), S^2 = s0^2 + sigma^2;
    # its second derivative across the line at the centre is s0 / S^3, along it 0; scale-normalised by sigma^2.
    s0, sigma = 2.0, 2.0
    y = np.arange(201) - 100.0
    image = np.tile(1 - np.exp(-y ** 2 / (2 * s0 ** 2)), (64, 1)).T
    smooth, gradient, log, ridge = filter_responses(image, sigma)
    big_s = np.hypot(s0, sigma)
    assert ridge[100, 32] == pytest.approx(sigma ** 2 * s0 / big_s ** 3, rel=3e-3)  # sampled kernels: ~0.1 % off
    assert log[100, 32] == pytest.approx(sigma ** 2 * s0 / big_s ** 3, rel=3e-3)  # the other curvature is 0
    assert smooth[100, 32] == pytest.approx(1 - s0 / big_s, rel=1e-3)
    assert gradient[100, 32] == pytest.approx(0, abs=1e-9)  # the centre of a symmetric profile is flat
    flat = filter_responses(np.full((40, 40), 0.3), 1.0)  # sampled second-derivative kernels sum to ~1e-4, not 0
    assert all(np.allclose(r, 0, atol=1e-4) for r in flat[1:]) and np.allclose(flat[0], 0.3)
    rich, order = rich_responses(image, sigma)
    np.testing.assert_allclose(rich[3], ridge)  # the dark-line eigenvalue is the peer's ridge filter
    assert abs(rich[4][100, 32]) < 1e-3 * rich[3][100, 32]  # no bright line: the other eigenvalue is ~0
    # Gradients all across the line (along y): perfectly ordered, and the neighbourhood perfectly line-like.
    assert order == pytest.approx(1.0, abs=1e-6) and rich[5][96, 32] == pytest.approx(1.0, abs=1e-6)


def test_lbp_of_a_checkerboard_is_half_all_ones_and_half_all_zeros():
    # Bright pixel: its 4 edge neighbours are dark and its diagonal samples (bilinear, 0.5 + 0.086 = 0.59)
    # are darker too -> code 0. Dark pixel: every neighbour sample is brighter -> 8 ones -> code 8.
    board = (np.indices((100, 100)).sum(0) % 2).astype(float)
    hist = lbp_histogram(board)
    assert hist.shape == (LBP_BINS,) and hist.sum() == pytest.approx(1)
    assert hist[0] == pytest.approx(0.5, abs=0.03) and hist[8] == pytest.approx(0.5, abs=0.03)


def test_texture_vector_layout_and_invariances():
    rng = np.random.default_rng(0)
    image = rng.random((128, 128)).astype(np.float32)
    peer = peer_features(image)
    assert peer.shape == (len(peer_names()),) == (42,) and peer_names()[-1] == f"lbp_r1_{LBP_BINS - 1}"
    values = texture_features(image)
    names = texture_names()
    n = len(SIGMAS) * (len(FILTERS) * len(STATISTICS) + 1) + len(LBP_RADII) * LBP_BINS
    assert values.shape == (n,) == (len(names),) == (185,)
    assert names[0] == "gaussian_s1_mean" and names[-1] == f"lbp_r4_{LBP_BINS - 1}"
    np.testing.assert_allclose(values[-3 * LBP_BINS:-2 * LBP_BINS], peer[-LBP_BINS:])  # the same radius-1 LBP
    # Percentile-normalised: scaling the intensities changes nothing; nor does a quarter turn
    # (whole-image statistics of isotropic filters; the shrinking blocks turn with the image).
    np.testing.assert_allclose(texture_features(image * 7 + 3), values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(texture_features(np.rot90(image)), values, rtol=0.05, atol=2e-3)
    normalized = (image - image.min()) / (image.max() - image.min())
    np.testing.assert_allclose(texture_features(normalized, normalized=True)[-LBP_BINS:].sum(), 1.0)


def test_coarse_scales_run_on_the_shrunk_image():
    np.testing.assert_array_equal(shrink(np.arange(20.0).reshape(4, 5), 2), [[3.0, 5.0], [13.0, 15.0]])
    assert [shrink_factor(s, (512, 512)) for s in SIGMAS] == [1, 1, 2, 4, 8]
    assert [shrink_factor(s, (64, 100)) for s in SIGMAS] == [1, 1, 2, 2, 2]  # at least 32 px left
    # A coarse statistic seen on the shrunk image is close to the same filter on the full image.
    y = np.arange(256.0)
    stripes = np.tile(0.5 + 0.5 * np.cos(2 * np.pi * y / 64), (256, 1)).T  # 32 px wide dark / bright bands
    full, _ = rich_responses(stripes, 8.0)
    coarse, _ = rich_responses(shrink(stripes, 4), 2.0)
    assert coarse[3].max() == pytest.approx(full[3].max(), rel=0.05)
