"""Dock widget "Cross-reconstruct": a SAXS pattern's SEM morphology, or an SEM image's SAXS pattern (PairVAE).

Pick an image layer, say whether it is a SAXS pattern or an SEM image, and a
trained PairVAE file; Generate adds (or updates in place) the layer
``"<layer> -> SEM"`` or ``"<layer> -> SAXS"``. A model can also be trained
here from a pairs folder (``saxs/`` + ``sem/``, see ``docs/pairvae.md``) in a
background worker with a progress bar and Stop; the saved file then becomes
the model in use. The frozen encoder is the session's active one (the shipped
default if none is active), the same as ``nanowire-ssl pairvae``'s ``--encoder``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_info

from ..errors import NanowireSSLError
from ..session import session_for
from .layers import image_layers, image_pixels, image_problem, layer_name
from .workers import Job, reports_errors

SAXS, SEM = "SAXS pattern", "SEM image"
MODALITY = {SAXS: "saxs", SEM: "sem"}
OUTPUT_OF = "pairvae_source"  # metadata key marking the layers this widget made
DEFAULT_MODEL = Path.home() / "nanowire-ssl" / "pairvae.safetensors"


def output_name(layer_name: str, source: str) -> str:
    return f"{layer_name} -> {'SEM' if source == 'saxs' else 'SAXS'}"


def network_input(data: np.ndarray, source: str, size: int) -> np.ndarray:
    """A layer's pixels as the model's (size, size) input, by the same rules as the files (``pairvae.data``)."""
    from ..pairvae.data import binarize, fit_size, saxs_to_unit

    if source == "saxs":
        return fit_size(saxs_to_unit(np.asarray(data)), size)
    return binarize(fit_size(np.asarray(data, np.float32), size))


class PairVAEWidget(Container):
    """Generate the counterpart of a layer with a PairVAE file; train one from a pairs folder."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self._loaded: tuple | None = None  # (path, mtime, encoder, vae)
        self.layer = ComboBox(label="image", choices=self._image_layers, tooltip="2D SAXS pattern or SEM image")
        self.source = ComboBox(label="the image is a", choices=(SAXS, SEM), value=SAXS)
        self.model = FileEdit(label="model", mode="r", value=DEFAULT_MODEL, filter="*.safetensors")
        self.generate_button = PushButton(text="Generate counterpart")
        self.pairs = FileEdit(label="pairs folder", mode="d", tooltip="folder with saxs/ and sem/ (same stems)")
        self.epochs = SpinBox(label="joint epochs", value=30, min=1, max=10000)
        self.vae_epochs = SpinBox(label="VAE epochs", value=10, min=0, max=10000)
        self.out = FileEdit(label="save model as", mode="w", value=DEFAULT_MODEL, filter="*.safetensors")
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = Label(label="status", value="idle")
        self.job = Job(napari_viewer, [self.train_button], self.stop_button)
        self.extend([self.layer, self.source, self.model, self.generate_button, self.pairs, self.epochs,
                     self.vae_epochs, self.out, self.train_button, self.stop_button, self.status])
        self.generate_button.changed.connect(self.generate)
        self.train_button.changed.connect(self.train)
        self.stop_button.changed.connect(self.stop)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda _=None: self.layer.reset_choices())

    @property
    def worker(self):
        return self.job.worker

    def _image_layers(self, _=None) -> list:
        return [layer for layer in image_layers(self.viewer) if OUTPUT_OF not in layer.metadata]

    def _vae(self):
        """The PairVAE of the model file on the active encoder (reloaded when either changes)."""
        from ..models.modelfile import check_model_path
        from ..pairvae.model import load_pairvae

        path = Path(self.model.value)
        check_model_path(path)
        encoder = self.session.active_encoder()
        key = (path, path.stat().st_mtime_ns, encoder)
        if self._loaded is None or self._loaded[:3] != key:
            self._loaded = (*key, load_pairvae(path, encoder))
        return encoder, self._loaded[3]

    @reports_errors
    def generate(self) -> None:
        """Add or update ``"<layer> -> SEM"`` / ``"<layer> -> SAXS"``."""
        from ..pairvae.model import generate

        layer = self.layer.value
        problem = image_problem(layer)
        if problem:
            raise NanowireSSLError(problem)
        source = MODALITY[self.source.value]
        encoder, vae = self._vae()
        try:
            image = network_input(image_pixels(layer), source, vae.config.image_size)
            out = generate(vae, encoder, image[None], source)[0]
        except NanowireSSLError as exc:
            raise NanowireSSLError(f"{layer_name(layer)}: {exc}") from None
        name = output_name(layer.name, source)
        metadata = {OUTPUT_OF: layer.name, "model": str(self.model.value)}
        if name in self.viewer.layers:
            target = self.viewer.layers[name]
            target.data, target.metadata = out, metadata
        elif source == "saxs":
            self.viewer.add_labels(out, name=name, metadata=metadata, opacity=0.7)
        else:
            self.viewer.add_image(out, name=name, metadata=metadata, colormap="magma", contrast_limits=(0, 1))
        self.status.value = f"generated {name}"

    @reports_errors
    def train(self) -> None:
        """Train on the pairs folder in a worker; the saved file becomes the model in use."""
        from ..pairvae.data import load_pairs
        from ..pairvae.model import PairVAEConfig
        from ..pairvae.train import PairVAETrainer, TrainConfig

        if not str(self.pairs.value) or not Path(self.pairs.value).is_dir():
            raise NanowireSSLError(f"{self.pairs.value}: choose a pairs folder (with saxs/ and sem/)")
        config = PairVAEConfig()
        pairs = load_pairs(Path(self.pairs.value), config.image_size)
        out = Path(self.out.value)
        out.parent.mkdir(parents=True, exist_ok=True)
        trainer = PairVAETrainer(self.session.active_encoder(), pairs.saxs, pairs.sem, config,
                                 TrainConfig(vae_epochs=self.vae_epochs.value, joint_epochs=self.epochs.value))
        total = sum(n for _, n in trainer.plan())
        self.status.value = f"starting: {len(pairs)} pairs, {total} steps"
        self.job.start(_train(trainer, self.job.stop_flag, out, self.session.encoder_source, str(self.pairs.value)),
                       "Training PairVAE", total=total, yielded=self._on_step, returned=self._on_done,
                       failed="PairVAE training failed")

    def stop(self) -> None:
        """End training before the next step; the model trained so far is saved."""
        self.job.stop()
        self.status.value = "stopping..."

    def _on_step(self, event) -> None:
        loss = f", loss {event.losses['total']:.4f}" if event.losses else ""
        self.status.value = f"{event.stage} {event.step + 1}/{event.n_steps}{loss}"

    def _on_done(self, path) -> None:
        self.model.value = path
        self.status.value = f"saved {path}"
        show_info(f"PairVAE saved to {path}; Generate now uses it")


