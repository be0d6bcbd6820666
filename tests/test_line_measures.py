"""The image features' line block (fewshot.line_measures) on constructed line images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire_ssl.fewshot.line_measures import (
    MEASURES,
    POLARITIES,
    SCALES,
    line_features,
    line_masks,
    line_names,
    mask_measures,
)
from napari_nanowire_ssl.fewshot.texture import shrink

SIDE = 256


def ground(seed: int = 0) -> np.ndarray:
    """A flat bright ground with a little noise, in [0, 1]."""
    return 0.8 + np.random.default_rng(seed).normal(0, 0.02, (SIDE, SIDE))


def measured(image: np.ndarray, sigma: float = 1.0, polarity: str = "dark") -> dict[str, float]:
    return dict(zip(MEASURES, mask_measures(*line_masks(image, sigma)[polarity])))


def test_one_straight_dark_line_measures_as_worked_out_by_hand():
    image = ground()
    image[119:122] = 0.3  # a 3 px dark line across the image
    m = measured(image)
    length = np.expm1(m["mean_cluster_length"])  # one cluster: its length is the whole length
    assert 245 <= length <= 256  # the skeleton ends a pixel or two short of the borders
    assert m["length"] == pytest.approx(np.log1p(length / SIDE ** 2 * 1e4))
    assert m["clusters"] == pytest.approx(np.log1p(1.0)) and m["largest_share"] == pytest.approx(1.0)
    assert m["largest_extent"] > 0.95 and m["branch_pixels"] == 0
    assert m["end_pixels"] == pytest.approx(2 / length * 100)
    assert m["order"] > 0.999 and m["local_order"] > 0.999
    assert 0.009 < m["covered"] < 0.02  # about 3 rows of 256


def test_crossing_lines_branch_and_cancel_the_global_order_but_not_the_local_one():
    image = ground()
    image[119:122] = 0.3
    image[:, 119:122] = 0.3
    m = measured(image)
    assert m["clusters"] == pytest.approx(np.log1p(1.0)) and m["branch_pixels"] > 0
    assert m["order"] < 0.05  # two equal, perpendicular lines: <exp(2i theta)> = 0
    assert m["local_order"] > 0.9  # most 32 px windows see one of the lines only


def test_parallel_lines_are_counted_and_ordered():
    image = ground()
    for row in range(10, SIDE, 30):
        image[row:row + 3] = 0.3
    m = measured(image)
    assert m["clusters"] == pytest.approx(np.log1p(9)) and m["largest_share"] == pytest.approx(1 / 9, rel=0.02)
    assert m["order"] > 0.999


def test_noise_gives_no_wires_and_round_blobs_only_short_fragments():
    assert measured(ground(), 2.0)["covered"] == 0 and measured(ground(), 1.0)["covered"] < 0.001
    blobs, line = ground(), ground()
    rows, cols = np.mgrid[:SIDE, :SIDE]
    for cy, cx in np.random.default_rng(1).integers(10, SIDE - 10, (30, 2)):
        blobs[(rows - cy) ** 2 + (cols - cx) ** 2 <= 9] = 0.3
    line[119:122] = 0.3
    assert np.expm1(measured(blobs)["mean_cluster_length"]) < 10 < 200 < np.expm1(measured(line)["mean_cluster_length"])
    assert measured(blobs)["order"] < 0.1


def test_a_bright_line_measures_as_the_dark_line_of_the_negated_image():
    image = ground()
    image[60:63, 20:200] = 0.3
    image[:, 150:152] = 0.5
    for sigma in (1.0, 2.0):  # (not 1 - image: the sampled kernels' response to a constant is not exactly 0)
        (mask, strength, angle), (mask_n, strength_n, angle_n) = line_masks(image, sigma)["dark"], \
            line_masks(-image, sigma)["bright"]
        assert (mask == mask_n).all() and mask.any()
        np.testing.assert_allclose(strength, strength_n, atol=1e-12)
        np.testing.assert_allclose(np.exp(2j * angle), -np.exp(2j * angle_n), atol=1e-9)  # the other eigenvector
        np.testing.assert_allclose(mask_measures(mask, strength, angle), mask_measures(mask_n, strength_n, angle_n))


def test_line_vector_layout_scales_and_polarities():
    image = ground()
    image[119:122] = 0.3
    image[30:200, 40:42] = 0.95
    values = line_features(image, normalized=True)
    names = line_names()
    assert values.shape == (len(names),) == (len(SCALES) * len(POLARITIES) * len(MEASURES),)
    assert names[0] == "lines_dark_s1_covered" and names[-1] == "lines_bright_s4_strength"
    start = names.index("lines_dark_s4_covered")  # sigma 4 runs at sigma 2 on the image shrunk twice
    np.testing.assert_allclose(values[start:start + len(MEASURES)],
                               mask_measures(*line_masks(shrink(image, 2), 2.0)["dark"]))
    np.testing.assert_allclose(values[:len(MEASURES)], list(measured(image).values()))
    assert np.isfinite(line_features(np.full((64, 64), 0.5), normalized=True)).all()
