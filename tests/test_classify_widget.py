"""The "Classify morphology" dock widget under Xvfb: tags, training, anchors, feature map, CSV, errors."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest

from napari_nanowire_ssl.fewshot import features as features_module
from napari_nanowire_ssl.fewshot.classify import UNCERTAIN_BELOW, label_next
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.napari_plugin import classify_widget as module
from napari_nanowire_ssl.napari_plugin.classify_widget import (
    ANCHOR_KEY,
    MAP_NAME,
    NEXT_KEY,
    NO_IMAGES,
    PREDICTION_KEY,
    TAG_KEY,
    UNTAGGED,
    ClassifyWidget,
    class_colour,
)
from napari_nanowire_ssl.napari_plugin.tables import LAYER_COLUMN_MAX_PX
from napari_nanowire_ssl.session import session_for
from napari_nanowire_ssl.synth import generate

CLASSES = ["singular", "dispersed", "network", "bundle"]
SEEDS = (0, 1, 2)


@pytest.fixture
def errors(monkeypatch):
    """Messages the widget reports as errors (the one error path, workers.report_error)."""
    from napari_nanowire_ssl.napari_plugin import workers

    shown: list[str] = []
    monkeypatch.setattr(module, "report_error", lambda message: shown.append(str(message)))
    monkeypatch.setattr(workers, "show_error", shown.append)
    return shown


@pytest.fixture
def encodes(monkeypatch):
    """Number of images encoded (``image_features`` encodes an image's views in one call)."""
    count = [0]
    real = features_module.encode_images

    def counting(model, views, **kwargs):
        count[0] += 1
        return real(model, views, **kwargs)

    monkeypatch.setattr(features_module, "encode_images", counting)
    return count


def add_images(viewer, seeds=SEEDS) -> None:
    """Small synthetic images "<class> <seed>", class by class."""
    for name in CLASSES:
        for seed in seeds:
            viewer.add_image(generate(name, size=128, seed=seed).image, name=f"{name} {seed}")


def make_widget(viewer, *, random_encoder: bool = True) -> ClassifyWidget:
    if random_encoder:  # faster than loading the default encoder; features are features
        session_for(viewer).set_encoder(Encoder("resnet18").eval(), "test")
    return ClassifyWidget(viewer)


def tag(widget, layer_name: str, class_name: str) -> None:
    widget.layer.value = widget.viewer.layers[layer_name]
    widget.tag_class.value = class_name
    widget.tag()


def tag_two_per_class(widget) -> None:
    for name in CLASSES:
        for seed in SEEDS[:2]:
            tag(widget, f"{name} {seed}", name)


def finish(widget, qtbot, action) -> None:
    """Press a button's action and wait until its worker (if any) has finished."""
    action()
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=60_000)


def table_rows(widget) -> dict[str, dict]:
    split = widget.table.to_dict("split")
    return {row[0]: dict(zip(split["columns"], row)) for row in split["data"]}


@pytest.mark.slow
def test_tag_train_predict_and_train_again_without_encoding(make_napari_viewer, qtbot, encodes):
    viewer = make_napari_viewer()
    add_images(viewer)
    widget = make_widget(viewer, random_encoder=False)  # no session encoder: the default one is loaded
    assert widget.classes.value == "singular, dispersed, network, bundle"
    assert list(widget.tag_class.choices) == [*CLASSES, UNTAGGED]
    tag_two_per_class(widget)
    assert viewer.layers["network 1"].metadata[TAG_KEY] == "network"
    assert widget.counts.value == "Tagged: singular 2, dispersed 2, network 2, bundle 2"
    # Tagging "(untagged)" removes a tag.
    tag(widget, "bundle 2", "bundle")
    tag(widget, "bundle 2", UNTAGGED)
    assert TAG_KEY not in viewer.layers["bundle 2"].metadata
    assert widget.counts.value == "Tagged: singular 2, dispersed 2, network 2, bundle 2"

    finish(widget, qtbot, widget.train)
    assert widget.session.encoder_source == "default"
    assert encodes[0] == len(viewer.layers) == 12
    assert widget.head is not None and widget.session.head is widget.head
    assert widget.head.class_names == CLASSES
    rows = table_rows(widget)
    for layer in viewer.layers:
        prediction = layer.metadata[PREDICTION_KEY]
        probabilities = prediction["probabilities"]
        assert list(probabilities) == CLASSES
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert prediction["label"] == max(probabilities, key=probabilities.get)
        if TAG_KEY in layer.metadata:
            assert prediction["label"] == layer.metadata[TAG_KEY]
        row = rows[layer.name]
        assert (row["tag"] or "") == layer.metadata.get(TAG_KEY, "")  # empty cells read back as None
        assert row["prediction"] == prediction["label"]
        assert float(row["p"]) == pytest.approx(probabilities[prediction["label"]], abs=0.006)
        assert (row["uncertain"] or "") == ("?" if prediction["uncertain"] else "")
        assert prediction["uncertain"] == (probabilities[prediction["label"]] < UNCERTAIN_BELOW)
    # The untagged images are ranked for labelling in label_next's order.
    untagged = [layer for layer in viewer.layers if TAG_KEY not in layer.metadata]
    assert all(NEXT_KEY not in layer.metadata for layer in viewer.layers if TAG_KEY in layer.metadata)
    ranked = sorted(untagged, key=lambda layer: layer.metadata[NEXT_KEY])
    assert [layer.metadata[NEXT_KEY] for layer in ranked] == [1, 2, 3, 4]
    probs = np.array([list(layer.metadata[PREDICTION_KEY]["probabilities"].values()) for layer in untagged])
    assert [untagged[i] for i in label_next(probs)] == ranked and rows[ranked[0].name]["next"] == "1"
    assert widget.status.value.startswith("Trained on 8 tagged image(s) of 4 classes; classified 12 image(s)")
    assert widget.head.calibrated and "not calibrated" not in widget.status.value
    assert f"Label next: {ranked[0].name}, {ranked[1].name}, {ranked[2].name}" in widget.status.value

    # Training again (one class fewer, other tags) reuses the cached features.
    widget.classes.value = "singular, network, bundle"
    assert widget.counts.value == "Tagged: singular 2, network 2, bundle 2; not a class: dispersed"
    for seed in SEEDS[:2]:
        tag(widget, f"dispersed {seed}", UNTAGGED)
    finish(widget, qtbot, widget.train)
    assert encodes[0] == 12
    assert widget.head.class_names == ["singular", "network", "bundle"]
    assert set(viewer.layers["dispersed 0"].metadata[PREDICTION_KEY]["probabilities"]) == {
        "singular", "network", "bundle"}


