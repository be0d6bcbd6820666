"""Dock widget "Encoder": choose the encoder the other steps use and look at its features."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from ..errors import NanowireSSLError

DEVICES = ("auto", "cpu", "cuda", "mps")
BACKBONES = ("resnet50", "resnet34", "resnet18")


class EncoderWidget(Container):
    """Create (random init), load or import an encoder; show its metadata and features."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.encoder = None
        self.encoder_source = ""
        self._worker = None
        self.backbone = ComboBox(label="backbone", choices=BACKBONES, value="resnet18")
        self.new_button = PushButton(text="New (random weights)")
        self.model_file = FileEdit(label="model file", mode="r",
                                   filter="Model files (*.safetensors *.pth *.pt *.tar)")
        self.load_button = PushButton(text="Load / import")
        self.device = ComboBox(label="device", choices=DEVICES, value="auto")
        self.status = Label(label="encoder", value="none loaded")
        self.image = ComboBox(label="image", choices=self._image_layers)
        self.features_button = PushButton(text="Show features")
        self.extend([self.backbone, self.new_button, self.model_file, self.load_button,
                     self.device, self.status, self.image, self.features_button])
        self.new_button.changed.connect(self.new_encoder)
        self.load_button.changed.connect(self.load_encoder)
        self.features_button.changed.connect(self.show_features)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda _: self.image.reset_choices())

    def _image_layers(self, _=None):
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _set_encoder(self, encoder, source: str) -> None:
        self.encoder, self.encoder_source = encoder, source
        cfg = encoder.config
        self.status.value = f"{cfg['backbone']} ({source})"
        show_info(f"Encoder ready: {cfg['backbone']}, {encoder.embedding_dim}-d features, from {source}")

    def new_encoder(self) -> None:
        from ..models.encoder import Encoder

        self._set_encoder(Encoder(self.backbone.value), "random weights")

    def load_encoder(self) -> None:
        path = Path(self.model_file.value)
        try:
            if path.suffix.lower() == ".safetensors":
                from ..models.modelfile import load_encoder

                encoder = load_encoder(path)
            else:
                from ..models.importers import import_checkpoint

                encoder = import_checkpoint(path)
        except NanowireSSLError as exc:
            show_error(str(exc))
            return
        self.backbone.value = encoder.config["backbone"]
        self._set_encoder(encoder, path.name)

    def show_features(self) -> None:
        layer = self.image.value
        if layer is None:
            show_error("No image layer: open an image first (File > Open, or File > Open Sample)")
            return
        if layer.rgb or layer.ndim != 2:
            show_error(f"Layer '{layer.name}': needs a 2D grayscale image, got shape {layer.data.shape}")
            return
        if self.encoder is None:
            self.new_encoder()
        from ..models.device import select_device
        from ..models.feature_view import feature_pca_rgb

        try:
            device = select_device(self.device.value)
        except NanowireSSLError as exc:
            show_error(str(exc))
            return
        data, name, encoder = layer.data, layer.name, self.encoder

        @thread_worker(connect={"returned": lambda rgb: self._add_features(layer, name, rgb),
                                "errored": lambda exc: show_error(f"Features of '{name}': {exc}")})
        def compute():
            return feature_pca_rgb(encoder, data, device=device)

        self.features_button.enabled = False
        self._worker = compute()
        self._worker.finished.connect(lambda: setattr(self.features_button, "enabled", True))

    def _add_features(self, source_layer, name, rgb) -> None:
        layer_name = f"{name} encoder features"
        if layer_name in self.viewer.layers:
            self.viewer.layers[layer_name].data = rgb
        else:
            self.viewer.add_image(rgb, name=layer_name, rgb=True, scale=source_layer.scale[-2:],
                                  translate=source_layer.translate[-2:], opacity=0.7,
                                  metadata={"encoder": self.encoder_source})
