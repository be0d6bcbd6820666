"""The "Analyse morphology" dock widget under Xvfb: metrics, overlays, table, CSV, errors."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from napari_nanowire_ssl.analysis import COLUMNS, measure_mask
from napari_nanowire_ssl.analysis.wires import fill_small_holes
from napari_nanowire_ssl.napari_plugin import analysis_widget as analysis_widget_module
from napari_nanowire_ssl.napari_plugin.analysis_widget import (
    METRICS_KEY,
    NO_LAYER,
    OVERLAY_OF,
    AnalysisWidget,
)

PLUGIN = "napari-nanowire-ssl"
KINDS = ("clusters", "percolating cluster", "branches", "junctions")


@pytest.fixture
def errors(monkeypatch):
    """Messages the widget shows with show_error."""
    shown: list[str] = []
    monkeypatch.setattr(analysis_widget_module, "show_error", shown.append)
    return shown


def finish(widget, qtbot, action) -> None:
    """Press a button's action and wait until the worker (if any) has finished."""
    action()
    qtbot.waitUntil(lambda: widget.analyse_button.enabled, timeout=60_000)


def assert_row_equal(row: dict, expected: dict) -> None:
    assert list(row) == list(COLUMNS)
    for key in COLUMNS:
        if isinstance(expected[key], float):
            assert row[key] == pytest.approx(expected[key], nan_ok=True), key
        else:
            assert row[key] == expected[key], key


def overlays(viewer, name: str) -> dict:
    return {layer.metadata["nanowire_ssl_overlay"]: layer for layer in viewer.layers
            if layer.metadata.get(OVERLAY_OF) == name}


def test_network_sample_metrics_overlays_and_rerun(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "network")
    source = viewer.layers["synthetic network true mask"]
    original = source.data.copy()
    widget = AnalysisWidget(viewer)
    assert widget.layer.value is source
    assert (widget.connectivity.value, widget.link_distance.value, widget.criterion.value) == (8, 2.0, "both")
    finish(widget, qtbot, widget.analyse)

    row = source.metadata[METRICS_KEY]
    assert_row_equal(row, measure_mask(original, link_distance=2.0))
    assert row["percolates"] and row["morphology"] == "network"
    assert widget.status.value.startswith("synthetic network true mask: network")
    found = overlays(viewer, source.name)
    assert set(found) == set(KINDS)
    for kind, layer in found.items():
        assert layer.name == f"synthetic network true mask {kind}"
        if kind != "junctions":
            assert layer.data.shape == (512, 512)
    clusters = found["clusters"]
    assert clusters.data.max() == row["n_clusters"]
    assert list(clusters.features["index"]) == list(range(1, row["n_clusters"] + 1))
    assert clusters.features["pixels"].sum() == np.count_nonzero(original)
    assert clusters.features["percolating"].any()
    np.testing.assert_array_equal(found["percolating cluster"].data > 0, clusters.data > 0)  # one spanning cluster
    solid = fill_small_holes(original != 0)  # the skeleton may cross holes of a few pixels
    assert found["branches"].data.any() and not ((found["branches"].data > 0) & ~solid).any()
    assert found["branches"].metadata["colour_by"] == "length (px)"
    assert len(found["junctions"].data) == row["n_junctions"] > 0
    assert (found["junctions"].features["degree"] >= 3).all()
    assert widget.histograms.title == source.name
    # Overlays are not offered for analysis themselves.
    assert widget.layer.choices == (source,)
    (cells,) = widget.table.to_dict("split")["data"]
    assert cells[:4] == ["synthetic network true mask", "network", "0.327", "yes"]

    # Re-running updates the same layers and the same table row.
    n_layers = len(viewer.layers)
    finish(widget, qtbot, widget.analyse)
    assert len(viewer.layers) == n_layers and len(widget.table.to_dict("split")["data"]) == 1
    assert overlays(viewer, source.name)["clusters"] is clusters
    np.testing.assert_array_equal(source.data, original)


def test_dispersed_sample_does_not_percolate(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "dispersed")
    widget = AnalysisWidget(viewer)
    finish(widget, qtbot, widget.analyse)
    row = viewer.layers["synthetic dispersed true mask"].metadata[METRICS_KEY]
    assert not row["percolates"] and row["n_clusters"] > 1
    assert not overlays(viewer, "synthetic dispersed true mask")["percolating cluster"].data.any()


