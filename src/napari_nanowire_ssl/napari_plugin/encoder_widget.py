"""Dock widget "Encoder": choose the encoder every step uses, look at its features, adapt it to the open images.

*Adapt to open images* continues the self-supervised training of the active
encoder on the open grayscale image layers (:func:`~..ssl.pretrain.adaptation_config`,
the same loop as ``nanowire-ssl pretrain --init``), in a worker with progress
and Stop; the result is saved in :data:`ADAPTED_DIR` under a new name (an
earlier adaptation is never overwritten) and becomes the active encoder.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from ..errors import NanowireSSLError
from ..session import session_for
from .workers import track

DEVICES = ("auto", "cpu", "cuda", "mps")
BACKBONES = ("resnet18", "resnet34", "resnet50")
ADAPTED_DIR = Path.home() / "nanowire-ssl"  # where adapted encoders are saved


def image_layer_choices(viewer):
    """Image layers of ``viewer`` (a ComboBox choices callback)."""
    return [layer for layer in viewer.layers if isinstance(layer, Image)]


def open_layer_images(viewer) -> tuple[list, int]:
    """The 2D images of the open grayscale image layers (a stack gives its slices) and the layer count."""
    layers = [layer for layer in image_layer_choices(viewer) if not layer.rgb and layer.ndim in (2, 3)]
    if not layers:
        raise NanowireSSLError("No grayscale image layer open: open images or choose a folder")
    images = []
    for layer in layers:
        data = layer.data
        images.extend(list(data) if data.ndim == 3 else [data])
    return images, len(layers)


def device_choices(current: str) -> list[str]:
    """The device menu, with ``current`` (such as ``cuda:1`` from the settings) in it."""
    return list(dict.fromkeys([*DEVICES, current]))


def device_combo(session) -> ComboBox:
    """A device menu bound both ways to the session's persistent settings."""
    combo = ComboBox(label="device", choices=device_choices(session.settings.device), value=session.settings.device,
                     tooltip="auto = CUDA GPU, then Apple MPS, then CPU; kept for the next session")
    combo.changed.connect(lambda value: session.update_settings(device=value))
    session.settings_changed.connect(lambda settings: setattr(combo, "value", settings.device))
    return combo


def check_gray_2d(layer) -> str | None:
    """Why ``layer`` cannot go into an encoder (in words a user understands), or None when it can."""
    if layer is None:
        return "No image layer: open an image first (File > Open, or File > Open Sample)"
    if layer.rgb:
        return (f"Layer '{layer.name}' is a colour (RGB) image: the models take grayscale micrographs; "
                "convert it to grayscale (for example with Fiji) and open it again")
    if layer.ndim != 2:
        shape = "x".join(str(n) for n in layer.data.shape)
        return (f"Layer '{layer.name}' is a stack ({shape}), but a single 2D image is needed here: "
                "split the stack (right-click the layer > Split Stack) and choose one image")
    return None


