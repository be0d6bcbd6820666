"""Dock widget "Encoder": choose the encoder every step uses and look at its features."""

from __future__ import annotations

import threading
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from ..errors import NanowireSSLError
from ..session import session_for
from .workers import track

DEVICES = ("auto", "cpu", "cuda", "mps")
BACKBONES = ("resnet18", "resnet34", "resnet50")


def image_layer_choices(viewer):
    """Image layers of ``viewer`` (a ComboBox choices callback)."""
    return [layer for layer in viewer.layers if isinstance(layer, Image)]


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
        self.extend([self.default_button, self.backbone, self.new_button, self.model_file, self.load_button,
                     self.device, self.status, self.image, self.features_button])
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