def test_link_distance_change_updates_clusters_in_place(make_napari_viewer, qtbot):
    bars = np.zeros((40, 40), np.uint8)
    bars[5:35, 10:15] = 1
    bars[5:35, 17:22] = 1  # 3 px from the first bar (two empty columns between)
    viewer = make_napari_viewer()
    source = viewer.add_labels(bars.copy(), name="bars")
    widget = AnalysisWidget(viewer)
    finish(widget, qtbot, widget.analyse)
    clusters = viewer.layers["bars clusters"]
    assert source.metadata[METRICS_KEY]["n_clusters"] == 2
    assert set(np.unique(clusters.data)) == {0, 1, 2}
    n_layers = len(viewer.layers)

    widget.link_distance.value = 3
    finish(widget, qtbot, widget.analyse)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["bars clusters"] is clusters
    assert source.metadata[METRICS_KEY]["n_clusters"] == 1
    assert set(np.unique(clusters.data)) == {0, 1} and len(clusters.features) == 1
    np.testing.assert_array_equal(source.data, bars)


def test_scribble_labels_count_only_label_2_as_wire(make_napari_viewer, qtbot):
    scribbles = np.ones((60, 80), np.uint8)  # 1 = background scribble
    scribbles[20:26, :] = 2  # a wire across the image
    scribbles[40:, 40:] = 0  # unlabelled
    viewer = make_napari_viewer()
    viewer.add_labels(scribbles.copy(), name="scribbles")
    widget = AnalysisWidget(viewer)
    finish(widget, qtbot, widget.analyse)
    row = viewer.layers["scribbles"].metadata[METRICS_KEY]
    assert_row_equal(row, measure_mask(scribbles == 2, link_distance=2.0))
    assert row["pixel_density"] == pytest.approx(6 / 60)
    assert "only label 2" in widget.status.value
    np.testing.assert_array_equal(viewer.layers["scribbles"].data, scribbles)


def test_pixel_size_comes_from_the_layer_scale_and_crop_bottom_applies(make_napari_viewer, qtbot):
    mask = np.zeros((50, 50), np.uint8)
    mask[:, 20:25] = 1
    viewer = make_napari_viewer()
    viewer.add_labels(mask, name="plain")
    viewer.add_labels(mask, name="in nm", scale=(5.0, 5.0), translate=(10, 20))
    viewer.add_labels(mask, name="in um", scale=(0.25, 0.25), units=("um", "um"))
    widget = AnalysisWidget(viewer)
    widget.layer.value = viewer.layers["plain"]
    assert widget.pixel_size.value == 0
    widget.layer.value = viewer.layers["in um"]
    assert widget.pixel_size.value == pytest.approx(250.0)
    widget.layer.value = viewer.layers["in nm"]
    assert widget.pixel_size.value == pytest.approx(5.0)
    widget.crop_bottom.value = 10
    finish(widget, qtbot, widget.analyse)
    row = viewer.layers["in nm"].metadata[METRICS_KEY]
    assert_row_equal(row, measure_mask(mask, pixel_size_nm=5.0, link_distance=2.0, crop_bottom=10))
    assert row["pixel_size_nm"] == 5.0 and row["pixel_density"] == pytest.approx(0.1)
    branches = viewer.layers["in nm branches"]
    assert branches.data.shape == (50, 50) and not branches.data[40:].any()
    np.testing.assert_allclose(branches.scale, [5.0, 5.0])
    np.testing.assert_allclose(branches.translate, [10.0, 20.0])
    # "Analyse all" uses each layer's own scale.
    finish(widget, qtbot, widget.analyse_all)
    assert viewer.layers["plain"].metadata[METRICS_KEY]["pixel_size_nm"] is None
    assert viewer.layers["in um"].metadata[METRICS_KEY]["pixel_size_nm"] == pytest.approx(250.0)
    assert len(widget.table.to_dict("split")["data"]) == 3


def test_csv_export_analyses_and_writes_every_mask_layer(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "network")
    viewer.open_sample(PLUGIN, "dispersed")
    empty = viewer.add_labels(np.zeros((32, 32), np.uint8), name="empty")  # allowed: density 0
    widget = AnalysisWidget(viewer)
    widget.layer.value = viewer.layers["synthetic network true mask"]
    finish(widget, qtbot, widget.analyse)  # one analysed, the others not yet
    out = tmp_path / "metrics.csv"
    widget.csv_file.value = out
    finish(widget, qtbot, widget.export_csv)
    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == ["layer", *COLUMNS]
    names = ["synthetic network true mask", "synthetic dispersed true mask", "empty"]
    assert [r["layer"] for r in rows] == names
    for r, name in zip(rows, names):
        data = viewer.layers[name].data
        assert float(r["pixel_density"]) == pytest.approx(np.count_nonzero(data) / data.size)
    assert [r["percolates"] for r in rows] == ["True", "False", "False"]
    assert rows[2]["n_clusters"] == "0" and math.isnan(float(rows[2]["mean_width_px"]))
    assert rows[0]["pixel_size_nm"] == ""
    assert empty.metadata[METRICS_KEY]["pixel_density"] == 0

    # Painting after the analysis: the export measures the mask as it is now.
    empty.data = np.pad(np.ones((16, 32), np.uint8), ((0, 16), (0, 0)))
    finish(widget, qtbot, widget.export_csv)
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[2]["pixel_density"]) == 0.5


