"""Training the segmentation decoder from sparse strokes or full masks.

Labels follow the plugin's convention (:mod:`..labels`): 0 = not labelled
(ignored), 1 = background, 2 = nanowire; ``labels_from_mask`` turns a full
binary mask into such labels (every pixel labelled).

Loss, on labelled pixels only: class-balanced binary cross-entropy on the
logits (the mean over the batch's nanowire pixels and the mean over its
background pixels, averaged) plus a soft Dice loss of the nanowire class.
Balancing per batch suits full masks, where wires are the minority, and
scribbles alike, where the painted proportions say little about the image:
one weight for the whole training set (n_background / n_nanowire) made
wires too thick from scribbles (docs/benchmarks.md, few-shot segmentation).

Data: each image gets a fixed bank of ``crops_per_image`` crop origins,
centred on randomly chosen labelled pixels (so every crop holds labels).
A step draws ``batch_size`` (origin, dihedral transform) pairs: the crop is
flipped / rotated by 90 degrees before the encoder sees it, so augmentation
is exact. While the encoder is frozen its features are cached per (image,
origin, transform) in an LRU dictionary bounded by ``cache_mb``; the bank is
small (by default 8 crops x 8 transforms per image), so after a warm-up most
steps cost the decoder only. When ``layer4`` trains, the cache holds the
first four maps and ``layer4`` runs every step. A decoder with filters
(``decoder+filters``) gets the filter responses of each crop of the bank,
computed once with :data:`FILTER_MARGIN` px of image around it and turned with
the crop.

Self-training (pseudo-labels), for strokes: after the steps on the painted
pixels, the unpainted pixels that the best model so far predicts with
confidence (wire probability above 0.9 or below 0.1) are labelled so, and
training goes on (:meth:`SegmentationTrainer.add_confident_labels`; the CLI
and the widget do :data:`SELF_TRAINING_STEPS` such steps by default). Strokes
cover a few percent of an image; the decoder's confident predictions spread
them over the open background and along whole wires. From scribbles on 4
synthetic images this raised the median Dice from 0.80 to 0.875 (0.82 to
0.85-0.86 on two other draws), where more steps on the strokes alone did not
help (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import ModelFileError, NanowireSSLError
from ..io.normalize import check_network_input, normalize
from ..labels import BACKGROUND, NANOWIRE, UNLABELLED
from .policy import self_training_steps
from .symmetry import dihedral
from ..models.decoder import STRIDE, SegmentationModel, UNetDecoder
from ..models.device import autocast_context, select_device
from ..models.encoder import Encoder
from ..models.filters import standardisation
from ..models.modelfile import encoder_identity, load_tensors, save_tensors

RUNNING_LOSS_DECAY = 0.9  # exponential moving average of the loss, for choosing the best state
SELF_TRAINING_STEPS = 100  # default steps on confident predictions after those on the strokes
# SegmentEvent.stage of the steps after those on the painted labels (fewshot.averaged: the decoder's)
SELF_TRAINING, CONTEXT, DECODER = "self-training", "context", "decoder"
CONFIDENT_WIRE, CONFIDENT_BACKGROUND = 0.9, 0.1  # wire probabilities taken as labels when self-training
MODELS = ("auto", "filters", "filters+encoder", "decoder", "decoder+filters", "decoder+finetune")
FINETUNE_LR_FACTOR = 0.1  # the encoder's last stage learns this much slower than the decoder
FILTER_MARGIN = 64  # px of image around a training crop that its filter responses are computed with
AVERAGED = "averaged"  # model files of fewshot.averaged.AveragedModel
DEFAULT_MODEL = "auto"  # pixel classifiers on filters (+ encoder), chosen on held-out labels


def check_labels(image: np.ndarray, labels: np.ndarray, *, name: str = "image") -> None:
    """Refuse labels of another shape, other values, or without both classes painted."""
    if labels.shape != image.shape:
        raise NanowireSSLError(f"{name}: labels have shape {labels.shape} but the image has shape {image.shape}")
    values = np.unique(labels)
    bad = [int(v) for v in values if v not in (UNLABELLED, BACKGROUND, NANOWIRE)]
    if bad:
        raise NanowireSSLError(f"{name}: labels may only be 0 (not labelled), 1 (background) or 2 (nanowire), "
                               f"found {bad[:5]}")


def check_classes(labels: list[np.ndarray], names=None) -> None:
    """Both classes painted somewhere (the error names the image when there is one)."""
    wire = any((lab == NANOWIRE).any() for lab in labels)
    background = any((lab == BACKGROUND).any() for lab in labels)
    where = f"{names[0]}: " if names is not None and len(names) == 1 else ""
    if not wire and not background:
        raise NanowireSSLError(f"{where}no strokes: paint nanowire (2) and background (1) pixels first")
    if not background:
        raise NanowireSSLError(f"{where}only nanowire pixels (label 2) are painted: paint some background "
                               "(label 1) too")
    if not wire:
        raise NanowireSSLError(f"{where}only background pixels (label 1) are painted: paint some nanowire "
                               "(label 2) too")


def training_data(images, labels, names=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalised 2D images and uint8 labels, checked (one-line errors naming the image: its file or
    layer from ``names``, else its number)."""
    if len(images) != len(labels):
        raise NanowireSSLError(f"got {len(images)} images but {len(labels)} label arrays")
    if not images:
        raise NanowireSSLError("no images to train on")
    out_images, out_labels = [], []
    for i, (image, lab) in enumerate(zip(images, labels)):
        image, lab = np.asarray(image), np.asarray(lab)
        name = names[i] if names is not None else f"image {i}"
        if image.ndim != 2:
            raise NanowireSSLError(f"{name}: expected a 2D grayscale image, got shape {image.shape}")
        check_network_input(image, name=name)
        check_labels(image, lab, name=name)
        out_images.append(normalize(image, name=name))
        out_labels.append(lab.astype(np.uint8))
    check_classes(out_labels, names)
    return out_images, out_labels


