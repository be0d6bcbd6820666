"""Sheet resistance by Kirchhoff's laws against cases worked by hand (within 1 %)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_nanowire_ssl.analysis import analyse_mask
from napari_nanowire_ssl.errors import NanowireSSLError

H, W, P, R = 120, 200, 10.0, 5.0  # field rows, columns; nm/px; ohm/um
UM = P / 1000.0  # um per px


def parallel_wires(n: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    for k in range(n):
        m[15 + 25 * k : 18 + 25 * k, :] = True  # 3 px wide, left edge to right edge
    return m


def analyse(mask, **kwargs):
    return analyse_mask(mask, pixel_size_nm=P, wire_resistance_ohm_per_um=R, **kwargs)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_parallel_wires_across_the_field(n):
    # Each wire: R * W px * UM; n in parallel; R_s = R_total * H / W = r * pixel size * H / n.
    a = analyse(parallel_wires(n), junction_resistance_ohm=100.0)
    assert a.row["sheet_resistance_ohm_sq"] == pytest.approx(R * UM * H / n, rel=0.01)
    assert a.resistance.resistance_ohm == pytest.approx(R * W * UM / n, rel=0.01)
    assert np.allclose(a.resistance.branch_current, 1 / n, rtol=0.01)
    assert (a.row["wire_resistance_ohm_per_um"], a.row["junction_resistance_ohm"], a.row["electrodes"]) == \
        (R, 100.0, "lr")


def test_wires_in_series_through_two_junctions():
    m = np.zeros((H, W), bool)
    m[20:23, 0:61] = True  # from the left edge past the vertical wire
    m[10:71, 49:52] = True  # vertical, crossing both horizontals
    m[60:63, 40:] = True  # to the right edge
    rj = 50.0
    a = analyse(m, junction_resistance_ohm=rj)
    assert a.row["n_junctions"] == 2
    # Path: left edge -> (21, 50) -> down to (61, 50) -> right edge; the overhangs carry no current.
    length_px = 50.5 + 40 + (W - 0.5 - 50)
    expected = R * length_px * UM + 2 * rj
    assert a.resistance.resistance_ohm == pytest.approx(expected, rel=0.01)
    assert a.row["sheet_resistance_ohm_sq"] == pytest.approx(expected * H / W, rel=0.01)
    no_contact = analyse(m, junction_resistance_ohm=0.0).resistance.resistance_ohm
    assert no_contact == pytest.approx(R * length_px * UM, rel=0.01)


def test_square_grid_carries_current_along_the_wires_only():
    # 4 horizontal wires across, 5 vertical wires top to bottom: by symmetry the
    # verticals carry no current, whatever the junction resistance.
    m = parallel_wires(4)
    for k in range(5):
        m[:, 20 + 40 * k : 23 + 40 * k] = True
    for rj in (0.0, 100.0, 1e4):
        a = analyse(m, junction_resistance_ohm=rj)
        assert a.row["n_junctions"] == 20
        assert a.row["sheet_resistance_ohm_sq"] == pytest.approx(R * UM * H / 4, rel=0.01)
    # Top to bottom the 5 verticals (H px long) conduct in parallel: R_s = r * pixel size * W / 5.
    tb = analyse(m, junction_resistance_ohm=100.0, electrodes="tb")
    assert tb.row["sheet_resistance_ohm_sq"] == pytest.approx(R * UM * W / 5, rel=0.01)


def test_broken_network_is_infinite():
    m = parallel_wires(3)
    m[:, 100:103] = False
    a = analyse(m, junction_resistance_ohm=10.0)
    assert a.row["sheet_resistance_ohm_sq"] == math.inf
    assert not a.resistance.branch_current.any()
    assert analyse(np.zeros((H, W), bool)).row["sheet_resistance_ohm_sq"] == math.inf


def test_without_wire_resistance_the_column_is_empty_and_bad_values_are_refused():
    row = analyse_mask(parallel_wires(1), pixel_size_nm=P).row
    assert row["sheet_resistance_ohm_sq"] is None and row["electrodes"] is None
    with pytest.raises(NanowireSSLError, match="needs a pixel size"):
        analyse_mask(parallel_wires(1), wire_resistance_ohm_per_um=R)
    with pytest.raises(NanowireSSLError, match="wire resistance"):
        analyse_mask(parallel_wires(1), pixel_size_nm=P, wire_resistance_ohm_per_um=-1)
    with pytest.raises(NanowireSSLError, match="junction resistance"):
        analyse(parallel_wires(1), junction_resistance_ohm=-5)
    with pytest.raises(NanowireSSLError, match="electrodes"):
        analyse(parallel_wires(1), electrodes="diagonal")


def test_a_crossing_next_to_the_electrode_still_contacts_it():
    # The vertical wire crosses the horizontal one 2 px from the left edge: the stub
    # to the edge is pruned as a spur and the junction itself touches the electrode.
    m = np.zeros((H, W), bool)
    m[50:53, :] = True
    m[10:100, 2:5] = True
    a = analyse(m, junction_resistance_ohm=1e6)
    assert a.row["sheet_resistance_ohm_sq"] < 2 * R * UM * H  # not inf, and not through the 1 MOhm contact
    assert a.resistance.resistance_ohm == pytest.approx(R * W * UM, rel=0.02)
