"""The wire graph on constructed masks: crossings give one 4-way junction, branch
lengths, widths and tortuosity, wires traced through junctions, graph metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_nanowire_ssl.analysis import analyse_mask
from napari_nanowire_ssl.analysis.network import (
    BRANCH_COLUMNS,
    STICK_PERCOLATION_CONSTANT,
    branch_table,
    degree_counts,
)
from napari_nanowire_ssl.analysis.wires import fill_small_holes, wire_stats


def capsule(mask, centre, angle_deg, length, width):
    """Draw a straight wire with round ends: pixels within width / 2 of a segment."""
    a = math.radians(angle_deg)
    d = np.array([-math.sin(a), math.cos(a)])  # rows grow downwards
    p0 = np.asarray(centre, float) - d * length / 2
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    v = np.stack([yy - p0[0], xx - p0[1]], axis=-1)
    t = np.clip(v @ d, 0, length)
    mask |= np.linalg.norm(v - t[..., None] * d, axis=-1) <= width / 2
    return mask


@pytest.mark.parametrize("width", [3, 5, 7, 9])
@pytest.mark.parametrize("angle", [30, 45, 60, 90])
def test_two_wires_crossing_give_one_four_way_junction(angle, width):
    m = np.zeros((200, 200), bool)
    capsule(m, (100, 100), 10, 150, width)
    capsule(m, (100, 100), 10 + angle, 150, width)
    g = wire_stats(m).graph
    assert len(g.junctions) == 1 and sorted(g.degree) == [1, 1, 1, 1, 4]
    assert np.allclose(g.junctions[0], [100, 100], atol=2.0)
    assert g.n_wires == 2  # the arms pair up straight across the crossing
    assert np.allclose(g.wire_lengths_px(), 150, rtol=0.05)  # the skeleton spans the segment


def test_one_pixel_holes_of_a_shallow_crossing_are_filled_before_skeletonizing():
    m = np.zeros((220, 220), bool)
    capsule(m, (110, 110), 10, 170, 3)
    capsule(m, (110, 110), 35, 170, 3)  # 25 degrees: two 2-pixel holes in the slits
    assert fill_small_holes(m).sum() == m.sum() + 4  # the default: holes up to (3 px)^2
    assert fill_small_holes(m, max_pixels=1).sum() == m.sum()
    g = wire_stats(m).graph
    assert len(g.junctions) == 1 and sorted(g.degree) == [1, 1, 1, 1, 4]
    notch = np.zeros((10, 10), bool)
    notch[0, :4] = notch[0, 5:] = notch[1, :] = True  # a 1-pixel gap on the border is no hole
    assert not fill_small_holes(notch, max_pixels=9)[0, 4]


def test_six_crossings_at_25_to_90_degrees_and_3_to_9_px_give_six_junctions():
    """The issue's case: the hand-written pixel code counted 11 junctions here."""
    m = np.zeros((420, 620), bool)
    cases = [(25, 5), (35, 9), (45, 3), (60, 7), (75, 4), (90, 9)]
    for k, (angle, width) in enumerate(cases):
        centre = (105 + 210 * (k // 3), 105 + 205 * (k % 3))
        capsule(m, centre, 15, 160, width)
        capsule(m, centre, 15 + angle, 160, width)
    row = analyse_mask(m).row
    assert row["n_junctions"] == 6
    assert row["n_end_points"] == 24
    assert row["n_wires"] == 12
    assert row["mean_degree"] == pytest.approx((24 * 1 + 6 * 4) / 30)
    assert row["n_graph_components"] == 6


def test_branch_table_of_a_plus_sign_in_physical_units():
    m = np.zeros((81, 81), bool)
    m[39:42, 0:81] = True  # 3 px wide, across the field
    m[10:71, 39:42] = True  # 61 px tall
    g = wire_stats(m).graph
    table = branch_table(g, pixel_size_nm=20.0)
    assert tuple(table) == BRANCH_COLUMNS
    assert g.n_branches == 4 and degree_counts(g) == {1: 4, 4: 1}
    # Each arm runs from the junction at (40, 40) to its end point, straight.
    assert np.allclose(table["tortuosity"], 1.0, atol=0.005)
    assert np.allclose(table["length_px"], table["end_to_end_px"], rtol=0.005)
    assert sorted(table["length_px"]) == pytest.approx([29, 29, 39, 39], abs=1.5)
    assert np.allclose(table["mean_width_px"], 2 * 2 - 1, atol=0.3)  # 2 * edt - 1 of a 3 px bar
    assert np.allclose(table["length_um"], table["length_px"] * 0.02)
    assert np.allclose(table["mean_width_nm"], table["mean_width_px"] * 20)
    assert table["current_fraction"] == [None] * 4
    assert len(set(table["wire"].tolist())) == 2


def test_tortuosity_of_a_bent_wire():
    m = np.zeros((100, 100), bool)
    m[20, 10:60] = True  # 50 px across, then 40 px down: an L
    m[20:60, 59] = True
    g = wire_stats(m, prune_px=2).graph
    assert g.n_branches == 1
    assert g.length_px[0] == pytest.approx(49 + 39, rel=0.02)
    assert g.tortuosity[0] == pytest.approx((49 + 39) / math.hypot(49, 39), rel=0.02)


def test_metrics_in_physical_units_and_stick_percolation_ratio():
    m = np.zeros((100, 200), bool)
    m[20:23, 10:110] = True
    m[60:63, 50:150] = True
    row = analyse_mask(m, pixel_size_nm=50.0).row
    assert row["n_wires"] == 2 and row["n_junctions"] == 0 and row["n_branches"] == 2
    length = row["mean_wire_length_px"]
    assert length == pytest.approx(97, abs=1.5)  # a skeleton stops about a half width short of each end
    assert row["stick_percolation_ratio"] == pytest.approx(2 / (100 * 200) * length**2 / STICK_PERCOLATION_CONSTANT)
    assert row["median_branch_length_um"] == pytest.approx(row["median_branch_length_px"] * 0.05)
    assert row["mean_wire_length_um"] == pytest.approx(length * 0.05)
    assert row["junction_density_per_um2"] == 0.0
    assert row["largest_component_length_fraction"] == pytest.approx(0.5, abs=0.01)
    assert row["median_tortuosity"] == pytest.approx(1.0, abs=0.005)
    assert row["median_branch_width_nm"] == pytest.approx(3 * 50, abs=50)
    plain = analyse_mask(m).row
    assert plain["junction_density_per_um2"] is None and plain["median_branch_length_um"] is None


def test_junction_density_per_um2():
    m = np.zeros((100, 100), bool)
    m[49:52, :] = True
    m[:, 49:52] = True
    row = analyse_mask(m, pixel_size_nm=100.0).row  # a 10 um x 10 um field
    assert row["n_junctions"] == 1
    assert row["junction_density_per_um2"] == pytest.approx(1 / 100.0)


def test_empty_mask_has_an_empty_graph():
    row = analyse_mask(np.zeros((20, 20), bool), pixel_size_nm=5.0).row
    assert row["n_branches"] == 0 and row["n_junctions"] == 0 and row["n_wires"] == 0
    assert math.isnan(row["mean_degree"]) and math.isnan(row["stick_percolation_ratio"])