@thread_worker(start_thread=False)
def _train(trainer, stop: threading.Event, out: Path, encoder_source: str, data: str):
    """Generator worker: one event per feature batch or step; saves when done or stopped."""
    from ..pairvae.model import save_pairvae

    yield from trainer.steps(should_stop=stop.is_set)
    save_pairvae(trainer.vae, out, encoder=trainer.encoder, encoder_source=encoder_source,
                 training=trainer.training_info(data))
    return out


SAMPLE_SEED = 2023


def sample_pair():
    """napari sample data: one synthetic end-on-cylinder pair, SAXS (log-scaled) and SEM, 128 px."""
    from ..pairvae.morphologies import generate_morphology, sem_image
    from ..pairvae.scattering import detector_counts, log_scale

    rng = np.random.default_rng(SAMPLE_SEED)
    morphology = generate_morphology("cylinders_end_on", 128, seed=rng)
    meta = {"source": "napari-nanowire-ssl PairVAE generator", "morphology": morphology.kind,
            "period_px": morphology.period_px, "volume_fraction": morphology.volume_fraction, "seed": SAMPLE_SEED}
    return [
        (log_scale(detector_counts(morphology.density, rng=rng)), {"name": "synthetic SAXS", "metadata": meta,
                                                                   "colormap": "magma"}, "image"),
        (sem_image(morphology.density, rng), {"name": "synthetic SEM", "metadata": meta}, "image"),
    ]
