"""Dock widget "Classify morphology": tag a few open images, train a linear head, classify the rest.

Tags, predictions, suggested anchors and the "label next" rank (untagged
images by how ambiguous the head finds them, 1 = label first) live in each
image layer's metadata (``nanowire_ssl_class``, ``nanowire_ssl_prediction``,
``nanowire_ssl_anchor``, ``nanowire_ssl_label_next``), so they follow the
layer when it is renamed or saved with the session. Uncertain calls
(:func:`..fewshot.classify.is_uncertain`) are marked in the table. The
features come from :func:`..fewshot.features.image_features` with one
:class:`~..fewshot.features.FeatureCache` per widget: training again, asking
for anchors or a feature map never encodes an image twice. The feature map is
a Points layer in its own abstract 2D space, drawn to the right of the images
(it shares the canvas with them); clicking a point shows that image.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QSizePolicy

from ..errors import NanowireSSLError
from ..fewshot.anchors import suggest_anchors
from ..fewshot.classify import LinearHead, is_uncertain, label_next
from ..fewshot.embedding import embed_2d
from ..fewshot.features import FeatureCache, block_weights, feature_blocks, image_features
from ..session import session_for
from .controls import image_crop_box
from .layers import image_layers, micrograph_pixels, show_layer
from .tables import fit_columns, results_table
from .workers import Job, report_error

TAG_KEY = "nanowire_ssl_class"
PREDICTION_KEY = "nanowire_ssl_prediction"
ANCHOR_KEY = "nanowire_ssl_anchor"  # 1-based rank of a suggested anchor
NEXT_KEY = "nanowire_ssl_label_next"  # 1-based rank among the untagged images: label the most ambiguous first
MAP_KEY = "nanowire_ssl_feature_map"  # marks the widget's Points layer
MAP_NAME = "feature map"
UNTAGGED = "(untagged)"
DEFAULT_CLASSES = "singular, dispersed, network, bundle"
NO_IMAGES = "No grayscale image layer open: open images first (File > Open, or File > Open Sample)"
# p: calibrated probability of the prediction; uncertain: "?" when p is low; next: label-next rank
TABLE_COLUMNS = ("layer", "tag", "prediction", "p", "uncertain", "next", "anchor")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
UNTAGGED_COLOUR = "#9a9a9a"
MAP_SIZE = 100.0  # the map's coordinates span 0..MAP_SIZE; the layer's scale fits it beside the images


def parse_classes(text: str) -> list[str]:
    """Distinct class names of a comma-separated list, in order."""
    return list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def class_colour(name: str, classes: list[str]) -> str:
    """The map colour of a class (grey for untagged images and unknown classes)."""
    return PALETTE[classes.index(name) % len(PALETTE)] if name in classes else UNTAGGED_COLOUR


class ClassifyWidget(Container):
    """Tag images with classes, train, suggest anchors, show a feature map, export CSV."""

    def __init__(self, napari_viewer):
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.cache = FeatureCache()
        self._note = ""  # uncertain calls and label-next suggestions of the last classification
        self.classes = LineEdit(label="classes", value=DEFAULT_CLASSES,
                                tooltip="Class names, separated by commas")
        self.layer = ComboBox(label="image", choices=self._image_layers,
                              tooltip="2D grayscale image layer to tag (gray images saved as RGB are converted; "
                                      "colour images and stacks are not offered)")
        self.tag_class = ComboBox(label="class", choices=self._class_choices,
                                  tooltip=f"Class of the image; {UNTAGGED} removes its tag")
        self.crop_bottom = image_crop_box(self.layer)
        self.tag_button = PushButton(text="Tag")
        self.counts = Label()
        self.train_button = PushButton(text="Train",
                                       tooltip="Train a linear classifier on the tagged images and classify "
                                       "every open image")
        self.classify_button = PushButton(text="Classify",
                                          tooltip="Classify every open image with the current classifier "
                                          "(trained here or loaded from a bundle), without training again")
        self.anchors_button = PushButton(text="Suggest anchors",
                                         tooltip="Which untagged images to tag first (one per class)")
        self.map_button = PushButton(text="Feature map",
                                     tooltip="A t-SNE map of the images' features, as a Points layer; "
                                     "click a point to see its image")
        self.legend = Label(visible=False)
        self.status = Label(value="Tag images of at least two classes, then press Train")
        self.table = results_table(TABLE_COLUMNS)
        self.csv_file = FileEdit(label="CSV file", mode="w", filter="CSV files (*.csv)")
        self.export_button = PushButton(text="Export CSV")
        self.job = Job(napari_viewer, [self.train_button, self.classify_button, self.anchors_button, self.map_button,
                                       self.export_button, self.tag_button])
        for label in (self.counts, self.legend, self.status):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.classes.native.setCursorPosition(0)
        self.extend([Container(widgets=[self.classes, self.layer, self.crop_bottom, self.tag_class]), self.tag_button, self.counts,
                     Container(widgets=[self.train_button, self.classify_button, self.anchors_button,
                                        self.map_button],
                               layout="horizontal", labels=False),
                     self.legend, self.status, self.table, Container(widgets=[self.csv_file]), self.export_button])
        self.classes.changed.connect(self._classes_changed)
        self.layer.changed.connect(lambda layer: show_layer(self.viewer, layer))
        self.tag_button.changed.connect(self.tag)
        self.train_button.changed.connect(self.train)
        self.classify_button.changed.connect(self.classify)
        self.anchors_button.changed.connect(self.suggest)
        self.map_button.changed.connect(self.feature_map)
        self.export_button.changed.connect(self.export_csv)
        self.session.head_changed.connect(self._head_changed)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._layers_changed)
        self.viewer.mouse_drag_callbacks.append(self._on_click)
        self._refresh()

    # --- layers, classes, tags --------------------------------------------------------------

    def _image_layers(self, _=None) -> list:
        """Open 2D grayscale image layers (gray images saved as RGB included)."""
        return [layer for layer in image_layers(self.viewer) if not layer.metadata.get(MAP_KEY)]

    def _class_choices(self, _=None) -> list[str]:
        return [*parse_classes(self.classes.value), UNTAGGED]

    def _classes_changed(self, _=None) -> None:
        self.tag_class.reset_choices()
        self._refresh()

    def _layers_changed(self, _=None) -> None:
        self.layer.reset_choices()
        self._refresh()

    @property
    def head(self) -> LinearHead | None:
        """The session's classifier (shared with the bundle and batch step)."""
        return self.session.head

    def _head_changed(self, head) -> None:
        if head is None:
            self.status.value = "The encoder changed: press Train again"
            return
        missing = [c for c in head.class_names if c not in parse_classes(self.classes.value)]
        if missing:
            self.classes.value = ", ".join([*parse_classes(self.classes.value), *missing])

    def tag(self) -> None:
        """Tag the chosen layer with the chosen class (or remove its tag)."""
        layer, name = self.layer.value, self.tag_class.value
        if layer is None:
            report_error(NO_IMAGES)
            return
        if name == UNTAGGED:
            layer.metadata.pop(TAG_KEY, None)
        else:
            layer.metadata[TAG_KEY] = name
            layer.metadata.pop(ANCHOR_KEY, None)  # a suggested anchor is done once tagged
        self._refresh()

    def _refresh(self) -> None:
        """Redraw the tag counts and the table from the layers' metadata."""
        classes, layers = parse_classes(self.classes.value), self._image_layers()
        tags = [layer.metadata.get(TAG_KEY) for layer in layers]
        counts = ", ".join(f"{c} {tags.count(c)}" for c in classes)
        others = sorted({t for t in tags if t is not None and t not in classes})
        self.counts.value = f"Tagged: {counts or 'no classes'}" + (
            f"; not a class: {', '.join(others)}" if others else "")
        rows = []
        for layer in layers:
            prediction = layer.metadata.get(PREDICTION_KEY)
            rows.append([layer.name, layer.metadata.get(TAG_KEY, ""),
                         prediction["label"] if prediction else "",
                         f"{prediction['probabilities'][prediction['label']]:.2f}" if prediction else "",
                         "?" if prediction and prediction.get("uncertain") else "",
                         str(layer.metadata.get(NEXT_KEY, "")), str(layer.metadata.get(ANCHOR_KEY, ""))])
        self.table.value = {"data": rows, "index": list(range(len(rows))), "columns": TABLE_COLUMNS}
        table = self.table.native
        fit_columns(self.table)
        table.setMinimumWidth(table.horizontalHeader().length() + 2 * table.frameWidth()
                              + table.verticalScrollBar().sizeHint().width())
        points = self._map_layer()
        if points is not None:
            self._mark_map(points)

    # --- the worker ---------------------------------------------------------------------------

    def _run(self, layers, compute, done, what: str) -> None:
        """Encode ``layers`` and call ``compute(features, encoder)`` in a worker, then
        ``done(layers, result)`` (layers removed meanwhile are skipped by ``done``)."""
        try:
            encoder = self.session.active_encoder()
            images = [micrograph_pixels(layer)[0] for layer in layers]
        except NanowireSSLError as exc:
            report_error(exc)
            return
        names, cache = [layer.name for layer in layers], self.cache

        @thread_worker(start_thread=False)
        def work():
            features = image_features(encoder, images, names=[f"Layer '{n}'" for n in names], cache=cache)
            return compute(features, encoder)

        self.status.value = f"{what}: encoding {len(layers)} image(s)…"
        self.job.start(work(), what, returned=lambda result: done(layers, result), failed=f"{what} failed")

    # --- train ----------------------------------------------------------------------------------

    def train(self) -> None:
        """Train a head on the tagged images and classify every open grayscale image."""
        layers = self._image_layers()
        if not layers:
            report_error(NO_IMAGES)
            return
        classes = parse_classes(self.classes.value)
        tagged = [layer for layer in layers if TAG_KEY in layer.metadata]
        for layer in tagged:
            if layer.metadata[TAG_KEY] not in classes:
                report_error(f"Layer '{layer.name}' is tagged '{layer.metadata[TAG_KEY]}', which is not one of "
                           f"the classes: tag it again or add the class")
                return
        labels = [layer.metadata[TAG_KEY] for layer in tagged]
        used = [c for c in classes if c in labels]
        if len(used) < 2:
            report_error("Tag images of at least two classes first")
            return
        index = [layers.index(layer) for layer in tagged]

        def compute(features, encoder):
            head = LinearHead.for_encoder(encoder).fit(features[index], labels, class_names=used)
            return head, head.predict_proba(features)

        self._run(layers, compute, self._trained, "Training")

    def classify(self) -> None:
        """Classify every open grayscale image with the session's classifier."""
        layers = self._image_layers()
        if not layers:
            report_error(NO_IMAGES)
            return
        head = self.head
        if head is None:
            report_error("No classifier yet: tag images and press Train, or load a bundle")
            return
        self._run(layers, lambda features, _: (head, head.predict_proba(features)), self._classified,
                  "Classifying")

    def _classified(self, layers, result) -> list:
        """Store each layer's prediction by ``result = (head, probabilities)`` in its metadata;
        return the layers still open."""
        head, probabilities = result
        alive = [layer for layer in layers if layer in self.viewer.layers]
        flags = is_uncertain(probabilities)
        for layer, p, flag in zip(layers, probabilities, flags):
            layer.metadata.pop(NEXT_KEY, None)
            if layer in alive:
                layer.metadata[PREDICTION_KEY] = {
                    "label": head.class_names[int(p.argmax())],
                    "probabilities": {c: float(v) for c, v in zip(head.class_names, p)},
                    "uncertain": bool(flag)}
        untagged = [i for i, layer in enumerate(layers) if layer in alive and TAG_KEY not in layer.metadata]
        order = [untagged[k] for k in label_next(probabilities[untagged])] if untagged else []
        for rank, i in enumerate(order, start=1):
            layers[i].metadata[NEXT_KEY] = rank
        n_uncertain = int(sum(flags[i] for i in untagged))
        calibration = head.calibration_note()
        self._note = ((f"; {n_uncertain} untagged call(s) uncertain (?)" if n_uncertain else "")
                      + (f"; {calibration}" if calibration else "")
                      + (f". Label next: {', '.join(layers[i].name for i in order[:3])}" if order else ""))
        self.status.value = f"Classified {len(alive)} image(s) into {', '.join(head.class_names)}" + self._note
        self._refresh()
        return alive

    def _trained(self, layers, result) -> None:
        self.session.set_head(result[0])
        alive = self._classified(layers, result)
        head = result[0]
        missing = [c for c in parse_classes(self.classes.value) if c not in head.class_names]
        n_tagged = sum(TAG_KEY in layer.metadata for layer in alive)
        self.status.value = (f"Trained on {n_tagged} tagged image(s) of {len(head.class_names)} classes; "
                             f"classified {len(alive)} image(s)" + self._note
                             + (f". Not trained (no tagged image): {', '.join(missing)}" if missing else ""))

    # --- anchors ----------------------------------------------------------------------------------

    def suggest(self) -> None:
        """Rank the untagged images to tag first: as many as there are classes."""
        layers = self._image_layers()
        if not layers:
            report_error(NO_IMAGES)
            return
        untagged = [layer for layer in layers if TAG_KEY not in layer.metadata]
        if not untagged:
            report_error("Every open image is tagged already: no anchors to suggest")
            return
        n = min(max(len(parse_classes(self.classes.value)), 1), len(untagged))
        self._run(untagged, lambda features, encoder: suggest_anchors(
            features, n, weights=block_weights(feature_blocks(encoder))), self._anchored, "Suggesting anchors")

    def _anchored(self, layers, order) -> None:
        for layer in self._image_layers():
            layer.metadata.pop(ANCHOR_KEY, None)
        names = []
        for rank, i in enumerate(order, start=1):
            layer = layers[int(i)]
            if layer in self.viewer.layers:
                layer.metadata[ANCHOR_KEY] = rank
                names.append(layer.name)
        self.status.value = f"Label these first: {', '.join(names)}"
        self._refresh()

    # --- feature map ------------------------------------------------------------------------------

    def feature_map(self) -> None:
        """Show a t-SNE map of all open images' features as the Points layer "feature map"."""
        layers = self._image_layers()
        if len(layers) < 3:
            report_error(f"The feature map needs at least 3 open grayscale images, got {len(layers)}")
            return
        self._run(layers, lambda features, _: embed_2d(features, seed=0), self._mapped, "Feature map")

    def _map_layer(self):
        return next((layer for layer in self.viewer.layers if layer.metadata.get(MAP_KEY)), None)

    def _mapped(self, layers, coords) -> None:
        keep = [i for i, layer in enumerate(layers) if layer in self.viewer.layers]
        alive, coords = [layers[i] for i in keep], coords[keep]
        span = np.ptp(coords, axis=0)
        coords = (coords - coords.min(axis=0)) / np.where(span > 0, span, 1) * MAP_SIZE
        # Scale the map to the tallest image and place it to the right of all images.
        extents = [layer.extent.world for layer in alive]
        side = max(e[1][0] - e[0][0] for e in extents)
        scale = (side / MAP_SIZE,) * 2
        translate = (min(e[0][0] for e in extents), max(e[1][1] for e in extents) + 0.15 * side)
        names, points = {"layer": [layer.name for layer in alive]}, self._map_layer()
        if points is None:
            points = self.viewer.add_points(coords, name=MAP_NAME, scale=scale, translate=translate,
                                            features=names, metadata={MAP_KEY: True})
            points.selected_data.events.items_changed.connect(self._show_selected)
            self.viewer.reset_view()
        else:
            points.selected_data = set()
            points.data = coords
            points.scale, points.translate, points.features = scale, translate, names
        self._mark_map(points)
        points.mode = "select"
        self.status.value = (f"Feature map of {len(alive)} images, drawn beside them: click a point to see "
                             "its image")

    def _mark_map(self, points) -> None:
        """Colour the map by class (tag, else prediction), tagged images as squares, anchors larger and ringed."""
        classes, layers = parse_classes(self.classes.value), list(points.features["layer"])
        metadata = [self.viewer.layers[n].metadata if n in self.viewer.layers else {} for n in layers]
        names = [m.get(TAG_KEY) or (m.get(PREDICTION_KEY) or {}).get("label") or UNTAGGED for m in metadata]
        anchors = np.array([m.get(ANCHOR_KEY, 0) for m in metadata], dtype=int)
        points.features = {"layer": layers, "class": names, "anchor": anchors}
        points.face_color = [class_colour(n, classes) for n in names]
        points.border_color = ["white" if a else "black" for a in anchors]
        points.border_width = 0.2
        points.symbol = ["square" if m.get(TAG_KEY) else "disc" for m in metadata]
        points.size = np.where(anchors > 0, 7.0, 4.5)
        self.legend.value = "Feature map: " + " ".join(
            f'<span style="color:{class_colour(c, classes)}">●</span>&nbsp;{c}' for c in [*classes, UNTAGGED]
        ) + " &nbsp;■ tagged &nbsp;◯ anchor (white ring)"
        self.legend.visible = True

    def _show_selected(self, *_) -> None:
        """Make the image of the (last) selected map point the visible, active layer."""
        points = self._map_layer()
        if points is None or not len(points.selected_data):
            return
        name = points.features["layer"].iloc[max(points.selected_data)]
        if name not in self.viewer.layers:
            return
        image = self.viewer.layers[name]
        for layer in self._image_layers():
            layer.visible = layer is image
        self.viewer.layers.selection.active = image
        self.status.value = f"Showing '{name}'"

    def _on_click(self, viewer, event):
        """A click on a map point selects it whatever layer is active (napari mouse callback)."""
        points = self._map_layer()
        if points is None or not points.visible or (
                viewer.layers.selection.active is points and points.mode == "select"):
            return  # the layer's own selection handles it
        position = np.asarray(points.world_to_data(event.position))[-2:]
        distance = np.linalg.norm(points.data - position, axis=1)
        if len(distance) and distance.min() <= points.size[distance.argmin()] / 2:
            points.selected_data = {int(distance.argmin())}

    # --- CSV --------------------------------------------------------------------------------------

    def export_csv(self) -> None:
        """Write ``layer,tag,label,prob_<class>...,uncertain,label_next`` for every classified image."""
        path = Path(self.csv_file.value)
        if not str(self.csv_file.value) or str(path) == "." or path.is_dir():
            report_error("Choose a CSV file to write first (the 'CSV file' field)")
            return
        if self.head is None:
            report_error("Train first: there are no predictions to export")
            return
        classes = self.head.class_names
        layers = [layer for layer in self._image_layers() if PREDICTION_KEY in layer.metadata]
        try:
            with path.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["layer", "tag", "label", *(f"prob_{c}" for c in classes), "uncertain",
                                 "label_next"])
                for layer in layers:
                    prediction = layer.metadata[PREDICTION_KEY]
                    probabilities = prediction["probabilities"]
                    writer.writerow([layer.name, layer.metadata.get(TAG_KEY, ""), prediction["label"],
                                     *(f"{probabilities[c]:.6f}" if c in probabilities else "" for c in classes),
                                     "yes" if prediction.get("uncertain") else "", layer.metadata.get(NEXT_KEY, "")])
        except OSError as exc:
            report_error(f"Cannot write {path}: {exc.strerror or exc}")
            return
        unclassified = len(self._image_layers()) - len(layers)
        show_info(f"Wrote {len(layers)} row(s) to {path}"
                  + (f"; {unclassified} image(s) opened since training are not classified: train again"
                     if unclassified else ""))