class EncoderWidget(Container):
    """Default, random, loaded or imported encoder; its metadata and a feature picture.

    The chosen encoder becomes the session's active encoder, shared with the
    other widgets of this viewer.
    """

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self._worker = None
        self.default_button = PushButton(text="Use default encoder")
        self.backbone = ComboBox(label="backbone", choices=BACKBONES, value="resnet18")
        self.new_button = PushButton(text="New (random weights)")
        self.model_file = FileEdit(label="model file", mode="r",
                                   filter="Model files (*.safetensors *.pth *.pt *.tar)")
        self.load_button = PushButton(text="Load / import")
        self.device = device_combo(self.session)
        self.status = Label(label="encoder", value="none loaded")
        self.image = ComboBox(label="image", choices=lambda _: image_layer_choices(self.viewer))
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
        self.adapt_worker = None
        self._adapt_stop = threading.Event()
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

    def _show_encoder(self, encoder, source: str) -> None:
        self.status.value = f"{encoder.config['backbone']} ({source})"
        self.backbone.value = encoder.config["backbone"]

    def _set_encoder(self, encoder, source: str) -> None:
        self.session.set_encoder(encoder, source)
        show_info(f"Encoder ready: {encoder.config['backbone']}, {encoder.embedding_dim}-d features, from {source}")

    def use_default(self) -> None:
        from ..models.default import load_default_encoder

        try:
            self._set_encoder(load_default_encoder(), "default")
            self.session.update_settings(encoder="default")
        except NanowireSSLError as exc:
            show_error(str(exc))

    def new_encoder(self) -> None:
        from ..models.encoder import Encoder

        self._set_encoder(Encoder(self.backbone.value).eval(), "random weights")

    def load_encoder(self) -> None:
        from ..models.importers import import_checkpoint

        path = Path(self.model_file.value)
        try:
            encoder = import_checkpoint(path).eval()
        except NanowireSSLError as exc:
            show_error(str(exc))
            return
        self._set_encoder(encoder, path.name)
        self.session.update_settings(encoder=str(path.resolve()))  # the encoder to start with next time

    def show_features(self) -> None:
        layer = self.image.value
        problem = check_gray_2d(layer)
        if problem:
            show_error(problem)
            return
        from ..models.device import select_device
        from ..models.feature_view import feature_pca_rgb

        try:
            device = select_device(self.device.value)
            self.session.active_encoder()
        except NanowireSSLError as exc:
            show_error(str(exc))
            return
        data, name, encoder, source = layer.data, layer.name, self.encoder, self.session.encoder_source

        @thread_worker(start_thread=False)
        def compute():
            return feature_pca_rgb(encoder, data, device=device)

        self.features_button.enabled = False
        self._worker = compute()
        self._worker.returned.connect(lambda rgb: self._add_features(layer, name, rgb, source))
        self._worker.errored.connect(lambda exc: show_error(f"Features of '{name}': {exc}"))
        track(self.viewer, self._worker, threading.Event(), f"Encoder features of '{name}'")
        self._worker.start()
        self._worker.finished.connect(lambda: setattr(self.features_button, "enabled", True))

    def _add_features(self, source_layer, name, rgb, encoder_source) -> None:
        layer_name = f"{name} encoder features"
        if layer_name in self.viewer.layers:
            self.viewer.layers[layer_name].data = rgb
        else:
            self.viewer.add_image(rgb, name=layer_name, rgb=True, scale=source_layer.scale[-2:],
                                  translate=source_layer.translate[-2:], opacity=0.7,
                                  metadata={"encoder": encoder_source})

    def adapt(self) -> None:
        """Continue training the active encoder on the open image layers, in a worker (see the module docstring)."""
        from ..models.default import default_encoder_path
        from ..models.modelfile import read_metadata
        from ..ssl.pretrain import Pretrainer, adaptation_config
        from .pretrain_widget import _train

        try:
            images, n_layers = open_layer_images(self.viewer)
            init = self.session.active_encoder()
            source = self.session.encoder_source
            content_hash = read_metadata(default_encoder_path())["content_hash"] if source == "default" else None
            config = adaptation_config(init, images, steps=self.adapt_steps.value)
            ADAPTED_DIR.mkdir(parents=True, exist_ok=True)
            out = ADAPTED_DIR / f"adapted_encoder_{time.strftime('%Y%m%d-%H%M%S')}.safetensors"
            trainer = Pretrainer(images, config, device=self.device.value, init=init, init_source=source,
                                 init_content_hash=content_hash)
        except (NanowireSSLError, OSError) as exc:
            show_error(str(exc))
            return
        self._adapt_stop.clear()
        total = config.epochs * trainer.steps_per_epoch
        self.adapt_worker = _train(trainer, self._adapt_stop, out, f"{n_layers} napari layers")
        track(self.viewer, self.adapt_worker, self._adapt_stop, "Adapting the encoder", total)
        self.adapt_worker.yielded.connect(
            lambda e: setattr(self.adapt_status, "value", f"step {e.epoch * e.steps_per_epoch + e.step + 1}/{total}, "
                                                          f"loss {e.loss:.4g}"))
        self.adapt_worker.returned.connect(lambda path: self._adapted(trainer, path))
        self.adapt_worker.errored.connect(lambda exc: show_error(f"Adaptation failed: {exc}"))
        self.adapt_worker.finished.connect(self._adaptation_ended)
        self.adapt_button.enabled, self.adapt_stop_button.enabled = False, True
        self.adapt_status.value = f"starting: {len(images)} images, {total} steps"
        self.adapt_worker.start()

    def stop_adaptation(self) -> None:
        """End after the current step; the encoder trained so far is saved and made active."""
        self._adapt_stop.set()
        self.adapt_status.value = "stopping after this step..."

    def _adapted(self, trainer, path) -> None:
        encoder = trainer.encoder.cpu().eval()
        self.session.set_encoder(encoder, f"adapted, {Path(path).name}")
        self.session.update_settings(encoder=str(path))  # the encoder to start with next time
        self.adapt_status.value = f"saved {path}"
        show_info(f"Adapted encoder saved to {path}; it is now the active encoder")

    def _adaptation_ended(self) -> None:
        self.adapt_button.enabled, self.adapt_stop_button.enabled = True, False
