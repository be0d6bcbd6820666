"""Dock widget "Analyse morphology": percolation, density, wire statistics, the wire
graph and the sheet resistance of Labels layers.

Any Labels layer is a wire mask (nonzero = wire), except segmentation scribbles
(values 1 = background and 2 = nanowire both present), where only 2 is wire.
The numbers come from :func:`..analysis.measure_mask`, the same function the
``nanowire-ssl analyze`` CLI calls, so the widget's table and CSV match the
CLI's. The overlays (clusters, percolating cluster, the skeleton's branches
coloured by length or current, junctions as points) are layers the widget
owns, marked in their metadata and updated in place on re-runs; the analysed
layer's data is only read. A histogram panel shows the branch lengths, widths
and node degrees of the last analysed layer.
"""

from __future__ import annotations

import csv
import hashlib
import threading
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Labels
from napari.qt.threading import thread_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info

from ..analysis import COLUMNS, analyse_mask
from ..analysis.network import branch_value_image, degree_counts
from ..analysis.resistance import DEFAULT_ELECTRODES, DEFAULT_JUNCTION_RESISTANCE_OHM
from ..errors import NanowireSSLError
from ..session import session_for
from .tables import results_table
from .workers import track

METRICS_KEY = "nanowire_ssl_metrics"  # source layer metadata: measure_mask's row
ANALYSED_KEY = "nanowire_ssl_analysed"  # fingerprint of the mask and options behind it
OVERLAY_OF = "nanowire_ssl_overlay_of"  # overlay metadata: name of the analysed layer
OVERLAY_KIND = "nanowire_ssl_overlay"  # overlay metadata: clusters / percolating cluster / branches / junctions
NO_LAYER = "No Labels layer: open a mask or segment an image first"
TABLE_COLUMNS = ("layer", "morphology", "pixel_density", "percolates", "spans_lr", "spans_tb",
                 "n_clusters", "largest_cluster_fraction", "total_length", "mean_width", "nematic_order",
                 "n_junctions", "mean_degree", "median_branch_length", "sheet_resistance")
ELECTRODE_CHOICES = (("left-right", "lr"), ("top-bottom", "tb"))
CRITERIA = (("both directions (paper)", "both"), ("either direction", "any"),
            ("left-right", "lr"), ("top-bottom", "tb"))
SPANNING_COLOURS = DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 1: (1.0, 0.1, 0.9, 1.0)})


def wire_mask(data) -> tuple[np.ndarray, str]:
    """Boolean wire mask of Labels data and a note for the status line.

    Segmentation scribbles use 1 = background and 2 = nanowire: when both
    values occur only 2 is wire, otherwise every nonzero label is.
    """
    data = np.asarray(data)
    if (data == 1).any() and (data == 2).any():
        return data == 2, " (scribble labels: only label 2 counted as wire)"
    return data != 0, ""


def scale_pixel_size_nm(layer) -> float | None:
    """nm per pixel from the layer's scale: converted when its units are lengths,
    taken as nm when they are pixels and the scale is not 1; None when unknown."""
    sy, sx = (float(s) for s in layer.scale[-2:])
    unit = layer.units[-1]
    if sy != sx or sx <= 0:
        return None
    if str(unit.dimensionality) == "[length]":
        return float((sx * unit).to("nm").magnitude)
    return sx if sx != 1 else None


def cluster_features(labels: np.ndarray, lengths_px: np.ndarray, spanning: np.ndarray) -> dict:
    """One row per cluster (``index`` = its label, as napari's Labels features expect):
    pixels, skeleton length, the edges it touches, whether it spans and percolates."""
    n = len(lengths_px)

    def hit(values) -> np.ndarray:
        out = np.zeros(n + 1, dtype=bool)
        out[values] = True
        return out[1:]

    left, right, top, bottom = hit(labels[:, 0]), hit(labels[:, -1]), hit(labels[0]), hit(labels[-1])
    return {
        "index": np.arange(1, n + 1),
        "pixels": np.bincount(labels.ravel(), minlength=n + 1)[1:],
        "length_px": lengths_px,
        "spans_lr": left & right,
        "spans_tb": top & bottom,
        "percolating": hit(labels[spanning]),
        "touches_left": left,
        "touches_right": right,
        "touches_top": top,
        "touches_bottom": bottom,
    }


