"""``measure_mask`` rows and ``nanowire-ssl analyze`` end to end on mask files."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from napari_nanowire_ssl.analysis.measure import COLUMNS, measure_mask, read_mask
from napari_nanowire_ssl.analysis.wires import AXIAL_STEP
from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.errors import NanowireSSLError


def _cross(n=40):
    m = np.zeros((n, n), np.uint8)
    m[n // 2, :] = 255
    m[:, n // 2] = 255
    return m


def test_measure_mask_row_has_stable_columns_and_known_values():
    m = _cross()
    row = measure_mask(m)
    assert tuple(row) == COLUMNS
    assert row["pixel_density"] == pytest.approx(79 / 1600)
    assert (row["spans_lr"], row["spans_tb"], row["percolates"]) == (True, True, True)
    assert row["n_clusters"] == 1 and row["n_junctions"] == 1 and row["n_end_points"] == 4
    assert row["total_length_px"] == pytest.approx(78 * AXIAL_STEP)
    assert row["n_branches"] == 4 and row["mean_degree"] == pytest.approx(8 / 5)
    assert row["sheet_resistance_ohm_sq"] is None
    assert row["morphology"] == "network"
    assert row["wire_area_um2"] is None and row["total_length_um"] is None
    phys = measure_mask(m, pixel_size_nm=5.0)
    assert tuple(phys) == COLUMNS
    assert phys["region_area_um2"] == pytest.approx((40 * 0.005) ** 2)
    assert phys["total_length_um"] == pytest.approx(78 * AXIAL_STEP * 0.005)
    assert phys["length_per_area_um"] == pytest.approx(78 * AXIAL_STEP * 0.005 / (40 * 0.005) ** 2)


def test_crop_bottom_removes_a_banner_before_percolation():
    m = np.zeros((40, 40), np.uint8)
    m[:, 30] = 1  # spans top-bottom
    m[35:, :] = 1  # banner: the only thing spanning left-right
    assert measure_mask(m)["percolates"]
    cropped = measure_mask(m, crop_bottom=5)
    assert (cropped["spans_lr"], cropped["spans_tb"], cropped["percolates"]) == (False, True, False)
    assert cropped["pixel_density"] == pytest.approx(35 / (35 * 40))
    roi = np.zeros((40, 40), bool)
    roi[:, 20:] = True
    masked = measure_mask(m, roi=roi)
    assert masked["pixel_density"] == pytest.approx((40 + 5 * 19) / (40 * 20))
    assert not masked["spans_lr"]  # the banner no longer reaches column 0


def test_link_distance_option_reaches_percolation():
    m = _cross()
    m[:, 10] = 0  # a one-pixel gap in the horizontal line
    assert not measure_mask(m)["percolates"]
    assert measure_mask(m, link_distance=2)["percolates"]


def test_cli_links_like_the_analyse_tab_and_bundles_by_default(tmp_path):
    """A one-pixel gap is bridged by the paper's 2 px linking, the default everywhere; 0 keeps it open."""
    m = _cross()
    m[:, 10] = 0
    Image.fromarray(m).save(tmp_path / "gap.png")
    for extra, percolates in (([], "True"), (["--link-distance", "0"], "False")):
        out = tmp_path / f"gap{len(extra)}.csv"
        assert main(["analyze", str(tmp_path / "gap.png"), "--out", str(out), *extra]) == 0
        (row,) = csv.DictReader(out.open())
        assert row["percolates"] == percolates, extra


