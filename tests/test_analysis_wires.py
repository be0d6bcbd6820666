"""Density, wire statistics and the morphology call on masks with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import line

from napari_nanowire_ssl.analysis.density import density, pixel_density
from napari_nanowire_ssl.analysis.morphology import morphology_call
from napari_nanowire_ssl.analysis.percolation import percolation
from napari_nanowire_ssl.analysis.wires import (
    AXIAL_STEP,
    CORNER,
    DIAGONAL_STEP,
    skeleton_length,
    width_map,
    wire_stats,
)
from napari_nanowire_ssl.errors import NanowireSSLError


def _lines(shape, segments) -> np.ndarray:
    m = np.zeros(shape, bool)
    for r0, c0, r1, c1 in segments:
        rr, cc = line(r0, c0, r1, c1)
        m[rr, cc] = True
    return m


# ---- density -------------------------------------------------------------


def test_pixel_density_counts_by_hand_with_roi_and_crop():
    m = np.zeros((10, 10), bool)
    m[2, 1:9] = True  # 8 pixels
    m[9, :] = True  # 10 pixels in the "banner" row
    assert pixel_density(m) == pytest.approx(18 / 100)
    assert pixel_density(m, crop_bottom=1) == pytest.approx(8 / 90)
    roi = np.zeros((10, 10), bool)
    roi[:5, :5] = True  # holds 4 wire pixels (row 2, cols 1..4)
    assert pixel_density(m, roi=roi) == pytest.approx(4 / 25)
    d = density(m, roi=roi, crop_bottom=1)
    assert (d.wire_pixels, d.region_pixels, d.wire_area_um2) == (4, 25, None)


def test_density_in_physical_units():
    m = np.zeros((100, 200), bool)
    m[50, :] = True
    d = density(m, pixel_size_nm=10.0, length_px=199.0)
    assert d.region_area_um2 == pytest.approx(1.0 * 2.0)  # 1 um x 2 um
    assert d.wire_area_um2 == pytest.approx(200 * 1e-4)
    assert d.length_per_area_um == pytest.approx(1.99 / 2.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"crop_bottom": 10}, {"crop_bottom": -1}, {"crop_bottom": 1.5}, {"roi": np.ones((3, 3))},
     {"roi": np.zeros((10, 10))}, {"pixel_size_nm": 0}, {"pixel_size_nm": "x"}],
)
def test_density_rejects_bad_region_or_pixel_size(kwargs):
    with pytest.raises(NanowireSSLError):
        density(np.ones((10, 10)), **kwargs)


# ---- length, width, ends, junctions ----------------------------------------


def test_straight_line_length_and_ends():
    m = np.zeros((20, 40), bool)
    m[7, 3:33] = True  # 30 pixels
    s = wire_stats(m)
    assert s.total_length_px == pytest.approx(29 * AXIAL_STEP)
    assert s.n_end_points == 2 and s.n_junctions == 0
    assert sorted(map(tuple, s.end_points)) == [(7, 3), (7, 32)]
    assert s.mean_width_px == pytest.approx(1.0)


def test_diagonal_line_length_counts_one_diagonal_weight_per_step():
    m = np.eye(25, dtype=bool)
    s = wire_stats(m)
    assert s.total_length_px == pytest.approx(24 * DIAGONAL_STEP)
    assert s.n_end_points == 2


def test_staircase_corners_are_not_counted_twice():
    m = np.zeros((5, 6), bool)
    m[1, 1:3] = True
    m[2, 2:4] = True  # (1,1) (1,2) (2,2) (2,3): three axial steps, no diagonal
    assert skeleton_length(m) == pytest.approx(3 * AXIAL_STEP)


def test_corner_between_axial_and_diagonal_step_is_corrected():
    m = np.zeros((5, 6), bool)
    m[1, 1] = m[1, 2] = m[2, 3] = True  # one axial step, one diagonal step, a corner at (1, 2)
    assert skeleton_length(m) == pytest.approx(AXIAL_STEP + DIAGONAL_STEP - CORNER)


@pytest.mark.parametrize("angle", [0, 10, 22.5, 30, 45, 60, 80, 100, 135, 170])
def test_digital_line_length_is_within_two_percent_at_any_angle(angle):
    """The plain 1 / sqrt(2) chain code is 8 % too long at 22.5 degrees."""
    from skimage.draw import line

    a = math.radians(angle)
    y0, x0 = round(150 - 100 * math.sin(a)), round(150 - 100 * math.cos(a))
    y1, x1 = round(150 + 100 * math.sin(a)), round(150 + 100 * math.cos(a))
    m = np.zeros((301, 301), bool)
    m[line(y0, x0, y1, x1)] = True
    assert skeleton_length(m) == pytest.approx(math.hypot(y1 - y0, x1 - x0), rel=0.021)


def test_bar_of_width_5_has_width_5_and_centre_line_length():
    m = np.zeros((60, 140), bool)
    m[20:25, 10:130] = True
    s = wire_stats(m)
    assert s.median_width_px == pytest.approx(5.0)
    assert abs(s.mean_width_px - 5.0) < 1.0
    assert 110 <= s.total_length_px <= 120
    assert s.n_end_points == 2 and s.n_junctions == 0


def test_spurs_from_a_bumpy_outline_are_pruned_and_short_wires_kept():
    m = np.zeros((40, 120), bool)
    m[18:25, 10:110] = True  # a bar 7 px wide
    m[14:18, 50:53] = True  # a bump on its edge: a spur in the raw skeleton
    m[33:36, 10:16] = True  # a short separate wire, shorter than twice the pruning length
    s = wire_stats(m)
    assert s.n_junctions == 0
    assert s.n_end_points == 4  # the bar's two ends and the short wire's two
    assert len(s.cluster_lengths_px) == 2 and min(s.cluster_lengths_px) > 0
    assert wire_stats(m, prune_px=0).n_junctions == 1  # unpruned: the bump's spur


@pytest.mark.parametrize("width", [1, 2, 3, 4, 6, 7])
def test_width_of_straight_bars_is_exact_for_odd_and_even_widths(width):
    m = np.zeros((60, 200), bool)
    m[20 : 20 + width, 10:190] = True
    s = wire_stats(m)
    assert s.median_width_px == width and wire_stats(m.T).median_width_px == width
    # the plain 2 * edt - 1 on the skeleton, which this replaced, is one pixel short for even widths
    edt = ndimage.distance_transform_edt(m)
    assert np.median(2 * edt[s.skeleton] - 1) == width - (1 - width % 2)


@pytest.mark.parametrize("width", [2, 3, 5, 6])
def test_width_of_diagonal_bars_is_within_a_tenth(width):
    yy, xx = np.mgrid[:200, :200]
    m = (np.abs(yy - xx) / np.sqrt(2) <= width / 2) & (yy > 20) & (yy < 180)
    digital = m.sum() / (159 * np.sqrt(2))  # the digital strip's own width: area / length along the diagonal
    assert wire_stats(m).median_width_px == pytest.approx(digital, rel=0.1)
    assert width_map(m)[~m].max() == 0


def test_plus_sign_has_four_ends_and_one_junction():
    m = np.zeros((41, 41), bool)
    m[20, 5:36] = True
    m[5:36, 20] = True
    s = wire_stats(m)
    assert s.n_end_points == 4 and s.n_junctions == 1
    assert np.allclose(s.junctions, [[20, 20]])
    assert s.total_length_px == pytest.approx(60 * AXIAL_STEP)


def test_cluster_lengths_follow_labels():
    m = np.zeros((30, 30), bool)
    m[5, 2:12] = True  # 9 long
    m[20, 2:28] = True  # 25 long
    r = percolation(m)
    s = wire_stats(m, labels=r.labels)
    assert sorted(s.cluster_lengths_px) == pytest.approx([9 * AXIAL_STEP, 25 * AXIAL_STEP])
    assert s.cluster_lengths_px[r.labels[20, 2] - 1] == pytest.approx(25 * AXIAL_STEP)


def test_labels_of_another_shape_are_refused():
    with pytest.raises(NanowireSSLError, match="labels"):
        wire_stats(np.ones((5, 5)), labels=np.ones((4, 5), np.int32))


def test_physical_units():
    m = np.zeros((20, 40), bool)
    m[5:8, 0:31] = True  # width 3, skeleton about 30 long
    s = wire_stats(m, pixel_size_nm=2.5)
    assert s.total_length_um == pytest.approx(s.total_length_px * 0.0025)
    assert s.mean_width_nm == pytest.approx(s.mean_width_px * 2.5)
    assert wire_stats(m).total_length_um is None


def test_empty_mask_has_no_wires():
    s = wire_stats(np.zeros((10, 10)))
    assert s.total_length_px == 0 and s.n_end_points == 0 and s.n_junctions == 0
    assert math.isnan(s.mean_width_px) and math.isnan(s.nematic_order)


# ---- orientation -------------------------------------------------------------


def test_parallel_horizontal_lines_have_order_one_and_director_zero():
    m = np.zeros((60, 80), bool)
    m[10::10, 5:75] = True
    s = wire_stats(m)
    assert s.nematic_order == pytest.approx(1.0)
    assert s.director_deg == pytest.approx(0.0, abs=1e-6)
    assert s.orientation_hist[0] == pytest.approx(s.total_length_px)


@pytest.mark.parametrize("angle", [30, 60, 100, 145])
def test_parallel_tilted_lines_give_their_angle(angle):
    a = math.radians(angle)
    segments = []
    for k in range(4):  # four parallel lines 40 px apart, 160 px long
        cy = 150 + (k - 1.5) * 40 * math.cos(a)
        cx = 150 + (k - 1.5) * 40 * math.sin(a)
        # Rows grow downwards: an angle counter-clockwise from +x goes up-right.
        segments.append((round(cy + 80 * math.sin(a)), round(cx - 80 * math.cos(a)),
                         round(cy - 80 * math.sin(a)), round(cx + 80 * math.cos(a))))
    s = wire_stats(_lines((300, 300), segments))
    assert s.nematic_order > 0.99
    assert s.director_deg == pytest.approx(angle, abs=1.0)


def test_lines_at_evenly_spread_angles_are_isotropic():
    segments = []
    for k in range(12):  # 12 angles, 15 degrees apart, separate centres
        a = math.radians(k * 15)
        cy, cx = 50 + (k % 4) * 100, 50 + (k // 4) * 100
        segments.append((round(cy - 40 * math.sin(a)), round(cx - 40 * math.cos(a)),
                         round(cy + 40 * math.sin(a)), round(cx + 40 * math.cos(a))))
    s = wire_stats(_lines((400, 300), segments))
    assert s.nematic_order < 0.2
    assert s.n_end_points == 24


# ---- morphology call -----------------------------------------------------------


def _cross(n=30):
    m = np.zeros((n, n), bool)
    m[n // 2, :] = m[:, n // 2] = True
    return m


def test_percolation_decides_network_or_dispersed():
    net = morphology_call(percolation(_cross()), 0.31)
    assert net.label == "network"
    assert str(net) == "network: percolates in both directions; density 0.31"
    short = np.zeros((30, 30), bool)
    short[5, 2:9] = True
    disp = morphology_call(percolation(short), 0.1)
    assert disp.label == "dispersed" and "does not percolate" in disp.reasons


def test_confident_singular_or_bundle_is_kept():
    call = morphology_call(percolation(_cross()), 0.3, {"bundle": 0.9, "network": 0.1})
    assert call.label == "bundle"
    unsure = morphology_call(percolation(_cross()), 0.3, {"bundle": 0.6, "network": 0.4})
    assert unsure.label == "network"


def test_disagreement_and_odd_density_are_reported():
    call = morphology_call(percolation(_cross()), 0.1, {"dispersed": 0.7, "network": 0.3})
    assert call.label == "network"
    assert any("disagrees" in r and "dispersed" in r for r in call.reasons)
    assert any("0.26-0.50" in r for r in call.reasons)
    agree = morphology_call(percolation(_cross()), 0.3, {"network": 0.8, "dispersed": 0.2})
    assert any("agrees" in r for r in agree.reasons) and len(agree.reasons) == 3


def test_spanning_one_direction_only_is_described_and_dispersed():
    m = np.zeros((30, 30), bool)
    m[3, :] = True
    m[6:, 20] = True  # touches the bottom only
    call = morphology_call(percolation(m), 0.1)
    assert call.label == "dispersed"
    assert call.reasons[0] == "spans left-right only"
    assert morphology_call(percolation(m.T), 0.1).reasons[0] == "spans top-bottom only"
    assert morphology_call(percolation(m, criterion="lr"), 0.1).label == "network"


def test_spanning_both_ways_is_always_one_cluster():
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(200):
        m = rng.random((12, 12)) < 0.55
        for connectivity in (4, 8):
            r = percolation(m, connectivity=connectivity)
            assert r.percolates == (r.spans_lr and r.spans_tb)
            seen.add((r.spans_lr, r.spans_tb))
    assert seen == {(False, False), (True, False), (False, True), (True, True)}


@pytest.mark.parametrize("bad", [{"density": 1.5}, {"probabilities": {"network": 1.2}}])
def test_morphology_call_rejects_bad_numbers(bad):
    kwargs = {"density": 0.3, "probabilities": None, **bad}
    with pytest.raises(NanowireSSLError):
        morphology_call(percolation(_cross()), kwargs["density"], kwargs["probabilities"])


def test_width_map_in_bands_equals_the_whole_mask_at_once(monkeypatch):
    from napari_nanowire_ssl.analysis import wires

    rng = np.random.default_rng(0)
    m = ndimage.binary_opening(rng.random((90, 70)) < 0.4)
    m[30:52, :] = True  # a 22 px bar across the band boundaries at rows 32 and 48
    whole = wires.width_map(m)
    monkeypatch.setattr(wires, "WIDTH_BAND_ROWS", 16)
    np.testing.assert_array_equal(wires.width_map(m), whole)
    assert whole[40, 35] == 22