def make_trainer(encoder: Encoder, images: list[np.ndarray], labels: list[np.ndarray], *,
                 model: str = DEFAULT_MODEL, previous=None, seed: int = 0, device="cpu", crop: int = 256,
                 names=None, context: bool = True, **kwargs):
    """The trainer every caller uses: :data:`MODELS` ``auto`` (the default) trains the pixel classifiers
    of :mod:`.pixel_classifier` and keeps the one that validates better on held-out labels; ``filters``
    or ``filters+encoder`` trains that one; ``decoder`` the U-Net decoder (:class:`SegmentationTrainer`,
    ``kwargs`` go to it), ``decoder+filters`` the decoder that also sees the filter bank at full
    resolution, ``decoder+finetune`` the decoder and the encoder's last stage (on a private
    copy of the encoder); with labels on several images ``auto`` also scores Otsu's threshold. With full
    masks (every pixel labelled) ``auto`` averages the kept pixel classifier with a U-Net decoder
    (:mod:`.averaged`). ``previous``: a model loaded from a file, trained on (its kind wins; Otsu's
    threshold has nothing to train: ``model`` chooses afresh).
    ``names``: the images' files or layers, for error messages. ``context``: the pixel classifiers'
    context stage (:class:`.pixel_classifier.PixelTrainer`); ``kwargs`` go to the U-Net trainer only."""
    from .pixel_classifier import AUTO_KINDS, PixelClassifier, PixelTrainer, ThresholdModel

    if model not in MODELS:
        raise NanowireSSLError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if isinstance(previous, SegmentationModel) or (previous is None and model.startswith("decoder")):
        if previous is not None:
            kwargs.update(decoder=previous.decoder, unfreeze_last_stage=previous.unfreeze_last_stage)
        else:
            kwargs.setdefault("unfreeze_last_stage", model == "decoder+finetune")
            kwargs.setdefault("filters", model == "decoder+filters")
        trainer = SegmentationTrainer(encoder, images, labels, seed=seed, device=device, crop=crop, names=names,
                                      **kwargs)
        if previous is not None and previous.unfreeze_last_stage:  # go on from its fine-tuned stage
            trainer.model.encoder.layer4.load_state_dict(previous.encoder.layer4.state_dict())
        return trainer
    from .averaged import AveragedModel, AveragedTrainer

    fresh = previous is None or isinstance(previous, ThresholdModel)  # a threshold has nothing to go on from
    full_masks = not any((np.asarray(lab) == UNLABELLED).any() for lab in labels)
    if isinstance(previous, AveragedModel) or (fresh and model == "auto" and full_masks):
        previous = previous if isinstance(previous, AveragedModel) else None
        return AveragedTrainer(encoder, images, labels, seed=seed, device=device, crop=crop, names=names,
                               previous=previous, context=context, **kwargs)
    images, labels = training_data(images, labels, names)
    kinds = AUTO_KINDS if model == "auto" else (model,)
    return PixelTrainer(encoder, images, labels, kinds=kinds, seed=seed, device=device,
                        previous=previous if isinstance(previous, PixelClassifier) else None, context=context)


