"""The ``auto`` model for dense labels: pixel classifiers and the U-Net decoder, chosen on held-out labels.

When most pixels carry a label (full masks: the CLI's ``--train`` folders, a
layer painted all over; :func:`.policy.tries_decoder`), the U-Net decoder
that also sees the filter bank at full resolution (``decoder+filters``:
whole crops through the encoder, thin detail through the filters) is a
candidate beside the pixel classifiers of :mod:`.pixel_classifier`. All candidates train on the labelled
pixels outside the same held-out blocks (:func:`.pixel_classifier.validation_blocks`);
after half the steps each is scored by its Dice on those blocks (the decoder
predicts the whole images, the pixel classifiers a uniform sample of the
held-out pixels), the best is kept (any model but the filters alone must win by
:func:`.pixel_classifier.margin`) and goes on training on all labels. From
strokes the decoder is not tried: it costs several times the Train target and
gave blobs over wire bundles there (docs/benchmarks.md).
"""

from __future__ import annotations

import time

import numpy as np

from ..labels import NANOWIRE, UNLABELLED
from .pixel_classifier import PixelTrainer, margin, validation_blocks
from .policy import WIRE_THRESHOLD
from .segment import SegmentationTrainer, SegmentEvent, total_steps
from .tiling import predict_tiled

DECODER = "decoder+filters"  # the decoder that also sees the filter bank (models.decoder)


def held_out_dice(model, images: list[np.ndarray], labels: list[np.ndarray], held: list[np.ndarray],
                  should_stop=None) -> float | None:
    """Dice of ``model``'s wires on the held-out labelled pixels of all images, pooled (None: stopped)."""
    hits = predicted = true = 0
    for image, lab, h in zip(images, labels, held):
        if not h.any():
            continue
        probability = predict_tiled(model, image, should_stop=should_stop)
        if probability is None:
            return None
        pred, wire = probability[h] > WIRE_THRESHOLD, lab[h] == NANOWIRE
        hits, predicted, true = hits + int((pred & wire).sum()), predicted + int(pred.sum()), true + int(wire.sum())
    return 1.0 if predicted + true == 0 else 2 * hits / (predicted + true)


class AutoTrainer:
    """Trains the pixel classifiers and the decoder side by side and keeps the better; the interface of
    :class:`.segment.SegmentationTrainer` (``steps``, ``restore_best``, ``model``, ``choice_line``, ...).

    ``images`` are raw (each trainer normalises them); ``kwargs`` go to the
    decoder's :class:`.segment.SegmentationTrainer`.
    """

    def __init__(self, encoder, images, labels, *, seed: int = 0, device="cpu", names=None, **kwargs):
        from .segment import training_data

        self.images, self.painted = training_data(images, labels, names)
        self.held = validation_blocks(self.painted, np.random.default_rng(seed))
        self.pixels: PixelTrainer | None = PixelTrainer(encoder, self.images, self.painted, seed=seed,
                                                        device=device, held=self.held)
        self.decoder: SegmentationTrainer | None = None
        self.chosen: str | None = self.pixels.chosen  # set already when nothing could be held out
        if self.chosen is None:
            self.decoder = SegmentationTrainer(encoder, images, labels, seed=seed, device=device, names=names,
                                               held=self.held, filters=True, **kwargs)
        self.validation: dict[str, float] = {}
        self.losses: list[float] = []

    @property
    def active(self):
        """The trainer that goes on after the choice (the pixel trainer before it: its model previews)."""
        return self.decoder if self.chosen == DECODER else self.pixels

    @property
    def model(self):
        return self.active.model

    @property
    def has_unpainted(self) -> bool:
        return any((lab == UNLABELLED).any() for lab in self.painted)

    @property
    def best_loss(self) -> float:
        return self.active.best_loss

    @property
    def running_loss(self) -> float | None:
        return self.active.running_loss

    def choose(self, should_stop=None) -> str | None:
        """Score every candidate on the held-out blocks; keep the best, which trains on all labels from now
        on. None (nothing chosen yet) when ``should_stop()`` turned true while the decoder predicted."""
        scores = self.pixels.validate()
        decoder = held_out_dice(self.decoder.restore_best(), self.pixels.images, self.painted, self.held,
                                should_stop)
        if decoder is None:
            return None
        scores[DECODER] = decoder
        self.validation = scores
        self.chosen = max(scores, key=lambda k: scores[k] - margin(k))
        if self.chosen == DECODER:
            self.decoder.release()
            self.decoder.model.validation = dict(scores)
            self.pixels = None  # frees its pixel features
        else:
            self.pixels.keep(self.chosen, scores)
            self.decoder = None
        return self.chosen

    def steps(self, n_steps: int, *, self_training: int = 0, should_stop=None):
        """Events as :meth:`.segment.SegmentationTrainer.steps`; the choice is made after half the steps."""
        total = total_steps(n_steps, self_training, self.has_unpainted)
        for step in range(total):
            t0 = time.perf_counter()
            if self.chosen is None and step == n_steps // 2 and self.choose(should_stop) is None:
                return
            if step == n_steps and self.active.add_confident_labels(should_stop=should_stop) is None:
                return
            loss = self.active.step()
            if self.chosen is None:
                self.decoder.step()
            self.losses.append(loss)
            yield SegmentEvent(step, total, loss, time.perf_counter() - t0)
        if self.chosen is None:
            self.choose()

    def restore_best(self):
        return self.active.restore_best()

    def choice_line(self) -> str:
        """The model kept and every candidate's validation Dice, for the status bar and the CLI summary."""
        if self.decoder is None and not self.validation:
            return self.pixels.choice_line()  # nothing held out: no choice
        if not self.validation:
            return "model: choosing among filters, filters+encoder and decoder+filters (after half the steps)"
        scores = ", ".join(f"{k} {v:.3f}" for k, v in self.validation.items())
        return f"model: {self.chosen} (validation Dice on held-out labelled blocks: {scores})"