def overlays(mask: np.ndarray, *, crop_bottom: int = 0, **options) -> dict:
    """The core analysis of ``mask`` plus what the overlays show, at full mask size
    (cropped rows empty), the per-cluster features and the histograms' data.

    Branches are coloured by their share of the current when the sheet resistance
    was computed, otherwise by their length (µm with a pixel size, else px)."""
    analysis = analyse_mask(mask, crop_bottom=crop_bottom, **options)
    h = mask.shape[0] - crop_bottom
    perc, wires = analysis.percolation, analysis.wires
    graph = wires.graph
    scale = 1.0 if options.get("pixel_size_nm") is None else options["pixel_size_nm"] / 1000.0
    if analysis.resistance is not None:
        colour_by, values = "current fraction", analysis.resistance.branch_current
    else:
        colour_by, values = ("length (µm)" if scale != 1.0 else "length (px)"), graph.length_px * scale

    def full(part, dtype):
        out = np.zeros(mask.shape, dtype=dtype)
        out[:h] = part
        return out

    return {
        "row": analysis.row,
        "call": str(analysis.call),
        "clusters": full(perc.labels, np.int32),
        "spanning": full(perc.spanning_mask, np.uint8),
        "branches": full(branch_value_image(graph, values), np.float32),
        "colour_by": colour_by,
        "junctions": graph.junctions,
        "junction_degree": graph.degree[graph.degree >= 3],
        "features": cluster_features(perc.labels, wires.cluster_lengths_px, perc.spanning_mask),
        "histograms": {"length": graph.length_px * scale, "width": graph.mean_width_px * scale * 1000.0
                       if scale != 1.0 else graph.mean_width_px, "degree": degree_counts(graph),
                       "unit": "µm" if scale != 1.0 else "px"},
    }


def update_overlay(viewer, source, kind: str, data, *, layer_type: str = "labels", **properties):
    """Replace the data of ``source``'s ``kind`` overlay, adding the layer
    ``"<source> <kind>"`` (``layer_type`` labels, image or points) the first time:
    one overlay per (source, kind)."""
    for layer in viewer.layers:
        if layer.metadata.get(OVERLAY_OF) == source.name and layer.metadata.get(OVERLAY_KIND) == kind:
            layer.data = data
            layer.scale, layer.translate = source.scale[-2:], source.translate[-2:]
            for key, value in properties.items():
                setattr(layer, key, value)
            return layer
    add = getattr(viewer, f"add_{layer_type}")
    return add(data, name=f"{source.name} {kind}", scale=source.scale[-2:], translate=source.translate[-2:],
               metadata={OVERLAY_OF: source.name, OVERLAY_KIND: kind}, **properties)


def _fmt(value, spec: str) -> str:
    return "–" if value is None or value != value else format(value, spec)


