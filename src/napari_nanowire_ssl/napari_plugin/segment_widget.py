"""Dock widget "Segment nanowires": train a segmentation model from a few strokes, predict masks.

Scribbles are a Labels layer with the plugin's convention (0 = not labelled,
1 = background, 2 = nanowire). Training runs the trainer of
:func:`~..fewshot.segment.make_trainer` (``model``: auto by default, the pixel
classifier chosen on held-out strokes) in a generator worker with a live loss
and a preview of the mask; Stop keeps the best state. The status line names
the model kept and its validation Dice. With "train on the strokes of every
open image" (on by default) Train also takes every other open image whose
scribble layer, named ``<image> scribbles`` as New scribble layer names it,
holds strokes: with labels on several images the model is chosen on each
image held out in turn, and every image trained on is predicted at the end.
The predicted wires are drawn in the colour of the nanowire strokes (label 2).
Predictions (:func:`~..fewshot.tiling.segment_image`) never touch the
scribbles: they go to one layer per image, ``<image> nanowires`` (1 =
nanowire), and, when asked for, ``<image> nanowire probability``; the widget
owns them (marked in their metadata) and updates them in place. Training
again starts afresh on all the strokes when the current model learnt from
those of the same images alone and is a quick pixel model
(:func:`~..fewshot.segment.retrains_afresh`); otherwise it goes on from it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject, Signal

from ..errors import NanowireSSLError
from ..models.modelfile import encoder_identity
from ..fewshot.policy import self_training_steps, training_crop
from ..fewshot.segment import (
    CONTEXT,
    DECODER,
    DEFAULT_MODEL,
    MODELS,
    SELF_TRAINING,
    SELF_TRAINING_STEPS,
    check_classes,
    check_labels,
    load_decoder,
    make_trainer,
    model_description,
    retrains_afresh,
    save_decoder,
)
from ..fewshot.tiling import predict_tiled, segment_image, wire_mask
from ..labels import NANOWIRE
from ..session import session_for
from ..io.banner import with_banner_rows, without_banner
from ..io.normalize import check_network_input, normalize
from .controls import FolderRun, device_combo, image_crop_box
from .layers import (
    full_resolution,
    image_layers,
    image_problem,
    layer_name,
    micrograph_pixels,
    placement,
    show_layer,
)
from .workers import Job, batch_worker, report_error, reports_errors

OUTPUT_OF = "nanowire_ssl_segmentation_of"  # output layer metadata: name of the image
OUTPUT_KIND = "nanowire_ssl_segmentation"  # "probability" or "nanowires"
KIND_NAMES = {"probability": "nanowire probability", "nanowires": "nanowires"}
STYLES = {"probability": {"colormap": "magma", "opacity": 0.5, "contrast_limits": (0.0, 1.0)},
          "nanowires": {"opacity": 0.6}}
HELP = "Scribbles: paint 2 = nanowire, 1 = background, 0 = leave unlabelled"
NO_MODEL = "No trained decoder: paint scribbles and press Train, or load a decoder"
PROGRESS_MAX = 1000
# What the status line adds during each stage of training (SegmentEvent.stage): why the loss jumps.
STAGE_NOTES = {
    SELF_TRAINING: " (self-training: confident pixels count as labels, so the loss jumps and is not comparable "
                   "with before)",
    CONTEXT: " (context stage: a second model reads the first one's probability map; its loss is its own)",
    DECODER: " (U-Net decoder on the encoder's maps, to be averaged with the pixel model (full masks); its loss "
             "is its own)",
}
BRUSH_SIZE = 3  # px: no wider than the thin (2-3 px) wires of SEM films; widen it for open background


def scribble_layer_name(image_layer) -> str:
    """The name of an image's scribble layer: New scribble layer gives it, Train finds it by it."""
    return f"{image_layer.name} scribbles"


def quoted(layers) -> str:
    """'a', 'a' and 'b', 'a', 'b' and 'c': layer names for a status line."""
    names = [f"'{layer.name}'" for layer in layers]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def shape_text(shape) -> str:
    return "x".join(str(n) for n in shape)


class _TileProgress(QObject):
    """Progress of a prediction, emitted in the worker thread and delivered in the GUI thread."""

    advanced = Signal(float)


