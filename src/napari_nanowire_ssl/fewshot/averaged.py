"""The pixel classifier and the U-Net decoder, their probabilities averaged: ``auto``'s model for full masks.

The two models err in different places: the pixel classifier sees every
pixel's classical filters at full resolution, the decoder sees the encoder's
maps of a whole crop. Trained on the same full masks, the mean of their
probabilities beat either alone on most choosing splits of the real sets with
masks, where two pixel classifiers of different seeds, averaged, did not
(docs/benchmarks.md). The decoder costs about ten times the pixel
classifier's training and doubles the inference, so ``auto`` adds it only when
every pixel of the training images is labelled (full masks: careful work on
a few images, where minutes are acceptable; strokes keep the fast model), and
only when the held-out choice kept a learnt pixel model (Otsu's threshold of
each image, when it wins, is kept alone).

:class:`AveragedTrainer` trains the pixel classifier first (its choice,
context stage and all), then the decoder for :data:`DECODER_STEPS` steps. Until
the decoder's last step the model is the pixel classifier alone (previews, a
Stop, the saved file), as with the context stage.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..models.decoder import SegmentationModel, pad_to_multiple
from .pixel_classifier import AUTO_KINDS, OTSU, PixelClassifier, PixelTrainer
from .segment import DECODER, SegmentationTrainer, training_data

KIND = "pixels+decoder"
DECODER_STEPS = 200  # the decoder's steps after the pixel classifier's (the CLI's default number of steps)


class AveragedModel(nn.Module):
    """``(B, 1, H, W)`` images in [0, 1] -> logits of the mean of the members' probabilities."""

    kind = KIND
    unfreeze_last_stage = False

    def __init__(self, pixels: PixelClassifier, decoder: SegmentationModel):
        super().__init__()
        self.members = nn.ModuleList([pixels, decoder])
        self.encoder = pixels.encoder  # shared by both members

    @property
    def min_tile(self) -> int:
        return max(getattr(m, "min_tile", 0) for m in self.members)

    @property
    def min_overlap(self) -> int:
        return max(getattr(m, "min_overlap", 0) for m in self.members)

    @property
    def pixels(self) -> PixelClassifier:
        return self.members[0]

    @property
    def decoder(self) -> SegmentationModel:
        return self.members[1]

    @property
    def validation(self) -> dict[str, float]:
        """The pixel classifier's (the decoder is not validated)."""
        return self.pixels.validation

    @validation.setter
    def validation(self, scores: dict[str, float]) -> None:
        self.pixels.validation = dict(scores)

    @property
    def description(self) -> str:
        return f"{self.pixels.description} averaged with the U-Net decoder"

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {f"members.{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.trainable_state().items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        pixels, decoder = self.members
        shared = None  # the encoder's maps, computed once when both members read the same encoder
        if pixels.use_encoder and decoder.encoder is pixels.encoder:
            shared = pixels.encoder.forward_features(pad_to_multiple(x)[0])
        p = torch.stack([torch.sigmoid(m(x, encoder_features=shared).float()) for m in self.members]).mean(0)
        return torch.logit(p, eps=1e-6)


class AveragedTrainer:
    """The pixel classifier's trainer, then the decoder's; the interface of both (``steps``, ``model``,
    ``restore_best``, ``choice_line``, ``losses``, ``best_loss``, ``running_loss``, ``has_unpainted``,
    ``context_steps``: here every step after the pixel classifier's first stage and self-training).

    ``previous``: an :class:`AveragedModel` to go on training (both members; with strokes, the decoder
    trains on the painted pixels only, without the pixel classifier's self-training)."""

    def __init__(self, encoder, images, labels, *, seed: int = 0, device="cpu", crop: int = 256,
                 previous: AveragedModel | None = None, names=None, context: bool = True, **decoder_kwargs):
        normalised, self.labels = training_data(images, labels, names)
        self.pixel_trainer = PixelTrainer(encoder, normalised, self.labels, kinds=AUTO_KINDS, seed=seed,
                                          device=device, context=context,
                                          previous=None if previous is None else previous.pixels)
        self._decoder_args = dict(seed=seed, device=device, crop=crop, names=names, **decoder_kwargs)
        if previous is not None:
            self._decoder_args["decoder"] = previous.decoder.decoder
        self.encoder, self.raw_images = encoder, images  # the decoder's trainer normalises them itself
        self.decoder_trainer: SegmentationTrainer | None = None
        self.averaged: AveragedModel | None = None

    @property
    def chosen(self) -> str | None:
        """The pixel model the held-out choice kept (None before it)."""
        return self.pixel_trainer.chosen

    @property
    def validation(self) -> dict[str, float]:
        return self.pixel_trainer.validation

    @property
    def has_unpainted(self) -> bool:
        return self.pixel_trainer.has_unpainted

    @property
    def context_steps(self) -> int:
        pixels = self.pixel_trainer
        return pixels.context_steps + (0 if pixels.chosen == OTSU else DECODER_STEPS)

    @property
    def _current(self):
        return self.decoder_trainer or self.pixel_trainer

    @property
    def losses(self) -> list[float]:
        return self.pixel_trainer.losses + (self.decoder_trainer.losses if self.decoder_trainer else [])

    @property
    def best_loss(self) -> float:
        return self._current.best_loss

    @property
    def running_loss(self) -> float | None:
        return self._current.running_loss

    @property
    def model(self):
        """The averaged model once the decoder is trained, the pixel classifier (or Otsu's threshold) until then."""
        return self.averaged or self.pixel_trainer.model

    def steps(self, n_steps: int, *, self_training: int = 0, should_stop=None):
        """The pixel classifier's events, then the decoder's :data:`DECODER_STEPS` (stage ``DECODER``),
        numbered on from them; nothing more when Otsu's threshold is kept or the pixel classifier's
        training was stopped."""
        last = None
        for last in self.pixel_trainer.steps(n_steps, self_training=self_training, should_stop=should_stop):
            yield replace(last, n_steps=last.n_steps + DECODER_STEPS)
        if last is None or last.step + 1 < last.n_steps or (should_stop is not None and should_stop()):
            return
        done, total = last.n_steps, last.n_steps + DECODER_STEPS
        self.decoder_trainer = SegmentationTrainer(self.encoder, self.raw_images, self.labels, **self._decoder_args)
        for event in self.decoder_trainer.steps(DECODER_STEPS, should_stop=should_stop):
            yield replace(event, step=done + event.step, n_steps=total, stage=DECODER)
        if len(self.decoder_trainer.losses) == DECODER_STEPS:
            self.averaged = AveragedModel(self.pixel_trainer.restore_best(), self.decoder_trainer.restore_best())

    def restore_best(self):
        return self.model.eval()

    def choice_line(self) -> str:
        line = self.pixel_trainer.choice_line()
        if self.pixel_trainer.chosen == OTSU:
            return line
        state = "averaged with the U-Net decoder" if self.averaged else \
            "the U-Net decoder trains next, to be averaged with it" if self.decoder_trainer is None else \
            "the U-Net decoder is training, to be averaged with it"
        return f"{line}; {state} (full masks)"