def retrains_afresh(model) -> bool:
    """Whether Train again, on the strokes ``model`` alone learnt from plus new ones (a round of
    corrections), trains a fresh model instead of going on from it. The pixel classifiers and Otsu's
    threshold do: they train in seconds, the choice is made again on all the strokes, and fresh models
    scored as well as going on or better (docs/benchmarks.md: going on first trains on the strokes alone
    again, so it keeps little). The U-Net decoders (alone or averaged), minutes to train, go on."""
    from .averaged import AveragedModel

    return not isinstance(model, (SegmentationModel, AveragedModel))


def confident_labels(model, images, painted, *, wire: float, background: float, should_stop=None):
    """Self-training labels (both trainers'): the painted labels, plus unpainted pixels that ``model``
    predicts with wire probability above ``wire`` (nanowire) or below ``background`` (background);
    None when ``should_stop()`` turned true while predicting."""
    from .tiling import predict_tiled

    if not 0 <= background < wire <= 1:
        raise NanowireSSLError(f"confidence thresholds must satisfy 0 <= background < wire <= 1, "
                               f"got {background}, {wire}")
    confident = []
    for image, strokes in zip(images, painted):
        probability = predict_tiled(model, image, should_stop=should_stop)
        if probability is None:
            return None
        labels, unpainted = strokes.copy(), strokes == UNLABELLED
        labels[unpainted & (probability > wire)] = NANOWIRE
        labels[unpainted & (probability < background)] = BACKGROUND
        confident.append(labels)
    return confident


def total_steps(n_steps: int, self_training: int, has_unpainted: bool, context_steps: int = 0) -> int:
    """Steps a trainer's ``steps(n_steps, self_training=...)`` runs (both trainers; pass the trainer's
    ``context_steps``); one-line errors."""
    if n_steps < 1:
        raise NanowireSSLError(f"number of steps must be at least 1, got {n_steps}")
    if self_training < 0:
        raise NanowireSSLError(f"self-training steps must be at least 0, got {self_training}")
    return n_steps + self_training_steps(self_training, has_unpainted) + context_steps


def labelled_fraction(labels) -> float:
    """Fraction of the pixels of all label arrays that carry a label (1 or 2)."""
    return sum(int((lab != UNLABELLED).sum()) for lab in labels) / sum(lab.size for lab in labels)