class SegmentWidget(Container):
    """Scribble, train, predict the open images or a folder, save / load the decoder."""

    def __init__(self, napari_viewer):
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.trainer = None
        # ((image layer, scribble layer) pairs, model): the model learnt from those pairs' strokes alone,
        # so Train on them again may start afresh (fewshot.segment.retrains_afresh) with nothing lost.
        self._learnt_from: tuple | None = None
        self._placeholders = []  # output layers added hidden before training, shown when their data come
        self._tiles = _TileProgress()
        self._tiles.advanced.connect(self._set_progress)

        self.help = Label(value=HELP)
        self.image = ComboBox(label="image", choices=self._image_layers, tooltip="2D grayscale image to segment")
        self.scribbles = ComboBox(label="scribbles", choices=self._scribble_layers,
                                  tooltip="Labels layer of strokes: 2 = nanowire, 1 = background, 0 = unlabelled")
        self.new_scribbles_button = PushButton(text="New scribble layer")
        self.crop_bottom = image_crop_box(self.image)
        self.model_kind = ComboBox(
            label="model", choices=MODELS, value=DEFAULT_MODEL,
            tooltip="auto: pixel classifiers on multiscale filters with and without the encoder's features; "
                    "the one scoring better on a held-out quarter of your strokes is kept. decoder: the U-Net "
                    "decoder on the encoder maps (slower); decoder+finetune: the decoder and the encoder's last "
                    "stage (slower still; for many labels)")
        self.n_steps = SpinBox(label="steps", value=200, min=1, max=100_000)
        self.self_training = SpinBox(
            label="self-training steps", value=SELF_TRAINING_STEPS, min=0, max=100_000,
            tooltip="After the steps on your strokes, this many more in which the unpainted pixels the model "
                    "is sure about (probability above 0.9 or below 0.1) count as labels. Your strokes are not "
                    "changed. 0 = off")
        self.batch_size = SpinBox(label="batch size", value=self.session.settings.batch_size, min=1, max=256)
        self.preview_every = SpinBox(label="preview every (steps, 0 = off)", value=20, min=0, max=100_000)
        self.all_images = CheckBox(
            text="train on the strokes of every open image", value=True,
            tooltip="Also the other open images whose scribble layer ('<image> scribbles', as New scribble "
                    "layer names it) holds strokes; the model is then chosen on each image held out in turn, "
                    "and every image trained on is predicted. Off: the chosen image and scribbles only")
        self.probability = CheckBox(text="also show the probability map", value=False,
                                    tooltip="Besides the mask, an image layer '<image> nanowire probability' "
                                    "(0-1) that previews and predictions update")
        self.device = device_combo(self.session)
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=PROGRESS_MAX)
        self.status = Label(value="Choose an image and its scribbles, then Train")
        self.predict_button = PushButton(text="Predict")
        self.predict_all_button = PushButton(text="Predict all")
        self.folder = FolderRun()
        self.predict_folder_button = PushButton(text="Predict folder")
        self.decoder_file = FileEdit(label="decoder file", mode="w", filter="Model files (*.safetensors)")
        self.save_button = PushButton(text="Save decoder")
        self.load_button = PushButton(text="Load decoder")
        self.job = Job(napari_viewer, [self.train_button, self.predict_button, self.predict_all_button,
                                       self.predict_folder_button, self.load_button, self.save_button],
                       self.stop_button)
        for label in (self.help, self.status):
            label.native.setWordWrap(True)
        self.extend([
            self.help,
            Container(widgets=[self.image, self.scribbles, self.crop_bottom]),
            self.new_scribbles_button,
            Container(widgets=[self.model_kind, self.n_steps, self.self_training, self.batch_size,
                               self.preview_every, self.device]),
            self.all_images,
            self.probability,
            Container(widgets=[self.train_button, self.stop_button], layout="horizontal", labels=False),
            self.progress, self.status,
            Container(widgets=[self.predict_button, self.predict_all_button], layout="horizontal", labels=False),
            self.folder,
            self.predict_folder_button,
            Container(widgets=[self.decoder_file]),
            Container(widgets=[self.save_button, self.load_button], layout="horizontal", labels=False),
        ])
        self.new_scribbles_button.changed.connect(self.new_scribble_layer)
        self.image.changed.connect(lambda layer: show_layer(self.viewer, layer))
        self.train_button.changed.connect(self.train)
        self.stop_button.changed.connect(self.stop)
        self.predict_button.changed.connect(self.predict)
        self.predict_all_button.changed.connect(self.predict_all)
        self.predict_folder_button.changed.connect(self.predict_folder)
        self.save_button.changed.connect(self.save)
        self.load_button.changed.connect(self.load)
        self.session.decoder_changed.connect(self._decoder_changed)
        self.session.settings_changed.connect(self._settings_changed)
        self.batch_size.changed.connect(lambda value: self.session.update_settings(batch_size=value))
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._layers_changed)

    # --- layers ---------------------------------------------------------------------------

    @property
    def worker(self):
        """The running worker (None when idle)."""
        return self.job.worker if self.job.busy else None

    @property
    def _stop(self) -> threading.Event:
        return self.job.stop_flag

    def _image_layers(self, _=None) -> list:
        return [layer for layer in image_layers(self.viewer) if OUTPUT_OF not in layer.metadata]

    def _scribble_layers(self, _=None) -> list:
        return [layer for layer in self.viewer.layers if isinstance(layer, Labels) and OUTPUT_OF not in layer.metadata]

    def _layers_changed(self, _=None) -> None:
        self.image.reset_choices()
        self.scribbles.reset_choices()

    @reports_errors
    def new_scribble_layer(self) -> None:
        """Add an empty Labels layer ``<image> scribbles`` with the nanowire brush (2) selected."""
        layer = self.image.value
        self._checked_image(layer)
        scribbles = self.viewer.add_labels(np.zeros(full_resolution(layer).shape[:2], np.uint8),
                                           name=scribble_layer_name(layer), **placement(layer))
        scribbles.selected_label = 2
        scribbles.brush_size = BRUSH_SIZE
        scribbles.mode = "paint"
        self.scribbles.value = scribbles
        self.status.value = HELP

    def _kinds(self) -> tuple[str, ...]:
        """The output layers of an image: its mask, and its probability map when asked for."""
        return ("probability", "nanowires") if self.probability.value else ("nanowires",)

    def _show(self, layer, prob: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
        """Put the mask of image ``layer`` (from ``prob`` for a preview) and, when asked for, its
        probability map on its output layers."""
        if layer not in self.viewer.layers:  # removed while a worker ran
            return
        if mask is None and prob is not None:
            mask = wire_mask(prob)
        if not self.probability.value:
            prob = None
        with self._keeping_selection():
            for kind, data in (("probability", prob), ("nanowires", mask)):
                if data is not None:
                    output = self._output(layer, kind, data)
                    if output in self._placeholders:
                        self._placeholders.remove(output)
                        output.visible = True

    def _add_placeholders(self, layer, shape: tuple[int, int]) -> None:
        """Add the missing output layers of image ``layer``, hidden and empty, until their data come.

        Adding a layer takes napari 0.3-0.7 s of the GUI thread; assigning data
        to one, tens of ms. Done when Train is pressed, training itself then
        only assigns data and the event loop keeps running.
        """
        dtypes = {"probability": np.float32, "nanowires": np.uint8}
        with self._keeping_selection():
            for kind in self._kinds():
                dtype = dtypes[kind]
                if self._find_output(layer, kind) is None:
                    self._placeholders.append(self._output(layer, kind, np.zeros(shape, dtype), visible=False))

    @contextmanager
    def _keeping_selection(self):
        """Adding a layer selects it: keep the user's (brush) layer selected."""
        active = self.viewer.layers.selection.active
        yield
        if active is not None and self.viewer.layers.selection.active is not active:
            self.viewer.layers.selection.active = active

    def _find_output(self, source, kind: str):
        for layer in self.viewer.layers:
            if layer.metadata.get(OUTPUT_OF) == source.name and layer.metadata.get(OUTPUT_KIND) == kind:
                return layer
        return None

    def _output(self, source, kind: str, data: np.ndarray, *, visible: bool = True):
        """Assign ``data`` to the output layer ``kind`` of image ``source``, adding the layer if missing."""
        layer = self._find_output(source, kind)
        if layer is not None:
            layer.data = data
            where = placement(source)
            if not (np.array_equal(layer.scale, where["scale"]) and np.array_equal(layer.translate, where["translate"])):
                layer.scale, layer.translate = where["scale"], where["translate"]  # each assignment redraws
            return layer
        add = self.viewer.add_image if kind == "probability" else self.viewer.add_labels
        style = dict(STYLES[kind])
        if kind == "nanowires":
            style["colormap"] = self._wire_colormap()
        return add(data, name=f"{source.name} {KIND_NAMES[kind]}", **placement(source),
                   metadata={OUTPUT_OF: source.name, OUTPUT_KIND: kind}, visible=visible, **style)

    def _wire_colormap(self):
        """Mask value 1 drawn in the colour of the nanowire strokes (label 2 of the scribble layer)."""
        from napari.utils.colormaps import DirectLabelColormap

        scribbles = self.scribbles.value
        colour = scribbles.colormap.map(NANOWIRE) if scribbles is not None else Labels(
            np.zeros((1, 1), np.uint8)).colormap.map(NANOWIRE)
        return DirectLabelColormap(color_dict={0: np.zeros(4), 1: np.asarray(colour), None: np.zeros(4)})

    # --- encoder and model ----------------------------------------------------------------

    @property
    def model(self):
        """The session's segmentation model (encoder + decoder), shared with bundles and batch runs."""
        return self.session.decoder

    def _decoder_changed(self, model) -> None:
        if model is None and self.worker is None:
            self.status.value = "The encoder changed: train again or load a decoder trained on it"

    def _settings_changed(self, settings) -> None:
        self.batch_size.value = settings.batch_size

    def _checked_image(self, layer) -> tuple[np.ndarray, int]:
        """``(the layer's pixels above its banner, banner rows)``, or a one-line error naming it
        (colour, stack, too small, constant...)."""
        problem = image_problem(layer)
        if problem:
            raise NanowireSSLError(problem)
        image, rows = micrograph_pixels(layer)
        check_network_input(image, name=layer_name(layer))
        normalize(image, name=layer_name(layer))  # a constant or all-NaN image, named before any work starts
        return image, rows

    # --- training -------------------------------------------------------------------------

    def _checked_labels(self, layer, scribbles, rows: int) -> np.ndarray:
        """The strokes of ``scribbles`` on image ``layer`` above its ``rows``-row banner, checked."""
        labels, shape = full_resolution(scribbles), full_resolution(layer).shape[:2]
        if labels.shape != shape:
            raise NanowireSSLError(f"Layer '{scribbles.name}' is {shape_text(labels.shape)} but image "
                                   f"'{layer.name}' is {shape_text(shape)}")
        return without_banner(labels, rows)

    def _training_pairs(self) -> list[tuple]:
        """The chosen (image, scribbles) pair, then, with :attr:`all_images`, every other image's pair
        whose scribble layer (found by :func:`scribble_layer_name`) holds strokes."""
        layer, scribbles = self.image.value, self.scribbles.value
        pairs = [(layer, scribbles)]
        if self.all_images.value:
            by_name = {s.name: s for s in self._scribble_layers()}
            for other in self._image_layers():
                strokes = by_name.get(scribble_layer_name(other))
                if other is not layer and strokes is not None and strokes is not scribbles \
                        and full_resolution(strokes).any():
                    pairs.append((other, strokes))
        return pairs

    @reports_errors
    def train(self) -> None:
        """Train on the chosen image and scribbles, and on the other images' strokes when asked
        (afresh, or going on from the current model: see the module)."""
        pairs = self._training_pairs()
        images, labels, names, jobs = [], [], [], []
        for layer, scribbles in pairs:
            image, rows = self._checked_image(layer)
            if scribbles is None:
                raise NanowireSSLError("No scribble layer: press 'New scribble layer' and paint 2 = nanowire, "
                                       "1 = background")
            lab = self._checked_labels(layer, scribbles, rows)
            name = f"Layer '{scribbles.name}'" + (f" (above its {rows}-row bottom crop)" if rows else "")
            check_labels(image, lab, name=name)
            images.append(image)
            labels.append(lab.copy())
            names.append(name)
            jobs.append((layer, image, rows))
        check_classes(labels, names)
        encoder = self.session.active_encoder()
        learnt = self._learnt_from
        own = learnt is not None and _same_pairs(learnt[0], pairs) and learnt[1] is self.model
        previous = None if own and retrains_afresh(self.model) else self.model
        self.trainer = make_trainer(encoder, images, labels, model=self.model_kind.value,
                                    previous=previous, crop=training_crop(images),
                                    batch_size=self.batch_size.value, device=self.device.value,
                                    names=[f"Layer '{layer.name}'" for layer, _ in pairs])
        for layer, image, rows in jobs:
            self._add_placeholders(layer, full_resolution(layer).shape[:2])
        n_steps = self.n_steps.value
        self_training = self_training_steps(self.self_training.value, self.trainer.has_unpainted)
        worker = _train(self.trainer, [(image, rows) for _, image, rows in jobs], n_steps, self_training,
                        self.preview_every.value, self.session.settings.tile, self._stop)
        total = n_steps + self_training + self.trainer.context_steps
        # What the new model will have learnt from: these pairs' strokes alone, or more (unknown: None).
        learnt_from = tuple(pairs) if previous is None or own else None
        trained = [layer for layer, _ in pairs]
        where = f"afresh on all the strokes of {quoted(trained)}" if own and previous is None else f"on {quoted(trained)}"
        self._start(worker, f"training {where}…", total=total,
                    yielded=lambda item: self._on_step(trained[0], *item),
                    returned=lambda results: self._on_trained(trained, results, learnt_from))

    def _on_step(self, layer, event, prob) -> None:
        if prob is not None:
            self._show(layer, prob)
            return
        self._set_progress(event.fraction)
        phase = STAGE_NOTES.get(event.stage, "")
        self.status.value = f"step {event.step + 1}/{event.n_steps}{phase}, loss {event.loss:.4f}; " \
                            f"{self.trainer.choice_line()}"

    def _on_trained(self, layers, results, pairs) -> None:
        """``results``: (probability, mask) of each image layer trained on, or None when stopped;
        ``pairs``: the (image, scribble) layers whose strokes alone the model learnt from, or None."""
        trainer = self.trainer
        self.session.set_decoder(trainer.model)
        self._learnt_from = None if pairs is None else (pairs, trainer.model)
        steps = len(trainer.losses)
        if results is None:
            self.status.value = f"stopped after {steps} steps; the best state is kept (best loss " \
                                f"{trainer.best_loss:.4f}; {trainer.choice_line()}); press Predict to see it"
            return
        for layer, result in zip(layers, results):
            self._show(layer, *result)
        work = f"trained {steps} steps (best loss {trainer.best_loss:.4f})" if steps else \
            "nothing trained (the threshold kept has nothing to learn)"
        self.status.value = f"{work}; {quoted(layers)} predicted; {trainer.choice_line()}"

    # --- prediction -----------------------------------------------------------------------

    @reports_errors
    def predict(self) -> None:
        """Predict the chosen image."""
        self._predict_layers([self.image.value])

    @reports_errors
    def predict_all(self) -> None:
        """Predict every open 2D grayscale image."""
        layers = self._image_layers()
        if not layers:
            raise NanowireSSLError("No 2D grayscale image layer open: open images first")
        self._predict_layers(layers)

    def _predict_layers(self, layers) -> None:
        if self.model is None:
            raise NanowireSSLError(NO_MODEL)
        jobs = [(layer, self._checked_image(layer)) for layer in layers]
        model, tile = self.model, self.session.settings.tile

        @thread_worker(start_thread=False)
        def run():
            for i, (layer, (image, rows)) in enumerate(jobs):
                result = segment_image(model, image, tile=tile, should_stop=self._stop.is_set,
                                       on_fallback=show_warning,
                                       progress=lambda d, t: self._tiles.advanced.emit((i + d / t) / len(jobs)))
                if result is None:
                    return i
                yield layer, *(with_banner_rows(r, rows) for r in result)
            return len(jobs)

        self._start(run(), f"predicting {len(jobs)} image(s)…", total=len(jobs), yielded=lambda item: self._show(*item),
                    returned=lambda n: setattr(self.status, "value", f"predicted {n} of {len(jobs)} image(s)"))

    @reports_errors
    def predict_folder(self) -> None:
        """Segment and measure every image of the input folder (see :mod:`..batch`): the output folder
        gets ``masks/<stem>.tif`` (uint8, 1 = nanowire), ``overlays/<stem>.png`` and ``results.csv``."""
        from ..bundle import Bundle

        if self.model is None:
            raise NanowireSSLError(NO_MODEL)
        bundle = Bundle(self.model.encoder, self.session.encoder_source, decoder=self.model,
                        options=self.session.result_options())
        files, dst = self.folder.job()
        self._start(batch_worker(bundle, files, dst, self._stop, crop_bottom=self.folder.crop_setting),
                    f"predicting {len(files)} file(s)…",
                    total=len(files), yielded=lambda event: self._set_progress(event.fraction),
                    returned=lambda rows: self._folder_done(dst, len(files), rows))

    def _folder_done(self, dst: Path, total: int, rows: list[dict]) -> None:
        failed = [row["error"] for row in rows if row["error"]]
        self.status.value = f"wrote {len(rows) - len(failed)} of {total} mask(s) to {dst / 'masks'}"
        if failed:
            report_error(f"{len(failed)} file(s) could not be segmented: {failed[0]}")

    # --- workers --------------------------------------------------------------------------

    def _start(self, worker, status: str, total: int, *, yielded, returned) -> None:
        self._set_progress(0.0)
        self.status.value = status
        self.job.start(worker, f"Segment nanowires: {status}", total=total, yielded=yielded, returned=returned,
                       failed="Failed", finished=self._on_finished)

    def stop(self) -> None:
        """Ask the running worker to stop (training keeps its best state)."""
        self.job.stop()
        self.status.value = "stopping…"

    def _set_progress(self, fraction: float) -> None:
        self.progress.value = int(round(fraction * PROGRESS_MAX))

    def _on_finished(self) -> None:
        """Drop the trainer (its optimiser state and feature cache)."""
        self.trainer = None

    # --- decoder files --------------------------------------------------------------------

    def _decoder_path(self) -> Path:
        path = Path(self.decoder_file.value)
        if not str(self.decoder_file.value) or str(path) == "." or path.is_dir():
            raise NanowireSSLError("Choose a decoder file first (the 'decoder file' field)")
        return path

    @reports_errors
    def save(self) -> None:
        """Write the current decoder to the decoder file."""
        if self.model is None:
            raise NanowireSSLError(NO_MODEL)
        path = self._decoder_path()
        # The active encoder: a fine-tuned model works on a private copy of it (see SegmentationModel).
        save_decoder(self.model, path, encoder_hash=encoder_identity(self.session.active_encoder()))
        show_info(f"Decoder saved to {path}")

    @reports_errors
    def load(self) -> None:
        """Load a decoder trained on the active encoder (another encoder's is refused)."""
        path = self._decoder_path()
        model = load_decoder(path, self.session.active_encoder())
        self.session.set_decoder(model)
        self.status.value = f"decoder loaded from {path.name}: {model_description(model)}"
        show_info(f"Decoder loaded from {path}")


def _same_pairs(a, b) -> bool:
    """The same (image, scribble) layer pairs, in any order (layers compared by identity)."""
    return len(a) == len(b) and all(any(x[0] is y[0] and x[1] is y[1] for y in b) for x in a)


@thread_worker(start_thread=False)
def _train(trainer, jobs: list[tuple[np.ndarray, int]], n_steps: int, self_training: int, preview_every: int,
           tile: int, stop: threading.Event):
    """Generator worker: yields ``(event, None)`` per step (``self_training`` steps after ``n_steps``, then
    the trainer's ``context_steps``) and ``(None, probability)`` of the first image every ``preview_every``
    steps before the context stage (which leaves the preview unchanged until its last step); returns
    ``(probability, mask)`` of the best model for every image, None when stopped. ``jobs``: each
    micrograph above its banner and the banner's rows; the results get the banner rows back (as
    background)."""
    image, rows = jobs[0]
    for event in trainer.steps(n_steps, self_training=self_training, should_stop=stop.is_set):
        yield event, None
        if stop.is_set():
            break
        if preview_every and (event.step + 1) % preview_every == 0 and event.step + 1 < n_steps + self_training:
            prob = predict_tiled(trainer.model, image, tile=tile, should_stop=stop.is_set)
            if prob is not None:
                yield None, with_banner_rows(prob, rows)
    model = trainer.restore_best()
    results = []
    for image, rows in jobs:
        result = None if stop.is_set() else segment_image(model, image, tile=tile, should_stop=stop.is_set)
        if result is None:
            return None
        results.append(tuple(with_banner_rows(r, rows) for r in result))
    return results