def test_read_mask_formats(tmp_path):
    m = _cross(16)
    Image.fromarray(m).save(tmp_path / "a.png")
    assert np.array_equal(read_mask(tmp_path / "a.png"), m > 0)
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = m  # red wires on black
    Image.fromarray(rgb).save(tmp_path / "b.png")
    assert np.array_equal(read_mask(tmp_path / "b.png"), m > 0)
    import tifffile

    tifffile.imwrite(tmp_path / "c.tif", (m > 0).astype(np.uint16))
    assert np.array_equal(read_mask(tmp_path / "c.tif"), m > 0)
    tifffile.imwrite(tmp_path / "d.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(NanowireSSLError, match="d.tif.*2D"):
        read_mask(tmp_path / "d.tif")


def test_cli_writes_csv_rows_that_read_back(tmp_path, capsys):
    folder = tmp_path / "masks"
    folder.mkdir()
    Image.fromarray(_cross()).save(folder / "b_cross.png")
    line = np.zeros((40, 40), np.uint8)
    line[10, :] = 1
    Image.fromarray(line).save(folder / "a_line.tif")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out" / "metrics.csv"
    code = main(["analyze", str(folder), "--out", str(out), "--pixel-size", "2.0", "--link-distance", "2"])
    assert code == 0
    assert "2 mask(s) measured, 1 percolate" in capsys.readouterr().out
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", *COLUMNS]
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["a_line.tif", "b_cross.png"]
    line_row, cross_row = rows
    assert (line_row["spans_lr"], line_row["spans_tb"], line_row["percolates"]) == ("True", "False", "False")
    assert cross_row["percolates"] == "True" and cross_row["morphology"] == "network"
    assert float(line_row["pixel_density"]) == pytest.approx(40 / 1600)
    assert float(line_row["total_length_um"]) == pytest.approx(39 * AXIAL_STEP * 0.002)
    assert float(cross_row["pixel_size_nm"]) == 2.0


def test_cli_without_pixel_size_leaves_physical_columns_empty(tmp_path):
    Image.fromarray(_cross()).save(tmp_path / "m.png")
    out = tmp_path / "m.csv"
    assert main(["analyze", str(tmp_path / "m.png"), "--out", str(out), "--criterion", "lr"]) == 0
    (row,) = csv.DictReader(out.open())
    assert row["wire_area_um2"] == "" and row["percolates"] == "True"
    assert math.isclose(float(row["nematic_order"]), 0.0, abs_tol=0.05)


@pytest.mark.parametrize("problem", ["missing", "empty", "garbage"])
def test_cli_bad_input_exits_2_naming_the_file(tmp_path, capsys, problem):
    bad = tmp_path / f"{problem}.png"
    if problem == "empty":
        bad.write_bytes(b"")
    elif problem == "garbage":
        bad.write_bytes(b"this is not a png")
    out = tmp_path / "m.csv"
    assert main(["analyze", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bad) in err and "\n" not in err
    assert not out.exists()


def test_cli_skips_a_bad_mask_among_good_ones_and_keeps_an_earlier_csv(tmp_path, capsys):
    Image.fromarray(_cross()).save(tmp_path / "m.png")
    (tmp_path / "bad.png").write_bytes(b"this is not a png")
    out = tmp_path / "m.csv"
    assert main(["analyze", str(tmp_path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert [r["path"] for r in csv.DictReader(out.open())] == [str(tmp_path / "m.png")]
    assert "1 mask(s) measured" in captured.out and captured.out.rstrip().endswith("(1 failed)")
    assert captured.err.startswith(f"warning: {tmp_path / 'bad.png'}: ") and captured.err.count("\n") == 1
    before = out.read_bytes()
    assert main(["analyze", str(tmp_path / "bad.png"), "--out", str(out)]) == 2  # nothing measured
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'bad.png'}: ") and out.read_bytes() == before


def test_cli_network_columns_and_branch_table_read_back(tmp_path, capsys):
    m = np.zeros((120, 200), np.uint8)
    for k in range(4):
        m[15 + 25 * k : 18 + 25 * k, :] = 255  # 4 parallel wires across
    m[:, 99:102] = 255  # one vertical wire crossing them all
    Image.fromarray(m).save(tmp_path / "grid.png")
    out, branches = tmp_path / "metrics.csv", tmp_path / "branches.csv"
    code = main(["analyze", str(tmp_path / "grid.png"), "--out", str(out), "--pixel-size", "10",
                 "--wire-resistance", "5", "--junction-resistance", "100", "--branches", str(branches)])
    assert code == 0
    assert f"and {branches} (" in capsys.readouterr().out
    (row,) = csv.DictReader(out.open())
    for column in ("n_junctions", "junction_density_per_um2", "mean_degree", "median_branch_length_um",
                   "median_tortuosity", "sheet_resistance_ohm_sq"):
        assert row[column] != "", column
    assert int(row["n_junctions"]) == 4
    assert float(row["junction_density_per_um2"]) == pytest.approx(4 / (1.2 * 2.0))
    assert float(row["sheet_resistance_ohm_sq"]) == pytest.approx(5 * 0.01 * 120 / 4, rel=0.01)
    assert float(row["median_tortuosity"]) == pytest.approx(1.0, abs=0.01)
    table = list(csv.DictReader(branches.open()))
    assert len(table) == int(row["n_branches"])
    assert list(table[0])[:3] == ["path", "branch", "wire"]
    lengths = sorted(float(t["length_um"]) for t in table)
    assert float(row["median_branch_length_um"]) == pytest.approx(float(np.median(lengths)))
    currents = [float(t["current_fraction"]) for t in table]
    assert max(currents) == pytest.approx(0.25, rel=0.01)  # each horizontal carries a quarter


def test_cli_wire_resistance_needs_a_pixel_size(tmp_path, capsys):
    Image.fromarray(_cross()).save(tmp_path / "m.png")
    assert main(["analyze", str(tmp_path / "m.png"), "--out", str(tmp_path / "m.csv"),
                 "--wire-resistance", "5"]) == 2
    assert "--wire-resistance: needs --pixel-size" in capsys.readouterr().err