def masked_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE + soft Dice (nanowire class) over pixels with labels 1 or 2; see the module docstring."""
    logits = logits.float().reshape(-1)
    labels = labels.reshape(-1)
    valid = labels != UNLABELLED
    logits, target = logits[valid], (labels[valid] == NANOWIRE).float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    wire = target == 1
    bce = torch.stack([bce[mask].mean() for mask in (wire, ~wire) if mask.any()]).mean()
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


@dataclass(frozen=True)
class SegmentEvent:
    """Progress after one optimisation step."""

    step: int  # 0-based within the current call to steps()
    n_steps: int
    loss: float
    seconds: float  # wall time of this step
    stage: str = ""  # "" (the painted labels), SELF_TRAINING, CONTEXT or DECODER

    @property
    def fraction(self) -> float:
        return (self.step + 1) / self.n_steps


class SegmentationTrainer:
    """Trains a :class:`UNetDecoder` on a frozen encoder; see the module docstring.

    ``images``: 2D arrays (any intensity range: each is normalised with
    :func:`~napari_nanowire_ssl.io.normalize.normalize`); ``labels``: integer
    arrays of the same shapes. ``decoder`` continues training an existing
    decoder (its ``width`` wins). Images smaller than ``crop`` are
    reflection-padded, the padding unlabelled.
    """

    def __init__(
        self,
        encoder: Encoder,
        images: list[np.ndarray],
        labels: list[np.ndarray],
        *,
        width: int = 32,
        crop: int = 256,
        batch_size: int = 4,
        lr: float = 1e-3,
        seed: int = 0,
        device: str | torch.device = "cpu",
        decoder: UNetDecoder | None = None,
        unfreeze_last_stage: bool = False,
        filters: bool = False,
        crops_per_image: int = 8,
        cache_mb: float = 1024,
        names=None,
    ):
        if crop < STRIDE or crop % STRIDE:
            raise NanowireSSLError(f"crop must be a positive multiple of {STRIDE} px, got {crop}")
        if batch_size < 1:
            raise NanowireSSLError(f"batch size must be at least 1, got {batch_size}")
        self.images, self.painted = training_data(images, labels, names)
        self.labels = list(self.painted)  # what the loss sees: painted, plus confident ones when self-training
        self.device = select_device(device)
        self.encoder_hash = encoder_identity(encoder)
        torch.manual_seed(seed)
        fresh = decoder is None
        decoder = decoder if decoder is not None else UNetDecoder(encoder.feature_channels, width=width,
                                                                  filters=filters)
        self.model = SegmentationModel(encoder, decoder, unfreeze_last_stage=unfreeze_last_stage).to(self.device)
        self.crop, self.batch_size, self.lr, self.crops_per_image = crop, batch_size, lr, crops_per_image
        self.filter_crops: dict[tuple, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)
        self.cache: OrderedDict[tuple, list[torch.Tensor]] = OrderedDict()
        self.cache_bytes, self.max_cache_bytes = 0, int(cache_mb * 2**20)
        self.losses: list[float] = []
        self.context_steps = 0  # the pixel classifiers' context stage; none here
        self._restart()
        if decoder.uses_filters and fresh:
            self._fit_filter_statistics()

    def _restart(self) -> None:
        """Draw the crop bank over the current labels; start the optimiser and the best-state tracking afresh."""
        self.bank = [(i, origin) for i in range(len(self.images)) for origin in self._origins(i, self.crops_per_image)]
        self.filter_crops = {k: v for k, v in self.filter_crops.items() if k in self.bank}  # bounded by the bank
        stage = [p for p in self.model.encoder.parameters() if p.requires_grad]  # layer4 when fine-tuned
        self.optimizer = torch.optim.Adam([{"params": list(self.model.decoder.parameters())},
                                           {"params": stage, "lr": self.lr * FINETUNE_LR_FACTOR}], lr=self.lr)
        self.running_loss: float | None = None
        self.best_loss = float("inf")
        self._best: dict[str, torch.Tensor] | None = None

    @property
    def has_unpainted(self) -> bool:
        """Whether some pixel is not painted, i.e. self-training can add labels."""
        return any((lab == UNLABELLED).any() for lab in self.painted)

    def add_confident_labels(self, *, wire: float = CONFIDENT_WIRE, background: float = CONFIDENT_BACKGROUND,
                             should_stop=None) -> float | None:
        """Self-training: label the unpainted pixels that the best model so far is confident about.

        Wire probability above ``wire`` -> nanowire, below ``background`` ->
        background; painted pixels never change and the labels are rebuilt
        from the painted ones each time (calling again does not compound).
        Then the crop bank is drawn again and the optimiser and best-state
        tracking restart: a loss over many more pixels is not comparable with
        the loss before. Returns the fraction of pixels labelled now, or None
        (labels unchanged) when ``should_stop()`` turned true while predicting.
        """
        confident = confident_labels(self.restore_best(), self.images, self.painted, wire=wire,
                                     background=background, should_stop=should_stop)
        if confident is None:
            return None
        self.labels = confident
        self._restart()
        return labelled_fraction(self.labels)

    @torch.no_grad()
    def _filter_crop(self, i: int, origin: tuple[int, int]) -> np.ndarray:
        """Filter responses ``(C, crop, crop)`` of the crop at ``origin``, computed on the crop and a
        :data:`FILTER_MARGIN` px margin of the image around it (the context the bank sees in a whole
        image) and kept for the crop bank: memory grows with the bank, not with the images. Crops'
        dihedral transforms are cut from them (the bank's responses turn with the image)."""
        key = (i, origin)
        if key not in self.filter_crops:
            image = self._padded(i)[0]
            (y, x), c, m = origin, self.crop, FILTER_MARGIN
            y0, x0 = max(0, y - m), max(0, x - m)
            region = np.ascontiguousarray(image[y0:y + c + m, x0:x + c + m])
            maps = self.model.decoder.filters(torch.from_numpy(region)[None, None].to(self.device))[0]
            self.filter_crops[key] = maps[:, y - y0:y - y0 + c, x - x0:x - x0 + c].cpu().numpy()
        return self.filter_crops[key]

    def _fit_filter_statistics(self) -> None:
        """Standardisation of a fresh decoder's filter inputs, over the pixels of its crop bank."""
        maps = torch.from_numpy(np.stack([self._filter_crop(i, origin) for i, origin in self.bank]))
        mean, std = standardisation(maps.transpose(0, 1).reshape(maps.shape[1], -1).T)
        self.model.decoder.filter_mean.copy_(mean)
        self.model.decoder.filter_std.copy_(std)

    def _origins(self, i: int, n: int) -> list[tuple[int, int]]:
        """``n`` crop origins (in the padded image) centred on labelled pixels of image ``i``."""
        lab = self.labels[i]
        ys, xs = np.nonzero(lab)
        if ys.size == 0:
            return []
        h, w = lab.shape
        picks = self.rng.choice(ys.size, size=n, replace=ys.size < n)
        hp, wp = max(h, self.crop), max(w, self.crop)
        return sorted({(int(np.clip(ys[k] - self.crop // 2, 0, hp - self.crop)),
                        int(np.clip(xs[k] - self.crop // 2, 0, wp - self.crop))) for k in picks})

    def _padded(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``i`` and its labels, padded to at least the crop (reflected image, unlabelled padding)."""
        image, lab = self.images[i], self.labels[i]
        ph, pw = max(0, self.crop - image.shape[0]), max(0, self.crop - image.shape[1])
        if ph or pw:
            image = np.pad(image, ((0, ph), (0, pw)), mode="reflect")
            lab = np.pad(lab, ((0, ph), (0, pw)))
        return image, lab

    def _crop(self, i: int, origin: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        image, lab = self._padded(i)
        y, x = origin
        return image[y:y + self.crop, x:x + self.crop], lab[y:y + self.crop, x:x + self.crop]

    @torch.no_grad()
    def _features(self, keys: list[tuple]) -> list[torch.Tensor]:
        """Encoder maps for a batch of (image, origin, transform) keys, batched per level."""
        for k in keys:  # mark hits as recent first, so storing the misses cannot evict them
            if k in self.cache:
                self.cache.move_to_end(k)
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))  # a batch may repeat a key
        if missing:
            crops = np.stack([dihedral(self._crop(i, o)[0], t) for i, o, t in missing])
            x = torch.from_numpy(crops).unsqueeze(1).to(self.device)
            with autocast_context(self.device):
                maps = self.model.encoder.forward_features(x)
            if self.model.unfreeze_last_stage:
                maps = maps[:4]
            for j, key in enumerate(missing):
                self._remember(key, [m[j].float().clone() for m in maps])
        return [torch.stack([self.cache[k][level] for k in keys]) for level in range(len(self.cache[keys[0]]))]

    def _remember(self, key: tuple, maps: list[torch.Tensor]) -> None:
        self.cache[key] = maps
        self.cache_bytes += sum(m.numel() * m.element_size() for m in maps)
        while self.cache_bytes > self.max_cache_bytes and len(self.cache) > self.batch_size:
            _, old = self.cache.popitem(last=False)
            self.cache_bytes -= sum(m.numel() * m.element_size() for m in old)

    def train_step(self) -> float:
        """One optimisation step on ``batch_size`` random (crop, transform) pairs; returns the loss."""
        picks = self.rng.integers(len(self.bank), size=self.batch_size)
        transforms = self.rng.integers(8, size=self.batch_size)
        keys = [(*self.bank[p], int(t)) for p, t in zip(picks, transforms)]
        labels = np.stack([dihedral(self._crop(i, o)[1], t) for i, o, t in keys])
        labels = torch.from_numpy(labels).to(self.device)
        features = self._features(keys)
        filters = None
        if self.model.decoder.uses_filters:
            filters = np.stack([dihedral(self._filter_crop(i, o), t) for i, o, t in keys])
            filters = self.model.decoder.standardise(torch.from_numpy(filters).to(self.device))
        self.model.train()
        with autocast_context(self.device):
            logits = self.model.decode(features, (self.crop, self.crop), filters)
        loss = masked_loss(logits, labels)
        if not torch.isfinite(loss):
            raise NanowireSSLError(f"training diverged: loss is {loss.item()}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def steps(self, n_steps: int, *, self_training: int = 0, should_stop=None):
        """Generator of :class:`SegmentEvent`, one per step, for ``n_steps`` steps, then, when
        some pixels are unpainted, :meth:`add_confident_labels` and ``self_training`` more steps.

        Events count all the steps (``n_steps`` of an event is the total).
        Leaving the loop early is safe; :meth:`restore_best` then gives the
        best model so far. Calling again continues training. ``should_stop``
        can end the generator while the confident labels are predicted (a
        large image takes seconds).
        """
        total = total_steps(n_steps, self_training, self.has_unpainted)
        for step in range(total):
            t0 = time.perf_counter()
            if step == n_steps and self.add_confident_labels(should_stop=should_stop) is None:
                return
            loss = self.train_step()
            self.losses.append(loss)
            self._track_best(loss)
            yield SegmentEvent(step, total, loss, time.perf_counter() - t0,
                               SELF_TRAINING if step >= n_steps else "")

    def _track_best(self, loss: float) -> None:
        """Keep a copy of the trainable tensors when the running loss reaches a new low."""
        if self.running_loss is None:
            self.running_loss = loss
        else:
            self.running_loss = RUNNING_LOSS_DECAY * self.running_loss + (1 - RUNNING_LOSS_DECAY) * loss
        if self.running_loss < self.best_loss:
            self.best_loss = self.running_loss
            self._best = {k: v.detach().clone() for k, v in self.model.trainable_state().items()}

    def choice_line(self) -> str:
        """One line for the status bar and the CLI summary (as :meth:`.pixel_classifier.PixelTrainer.choice_line`)."""
        return f"model: {self.model.kind} (U-Net on the encoder maps, not validated)"

    def best_state(self) -> dict[str, torch.Tensor]:
        """Trainable tensors at the lowest running loss so far (the current ones before any step)."""
        if self._best is None:
            return {k: v.detach().clone() for k, v in self.model.trainable_state().items()}
        return self._best

    def restore_best(self) -> SegmentationModel:
        """Load :meth:`best_state` into :attr:`model` (in eval mode) and return it."""
        self.model.load_state_dict(self.best_state(), strict=False)
        return self.model.eval()


def decoder_state(model, *, encoder_hash: str, training: dict | None = None) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a ``decoder`` model file (also embedded in bundles) of a
    :class:`SegmentationModel` (``"model": "unet"``), a pixel classifier (``"model": "pixels"``), Otsu's
    threshold (``"model": "otsu"``) or the two models of :mod:`.averaged` (``"model": "averaged"``, each
    member's metadata in ``members``)."""
    from .averaged import AveragedModel
    from .pixel_classifier import PixelClassifier, ThresholdModel

    if isinstance(model, AveragedModel):
        config = {"model": AVERAGED, "members": [decoder_state(m, encoder_hash=encoder_hash)[1]
                                                 for m in model.members]}
    elif isinstance(model, (PixelClassifier, ThresholdModel)):
        config = {**model.config, "validation": model.validation}
    else:
        config = {"model": "unet", **model.decoder.config, "unfreeze_last_stage": model.unfreeze_last_stage,
                  "validation": model.validation}
    metadata = {
        "kind": "decoder",
        **config,
        "backbone": model.encoder.backbone,
        "encoder_hash": encoder_hash,
        "training": training or {},
    }
    return model.trainable_state(), metadata


def save_decoder(model, path: str | Path, *, encoder_hash: str, training: dict | None = None) -> str:
    """Write the trained part of ``model`` as a ``decoder`` model file; return its content hash.

    ``encoder_hash`` is :func:`tensor_hash` of the encoder's state dict the
    decoder was trained on (:attr:`SegmentationTrainer.encoder_hash`);
    :func:`load_decoder` refuses any other encoder.
    """
    return save_tensors(path, *decoder_state(model, encoder_hash=encoder_hash, training=training))


def model_description(model) -> str:
    """What a loaded or trained segmentation model is, in a few words (with its validation Dice)."""
    if model.kind in model.validation:
        return f"{model.description} (validation Dice {model.validation[model.kind]:.3f})"
    return model.description


def decoder_from_state(tensors: dict, meta: dict, encoder: Encoder, *, source: str):
    """Rebuild the model of :func:`decoder_state` output on ``encoder`` (in eval mode).

    Files written before the pixel classifiers (no ``model`` entry) hold a
    U-Net decoder and still load. Refuses, in one line naming ``source``, an
    encoder other than the one the decoder was trained on (another backbone is
    named as such), and a ``model`` this version does not know.
    """
    from .averaged import AveragedModel
    from .pixel_classifier import OTSU, PixelClassifier, ThresholdModel

    kind = meta.get("model", "unet")
    if kind not in ("unet", "pixels", OTSU, AVERAGED):
        raise ModelFileError(f"{source}: holds a segmentation model of type {kind!r}, unknown to this version of "
                             "the plugin; update the plugin or train again")
    needed = {"unet": ("encoder_channels", "width", "max_width"), OTSU: ("dark",), AVERAGED: ("members",),
              "pixels": ("use_encoder", "hidden", "components", "sigmas")}[kind]
    missing = [k for k in (*needed, "encoder_hash") if k not in meta]
    if missing:
        raise ModelFileError(f"{source}: metadata lacks {', '.join(missing)}: file corrupt or edited")
    trained_on = meta.get("backbone", "?")
    if trained_on != encoder.backbone:
        raise ModelFileError(f"{source}: this decoder was trained on a {trained_on} encoder but the active encoder "
                             f"is a {encoder.backbone}; load the encoder it was trained with")
    if encoder_identity(encoder) != meta["encoder_hash"]:
        raise ModelFileError(
            f"{source}: this decoder was trained on another encoder ({trained_on}, hash "
            f"{meta['encoder_hash'][:12]}); load the encoder it was trained with"
        )
    if kind == AVERAGED:
        members = meta["members"]
        if len(members) != 2 or [m.get("model") for m in members] != ["pixels", "unet"]:
            raise ModelFileError(f"{source}: an averaged model must hold a pixel classifier and a U-Net decoder: "
                                 "file corrupt or edited")
        pixels, decoder = (decoder_from_state({k[len(f"members.{i}."):]: v for k, v in tensors.items()
                                               if k.startswith(f"members.{i}.")}, m, encoder, source=source)
                           for i, m in enumerate(members))
        return AveragedModel(pixels, decoder).eval()
    if kind == "unet":
        decoder = UNetDecoder(meta["encoder_channels"], width=meta["width"], max_width=meta["max_width"],
                              filters=bool(meta.get("filters", False)))
        model = SegmentationModel(encoder, decoder, unfreeze_last_stage=bool(meta.get("unfreeze_last_stage", False)))
    elif kind == OTSU:
        # files written before the Otsu candidate could blur have no "sigma": none
        model = ThresholdModel(encoder, dark=bool(meta["dark"]), sigma=float(meta.get("sigma", 0.0)))
    else:
        model = PixelClassifier.from_config(encoder, meta)  # the one rebuild of a pixel model's metadata
    model.validation = dict(meta.get("validation", {}))
    model = model.to(next(encoder.parameters()).device)
    expected = model.trainable_state()
    if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
        raise ModelFileError(f"{source}: tensors do not match the decoder its metadata describes: "
                             "file corrupt or edited")
    model.load_state_dict(tensors, strict=False)
    return model.eval()


def load_decoder(path: str | Path, encoder: Encoder):
    """Rebuild the segmentation model of a decoder file on ``encoder`` (see :func:`decoder_from_state`)."""
    tensors, meta = load_tensors(path, kind="decoder")
    return decoder_from_state(tensors, meta, encoder, source=str(path))
