"""Dock widget "Bundle and batch": save / load what was trained, run it over a folder, settings.

A bundle (:mod:`..bundle`) holds the session's encoder, classifier, decoder
and options in one model file; loading one makes them the session's, so
every widget (and the CLI's ``--bundle``) uses them. The batch run is
:func:`..batch.process_files`, the loop ``nanowire-ssl analyze --bundle``
runs: masks, overlays and one ``results.csv`` in the output folder, with
progress and Stop. The settings section edits the persistent
:class:`~..settings.Settings` (device, encoder at start, tile, batch size).
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import Container, FileEdit, Label, ProgressBar, PushButton, SpinBox
from napari.utils.notifications import show_info, show_warning

from ..errors import NanowireSSLError
from ..session import session_for
from .controls import FolderRun, device_combo
from .workers import Job, batch_worker, reports_errors

PROGRESS_MAX = 1000


class BatchWidget(Container):
    """Save / load bundles, run the session's bundle over a folder, edit the settings."""

    def __init__(self, napari_viewer):
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        settings = self.session.settings

        self.contents = Label()
        self.bundle_file = FileEdit(label="bundle file", mode="w", filter="Model bundles (*.safetensors)")
        self.save_button = PushButton(text="Save bundle")
        self.load_button = PushButton(text="Load bundle")
        self.folder = FolderRun()
        self.run_button = PushButton(text="Run on folder")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=PROGRESS_MAX)
        self.status = Label(value="Train a classifier or a decoder (or load a bundle), then run it on a folder")
        self.device = device_combo(self.session)
        self.tile = SpinBox(label="tile (px)", value=settings.tile, min=64, max=8192, step=32)
        self.batch_size = SpinBox(label="batch size", value=settings.batch_size, min=1, max=256)
        self.start_encoder = Label(label="encoder at start")
        self.job = Job(napari_viewer, [self.run_button, self.save_button, self.load_button], self.stop_button)
        for label in (self.contents, self.status):
            label.native.setWordWrap(True)
        self.extend([
            self.contents,
            Container(widgets=[self.bundle_file]),
            Container(widgets=[self.save_button, self.load_button], layout="horizontal", labels=False),
            self.folder,
            Container(widgets=[self.run_button, self.stop_button], layout="horizontal", labels=False),
            self.progress, self.status,
            Label(value="Settings (kept for the next session)"),
            Container(widgets=[self.device, self.tile, self.batch_size, self.start_encoder]),
        ])
        self.save_button.changed.connect(self.save)
        self.load_button.changed.connect(self.load)
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.tile.changed.connect(lambda value: self._update_settings(tile=value))
        self.batch_size.changed.connect(lambda value: self._update_settings(batch_size=value))
        for signal in (self.session.encoder_changed, self.session.head_changed, self.session.decoder_changed):
            signal.connect(self._show_contents)
        self.session.settings_changed.connect(self._show_settings)
        self._show_contents()
        self._show_settings(settings)
        if self.session.settings_problem:
            show_warning(self.session.settings_problem)

    # --- state ------------------------------------------------------------------------------

    def _show_contents(self, *_) -> None:
        session = self.session
        parts = [f"encoder: {session.encoder_source or 'not loaded yet'}",
                 f"classifier: {', '.join(session.head.class_names) if session.head else 'not trained'}",
                 f"decoder: {'trained' if session.decoder else 'not trained'}"]
        self.contents.value = "Session: " + "; ".join(parts)

    def _show_settings(self, settings) -> None:
        self.tile.value, self.batch_size.value = settings.tile, settings.batch_size
        self.start_encoder.value = settings.encoder

    @reports_errors
    def _update_settings(self, **changes) -> None:
        self.session.update_settings(**changes)

    # --- bundles ----------------------------------------------------------------------------

    def _bundle_path(self) -> Path:
        path = Path(self.bundle_file.value)
        if not str(self.bundle_file.value) or str(path) == "." or path.is_dir():
            raise NanowireSSLError("Choose a bundle file first (the 'bundle file' field)")
        return path if path.suffix else path.with_suffix(".safetensors")

    @reports_errors
    def save(self) -> None:
        """Write the session's encoder, classifier, decoder and options as one bundle file."""
        from ..bundle import save_bundle

        path = self._bundle_path()
        bundle = self.session.bundle()
        save_bundle(path, bundle)
        self.status.value = f"Saved {bundle.describe()} to {path.name}"
        show_info(f"Bundle saved to {path}")

    @reports_errors
    def load(self) -> None:
        """Make a bundle's encoder, classifier, decoder and options the session's."""
        from ..bundle import load_bundle

        path = self._bundle_path()
        bundle = load_bundle(path, device=self.session.settings.device)
        self.session.apply_bundle(bundle, path.name)
        self.status.value = f"Loaded {bundle.describe()} from {path.name}"
        show_info(f"Bundle loaded from {path}")

    # --- batch ------------------------------------------------------------------------------

    @property
    def worker(self):
        return self.job.worker

    @reports_errors
    def run(self) -> None:
        """Run the session's bundle over every image of the input folder, in the background."""
        bundle = self.session.bundle()
        files, dst = self.folder.job()
        self.progress.value = 0
        self.status.value = f"Processing {len(files)} file(s) into {dst}…"
        worker = batch_worker(bundle, files, dst, self.job.stop_flag, crop_bottom=self.folder.crop_setting)
        self.job.start(worker, f"Batch: {len(files)} file(s)",
                       total=len(files), yielded=self._advanced,
                       returned=lambda rows: self._done(dst, len(files), rows), failed="Batch run failed")

    def _advanced(self, event) -> None:
        self.progress.value = int(round(event.fraction * PROGRESS_MAX))
        self.status.value = f"{event.index + 1}/{event.total}: {event.path.name}"

    def _done(self, dst: Path, total: int, rows: list[dict]) -> None:
        failed = [row["error"] for row in rows if row["error"]]
        stopped = "" if len(rows) == total else f" (stopped after {len(rows)} of {total})"
        self.status.value = f"Wrote {len(rows) - len(failed)} result(s) to {dst / 'results.csv'}{stopped}"
        if failed:
            show_warning(f"{len(failed)} file(s) could not be processed: {failed[0]}")
        else:
            show_info(f"Batch done: {len(rows)} file(s), results in {dst / 'results.csv'}")

    def stop(self) -> None:
        self.job.stop()
        self.status.value = "stopping…"
