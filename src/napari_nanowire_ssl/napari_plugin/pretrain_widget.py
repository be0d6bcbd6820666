"""Dock widget "Pretrain encoder": self-supervised pretraining in the background.

Drives the same :class:`~napari_nanowire_ssl.ssl.pretrain.Pretrainer` loop as
``nanowire-ssl pretrain``, in a napari generator worker: a progress bar, a live
loss plot, and a Stop that ends after the current step with a checkpoint and a
usable encoder file. The trained encoder becomes the session's active encoder.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from napari.utils.notifications import show_info
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QWidget

from ..models.encoder import BACKBONES
from ..session import session_for
from .controls import device_combo
from .layers import open_images
from .workers import Job, pretrain_worker, reports_errors

OPEN_LAYERS, FOLDER = "open image layers", "folder"
DEFAULT_OUT = Path.home() / "nanowire-ssl" / "pretrained_encoder.safetensors"


class LossPlot(QWidget):
    """A minimal live line plot of the loss per step (no plotting dependency)."""

    def __init__(self):
        super().__init__()
        self.values: list[float] = []
        self.setMinimumHeight(90)

    def add(self, value: float) -> None:
        self.values.append(value)
        self.update()

    def clear(self) -> None:
        self.values = []
        self.update()

    def paintEvent(self, event):  # noqa: N802 (Qt name)
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        if len(self.values) < 2:
            return
        lo, hi = min(self.values), max(self.values)
        span = (hi - lo) or 1.0
        w, h = self.width() - 8, self.height() - 8
        points = [QPointF(4 + w * i / (len(self.values) - 1), 4 + h * (hi - v) / span)
                  for i, v in enumerate(self.values)]
        painter.setPen(QPen(Qt.GlobalColor.cyan, 1.5))
        painter.drawPolyline(QPolygonF(points))
        painter.setPen(Qt.GlobalColor.white)
        painter.drawText(6, 14, f"loss {self.values[-1]:.4g}")


class PretrainWidget(Container):
    """Choose images, method and size; Start / Stop; the result becomes the active encoder."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.trainer = None
        self.source = ComboBox(label="images", choices=(OPEN_LAYERS, FOLDER), value=OPEN_LAYERS)
        self.folder = FileEdit(label="folder", mode="d")
        self.method = ComboBox(label="method", choices=("barlow", "simclr"), value="barlow")
        self.backbone = ComboBox(label="backbone", choices=BACKBONES, value="resnet18")
        self.image_size = SpinBox(label="view size (px)", value=128, min=32, max=1024, step=32)
        self.epochs = SpinBox(label="epochs", value=10, min=1, max=10000)
        self.batch_size = SpinBox(label="batch size", value=32, min=2, max=4096)
        self.device = device_combo(self.session)
        self.out = FileEdit(label="save as", mode="w", value=DEFAULT_OUT, filter="*.safetensors")
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = Label(label="status", value="idle")
        self.job = Job(napari_viewer, [self.start_button], self.stop_button)
        self.extend([self.source, self.folder, self.method, self.backbone, self.image_size, self.epochs,
                     self.batch_size, self.device, self.out, self.start_button, self.stop_button, self.status])
        self.plot = LossPlot()
        self.native.layout().addWidget(self.plot)
        self.folder.visible = False
        self.source.changed.connect(lambda value: setattr(self.folder, "visible", value == FOLDER))
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)

    @property
    def worker(self):
        return self.job.worker

    def _images(self):
        """2D float images to pretrain on, from the open layers or the folder."""
        if self.source.value == FOLDER:
            from ..io import list_images, read_image

            images = []
            for path in list_images([Path(self.folder.value)]):
                data = read_image(path).data
                images.extend(data if data.ndim == 3 else [data])
            return images, f"folder {self.folder.value}"
        images, n_layers = open_images(self.viewer)
        return images, f"{n_layers} napari layers"

    @reports_errors
    def start(self) -> None:
        from ..ssl.pretrain import PretrainConfig, Pretrainer

        images, description = self._images()
        config = PretrainConfig(method=self.method.value, backbone=self.backbone.value,
                                image_size=self.image_size.value, epochs=self.epochs.value,
                                batch_size=self.batch_size.value)
        out = Path(self.out.value)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.trainer = Pretrainer(images, config, device=self.session.device(),
                                  checkpoint=out.with_name(out.name + ".ckpt"))
        self.plot.clear()
        total = config.epochs * self.trainer.steps_per_epoch
        self.status.value = f"starting: {len(images)} images, {total} steps"
        self.job.start(pretrain_worker(self.trainer, self.job.stop_flag, out, description), "Pretraining", total=total,
                       yielded=self._on_step, returned=self._on_done, failed="Pretraining failed",
                       finished=self._on_finished)

    def stop(self) -> None:
        """Ask the loop to end after the current step (it then saves)."""
        self.job.stop()
        self.status.value = "stopping after this step..."

    def _on_step(self, event) -> None:
        self.plot.add(event.loss)
        self.status.value = (f"epoch {event.epoch + 1}/{event.epochs}, step {event.step + 1}/"
                             f"{event.steps_per_epoch}, {event.images_per_s:.0f} img/s")

    def _on_done(self, path) -> None:
        encoder = self.trainer.encoder.cpu().eval()
        self.session.set_encoder(encoder, Path(path).name)
        self.status.value = f"saved {path}"
        show_info(f"Pretrained encoder saved to {path}; it is now the active encoder")

    def _on_finished(self) -> None:
        """Drop the optimiser state (the worker's tracking frees cached GPU memory)."""
        self.trainer = None
