"""The "Analyse morphology" dock widget under Xvfb: metrics, results layers, table, CSV, errors;
masks opened as images, banners and pixel sizes per layer, what the picker shows (driven by clicks)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import tifffile
from napari.layers import Image
from qtpy.QtCore import Qt

from conftest import choose, type_into

from napari_nanowire_ssl.analysis import COLUMNS, measure_mask
from napari_nanowire_ssl.analysis.wires import fill_small_holes
from napari_nanowire_ssl.analysis.overlays import BRANCH, CLUSTER, PERCOLATING
from napari_nanowire_ssl.napari_plugin import layers as L
from napari_nanowire_ssl.napari_plugin.analysis_widget import (
    CLUSTER_COLOUR,
    METRICS_KEY,
    NO_LAYER,
    OVERLAY_OF,
    PERCOLATING_COLOUR,
    AnalysisWidget,
)
from napari_nanowire_ssl.napari_plugin.tables import LAYER_COLUMN_MAX_PX
from napari_nanowire_ssl.napari_plugin.workflow_widget import WorkflowWidget

PLUGIN = "napari-nanowire-ssl"
KINDS = ("analysis", "junctions")


def parts(layer) -> np.ndarray:
    """The ``part`` of each label of a results layer (index 1, 2, ...)."""
    return np.asarray(layer.features["part"])


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


@pytest.mark.slow
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
    assert set(found) == set(KINDS)  # two results layers per mask
    for kind, layer in found.items():
        assert layer.name == f"synthetic network true mask {kind}"
    results = found["analysis"]
    assert results.data.shape == (512, 512)
    n, b = row["n_clusters"], row["n_branches"]
    kinds = parts(results)
    assert list(results.features["index"]) == list(range(1, n + b + 1))
    assert set(kinds[:n]) == {PERCOLATING} and set(kinds[n:]) == {BRANCH}  # one spanning cluster
    assert results.features["percolating"][:n].all()
    wire = original != 0
    assert (results.data > 0)[wire].all()
    solid = fill_small_holes(wire)  # the skeleton may cross holes of a few pixels
    branch_pixels = results.data > n
    assert branch_pixels.any() and not (branch_pixels & ~solid).any()
    assert results.features["pixels"].sum() == np.count_nonzero(results.data)
    np.testing.assert_allclose(results.colormap.map(np.array([1]))[0], PERCOLATING_COLOUR)
    assert results.metadata["colour_by"] == "length (px)"
    np.testing.assert_allclose(results.features["value"][n:], results.features["length_px"][n:])
    assert len(found["junctions"].data) == row["n_junctions"] > 0
    assert (found["junctions"].features["degree"] >= 3).all()
    assert widget.histograms.title == source.name
    # Overlays are not offered for analysis themselves.
    assert widget.layer.choices == (source,)
    (cells,) = widget.table.to_dict("split")["data"]
    assert cells[:4] == ["synthetic network true mask", "network", "yes", "0.327"]

    # Re-running updates the same layers and the same table row.
    n_layers = len(viewer.layers)
    finish(widget, qtbot, widget.analyse)
    assert len(viewer.layers) == n_layers and len(widget.table.to_dict("split")["data"]) == 1
    assert overlays(viewer, source.name)["analysis"] is results
    np.testing.assert_array_equal(source.data, original)


@pytest.mark.slow
def test_dispersed_sample_does_not_percolate(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "dispersed")
    widget = AnalysisWidget(viewer)
    finish(widget, qtbot, widget.analyse)
    row = viewer.layers["synthetic dispersed true mask"].metadata[METRICS_KEY]
    assert not row["percolates"] and row["n_clusters"] > 1
    results = overlays(viewer, "synthetic dispersed true mask")["analysis"]
    assert PERCOLATING not in set(parts(results))
    assert (parts(results) == CLUSTER).sum() == row["n_clusters"]
    np.testing.assert_allclose(results.colormap.map(np.array([1]))[0], CLUSTER_COLOUR)


def test_link_distance_change_updates_clusters_in_place(make_napari_viewer, qtbot):
    bars = np.zeros((40, 40), np.uint8)
    bars[5:35, 10:15] = 1
    bars[5:35, 17:22] = 1  # 3 px from the first bar (two empty columns between)
    viewer = make_napari_viewer()
    source = viewer.add_labels(bars.copy(), name="bars")
    widget = AnalysisWidget(viewer)
    finish(widget, qtbot, widget.analyse)
    results = viewer.layers["bars analysis"]
    assert source.metadata[METRICS_KEY]["n_clusters"] == 2
    assert list(parts(results)).count(CLUSTER) == 2
    assert set(np.unique(results.data[bars == 0])) == {0}
    n_layers = len(viewer.layers)

    widget.link_distance.value = 3
    finish(widget, qtbot, widget.analyse)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["bars analysis"] is results
    assert source.metadata[METRICS_KEY]["n_clusters"] == 1
    assert list(parts(results)).count(CLUSTER) == 1
    assert len(results.features) == 1 + source.metadata[METRICS_KEY]["n_branches"]
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
    results = viewer.layers["in nm analysis"]
    assert results.data.shape == (50, 50) and not results.data[40:].any() and results.data[:40].any()
    np.testing.assert_allclose(results.scale, [5.0, 5.0])
    np.testing.assert_allclose(results.translate, [10.0, 20.0])
    # "Analyse all" uses each layer's own scale.
    finish(widget, qtbot, widget.analyse_all)
    assert viewer.layers["plain"].metadata[METRICS_KEY]["pixel_size_nm"] is None
    assert viewer.layers["in um"].metadata[METRICS_KEY]["pixel_size_nm"] == pytest.approx(250.0)
    assert len(widget.table.to_dict("split")["data"]) == 3


@pytest.mark.slow
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
    # The true mask analysed by hand is exported, the other one (not chosen) is not: truth is compared with.
    names = ["synthetic network true mask", "empty"]
    assert [r["layer"] for r in rows] == names
    for r, name in zip(rows, names):
        data = viewer.layers[name].data
        assert float(r["pixel_density"]) == pytest.approx(np.count_nonzero(data) / data.size)
    assert [r["percolates"] for r in rows] == ["True", "False"]
    assert rows[1]["n_clusters"] == "0" and math.isnan(float(rows[1]["mean_width_px"]))
    assert rows[0]["pixel_size_nm"] == ""
    assert empty.metadata[METRICS_KEY]["pixel_density"] == 0

    # Painting after the analysis: the export measures the mask as it is now.
    empty.data = np.pad(np.ones((16, 32), np.uint8), ((0, 16), (0, 0)))
    finish(widget, qtbot, widget.export_csv)
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[1]["pixel_density"]) == 0.5


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
    results = found["analysis"]
    assert results.metadata["colour_by"] == "current fraction"
    branch = parts(results) == BRANCH
    assert np.nanmax(results.features["value"][branch]) == pytest.approx(0.25, rel=0.01)  # a quarter per wire
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
    assert overlays(viewer, "grid")["junctions"] is junctions and overlays(viewer, "grid")["analysis"] is results
    assert source.metadata[METRICS_KEY]["sheet_resistance_ohm_sq"] is None
    assert results.metadata["colour_by"] == "length (µm)"
    np.testing.assert_array_equal(source.data, grid)


# --- driven by clicks: masks from files, banners and pixel sizes, results layers, the picker, the table -----


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def click_and_wait(widget, qtbot, button) -> None:
    click(qtbot, button)
    qtbot.waitUntil(lambda: widget.analyse_button.enabled, timeout=60_000)


def test_a_mask_file_opened_as_an_image_is_offered_and_analysed(make_napari_viewer, qtbot, notices, tmp_path):
    mask = np.zeros((60, 80), np.uint8)
    mask[:, 30:36] = 255
    mask[20:24, :] = 255
    tifffile.imwrite(tmp_path / "film mask.tif", mask)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(tmp_path / "film mask.tif", plugin="napari")
    viewer.add_image(np.random.default_rng(0).random((60, 80)), name="micrograph")  # no mask: not offered
    assert isinstance(layer, Image)
    widget = AnalysisWidget(viewer)
    assert widget.layer.choices == (layer,)
    click_and_wait(widget, qtbot, widget.analyse_button)
    assert_row_equal(layer.metadata[METRICS_KEY], measure_mask(mask, link_distance=2.0))
    assert layer.metadata[METRICS_KEY]["percolates"]
    click_and_wait(widget, qtbot, widget.analyse_button)
    told = [message for _, message in notices if "as a mask" in message]
    assert told == ["Layer 'film mask' is an image with few values: analysed as a mask (nonzero = wire)"]  # once
    assert not [n for n in notices if n[0] == "show_error"]
    np.testing.assert_array_equal(layer.data, mask)


def test_crop_from_the_images_banner_and_pixel_size_typed_once_kept_per_layer(make_napari_viewer, qtbot,
                                                                             banner_micrograph):
    picture = banner_micrograph()
    mask = np.zeros(picture.shape, np.uint8)
    mask[:, 70:76] = 1  # a wire from top to bottom ...
    mask[-22:-14, 10:60] = 1  # ... and the banner's text, which reads as wire
    viewer = make_napari_viewer()
    image = viewer.add_image(picture, name="film")
    nanowires = viewer.add_labels(mask.copy(), name="film nanowires")
    other = viewer.add_labels(mask.copy(), name="other")  # no micrograph of its own
    widget = AnalysisWidget(viewer)
    choose(widget.layer, other)
    assert (widget.crop_bottom.value, widget.pixel_size.value) == (0, 0)
    choose(widget.layer, nanowires)
    assert widget.crop_bottom.value == L.banner_rows(image) == 30  # proposed from the image's banner

    type_into(qtbot, widget.crop_bottom, "32")  # the user's correction ...
    type_into(qtbot, widget.pixel_size, "12.5")
    assert L.banner_rows(image) == 32 and L.mask_banner_rows(viewer, nanowires) == 32  # ... kept for both
    assert L.pixel_size_nm(image) == L.pixel_size_nm(nanowires) == 12.5  # every tab sees it
    np.testing.assert_allclose(image.scale, [12.5, 12.5])
    choose(widget.layer, other)
    assert (widget.crop_bottom.value, widget.pixel_size.value) == (0, 0)
    choose(widget.layer, nanowires)
    assert (widget.crop_bottom.value, widget.pixel_size.value) == (32, 12.5)

    click_and_wait(widget, qtbot, widget.analyse_button)
    row = nanowires.metadata[METRICS_KEY]
    assert_row_equal(row, measure_mask(mask, pixel_size_nm=12.5, crop_bottom=32, link_distance=2.0))
    assert row["pixel_density"] == pytest.approx(6 / 160)  # the text left out
    np.testing.assert_allclose(viewer.layers["film nanowires analysis"].scale, [12.5, 12.5])
    # "Analyse all": each layer its own crop and pixel size.
    click_and_wait(widget, qtbot, widget.analyse_all_button)
    assert_row_equal(other.metadata[METRICS_KEY], measure_mask(mask, link_distance=2.0))
    assert_row_equal(nanowires.metadata[METRICS_KEY], row)


@pytest.mark.slow
def test_one_results_layer_per_mask_and_analyse_all_skips_scribbles_and_truth(make_napari_viewer, qtbot):
    grid = np.zeros((80, 100), np.uint8)
    grid[:, 30:34] = grid[:, 60:64] = grid[40:44, :] = 1
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random(grid.shape), name="film")
    truth = viewer.add_labels(grid.copy(), name="film true mask")
    strokes = np.zeros(grid.shape, np.uint8)
    strokes[10:14, 10:20], strokes[50:54, 10:20] = 1, 2
    scribbles = viewer.add_labels(strokes, name="film scribbles")
    predicted = viewer.add_labels(grid.copy(), name="film nanowires")
    widget = AnalysisWidget(viewer)
    choose(widget.layer, predicted)
    n_layers = len(viewer.layers)
    click_and_wait(widget, qtbot, widget.analyse_all_button)
    assert METRICS_KEY in predicted.metadata
    assert METRICS_KEY not in truth.metadata and METRICS_KEY not in scribbles.metadata
    assert len(viewer.layers) == n_layers + 2  # one Labels layer of results and the junctions
    assert set(overlays(viewer, predicted.name)) == set(KINDS)
    results = viewer.layers["film nanowires analysis"]
    click_and_wait(widget, qtbot, widget.analyse_all_button)  # in place
    assert len(viewer.layers) == n_layers + 2 and viewer.layers["film nanowires analysis"] is results

    choose(widget.layer, truth)  # chosen: then it is analysed too
    click_and_wait(widget, qtbot, widget.analyse_all_button)
    assert METRICS_KEY in truth.metadata and METRICS_KEY not in scribbles.metadata
    assert_row_equal(truth.metadata[METRICS_KEY], predicted.metadata[METRICS_KEY])
    assert len(viewer.layers) == n_layers + 4


def test_choosing_a_mask_shows_it_with_its_image_and_results(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    image_a = viewer.add_image(rng.random((40, 50)), name="A")
    image_b = viewer.add_image(rng.random((40, 50)), name="B")
    mask = np.zeros((40, 50), np.uint8)
    mask[:, 20:25] = 1
    mask_a = viewer.add_labels(mask.copy(), name="A nanowires")
    mask_b = viewer.add_labels(mask.copy(), name="B nanowires")
    widget = AnalysisWidget(viewer)
    choose(widget.layer, mask_b)
    choose(widget.layer, mask_a)
    assert mask_a.visible and image_a.visible and not mask_b.visible and not image_b.visible
    assert viewer.layers.selection.active is mask_a
    click_and_wait(widget, qtbot, widget.analyse_button)
    results_a = overlays(viewer, "A nanowires")
    choose(widget.layer, mask_b)
    assert mask_b.visible and image_b.visible and viewer.layers.selection.active is mask_b
    assert not mask_a.visible and not image_a.visible
    assert not any(layer.visible for layer in results_a.values())
    choose(widget.layer, mask_a)
    assert all(layer.visible for layer in results_a.values())


@pytest.mark.slow
def test_key_columns_visible_without_scrolling_in_a_1580_px_window(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    flow = WorkflowWidget(viewer)
    viewer.window.add_dock_widget(flow, name="Nanowire workflow")
    viewer.window.main_menu.window().resize(1580, 1000)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 30:34] = 1
    names = ("AgNWN_slice0001 (16-bit TIFF) nanowires", "bacterial cellulose K1 nanowires")
    for name in names:
        viewer.add_labels(mask, name=name)
    flow.setCurrentIndex(3)
    widget = flow.analyse
    click_and_wait(widget, qtbot, widget.analyse_all_button)
    view = widget.table.native
    qtbot.waitUntil(view.isVisible)
    assert [view.horizontalHeaderItem(i).text() for i in range(4)] == ["layer", "morphology", "percolates",
                                                                       "pixel_density"]
    for column in range(4):
        assert view.columnViewportPosition(column) + view.columnWidth(column) <= view.viewport().width(), column
    assert view.horizontalScrollBar().value() == 0
    assert view.verticalScrollBar().maximum() == 0  # as tall as its two rows
    assert view.height() < 4 * view.verticalHeader().defaultSectionSize() + 60
    assert view.item(0, 0).toolTip() == names[0]  # the long name elided, in full on hover
    assert view.columnWidth(0) <= LAYER_COLUMN_MAX_PX