def table_row(name: str, row: dict) -> list[str]:
    """The widget table's cells for one layer; lengths in µm / nm when the pixel size is known."""
    yes = {True: "yes", False: "no"}
    physical = row["pixel_size_nm"] is not None
    return [
        name,
        row["morphology"],
        _fmt(row["pixel_density"], ".3f"),
        yes[row["percolates"]],
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
    """Measure Labels layers (percolation, density, wires), show overlays and a table, export CSV."""

    def __init__(self, napari_viewer):
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self._worker = None
        self._rows: dict[str, list[str]] = {}  # layer name -> table cells
        self.layer = ComboBox(label="mask layer", choices=self._mask_layers,
                              tooltip="Labels layer to analyse: nonzero = wire (scribbles: label 2 = wire)")
        self.connectivity = ComboBox(label="connectivity", choices=(8, 4), value=8,
                                     tooltip="Wire pixels touching by a corner (8) or only by a side (4) "
                                     "belong to the same cluster")
        self.link_distance = FloatSpinBox(label="link distance (px)", value=2.0, min=0.0, max=100.0, step=0.5,
                                          tooltip="Also join wire pixels at most this far apart into one cluster. "
                                          "2 px reproduces the paper's DBSCAN clustering (eps = 2 px), which "
                                          "bridges one-pixel gaps; 0 = wires must touch")
        self.criterion = ComboBox(label="percolation", choices=CRITERIA, value="both",
                                  tooltip="A cluster must span the image in both directions (paper), in either, "
                                  "left-right only or top-bottom only")
        self.pixel_size = FloatSpinBox(label="pixel size (nm, 0 = unknown)", value=0.0, min=0.0, max=1e6, step=0.1,
                                       tooltip="nm per pixel of the chosen layer, read from its scale; 0 = unknown "
                                       "(lengths in px only). 'Analyse all' and the CSV export use each other "
                                       "layer's own scale")
        self.pixel_size.native.setDecimals(4)
        self.crop_bottom = SpinBox(label="crop bottom (rows)", value=0, min=0, max=1_000_000,
                                   tooltip="Leave out this many bottom rows (instrument banner)")
        self.wire_resistance = FloatSpinBox(label="wire resistance (Ω/µm, 0 = off)", value=0.0, min=0.0, max=1e9,
                                            step=1.0, tooltip="Resistance of a wire per µm of its length; with a "
                                            "pixel size it adds the sheet resistance (Kirchhoff on the wire graph)")
        self.junction_resistance = FloatSpinBox(label="junction resistance (Ω)", min=0.0, max=1e12, step=10.0,
                                                value=DEFAULT_JUNCTION_RESISTANCE_OHM,
                                                tooltip="Contact resistance where two wires cross or touch")
        self.electrodes = ComboBox(label="electrodes", choices=ELECTRODE_CHOICES, value=DEFAULT_ELECTRODES,
                                   tooltip="Edges of the field that the sheet resistance is measured between")
        self.analyse_button = PushButton(text="Analyse")
        self.analyse_all_button = PushButton(text="Analyse all")
        self.status = Label(value="Choose a Labels layer and press Analyse")
        self.status.native.setWordWrap(True)
        self.table = results_table(TABLE_COLUMNS)
        self.csv_file = FileEdit(label="CSV file", mode="w", filter="CSV files (*.csv)")
        self.export_button = PushButton(text="Export CSV")
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
        self.layer.changed.connect(self._read_pixel_size)
        self.session = session_for(napari_viewer)
        self._show_options(self.session.options)
        for option in (self.connectivity, self.link_distance, self.criterion):
            option.changed.connect(self._options_changed)
        self.session.options_changed.connect(self._show_options)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._layers_changed)
        self._read_pixel_size(self.layer.value)

    # --- layers and options -------------------------------------------------------------

    def _options_changed(self, _=None) -> None:
        """Share the analysis options with the session (bundles and batch runs use them)."""
        self.session.set_options(connectivity=self.connectivity.value, link_distance=self.link_distance.value,
                                 criterion=self.criterion.value)

    def _show_options(self, options: dict) -> None:
        self.connectivity.value, self.link_distance.value = options["connectivity"], options["link_distance"]
        self.criterion.value = options["criterion"]

    def _mask_layers(self, _=None) -> list:
        """Labels layers that are not this widget's overlays."""
        return [layer for layer in self.viewer.layers
                if isinstance(layer, Labels) and OVERLAY_OF not in layer.metadata]

    def _layers_changed(self, _=None) -> None:
        self.layer.reset_choices()
        names = {layer.name for layer in self.viewer.layers}
        if any(name not in names for name in self._rows):
            self._rows = {name: cells for name, cells in self._rows.items() if name in names}
            self._refresh_table()

    def _read_pixel_size(self, layer) -> None:
        if layer is not None:
            self.pixel_size.value = scale_pixel_size_nm(layer) or 0.0

    def _job(self, layer) -> dict:
        """Check ``layer`` and snapshot its mask and the options, raising a message for the user."""
        data = layer.data[0] if layer.multiscale else layer.data
        if layer.ndim != 2:
            raise NanowireSSLError(
                f"Layer '{layer.name}': analysis needs a 2D mask, got shape {tuple(data.shape)}")
        crop = self.crop_bottom.value
        if crop >= data.shape[0]:
            raise NanowireSSLError(f"Layer '{layer.name}': crop bottom ({crop} rows) must be less than the "
                                   f"mask's height ({data.shape[0]} rows)")
        if layer is self.layer.value:
            pixel_size = self.pixel_size.value or None
        else:
            pixel_size = scale_pixel_size_nm(layer)
        wire_resistance = self.wire_resistance.value or None
        if wire_resistance is not None and pixel_size is None:
            raise NanowireSSLError(f"Layer '{layer.name}': the sheet resistance needs a pixel size (the wire "
                                   "resistance is per µm); set it or the wire resistance to 0")
        mask, note = wire_mask(data)
        options = {"pixel_size_nm": pixel_size, "connectivity": self.connectivity.value,
                   "link_distance": self.link_distance.value, "criterion": self.criterion.value,
                   "crop_bottom": crop, "wire_resistance_ohm_per_um": wire_resistance,
                   "junction_resistance_ohm": self.junction_resistance.value, "electrodes": self.electrodes.value}
        fingerprint = hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16)
        fingerprint.update(repr(sorted(options.items())).encode())
        return {"layer": layer, "mask": mask, "note": note, "options": options,
                "fingerprint": fingerprint.hexdigest()}

    # --- actions ------------------------------------------------------------------------

    def analyse(self) -> None:
        """Analyse the chosen layer."""
        layer = self.layer.value
        if layer is None:
            show_error(NO_LAYER)
            return
        self._start([layer], strict=True)

    def analyse_all(self) -> None:
        """Analyse every Labels layer (layers that cannot be analysed are reported and left out)."""
        layers = self._mask_layers()
        if not layers:
            show_error(NO_LAYER)
            return
        self._start(layers)

    def export_csv(self) -> None:
        """Write one CSV row per Labels layer (``layer`` + the CLI's columns), analysing
        the layers not analysed yet."""
        path = Path(self.csv_file.value)
        if not str(self.csv_file.value) or str(path) == "." or path.is_dir():
            show_error("Choose a CSV file to write first (the 'CSV file' field)")
            return
        layers = self._mask_layers()
        if not layers:
            show_error(NO_LAYER)
            return
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

    def _write_csv(self, path: Path, layers) -> None:
        rows = [{"layer": layer.name, **layer.metadata[METRICS_KEY]}
                for layer in layers if METRICS_KEY in layer.metadata]
        try:
            with path.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=("layer", *COLUMNS))
                writer.writeheader()
                writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        except OSError as exc:
            show_error(f"Cannot write {path}: {exc.strerror or exc}")
            return
        show_info(f"Wrote {len(rows)} row(s) to {path}")

    # --- worker ---------------------------------------------------------------------------

    def _start(self, layers, *, strict: bool = False, then=None) -> None:
        """Analyse ``layers`` in a worker thread, showing each result as it comes.

        Layers that fail the checks are reported; with ``strict`` nothing runs then.
        ``then`` runs after all layers succeeded.
        """
        jobs = []
        for layer in layers:
            try:
                jobs.append(self._job(layer))
            except NanowireSSLError as exc:
                show_error(str(exc))
                if strict:
                    return
        if not jobs:
            return

        @thread_worker(start_thread=False)
        def run():
            for job in jobs:
                try:
                    result = overlays(job["mask"], **job["options"])
                except NanowireSSLError as exc:
                    raise NanowireSSLError(f"Layer '{job['layer'].name}': {exc}") from None
                yield job, result

        self._worker = run()
        track(self.viewer, self._worker, threading.Event(), f"Analysing {len(jobs)} layer(s)", len(jobs))
        self._worker.yielded.connect(lambda item: self._show_result(*item))
        self._worker.errored.connect(lambda exc: show_error(str(exc)))
        if then is not None:
            self._worker.returned.connect(lambda _: then())
        self._worker.finished.connect(lambda: self._set_busy(False))
        self._set_busy(True)
        self.status.value = f"analysing {len(jobs)} layer(s)…"
        self._worker.start()

    def _set_busy(self, busy: bool) -> None:
        for button in (self.analyse_button, self.analyse_all_button, self.export_button):
            button.enabled = not busy

    def _show_result(self, job: dict, result: dict) -> None:
        """Store the metrics on the source layer, update its overlays and table row."""
        layer = job["layer"]
        if layer not in self.viewer.layers:  # removed while the worker ran
            return
        layer.metadata[METRICS_KEY] = result["row"]
        layer.metadata[ANALYSED_KEY] = job["fingerprint"]
        update_overlay(self.viewer, layer, "clusters", result["clusters"], features=result["features"],
                       opacity=0.5)
        update_overlay(self.viewer, layer, "percolating cluster", result["spanning"],
                       colormap=SPANNING_COLOURS, opacity=0.6)
        branches = result["branches"]
        top = float(branches.max()) or 1.0
        coloured = update_overlay(self.viewer, layer, "branches", branches, layer_type="image", colormap="turbo",
                                  blending="additive", contrast_limits=(0.0, top))
        coloured.metadata["colour_by"] = result["colour_by"]
        points = update_overlay(self.viewer, layer, "junctions", result["junctions"], layer_type="points",
                                size=max(3.0, 0.01 * max(branches.shape)), face_color="red",
                                border_color="white")
        points.features = {"degree": result["junction_degree"]}
        self.histograms.show(layer.name, result["histograms"])
        self._rows[layer.name] = table_row(layer.name, result["row"])
        self._refresh_table()
        self.status.value = f"{layer.name}: {result['call']}{job['note']}"

    def _refresh_table(self) -> None:
        self.table.value = {"data": list(self._rows.values()), "index": list(range(len(self._rows))),
                            "columns": TABLE_COLUMNS}
        self.table.native.resizeColumnsToContents()