def test_classes_without_tags_are_left_out_of_training(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    add_images(viewer, seeds=(0,))
    widget = make_widget(viewer)
    tag(widget, "singular 0", "singular")
    tag(widget, "network 0", "network")
    finish(widget, qtbot, widget.train)
    assert widget.head.class_names == ["singular", "network"]
    assert widget.status.value.endswith("Not trained (no tagged image): dispersed, bundle")
    view = widget.table.native  # the table fits its columns as the Analyse tab's does (tables.fit_columns)
    assert view.columnWidth(0) <= LAYER_COLUMN_MAX_PX and view.item(0, 0).toolTip() == view.item(0, 0).text()
    # One tagged image per class: no temperature can be fitted, and the status line says so.
    assert "probabilities not calibrated (that takes at least 2 labelled images per class)" in widget.status.value


@pytest.mark.slow
def test_suggested_anchors_are_untagged_images(make_napari_viewer, qtbot, encodes):
    viewer = make_napari_viewer()
    add_images(viewer)
    widget = make_widget(viewer)
    tag_two_per_class(widget)
    finish(widget, qtbot, widget.suggest)
    assert encodes[0] == 4  # only the untagged images are encoded
    anchors = {layer.name: layer.metadata[ANCHOR_KEY] for layer in viewer.layers if ANCHOR_KEY in layer.metadata}
    untagged = {f"{name} 2" for name in CLASSES}
    assert set(anchors) == untagged and sorted(anchors.values()) == [1, 2, 3, 4]
    ranked = sorted(anchors, key=anchors.get)
    assert widget.status.value == f"Label these first: {', '.join(ranked)}"
    assert {name: row["anchor"] for name, row in table_rows(widget).items() if row["anchor"]} == {
        name: str(rank) for name, rank in anchors.items()}

    # Tagging an anchor takes it off the list; asking again ranks the remaining untagged ones.
    tag(widget, ranked[0], "bundle")
    assert ANCHOR_KEY not in viewer.layers[ranked[0]].metadata
    widget.classes.value = "a, b, c, d, e, f"  # more classes than untagged images: as many as there are
    finish(widget, qtbot, widget.suggest)
    assert {layer.name for layer in viewer.layers if ANCHOR_KEY in layer.metadata} == set(ranked[1:])
    assert encodes[0] == 4


@pytest.mark.slow
def test_feature_map_points_update_in_place_and_show_the_clicked_image(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    add_images(viewer, seeds=(0, 1))
    colour = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    viewer.add_image(colour, name="colour", rgb=True)  # channels differ: not a micrograph
    viewer.add_image(np.zeros((3, 64, 64), np.float32), name="stack")
    widget = make_widget(viewer)
    offered = [layer.name for layer in widget.layer.choices]
    assert len(offered) == 8 and "colour" not in offered and "stack" not in offered
    # Choosing an image in the picker shows it (the others hidden) and selects it.
    widget.layer.value = viewer.layers["network 1"]
    assert viewer.layers["network 1"].visible and viewer.layers.selection.active is viewer.layers["network 1"]
    assert not viewer.layers["network 0"].visible
    tag(widget, "network 0", "network")
    tag(widget, "bundle 0", "bundle")
    finish(widget, qtbot, widget.suggest)
    finish(widget, qtbot, widget.feature_map)
    points = viewer.layers[MAP_NAME]
    n_layers = len(viewer.layers)
    assert len(points.data) == 8
    assert list(points.features.columns) == ["layer", "class", "anchor"]
    assert list(points.features["layer"]) == offered
    features = points.features.set_index("layer")
    assert features.loc["network 0", "class"] == "network" and features.loc["singular 1", "class"] == UNTAGGED
    assert (features["anchor"] > 0).sum() == 4 and features.loc["network 0", "anchor"] == 0
    i = offered.index("bundle 0")
    np.testing.assert_allclose(points.face_color[i, :3], [0.84, 0.15, 0.16], atol=0.01)  # bundle's colour
    anchor = int(np.argmax(features["anchor"].to_numpy()))
    assert points.size[anchor] > points.size[i]
    assert points.symbol[i] == "square" and points.symbol[anchor] == "disc"  # tagged vs not
    # The map sits to the right of the images.
    assert points.extent.world[0][1] > 128

    # Selecting a point shows its image.
    points.selected_data = {3}
    image = viewer.layers[offered[3]]
    assert viewer.layers.selection.active is image and image.visible
    assert not any(viewer.layers[name].visible for name in offered if name != offered[3])
    # A click on a point selects it whatever layer is active.
    viewer.layers.selection.active = viewer.layers["colour"]
    event = SimpleNamespace(position=points.data_to_world(points.data[5]))
    widget._on_click(viewer, event)
    assert viewer.layers.selection.active is viewer.layers[offered[5]]

    # Training recolours the map by prediction; a new image and a re-run update the same layer.
    finish(widget, qtbot, widget.train)
    assert points.features.set_index("layer").loc["singular 1", "class"] in ("network", "bundle")
    viewer.add_image(generate("network", size=128, seed=5).image, name="new")
    finish(widget, qtbot, widget.feature_map)
    assert len(viewer.layers) == n_layers + 1 and viewer.layers[MAP_NAME] is points
    assert len(points.data) == 9 and points.features["layer"].iloc[-1] == "new"
    assert class_colour("new class", CLASSES) == module.UNTAGGED_COLOUR


@pytest.mark.slow
def test_csv_export(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    add_images(viewer)
    widget = make_widget(viewer)
    tag_two_per_class(widget)
    finish(widget, qtbot, widget.train)
    out = tmp_path / "classes.csv"
    widget.csv_file.value = out
    widget.export_csv()
    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == ["layer", "tag", "label", *(f"prob_{c}" for c in CLASSES), "uncertain", "label_next"]
    assert [r["layer"] for r in rows] == [layer.name for layer in viewer.layers]
    for r in rows:
        layer = viewer.layers[r["layer"]]
        prediction = layer.metadata[PREDICTION_KEY]
        assert r["tag"] == layer.metadata.get(TAG_KEY, "") and r["label"] == prediction["label"]
        for c in CLASSES:
            assert float(r[f"prob_{c}"]) == pytest.approx(prediction["probabilities"][c], abs=1e-6)
        assert r["uncertain"] == ("yes" if prediction["uncertain"] else "")
        assert r["label_next"] == str(layer.metadata.get(NEXT_KEY, ""))


def test_errors_change_nothing(make_napari_viewer, qtbot, errors, tmp_path):
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget.train()
    widget.suggest()
    widget.tag()
    assert errors == [NO_IMAGES] * 3
    widget.feature_map()
    assert errors[-1] == "The feature map needs at least 3 open grayscale images, got 0"

    add_images(viewer, seeds=(0,))
    widget.train()
    assert errors[-1] == "Tag images of at least two classes first"
    tag(widget, "network 0", "network")
    tag(widget, "bundle 0", "bundle")
    widget.classes.value = "network, dispersed"
    widget.train()
    assert errors[-1] == ("Layer 'bundle 0' is tagged 'bundle', which is not one of the classes: "
                          "tag it again or add the class")
    widget.csv_file.value = tmp_path / "out.csv"
    widget.export_csv()
    assert errors[-1] == "Train first: there are no predictions to export"
    assert not (tmp_path / "out.csv").exists()
    for name in ("singular 0", "dispersed 0"):
        tag(widget, name, "network")
    widget.suggest()
    assert errors[-1] == "Every open image is tagged already: no anchors to suggest"
    viewer.layers.remove("singular 0")
    viewer.layers.remove("dispersed 0")
    widget.feature_map()
    assert errors[-1] == "The feature map needs at least 3 open grayscale images, got 2"
    widget.csv_file.value = ""
    widget.export_csv()
    assert errors[-1] == "Choose a CSV file to write first (the 'CSV file' field)"
    assert len(errors) == 10 and widget.head is None and widget.job.worker is None
    assert [layer.name for layer in viewer.layers] == ["network 0", "bundle 0"]
    assert not any(PREDICTION_KEY in layer.metadata or ANCHOR_KEY in layer.metadata for layer in viewer.layers)
