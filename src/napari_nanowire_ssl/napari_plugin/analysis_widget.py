"""Dock widget "Analyse morphology": percolation, density, wire statistics, the wire
graph and the sheet resistance of mask layers.

Masks are Labels layers and Image layers with few values (a mask file napari
opened as an image, converted on use): nonzero = wire, except segmentation
scribbles, where only label 2 is (:func:`..labels.wire_pixels`). The numbers
come from :func:`..analysis.measure_mask`, the same function the
``nanowire-ssl analyze`` CLI calls, so the widget's table and CSV match the
CLI's. What it draws (:mod:`..analysis.overlays`) is two layers per analysed
mask, owned by the widget, marked in their metadata and updated in place on
re-runs: one Labels layer "<mask> analysis" (percolating clusters, other
clusters, the skeleton's branches coloured by length or current) and the
junctions as points; the analysed layer's data is only read. The bottom crop
and the pixel size are the layer's (proposed from its micrograph's banner and
calibration, the user's value kept per layer). A histogram panel shows the
branch lengths, widths and node degrees of the last analysed layer.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Labels
from napari.qt.threading import thread_worker
from napari.utils.colormaps import DirectLabelColormap, ensure_colormap
from napari.utils.notifications import show_info

from ..analysis import COLUMNS
from ..analysis.overlays import BRANCH, PERCOLATING, overlay_data
from ..analysis.percolation import ANALYSIS_DEFAULTS
from ..analysis.resistance import DEFAULT_ELECTRODES, DEFAULT_JUNCTION_RESISTANCE_OHM
from ..errors import NanowireSSLError
from ..labels import is_scribbles, wire_pixels
from ..session import session_for
from . import layers as L
from .controls import crop_box, show_crop
from .tables import fit_columns, results_table
from .workers import Job, report_error, reports_errors

METRICS_KEY = "nanowire_ssl_metrics"  # source layer metadata: measure_mask's row
ANALYSED_KEY = "nanowire_ssl_analysed"  # fingerprint of the mask and options behind it
OVERLAY_OF = "nanowire_ssl_overlay_of"  # overlay metadata: name of the analysed layer
OVERLAY_KIND = "nanowire_ssl_overlay"  # overlay metadata: analysis / junctions
CONVERTED_KEY = "nanowire_ssl_mask_from_image"  # image layer metadata: the user was told it is read as a mask
NO_LAYER = "No mask layer: open a mask (or segment an image) first"
# Key columns first: what a reader looks for; the rest scroll.
TABLE_COLUMNS = ("layer", "morphology", "percolates", "pixel_density", "spans_lr", "spans_tb",
                 "n_clusters", "largest_cluster_fraction", "total_length", "mean_width", "nematic_order",
                 "n_junctions", "mean_degree", "median_branch_length", "sheet_resistance")
TABLE_MAX_ROWS = 8  # the table grows with its rows up to this many, then scrolls
ELECTRODE_CHOICES = (("left-right", "lr"), ("top-bottom", "tb"))
CRITERIA = (("both directions (paper)", "both"), ("either direction", "any"),
            ("left-right", "lr"), ("top-bottom", "tb"))
PERCOLATING_COLOUR = (1.0, 0.1, 0.9, 0.55)
CLUSTER_COLOUR = (0.25, 0.55, 1.0, 0.45)


def update_overlay(viewer, source, kind: str, data, *, layer_type: str = "labels", **properties):
    """Replace the data of ``source``'s ``kind`` overlay, adding the layer
    ``"<source> <kind>"`` (``layer_type`` labels or points) the first time:
    one overlay per (source, kind)."""
    for layer in viewer.layers:
        if layer.metadata.get(OVERLAY_OF) == source.name and layer.metadata.get(OVERLAY_KIND) == kind:
            layer.data = data
            L.place_like(layer, source)
            for key, value in properties.items():
                setattr(layer, key, value)
            return layer
    add = getattr(viewer, f"add_{layer_type}")
    return add(data, name=f"{source.name} {kind}", **L.placement(source),
               metadata={OVERLAY_OF: source.name, OVERLAY_KIND: kind}, **properties)


def results_colours(features: dict) -> DirectLabelColormap:
    """Colours of the results layer: percolating clusters magenta, other clusters blue, branches
    on the turbo scale of their ``value`` (0 to the largest)."""
    colours = {None: (0.0, 0.0, 0.0, 0.0)}
    values = features["value"]
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    turbo = ensure_colormap("turbo")
    branch = features["part"] == BRANCH
    shades = turbo.map(np.clip(np.nan_to_num(values[branch]) / (top or 1.0), 0.0, 1.0)) if branch.any() else []
    for index, shade in zip(features["index"][branch].tolist(), shades):
        colours[index] = tuple(float(c) for c in shade)
    for index, part in zip(features["index"][~branch].tolist(), features["part"][~branch]):
        colours[index] = PERCOLATING_COLOUR if part == PERCOLATING else CLUSTER_COLOUR
    return DirectLabelColormap(color_dict=colours)


def _fmt(value, spec: str) -> str:
    return "–" if value is None or value != value else format(value, spec)


def table_row(name: str, row: dict) -> list[str]:
    """The widget table's cells for one layer; lengths in µm / nm when the pixel size is known."""
    yes = {True: "yes", False: "no"}
    physical = row["pixel_size_nm"] is not None
    return [
        name,
        row["morphology"],
        yes[row["percolates"]],
        _fmt(row["pixel_density"], ".3f"),
        yes[row["spans_lr"]],
        yes[row["spans_tb"]],
        str(row["n_clusters"]),
        _fmt(row["largest_cluster_fraction"], ".3f"),
        f"{_fmt(row['total_length_um'], '.4g')} µm" if physical else f"{_fmt(row['total_length_px'], '.4g')} px",
        f"{_fmt(row['mean_width_nm'], '.3g')} nm" if physical else f"{_fmt(row['mean_width_px'], '.3g')} px",
        _fmt(row["nematic_order"], ".2f"),
        str(row["n_junctions"]),
        _fmt(row["mean_degree"], ".2f"),
        f"{_fmt(row['median_branch_length_um'], '.3g')} µm" if physical
        else f"{_fmt(row['median_branch_length_px'], '.3g')} px",
        "–" if row["sheet_resistance_ohm_sq"] is None else f"{_fmt(row['sheet_resistance_ohm_sq'], '.4g')} Ω/sq",
    ]