def test_errors_leave_layers_untouched(make_napari_viewer, qtbot, errors, tmp_path):
    viewer = make_napari_viewer()
    widget = AnalysisWidget(viewer)
    widget.analyse()
    widget.analyse_all()
    widget.csv_file.value = tmp_path / "out.csv"
    widget.export_csv()
    assert errors == [NO_LAYER] * 3 and not (tmp_path / "out.csv").exists()

    stack = viewer.add_labels(np.ones((3, 16, 16), np.uint8), name="stack")
    widget.layer.value = stack
    widget.analyse()
    assert errors[-1] == "Layer 'stack': analysis needs a 2D mask, got shape (3, 16, 16)"

    mask = np.zeros((20, 30), np.uint8)
    mask[5:8] = 1
    flat = viewer.add_labels(mask.copy(), name="flat")
    widget.layer.value = flat
    widget.crop_bottom.value = 20
    widget.analyse()
    assert errors[-1] == "Layer 'flat': crop bottom (20 rows) must be less than the mask's height (20 rows)"
    assert len(viewer.layers) == 2 and METRICS_KEY not in flat.metadata
    np.testing.assert_array_equal(flat.data, mask)
    assert not widget.table.to_dict("split")["data"]

    # "Analyse all" reports the stack and still analyses the 2D layer.
    widget.crop_bottom.value = 0
    n_errors = len(errors)
    finish(widget, qtbot, widget.analyse_all)
    assert errors[n_errors:] == ["Layer 'stack': analysis needs a 2D mask, got shape (3, 16, 16)"]
    assert METRICS_KEY in flat.metadata and METRICS_KEY not in stack.metadata
    assert (stack.data == 1).all()


def test_network_parameters_sheet_resistance_overlays_and_histograms(make_napari_viewer, qtbot, errors):
    grid = np.zeros((120, 200), np.uint8)
    for k in range(4):
        grid[15 + 25 * k : 18 + 25 * k, :] = 1  # 4 wires across
    grid[:, 99:102] = 1  # one wire crossing them
    viewer = make_napari_viewer()
    source = viewer.add_labels(grid.copy(), name="grid")
    widget = AnalysisWidget(viewer)
    widget.wire_resistance.value = 5.0
    widget.junction_resistance.value = 100.0
    widget.analyse()  # no pixel size: refused before anything runs
    assert errors[-1].startswith("Layer 'grid': the sheet resistance needs a pixel size")
    assert METRICS_KEY not in source.metadata

    widget.pixel_size.value = 10.0
    finish(widget, qtbot, widget.analyse)
    row = source.metadata[METRICS_KEY]
    assert_row_equal(row, measure_mask(grid, pixel_size_nm=10.0, link_distance=2.0, wire_resistance_ohm_per_um=5.0,
                                       junction_resistance_ohm=100.0))
    assert row["sheet_resistance_ohm_sq"] == pytest.approx(5 * 0.01 * 120 / 4, rel=0.01)
    found = overlays(viewer, "grid")
    assert set(found) == set(KINDS)
    junctions = found["junctions"]
    assert len(junctions.data) == 4 and list(junctions.features["degree"]) == [4, 4, 4, 4]
    np.testing.assert_allclose(sorted(junctions.data[:, 0]), [16, 41, 66, 91], atol=1.0)
    branches = found["branches"]
    assert branches.metadata["colour_by"] == "current fraction"
    assert branches.data.max() == pytest.approx(0.25, rel=0.01)  # each wire across carries a quarter
    (cells,) = widget.table.to_dict("split")["data"]
    assert cells[-4:-1] == ["4", f"{row['mean_degree']:.2f}", f"{row['median_branch_length_um']:.3g} µm"]
    assert cells[-1] == f"{row['sheet_resistance_ohm_sq']:.4g} Ω/sq"
    assert widget.histograms.title == "grid"
    assert sum(p.get_height() for p in widget.histograms.axes[2].patches) == len(junctions.data) + row["n_end_points"]

    # Re-running with other parameters updates the same layers in place.
    n_layers = len(viewer.layers)
    widget.junction_resistance.value = 0.0
    widget.wire_resistance.value = 0.0
    finish(widget, qtbot, widget.analyse)
    assert len(viewer.layers) == n_layers
    assert overlays(viewer, "grid")["junctions"] is junctions and overlays(viewer, "grid")["branches"] is branches
    assert source.metadata[METRICS_KEY]["sheet_resistance_ohm_sq"] is None
    assert branches.metadata["colour_by"] == "length (µm)"
    np.testing.assert_array_equal(source.data, grid)
