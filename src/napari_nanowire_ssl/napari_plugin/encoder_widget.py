"""Dock widget "Encoder": choose the encoder every step uses, look at its features, adapt it to the open images.

*Adapt to open images* continues the self-supervised training of the active
encoder on the open grayscale image layers (:func:`~..ssl.pretrain.adaptation_config`,
the same loop as ``nanowire-ssl pretrain --init``), in a worker with progress
and Stop; the result is saved in :data:`ADAPTED_DIR` under a new name (an
earlier adaptation is never overwritten) and becomes the active encoder.
"""

from __future__ import annotations

import time
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_info

from ..errors import NanowireSSLError
from ..models.encoder import BACKBONES
from ..session import session_for
from .controls import device_combo
from .layers import image_layers, image_pixels, image_problem, open_images, placement
from .workers import Job, pretrain_worker, reports_errors

ADAPTED_DIR = Path.home() / "nanowire-ssl"  # where adapted encoders are saved


class EncoderWidget(Container):
    """Default, random, loaded or imported encoder; its metadata and a feature picture.

    The chosen encoder becomes the session's active encoder, shared with the
    other widgets of this viewer.
    """

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.default_button = PushButton(text="Use default encoder")
        self.backbone = ComboBox(label="backbone", choices=BACKBONES, value="resnet18")
        self.new_button = PushButton(text="New (random weights)")
        self.model_file = FileEdit(label="model file", mode="r",
                                   filter="Model files (*.safetensors *.pth *.pt *.tar)")
        self.load_button = PushButton(text="Load / import")
        self.device = device_combo(self.session)
        self.status = Label(label="encoder", value=self._pending_text())
        self.image = ComboBox(label="image", choices=lambda _: image_layers(self.viewer))
        self.features_button = PushButton(text="Show features")
        from ..ssl.pretrain import ADAPT_STEPS

        self.adapt_steps = SpinBox(label="adaptation steps", value=ADAPT_STEPS, min=1, max=100_000,
                                   tooltip="self-supervised steps on the open images (a few minutes on a CPU)")
        self.adapt_button = PushButton(text="Adapt to open images")
        self.adapt_stop_button = PushButton(text="Stop adaptation", enabled=False)
        self.adapt_status = Label(label="adaptation", value="")
        self.extend([self.default_button, self.backbone, self.new_button, self.model_file, self.load_button,
                     self.device, self.status, self.image, self.features_button, self.adapt_steps,
                     self.adapt_button, self.adapt_stop_button, self.adapt_status])
        self.features_job = Job(napari_viewer, [self.features_button])
        self.adapt_job = Job(napari_viewer, [self.adapt_button], self.adapt_stop_button)
        self.adapt_button.changed.connect(self.adapt)
        self.adapt_stop_button.changed.connect(self.stop_adaptation)
        self.default_button.changed.connect(self.use_default)
        self.new_button.changed.connect(self.new_encoder)
        self.load_button.changed.connect(self.load_encoder)
        self.features_button.changed.connect(self.show_features)
        self.session.encoder_changed.connect(self._show_encoder)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda _: self.image.reset_choices())
        if self.session.encoder is not None:
            self._show_encoder(self.session.encoder, self.session.encoder_source)

    @property
    def encoder(self):
        return self.session.encoder

    @property
    def adapt_worker(self):
        return self.adapt_job.worker

    def _pending_text(self) -> str:
        """What the tab says before any encoder is loaded: the one the session will load when first used."""
        spec = self.session.settings.encoder
        name = "the shipped default encoder" if spec == "default" else Path(spec).name
        return f"{name} (loaded when first used)"

    def _show_encoder(self, encoder, source: str) -> None:
        self.status.value = f"{encoder.config['backbone']} ({source})"
        self.backbone.value = encoder.config["backbone"]

    def _set_encoder(self, encoder, source: str) -> None:
        self.session.set_encoder(encoder, source)
        show_info(f"Encoder ready: {encoder.config['backbone']}, {encoder.embedding_dim}-d features, from {source}")

    @reports_errors
    def use_default(self) -> None:
        from ..models.default import load_default_encoder

        self._set_encoder(load_default_encoder(), "default")
        self.session.update_settings(encoder="default")

    def new_encoder(self) -> None:
        from ..models.encoder import Encoder

        self._set_encoder(Encoder(self.backbone.value).eval(), "random weights")

    @reports_errors
    def load_encoder(self) -> None:
        from ..models.importers import import_checkpoint

        path = Path(self.model_file.value)
        encoder = import_checkpoint(path).eval()
        self._set_encoder(encoder, path.name)
        self.session.update_settings(encoder=str(path.resolve()))  # the encoder to start with next time

    @reports_errors
    def show_features(self) -> None:
        from ..models.feature_view import feature_pca_rgb

        layer = self.image.value
        problem = image_problem(layer)
        if problem:
            raise NanowireSSLError(problem)
        encoder, device = self.session.active_encoder(), self.session.device()
        data, name, source = image_pixels(layer), layer.name, self.session.encoder_source

        @thread_worker(start_thread=False)
        def compute():
            return feature_pca_rgb(encoder, data, device=device)

        self.features_job.start(compute(), f"Encoder features of '{name}'", failed=f"Features of '{name}'",
                                returned=lambda rgb: self._add_features(layer, name, rgb, source))

    def _add_features(self, source_layer, name, rgb, encoder_source) -> None:
        layer_name = f"{name} encoder features"
        if layer_name in self.viewer.layers:
            self.viewer.layers[layer_name].data = rgb
        else:
            self.viewer.add_image(rgb, name=layer_name, rgb=True, **placement(source_layer), opacity=0.7,
                                  metadata={"encoder": encoder_source})

    @reports_errors
    def adapt(self) -> None:
        """Continue training the active encoder on the open image layers, in a worker (see the module docstring)."""
        from ..models.default import default_encoder_path
        from ..models.modelfile import read_metadata
        from ..ssl.pretrain import Pretrainer, adaptation_config

        images, n_layers = open_images(self.viewer)
        init = self.session.active_encoder()
        source = self.session.encoder_source
        content_hash = read_metadata(default_encoder_path())["content_hash"] if source == "default" else None
        config = adaptation_config(init, steps=self.adapt_steps.value)
        ADAPTED_DIR.mkdir(parents=True, exist_ok=True)
        out = ADAPTED_DIR / f"adapted_encoder_{time.strftime('%Y%m%d-%H%M%S')}.safetensors"
        trainer = Pretrainer(images, config, device=self.session.device(), init=init, init_source=source,
                             init_content_hash=content_hash)
        total = config.epochs * trainer.steps_per_epoch
        self.adapt_status.value = f"starting: {len(images)} images, {total} steps"
        self.adapt_job.start(
            pretrain_worker(trainer, self.adapt_job.stop_flag, out, f"{n_layers} napari layers"), "Adapting the encoder",
            total=total, failed="Adaptation failed", returned=lambda path: self._adapted(trainer, path),
            yielded=lambda e: setattr(self.adapt_status, "value",
                                      f"step {e.epoch * e.steps_per_epoch + e.step + 1}/{total}, loss {e.loss:.4g}"))

    def stop_adaptation(self) -> None:
        """End after the current step; the encoder trained so far is saved and made active."""
        self.adapt_job.stop()
        self.adapt_status.value = "stopping after this step..."

    def _adapted(self, trainer, path) -> None:
        encoder = trainer.encoder.cpu().eval()
        self.session.set_encoder(encoder, f"adapted, {Path(path).name}")
        self.session.update_settings(encoder=str(path))  # the encoder to start with next time
        self.adapt_status.value = f"saved {path}"
        show_info(f"Adapted encoder saved to {path}; it is now the active encoder")