class Histograms:
    """The dock's matplotlib panel: branch length, branch width and node degree of one layer."""

    def __init__(self):
        self.figure = Figure(figsize=(6, 2.0), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.axes = self.figure.subplots(1, 3)
        self.title = ""

    def show(self, name: str, data: dict) -> None:
        unit = data["unit"]
        width_unit = "nm" if unit == "µm" else "px"
        for ax in self.axes:
            ax.clear()
        for ax, values, label in ((self.axes[0], data["length"], f"branch length ({unit})"),
                                  (self.axes[1], data["width"], f"branch width ({width_unit})")):
            values = np.asarray(values)[np.isfinite(values)]
            if len(values):
                ax.hist(values, bins=min(30, max(5, len(values) // 5)), color="tab:blue")
            ax.set_xlabel(label, fontsize=8)
        degrees = data["degree"]
        self.axes[2].bar(list(degrees), list(degrees.values()), color="tab:orange")
        self.axes[2].set_xlabel("node degree", fontsize=8)
        self.axes[0].set_ylabel("count", fontsize=8)
        for ax in self.axes:
            ax.tick_params(labelsize=7)
        self.title = name
        self.figure.suptitle(name, fontsize=8)
        self.canvas.draw_idle()


class AnalysisWidget(Container):
    """Measure mask layers (percolation, density, wires), show the results layers and a table, export CSV."""

    def __init__(self, napari_viewer):
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self._rows: dict[str, list[str]] = {}  # layer name -> table cells
        self.layer = ComboBox(label="mask layer", choices=self._mask_layers,
                              tooltip="Mask to analyse: a Labels layer, or an image with few values (a mask file); "
                              "nonzero = wire (scribbles: label 2 = wire)")
        self.connectivity = ComboBox(label="connectivity", choices=(8, 4), value=ANALYSIS_DEFAULTS["connectivity"],
                                     tooltip="Wire pixels touching by a corner (8) or only by a side (4) "
                                     "belong to the same cluster")
        self.link_distance = FloatSpinBox(label="link distance (px)", value=ANALYSIS_DEFAULTS["link_distance"], min=0.0, max=100.0, step=0.5,
                                          tooltip="Also join wire pixels at most this far apart into one cluster. "
                                          "2 px reproduces the paper's DBSCAN clustering (eps = 2 px), which "
                                          "bridges one-pixel gaps; 0 = wires must touch")
        self.criterion = ComboBox(label="percolation", choices=CRITERIA, value=ANALYSIS_DEFAULTS["criterion"],
                                  tooltip="A cluster must span the image in both directions (paper), in either, "
                                  "left-right only or top-bottom only")
        self.pixel_size = FloatSpinBox(label="pixel size (nm, 0 = unknown)", value=0.0, min=0.0, max=1e6, step=0.1,
                                       tooltip="nm per pixel of the chosen mask: read from the layer (or its image), "
                                       "kept with both when you type it, so every tab uses it; 0 = unknown "
                                       "(lengths in px only)")
        self.pixel_size.native.setDecimals(4)
        self.pixel_size.native.setKeyboardTracking(False)  # one change when the typing ends, not per digit
        self.crop_bottom = crop_box(self._crop_typed)
        self.wire_resistance = FloatSpinBox(label="wire resistance (Ω/µm, 0 = off)", value=0.0, min=0.0, max=1e9,
                                            step=1.0, tooltip="Resistance of a wire per µm of its length; with a "
                                            "pixel size it adds the sheet resistance (Kirchhoff on the wire graph)")
        self.junction_resistance = FloatSpinBox(label="junction resistance (Ω)", min=0.0, max=1e12, step=10.0,
                                                value=DEFAULT_JUNCTION_RESISTANCE_OHM,
                                                tooltip="Contact resistance where two wires cross or touch")
        self.electrodes = ComboBox(label="electrodes", choices=ELECTRODE_CHOICES, value=DEFAULT_ELECTRODES,
                                   tooltip="Edges of the field that the sheet resistance is measured between")
        self.analyse_button = PushButton(text="Analyse")
        self.analyse_all_button = PushButton(
            text="Analyse all", tooltip="Every mask layer except scribbles and true masks (unless chosen above)")
        self.status = Label(value="Choose a mask layer and press Analyse")
        self.status.native.setWordWrap(True)
        self.table = results_table(TABLE_COLUMNS)
        self.csv_file = FileEdit(label="CSV file", mode="w", filter="CSV files (*.csv)")
        self.export_button = PushButton(text="Export CSV")
        self.job = Job(napari_viewer, [self.analyse_button, self.analyse_all_button, self.export_button])
        # Options get a label column; the table and status use the full width.
        self.histograms = Histograms()
        self.extend([Container(widgets=[self.layer, self.connectivity, self.link_distance, self.criterion,
                                        self.pixel_size, self.crop_bottom, self.wire_resistance,
                                        self.junction_resistance, self.electrodes]),
                     self.analyse_button, self.analyse_all_button, self.status, self.table,
                     Container(widgets=[self.csv_file]), self.export_button])
        self.native.layout().addWidget(self.histograms.canvas)
        self.analyse_button.changed.connect(self.analyse)
        self.analyse_all_button.changed.connect(self.analyse_all)
        self.export_button.changed.connect(self.export_csv)
        self.layer.changed.connect(self._layer_chosen)
        self.pixel_size.changed.connect(self._pixel_size_typed)
        self.session = session_for(napari_viewer)
        self._show_options(self.session.options)
        for option in (self.connectivity, self.link_distance, self.criterion):
            option.changed.connect(self._options_changed)
        self.session.options_changed.connect(self._show_options)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._layers_changed)
        self._read_layer(self.layer.value)
        self._refresh_table()

    @property
    def worker(self):
        return self.job.worker

    # --- layers and options -------------------------------------------------------------

    def _options_changed(self, _=None) -> None:
        """Share the analysis options with the session (bundles and batch runs use them)."""
        self.session.set_options(connectivity=self.connectivity.value, link_distance=self.link_distance.value,
                                 criterion=self.criterion.value)

    def _show_options(self, options: dict) -> None:
        self.connectivity.value, self.link_distance.value = options["connectivity"], options["link_distance"]
        self.criterion.value = options["criterion"]

    def _mask_layers(self, _=None) -> list:
        """Mask layers (Labels, images with few values) that are not this widget's overlays."""
        return [layer for layer in L.mask_layers(self.viewer) if OVERLAY_OF not in layer.metadata]

    def _bulk_layers(self) -> list:
        """What "Analyse all" measures: every mask layer but scribbles and true masks, unless chosen."""
        chosen = self.layer.value
        return [layer for layer in self._mask_layers() if layer is chosen
                or not (L.is_truth_layer(layer) or is_scribbles(L.mask_pixels(layer)))]

    def _with_image(self, layer) -> list:
        """``layer`` and its micrograph (when the viewer holds it): what a typed crop or pixel size is kept on."""
        image = L.image_of(self.viewer, layer)
        return [layer] if image is None else [layer, image]

    def _layers_changed(self, _=None) -> None:
        self.layer.reset_choices()
        names = {layer.name for layer in self.viewer.layers}
        if any(name not in names for name in self._rows):
            self._rows = {name: cells for name, cells in self._rows.items() if name in names}
            self._refresh_table()

    def _read_layer(self, layer) -> None:
        """Show the chosen mask's pixel size and bottom crop (not stored: only typed values are)."""
        if layer is None:
            return
        with self.pixel_size.changed.blocked():
            self.pixel_size.value = L.mask_pixel_size_nm(self.viewer, layer) or 0.0
        show_crop(self.crop_bottom, L.mask_banner_rows(self.viewer, layer))

    def _layer_chosen(self, layer) -> None:
        self._read_layer(layer)
        self._show(layer)

    def _show(self, layer) -> None:
        """Make the chosen mask, its micrograph and its results the visible layers, the mask selected."""
        if layer is None or layer not in self.viewer.layers:
            return
        image = L.image_of(self.viewer, layer)
        if image is not None:
            L.show_layer(self.viewer, image)
        L.show_layer(self.viewer, layer)
        if image is not None:
            image.visible = True
        for other in self.viewer.layers:
            if OVERLAY_OF in other.metadata:
                other.visible = other.metadata[OVERLAY_OF] == layer.name

    @reports_errors
    def _pixel_size_typed(self, nm: float) -> None:
        layer = self.layer.value
        if layer is None or not nm:
            return
        for target in self._with_image(layer):
            L.set_pixel_size_nm(target, nm)
        for other in self.viewer.layers:  # the results follow their mask's new scale
            if other.metadata.get(OVERLAY_OF) == layer.name:
                L.place_like(other, layer)

    def _crop_typed(self, rows: int) -> None:
        layer = self.layer.value
        if layer is not None:
            for target in self._with_image(layer):
                L.set_banner_rows(target, rows)

    def _job(self, layer) -> dict:
        """Check ``layer`` and snapshot its mask and the options, raising a message for the user."""
        data = L.full_resolution(layer)
        if layer.ndim != 2:
            raise NanowireSSLError(
                f"Layer '{layer.name}': analysis needs a 2D mask, got shape {tuple(data.shape)}")
        chosen = layer is self.layer.value
        crop = self.crop_bottom.value if chosen else L.mask_banner_rows(self.viewer, layer)
        if crop >= data.shape[0]:
            raise NanowireSSLError(f"Layer '{layer.name}': crop bottom ({crop} rows) must be less than the "
                                   f"mask's height ({data.shape[0]} rows)")
        pixel_size = (self.pixel_size.value or None) if chosen else L.mask_pixel_size_nm(self.viewer, layer)
        wire_resistance = self.wire_resistance.value or None
        if wire_resistance is not None and pixel_size is None:
            raise NanowireSSLError(f"Layer '{layer.name}': the sheet resistance needs a pixel size (the wire "
                                   "resistance is per µm); set it or the wire resistance to 0")
        values = L.mask_pixels(layer)
        note = " (scribble labels: only label 2 counted as wire)" if is_scribbles(values) else ""
        options = {"pixel_size_nm": pixel_size, "connectivity": self.connectivity.value,
                   "link_distance": self.link_distance.value, "criterion": self.criterion.value,
                   "crop_bottom": crop, "wire_resistance_ohm_per_um": wire_resistance,
                   "junction_resistance_ohm": self.junction_resistance.value, "electrodes": self.electrodes.value}
        fingerprint = hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16)
        fingerprint.update(repr(sorted(options.items())).encode())
        return {"layer": layer, "mask": wire_pixels(values), "note": note, "options": options,
                "fingerprint": fingerprint.hexdigest()}

    # --- actions ------------------------------------------------------------------------

    @reports_errors
    def analyse(self) -> None:
        """Analyse the chosen layer."""
        layer = self.layer.value
        if layer is None:
            raise NanowireSSLError(NO_LAYER)
        self._start([layer], strict=True)

    @reports_errors
    def analyse_all(self) -> None:
        """Analyse every mask layer but scribbles and true masks (unless chosen); layers that cannot be
        analysed are reported and left out."""
        layers = self._bulk_layers()
        if not layers:
            raise NanowireSSLError(NO_LAYER)
        self._start(layers)

    @reports_errors
    def export_csv(self) -> None:
        """Write one CSV row per analysed mask layer and per layer "Analyse all" measures (``layer`` + the
        CLI's columns), analysing those not analysed yet."""
        path = Path(self.csv_file.value)
        if not str(self.csv_file.value) or str(path) == "." or path.is_dir():
            raise NanowireSSLError("Choose a CSV file to write first (the 'CSV file' field)")
        bulk = self._bulk_layers()
        layers = [layer for layer in self._mask_layers() if layer in bulk or METRICS_KEY in layer.metadata]
        if not layers:
            raise NanowireSSLError(NO_LAYER)
        # Analyse what is new, repainted or analysed with other options since.
        todo = []
        for layer in layers:
            try:
                if layer.metadata.get(ANALYSED_KEY) != self._job(layer)["fingerprint"]:
                    todo.append(layer)
            except NanowireSSLError:
                todo.append(layer)  # reported (and left out) by _start
        if todo:
            self._start(todo, then=lambda: self._write_csv(path, layers))
        else:
            self._write_csv(path, layers)

    @reports_errors
    def _write_csv(self, path: Path, layers) -> None:
        rows = [{"layer": layer.name, **layer.metadata[METRICS_KEY]}
                for layer in layers if METRICS_KEY in layer.metadata]
        try:
            with path.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=("layer", *COLUMNS))
                writer.writeheader()
                writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        except OSError as exc:
            raise NanowireSSLError(f"Cannot write {path}: {exc.strerror or exc}") from None
        show_info(f"Wrote {len(rows)} row(s) to {path}")

    # --- worker ---------------------------------------------------------------------------

    def _start(self, layers, *, strict: bool = False, then=None) -> None:
        """Analyse ``layers`` in a worker thread, showing each result as it comes.

        Layers that fail the checks are reported; with ``strict`` the first failure is raised and
        nothing runs. ``then`` runs after all layers succeeded.
        """
        jobs = []
        for layer in layers:
            try:
                jobs.append(self._job(layer))
            except NanowireSSLError as exc:
                if strict:
                    raise
                report_error(exc)
        if not jobs:
            return
        for job in jobs:
            layer = job["layer"]
            if not isinstance(layer, Labels) and not layer.metadata.get(CONVERTED_KEY):
                layer.metadata[CONVERTED_KEY] = True
                show_info(f"Layer '{layer.name}' is an image with few values: analysed as a mask (nonzero = wire)")
        stop = self.job.stop_flag

        @thread_worker(start_thread=False)
        def run():
            for job in jobs:
                if stop.is_set():
                    return
                try:
                    result = overlay_data(job["mask"], **job["options"])
                except NanowireSSLError as exc:
                    raise NanowireSSLError(f"Layer '{job['layer'].name}': {exc}") from None
                yield job, result

        self.status.value = f"analysing {len(jobs)} layer(s)…"
        self.job.start(run(), f"Analysing {len(jobs)} layer(s)", total=len(jobs),
                       yielded=lambda item: self._show_result(*item),
                       returned=None if then is None else (lambda _: then()), failed="Analysis failed")

    def _show_result(self, job: dict, result: dict) -> None:
        """Store the metrics on the source layer, update its two results layers and its table row."""
        layer = job["layer"]
        if layer not in self.viewer.layers:  # removed while the worker ran
            return
        layer.metadata[METRICS_KEY] = result["row"]
        layer.metadata[ANALYSED_KEY] = job["fingerprint"]
        features = result["features"]
        labels = update_overlay(self.viewer, layer, "analysis", result["labels"], features=features,
                                colormap=results_colours(features))
        labels.metadata["colour_by"] = result["colour_by"]
        points = update_overlay(self.viewer, layer, "junctions", result["junctions"], layer_type="points",
                                size=max(3.0, 0.01 * max(result["labels"].shape)), face_color="red",
                                border_color="white")
        points.features = {"degree": result["junction_degree"]}
        self.histograms.show(layer.name, result["histograms"])
        self._rows[layer.name] = table_row(layer.name, result["row"])
        self._refresh_table()
        self.status.value = f"{layer.name}: {result['call']}{job['note']}"

    def _refresh_table(self) -> None:
        """Show the rows, the table as tall as they are (up to TABLE_MAX_ROWS) and its columns as wide
        as their cells, the layer names elided (:func:`.tables.fit_columns`)."""
        self.table.value = {"data": list(self._rows.values()), "index": list(range(len(self._rows))),
                            "columns": TABLE_COLUMNS}
        view = self.table.native
        fit_columns(self.table)
        rows = min(max(len(self._rows), 1), TABLE_MAX_ROWS)
        view.setFixedHeight(view.horizontalHeader().sizeHint().height() + rows * view.verticalHeader()
                            .defaultSectionSize() + view.horizontalScrollBar().sizeHint().height()
                            + 2 * view.frameWidth())
