"""Per-pixel classifiers on classical filters (and encoder features), chosen on the user's own labels.

The napari-convpaint / ilastik approach, in torch so that it runs on the GPU
and inside the tiled inference: every pixel is described by the
:class:`~..models.filters.FilterBank` responses at full resolution, at the
scales :data:`SIGMAS` (standardised on the training pixels), optionally plus
the encoder's five feature maps, each reduced by a fixed PCA (whitened,
:data:`COMPONENTS` components, fitted on the training pixels) and upsampled
bilinearly; a small MLP (two hidden layers of :data:`HIDDEN` units, 1x1
convolutions) maps them to a nanowire logit. The
PCA is applied to each encoder map at its own resolution and only its
components are upsampled: no full-resolution copy of hundreds of encoder
channels is ever made. On whole images the MLP runs on bands of rows as
matrix products (:func:`_mlp_map`), its hidden activations never a whole
image's worth.

Training (:class:`PixelTrainer`) draws up to :data:`MAX_PIXELS` labelled
pixels, and Adam minimises the binary cross-entropy on batches of
:data:`BATCH_PIXELS` of them. Among the candidates (:data:`KINDS`: ``filters``
and ``filters+encoder`` by default) the user's own labels decide (encoder
features help on some images and hurt on others, docs/benchmarks.md); the
encoder's is kept only when it wins by :data:`ENCODER_MARGIN` (the filters
alone predict twice as fast). With labels on two or more images the choice is
leave-one-image-out, before training: for every image whose labels can be held
out (:func:`image_folds`; groups of images when there are more than
:data:`MAX_FOLDS`), each candidate trains for half the steps on the other
images' pixels and is scored on that image's; the Dice pooled over the folds
decides, and the kept candidate then trains from scratch on all the
labels. Otsu's threshold of each image (:class:`ThresholdModel`, its polarity
chosen on the other images' labels) is scored on the same held-out images
and kept when it carries to them better than both learnt models (ties go to
them), then with the Gaussian blur of :data:`OTSU_SIGMAS` that scores best
there: where the images differ in brightness and contrast from one to the
next (figures of several papers or sessions), a threshold of each image can
transfer better than any model of the labelled pixels' intensities. Held-out
images measure what the user wants, a model that carries to images it was not
trained on; held-out blocks of the training images reward fitting those
images (docs/benchmarks.md). With one labelled image the candidates train side
by side on the labelled pixels outside a random quarter of :data:`BLOCK` px
blocks, and after half the steps the one with the higher Dice on the held-out
blocks is kept and trains on all the labelled pixels for the rest.

The context stage (auto-context, Tu & Bai 2010; ilastik's autocontext) then
trains for :data:`CONTEXT_STEPS` more steps: the same bank, run on the first
stage's probability map (:data:`CONTEXT_SIGMAS`), beside the image's own
filters, feeds a second MLP of the same shape. It sees what the first stage
thinks of a pixel's neighbourhood (a particle's rim around a flat interior,
a membrane's continuation through a faint gap), which no filter of the image
does. Its training pixels are the first stage's, and the probability maps are
in-sample, as ilastik's: maps predicted on images the first stage did not see
were tried and mislead it (docs/benchmarks.md). Until its last step the model
is the first stage alone (previews, a Stop, the saved file); model files
without the stage still load.

Strokes (some pixels unlabelled) differ from full masks in two ways the loss
follows: the painted proportions of the classes say nothing about the image,
so both classes weigh the same; and the many unlabelled pixels add the mean
entropy of their predictions (weight :data:`ENTROPY_WEIGHT`; Grandvalet &
Bengio 2005), which moves the boundary between wire and background into the
valley of the feature distribution instead of anywhere in the gap between the
painted intensities. On the shipped AgNW sample this halved the excess width of
the wires; from scribbles on ISBI and EMPS it raised the Dice
(docs/benchmarks.md).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NanowireSSLError
from ..models.decoder import pad_to_multiple
from ..models.device import select_device
from ..models.encoder import Encoder
from ..models.filters import SIGMAS as BANK_SIGMAS
from ..models.filters import FilterBank, smooth, standardisation
from .segment import (
    BACKGROUND,
    CONFIDENT_BACKGROUND,
    CONFIDENT_WIRE,
    CONTEXT,
    NANOWIRE,
    SELF_TRAINING,
    UNLABELLED,
    SegmentEvent,
)

KINDS = ("filters", "filters+encoder")
# The classical peer, Otsu's threshold of each image (polarity from the labels): a candidate of `auto` with
# labels on two or more images only, where held-out images score it as they score the learnt models
# (with one image its blocks would score a threshold chosen on that very image).
OTSU = "otsu"
AUTO_KINDS = (*KINDS, OTSU)
# Gaussian blurs (px) a kept Otsu candidate may threshold after, the one that scores best on the held-out
# images (ties: the lighter): noise and fine texture (lattice fringes, film grain) no longer speckle the
# mask where that carries better. The first, 0, is the image itself, whose score competes with the learnt
# models; the others are the bank's first scales.
OTSU_SIGMAS = (0.0, *BANK_SIGMAS[:4])
# The bank's scales and a coarser one (px), context for objects much wider than a wire: a particle's
# flat interior is told from flat background there (chosen on benchmark splits, docs/benchmarks.md).
# The context stage runs the bank at these scales on the first stage's probability map (auto-context).
CONTEXT_SIGMAS = (*BANK_SIGMAS, 32.0)
# The image's own bank adds a finer scale (ilastik's 0.7 px): sharp edges (a particle's rim, a thin wire's
# flanks) are placed to the pixel; the probability map has no such detail (docs/benchmarks.md).
SIGMAS = (0.7, *CONTEXT_SIGMAS)
HIDDEN = 32  # units per hidden layer
COMPONENTS = 16  # PCA components kept per encoder map
MAX_PIXELS = 60_000  # labelled pixels sampled for training (all of them when fewer)
BATCH_PIXELS = 4096
BLOCK = 64  # px: validation holds out whole blocks, so neighbours of training pixels rarely validate
VALIDATION_FRACTION = 0.25
LR, WEIGHT_DECAY = 3e-3, 1e-4
PCA_PIXELS = 4000  # training pixels the PCA of each encoder map is fitted on
BALANCE_STROKES = True  # class-balanced loss when some pixels are unlabelled (strokes)
ENTROPY_WEIGHT = 0.5  # entropy of the predictions on unlabelled pixels, added to the loss for strokes
ENCODER_MARGIN = 0.01  # validation Dice the encoder's features must add to be kept
MAX_FOLDS = 5  # at most this many groups of images are held out in turn (the choice's cost grows with it)
CONTEXT_STEPS = 200  # steps of the context stage, after the first stage's (and self-training's)


class PixelClassifier(nn.Module):
    """``(B, 1, H, W)`` images in [0, 1] -> ``(B, 1, H, W)`` nanowire logits; see the module docstring.

    ``encoder`` is kept (frozen) in every case, so that model files and
    bundles tie the classifier to the encoder it was trained beside; it is
    run only when ``use_encoder``.
    """

    min_tile = 1024  # px: tiled inference uses windows at least this large (see fewshot.tiling.predict_tiled)

    @property
    def min_overlap(self) -> int:
        """Px of overlap tiled inference blends over at least: the reach of the banks' largest Gaussian
        (4 sigma); with less, seams show where a window's border distorts the responses (docs/benchmarks.md)."""
        sigmas = [*self.filters.sigmas, *(self.context_filters.sigmas if self.has_context else ())]
        return int(round(4 * max(sigmas)))

    def __init__(self, encoder: Encoder, *, use_encoder: bool, hidden: int = HIDDEN,
                 components: list[int] | None = None, sigmas=SIGMAS, context_sigmas=()):
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(False)
        self.use_encoder, self.hidden = bool(use_encoder), int(hidden)
        self.filters = FilterBank(sigmas)
        n = self.filters.out_channels
        self.register_buffer("filter_mean", torch.zeros(n))
        self.register_buffer("filter_std", torch.ones(n))
        self.first = nn.Conv2d(n, hidden, 1)
        self.components = [int(k) for k in (components or [min(COMPONENTS, c) for c in encoder.feature_channels])]
        if self.use_encoder:
            for level, (c, k) in enumerate(zip(encoder.feature_channels, self.components)):
                self.register_buffer(f"pca_mean{level}", torch.zeros(c))
                self.register_buffer(f"pca{level}", torch.zeros(k, c))
            self.levels = nn.ModuleList(nn.Conv2d(k, hidden, 1, bias=False) for k in self.components)
        self.body = _tail(hidden)
        self.context_filters: FilterBank | None = None
        # False: the model is the first stage alone (forward, config, saved state), e.g. while the
        # context stage trains or when training stopped before it finished.
        self.context_enabled = True
        if context_sigmas:
            self.add_context(context_sigmas)
        self.unfreeze_last_stage = False  # the encoder never trains here
        self.validation: dict[str, float] = {}  # validation Dice of the candidates it was chosen among

    def add_context(self, sigmas=CONTEXT_SIGMAS) -> None:
        """Add the (untrained) context stage: the bank on the first stage's probability map, beside the
        image's own filters, into a second MLP of the same shape."""
        device = self.filter_mean.device
        self.context_filters = FilterBank(tuple(sigmas))
        m = self.context_filters.out_channels
        self.register_buffer("context_mean", torch.zeros(m, device=device))
        self.register_buffer("context_std", torch.ones(m, device=device))
        self.context_first = nn.Conv2d(self.filters.out_channels + m, self.hidden, 1).to(device)
        self.context_body = _tail(self.hidden).to(device)

    @property
    def has_context(self) -> bool:
        """The context stage is built and in use."""
        return self.context_filters is not None and self.context_enabled

    def context_parameters(self) -> list[nn.Parameter]:
        return [*self.context_first.parameters(), *self.context_body.parameters()]

    @classmethod
    def from_config(cls, encoder: Encoder, config: dict) -> PixelClassifier:
        """The (untrained) model :attr:`config` describes: what a model file's metadata rebuilds."""
        return cls(encoder, use_encoder=bool(config["use_encoder"]), hidden=int(config["hidden"]),
                   components=list(config["components"]), sigmas=tuple(config["sigmas"]),
                   context_sigmas=tuple(config.get("context_sigmas", ())))  # older files: no context stage

    @property
    def kind(self) -> str:
        return "filters+encoder" if self.use_encoder else "filters"

    @property
    def config(self) -> dict:
        return {"model": "pixels", "use_encoder": self.use_encoder, "hidden": self.hidden,
                "components": self.components, "sigmas": list(self.filters.sigmas),
                "context_sigmas": list(self.context_filters.sigmas) if self.has_context else []}

    @property
    def description(self) -> str:
        """The kind, and whether the context stage is on: what status lines name."""
        return f"{self.kind} with context" if self.has_context else self.kind

    def train(self, mode: bool = True) -> PixelClassifier:
        super().train(mode)
        self.encoder.eval()
        return self

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Everything but the encoder (learnt weights, standardisation and PCA)."""
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith("encoder.") and (self.has_context or not k.startswith("context_"))}

    def _pca_map(self, level: int, m: torch.Tensor) -> torch.Tensor:
        """PCA components of encoder map ``level`` at its own resolution, ``(B, k, h, w)``."""
        pca = getattr(self, f"pca{level}")
        return F.conv2d(m.float() - getattr(self, f"pca_mean{level}").view(1, -1, 1, 1), pca[:, :, None, None])

    def project(self, encoder_feats: list[torch.Tensor]) -> torch.Tensor:
        """PCA of sampled pixels' encoder vectors (one ``(N, C_l)`` per level), concatenated: ``(N, sum k)``."""
        return torch.cat([(e.float() - getattr(self, f"pca_mean{level}")) @ getattr(self, f"pca{level}").T
                          for level, e in enumerate(encoder_feats)], 1)

    def forward(self, x: torch.Tensor, encoder_features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``encoder_features``: the encoder's maps of ``x`` padded to a multiple of the stride, when the
        caller has them already (a model averaged with a decoder on the same encoder)."""
        if x.ndim == 3:
            x = x.unsqueeze(1)
        f = self.filters(x)
        first = [(f, *_folded(self.first.weight, self.first.bias, self.filter_mean, self.filter_std))]
        if self.use_encoder:
            padded, (hh, ww) = pad_to_multiple(x)
            if encoder_features is None:
                encoder_features = self.encoder.forward_features(padded)
            for level, m in enumerate(encoder_features):
                # Upsampled after the PCA (k channels), before the first layer (hidden channels): the two
                # are linear and commute, and k is the smaller.
                up = F.interpolate(self._pca_map(level, m), size=padded.shape[-2:], mode="bilinear",
                                   align_corners=False)
                first.append((up[..., :hh, :ww], self.levels[level].weight[:, :, 0, 0], None))
        logits = _mlp_map(first, self.body)
        if not self.has_context:
            return logits
        c = self.context_filters(torch.sigmoid(logits).to(x.dtype))
        weight, n = self.context_first.weight, f.shape[1]  # input channels: the image's filters, then c
        return _mlp_map([(f, *_folded(weight[:, :n], self.context_first.bias, self.filter_mean, self.filter_std)),
                         (c, *_folded(weight[:, n:], None, self.context_mean, self.context_std))], self.context_body)

    def pixel_logits(self, filters: torch.Tensor, projected: torch.Tensor | None) -> torch.Tensor:
        """Logits ``(N,)`` of sampled pixels from their raw filter vectors ``(N, C)`` and (encoder
        models) their :meth:`project` ed encoder vectors: the 1x1 convolutions as matrix products."""
        f = (filters - self.filter_mean) / self.filter_std
        h = F.linear(f, self.first.weight[:, :, 0, 0], self.first.bias)
        if self.use_encoder:
            h = h + F.linear(projected, torch.cat([lv.weight[:, :, 0, 0] for lv in self.levels], 1))
        return _tail_linear(self.body, h)

    def context_logits(self, filters: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Context-stage logits ``(N,)`` of sampled pixels from their raw filter vectors and the raw
        responses of the context bank on the first stage's probability map (as :meth:`forward`)."""
        f = (filters - self.filter_mean) / self.filter_std
        c = (context - self.context_mean) / self.context_std
        return _tail_linear(self.context_body, F.linear(torch.cat([f, c], 1), self.context_first.weight[:, :, 0, 0],
                                                        self.context_first.bias))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            return torch.sigmoid(self(x).float())
        finally:
            self.train(was)


def otsu_threshold(image: np.ndarray) -> float:
    """Otsu's threshold of a normalised image (scikit-image's)."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(np.asarray(image, np.float32)))


def _blurred_threshold(image: np.ndarray, sigma: float) -> tuple[np.ndarray, float]:
    """The image blurred by a Gaussian of ``sigma`` px (itself for 0), and Otsu's threshold of that."""
    image = smooth(np.asarray(image, np.float32), sigma)
    return image, otsu_threshold(image)


def otsu_mask(image: np.ndarray, *, dark: bool, sigma: float = 0.0) -> np.ndarray:
    """The target side of Otsu's threshold of a normalised image, blurred by a Gaussian of ``sigma`` px
    first (none for 0): below it (``dark``) or above."""
    image, t = _blurred_threshold(image, sigma)
    return image < t if dark else image > t


def otsu_polarity(images: list[np.ndarray], labels: list[np.ndarray], sigma: float = 0.0) -> bool:
    """True (target darker than the threshold) when that agrees better, on average over the images, with
    their labelled pixels (ties: dark); the threshold that of :func:`otsu_mask` with ``sigma``."""
    agree = {True: [], False: []}
    for im, lab in zip(images, labels):
        labelled = lab != UNLABELLED
        if labelled.any():
            im, t = _blurred_threshold(im, sigma)
            wire = (lab == NANOWIRE)[labelled]
            agree[True].append(((im < t)[labelled] == wire).mean())
            agree[False].append(((im > t)[labelled] == wire).mean())
    return float(np.mean(agree[True])) >= float(np.mean(agree[False]))


class ThresholdModel(nn.Module):
    """Otsu's threshold of each whole image (blurred by a Gaussian of ``sigma`` px first, none for 0), the
    target on its dark or bright side: the classical peer as a segmentation model (``(B, 1, H, W)`` images
    in [0, 1] -> logits), same interface as :class:`PixelClassifier` for tiled inference, model files and
    bundles."""

    min_tile = PixelClassifier.min_tile
    kind = OTSU
    has_context = False
    unfreeze_last_stage = False
    SHARPNESS = 200.0  # logit per unit of normalised intensity away from the threshold: a mask, not a ramp

    def __init__(self, encoder: Encoder, *, dark: bool, sigma: float = 0.0):
        super().__init__()
        self.encoder = encoder  # never run; ties the model file to the encoder, as every decoder file
        self.register_buffer("polarity", torch.tensor([-1.0 if dark else 1.0]))
        self.sigma = float(sigma)
        self.validation: dict[str, float] = {}

    @property
    def dark(self) -> bool:
        return bool(self.polarity.item() < 0)

    def train(self, mode: bool = True) -> ThresholdModel:
        super().train(mode)
        self.encoder.eval()  # shared with other models: its batch-norm statistics must not move
        return self

    @property
    def description(self) -> str:
        blur = f", Gaussian blur of {self.sigma:g} px first" if self.sigma else ""
        return f"{OTSU} ({'dark' if self.dark else 'bright'} target{blur})"

    @property
    def config(self) -> dict:
        return {"model": OTSU, "dark": self.dark, "sigma": self.sigma}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {"polarity": self.polarity}

    def prepare_input(self, image: np.ndarray) -> np.ndarray:
        """``(2, H, W)``: the image and its blurred copy's distance from that copy's threshold, both of the whole
        image (not of a tile); cut into tiles by ``fewshot.tiling.predict_tiled``."""
        image = np.asarray(image, np.float32)
        blurred, t = _blurred_threshold(image, self.sigma)
        return np.stack([image, blurred - np.float32(t)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 1, H, W)`` images, or tiles of :meth:`prepare_input` (``(B, 2, H, W)``)."""
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.shape[1] == 1:
            x = torch.stack([torch.from_numpy(self.prepare_input(im[0].float().cpu().numpy())) for im in x]).to(x.device)
        return self.SHARPNESS * self.polarity.to(x.device) * x[:, 1:].float()


def _folded(weight: torch.Tensor, bias: torch.Tensor | None, mean: torch.Tensor,
            std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w, b)`` of the 1x1 convolution ``weight`` applied to ``(x - mean) / std`` (per channel): the
    standardisation folded into the weights and bias, so no standardised copy of the responses is made."""
    w = weight[:, :, 0, 0] / std
    return w, (-(w @ mean) if bias is None else bias - w @ mean)


INFERENCE_ROWS = 32  # image rows per band of the MLP in forward: one band's hidden activations stay in the cache


def _mlp_map(first: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], tail: nn.Sequential,
             rows: int = INFERENCE_ROWS) -> torch.Tensor:
    """``(B, 1, H, W)`` logits of an MLP on every pixel: its first layer the sum of linear layers ``(w, b)``
    of the pixels of ``(B, C, H, W)`` maps, then :func:`_tail`. Computed band by band of ``rows`` image
    rows as matrix products: several times faster on a CPU than 1x1 convolutions of the whole image,
    whose hidden maps (hidden x H x W floats each) go through memory (docs/benchmarks.md)."""
    b, _, height, width = first[0][0].shape
    bands = []
    for r in range(0, height, rows):
        h = None
        for maps, w, bias in first:  # summed in place: one hidden band allocated per input map, none more
            z = F.linear(maps[:, :, r:r + rows].permute(0, 2, 3, 1).reshape(-1, maps.shape[1]), w, bias)
            h = z if h is None else h.add_(z)
        bands.append(_tail_linear(tail, h).reshape(b, -1, width))
    return torch.cat(bands, 1)[:, None]


def _tail(hidden: int) -> nn.Sequential:
    """The MLP's layers after the first (1x1 convolutions): ReLU, hidden -> hidden, ReLU, hidden -> 1."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))


def _tail_linear(tail: nn.Sequential, h: torch.Tensor) -> torch.Tensor:
    """:func:`_tail` applied to ``(N, hidden)`` vectors as matrix products: logits ``(N,)``."""
    mid, last = tail[1], tail[3]
    h = F.linear(F.relu(h), mid.weight[:, :, 0, 0], mid.bias)
    return F.linear(F.relu(h), last.weight[:, :, 0, 0], last.bias).reshape(-1)


@torch.no_grad()
def pixel_features(model: PixelClassifier, image: np.ndarray, pixels: list[tuple[np.ndarray, np.ndarray]],
                   device, *, encoder: bool | None = None) -> list[tuple[torch.Tensor, list[torch.Tensor] | None]]:
    """For each ``(ys, xs)`` of ``pixels``: raw filter vectors ``(N, C)`` and (``encoder``, by default
    ``model.use_encoder``) encoder vectors per level, of a normalised image, sampled exactly as
    :meth:`PixelClassifier.forward` upsamples. The maps are computed once for all the sets."""
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None].to(device)
    maps = model.filters(x)[0]
    enc_maps = None
    if model.use_encoder if encoder is None else encoder:
        padded, _ = pad_to_multiple(x)
        hp, wp = padded.shape[-2:]
        enc_maps = [m.float() for m in model.encoder.forward_features(padded)]
    out = []
    for ys, xs in pixels:
        yt, xt = torch.from_numpy(ys).to(device), torch.from_numpy(xs).to(device)
        feats = None
        if enc_maps is not None:
            grid = torch.stack([(2 * (xt.float() + 0.5) / wp) - 1, (2 * (yt.float() + 0.5) / hp) - 1], -1)
            feats = [F.grid_sample(m, grid[None, None], mode="bilinear", padding_mode="border",
                                   align_corners=False)[0, :, 0].T.contiguous() for m in enc_maps]
        out.append((maps[:, yt, xt].T.contiguous(), feats))
    return out


def fit_statistics(model: PixelClassifier, filters: torch.Tensor, encoder_feats: list[torch.Tensor] | None) -> None:
    """Standardisation of the filters and whitened PCA of each encoder map, on training pixels."""
    mean, std = standardisation(filters)
    model.filter_mean.copy_(mean)
    model.filter_std.copy_(std)
    if not model.use_encoder:
        return
    for level, e in enumerate(encoder_feats):
        mean = e.mean(0)
        sample = e[torch.randperm(e.shape[0], generator=torch.Generator().manual_seed(0))[:PCA_PIXELS].to(e.device)]
        _, s, vt = torch.linalg.svd(sample - mean, full_matrices=False)
        k = model.components[level]
        scale = s[:k] / max(1, sample.shape[0] - 1) ** 0.5
        pca = vt[:k] / torch.where(scale > 1e-6, scale, torch.ones_like(scale))[:, None]
        getattr(model, f"pca_mean{level}").copy_(mean)
        getattr(model, f"pca{level}").zero_()
        getattr(model, f"pca{level}")[: pca.shape[0]].copy_(pca)


def validation_blocks(labels: list[np.ndarray], rng: np.random.Generator,
                      fraction: float = VALIDATION_FRACTION) -> list[np.ndarray]:
    """Boolean maps: labelled pixels in held-out ``BLOCK`` px blocks. Falls back to no validation
    (all False) when the held-out or the kept pixels would miss a class."""
    held = []
    for lab in labels:
        h, w = lab.shape
        blocks = rng.random((-(-h // BLOCK), -(-w // BLOCK))) < fraction
        held.append(np.kron(blocks, np.ones((BLOCK, BLOCK), bool))[:h, :w] & (lab != UNLABELLED))
    for part in (held, [(lab != UNLABELLED) & ~v for lab, v in zip(labels, held)]):
        for cls in (BACKGROUND, NANOWIRE):
            if not any((lab[p] == cls).any() for lab, p in zip(labels, part)):
                return [np.zeros(lab.shape, bool) for lab in labels]
    return held


def image_folds(labels: list[np.ndarray], max_folds: int = MAX_FOLDS) -> list[list[int]]:
    """Groups of images held out in turn for the leave-images-out choice: each labelled image alone, or,
    with more than ``max_folds`` labelled images (a stack's slices), ``max_folds`` groups of them dealt
    round-robin. A group is kept when the other images still have both classes labelled. Empty
    (validate on blocks instead) when fewer than two groups are kept, or when their labels miss a class."""
    has = [{cls for cls in (BACKGROUND, NANOWIRE) if (lab == cls).any()} for lab in labels]
    labelled = [k for k in range(len(labels)) if has[k]]
    groups = [labelled[i::max_folds] for i in range(min(max_folds, len(labelled)))]
    folds = [g for g in groups
             if set().union(*(h for j, h in enumerate(has) if j not in g)) >= {BACKGROUND, NANOWIRE}]
    if len(folds) < 2 or set().union(*(has[k] for g in folds for k in g)) < {BACKGROUND, NANOWIRE}:
        return []
    return folds


def _sample(where: list[np.ndarray], n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``n`` pixels (row, column arrays per image) drawn uniformly from the True pixels."""
    counts = np.array([int(w.sum()) for w in where])
    total = int(counts.sum())
    out = []
    for w, c in zip(where, counts):
        ys, xs = np.nonzero(w)
        if total > n and c:
            keep = rng.choice(c, size=max(1, int(round(n * c / total))), replace=False)
            ys, xs = ys[keep], xs[keep]
        out.append((ys.astype(np.int64), xs.astype(np.int64)))
    return out


@dataclass
class _PixelSet:
    filters: torch.Tensor  # raw filter responses (N, C)
    encoder: list[torch.Tensor] | torch.Tensor | None  # raw per level, then projected (N, sum k)
    target: torch.Tensor  # float 0/1
    context: torch.Tensor | None = None  # raw context-bank responses on the first stage's probabilities
    image: torch.Tensor | None = None  # index of the image each pixel comes from

    def rows(self, keep: torch.Tensor) -> _PixelSet:
        """The pixels where ``keep`` (boolean, one per pixel) is True."""
        return _PixelSet(self.filters[keep], None if self.encoder is None else self.encoder[keep],
                         self.target[keep], None if self.context is None else self.context[keep], self.image[keep])


def _dice(logits: torch.Tensor, target: torch.Tensor) -> float:
    pred, t = logits > 0, target > 0.5
    denom = int(pred.sum() + t.sum())
    return 1.0 if denom == 0 else 2 * int((pred & t).sum()) / denom


def _scores(validation: dict[str, float]) -> str:
    """Validation Dice per candidate, as status lines show them: ``filters 0.912, otsu 0.740``."""
    return ", ".join(f"{k} {v:.3f}" for k, v in validation.items())


class PixelTrainer:
    """Trains and chooses among :data:`KINDS` pixel classifiers; interface of :class:`.segment.SegmentationTrainer`
    (``steps``, ``restore_best``, ``add_confident_labels``, ``model``, ``best_loss``, ``losses``).

    ``images`` are normalised already; ``kinds`` the candidates (one kind: no
    validation split); ``previous`` a trained :class:`PixelClassifier` to go
    on training (its kind is kept); ``context``: train the context stage after
    the first (:data:`CONTEXT_STEPS` steps; kept from ``previous`` when it has one).
    """

    def __init__(self, encoder: Encoder, images: list[np.ndarray], labels: list[np.ndarray], *,
                 kinds=KINDS, seed: int = 0, device="cpu", previous: PixelClassifier | None = None,
                 lr: float = LR, context: bool = True):
        self.device = select_device(device)
        self.encoder = encoder
        self.images, self.painted = images, labels
        self.labels = list(labels)
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        if previous is not None:
            self.candidates = {previous.kind: copy.deepcopy(previous).to(self.device)}
            self.candidates[previous.kind].encoder = encoder
        else:
            unknown = [k for k in kinds if k not in AUTO_KINDS]
            learnt = [k for k in kinds if k != OTSU]
            if unknown or not learnt:
                raise NanowireSSLError(f"unknown pixel model(s) {unknown or kinds}; choose from {', '.join(KINDS)}"
                                       f" (and {OTSU} beside them)")
            self.candidates = {k: PixelClassifier(encoder, use_encoder=(k == "filters+encoder")).to(self.device)
                               for k in learnt}
        self.fresh = previous is None
        self.continued = previous is not None  # training on from a model: its kind was chosen before, if at all
        self.context_steps = CONTEXT_STEPS if context or (previous is not None and previous.has_context) else 0
        self.context_set: _PixelSet | None = None
        self.choosing = len(self.candidates) > 1  # several candidates: the choice on held-out labels
        self.balanced = BALANCE_STROKES and any((lab == UNLABELLED).any() for lab in labels)
        self.lr = lr
        self.losses: list[float] = []
        self.validation: dict[str, float] = {}
        self.chosen: str | None = next(iter(self.candidates)) if len(self.candidates) == 1 else None
        self.running_loss: float | None = None
        self.best_loss = float("inf")
        # Groups of images held out in turn for the choice (leave-images-out); none: held-out blocks.
        self.folds = image_folds(labels) if self.chosen is None else []
        self.otsu = previous is None and OTSU in kinds and bool(self.folds)  # Otsu's threshold competes
        self._prepare(split=self.chosen is None)

    @property
    def model(self) -> PixelClassifier:
        return self.candidates[self.chosen or next(iter(self.candidates))]

    @property
    def has_unpainted(self) -> bool:
        return any((lab == UNLABELLED).any() for lab in self.painted)

    def _gather(self, parts: list[list[tuple[np.ndarray, np.ndarray]]]) -> list[dict[str, _PixelSet]]:
        """Per part (pixels of every image), the raw features of every candidate (maps computed once)."""
        any_model = next(iter(self.candidates.values()))
        encoder = any(m.use_encoder for m in self.candidates.values())
        per_part = [([], [], []) for _ in parts]
        for i, (image, lab) in enumerate(zip(self.images, self.labels)):
            pixels = [part[i] for part in parts]
            for (fs, es, ts), (f, e), (ys, xs) in zip(per_part, pixel_features(any_model, image, pixels, self.device,
                                                                               encoder=encoder), pixels):
                fs.append(f)
                es.append(e)
                ts.append(torch.from_numpy((lab[ys, xs] == NANOWIRE).astype(np.float32)).to(self.device))
        out = []
        for (fs, es, ts), part in zip(per_part, parts):
            enc = None if es[0] is None else [torch.cat([e[level] for e in es]) for level in range(len(es[0]))]
            image = torch.cat([torch.full((ys.size,), i) for i, (ys, _) in enumerate(part)]).to(self.device)
            out.append({k: _PixelSet(torch.cat(fs), enc if m.use_encoder else None, torch.cat(ts), image=image)
                        for k, m in self.candidates.items()})
        return out

    def _prepare(self, *, split: bool) -> None:
        """Sample training (and validation) pixels of the current labels; statistics of fresh models."""
        labelled = [lab != UNLABELLED for lab in self.labels]
        split = split and not self.folds  # by images: the choice trains on folds of the same pixels
        held = validation_blocks(self.labels, self.rng) if split else [np.zeros_like(m) for m in labelled]
        if split and not any(h.any() for h in held):
            self.chosen = next(iter(self.candidates))  # too few labels to validate: the first kind
            split = False
        parts = [_sample([m & ~h for m, h in zip(labelled, held)], MAX_PIXELS, self.rng)]
        if split:
            parts.append(_sample(held, MAX_PIXELS // 2, self.rng))
        self.entropy = entropy = self.balanced and ENTROPY_WEIGHT > 0 and any((~m).any() for m in labelled)
        if entropy:
            parts.append(_sample([~m for m in labelled], MAX_PIXELS // 2, self.rng))
        sets = self._gather(parts)
        self.train_set, self.val_set = sets[0], sets[1] if split else None
        self.unlabelled_set = sets[-1] if entropy else None
        target = next(iter(self.train_set.values())).target
        n_wire = float(target.sum())
        # Strokes: their proportions say nothing about the image, so both classes weigh the same;
        # full masks: the labelled proportions are the image's, as for the random forest.
        self.pos_weight = torch.tensor((target.numel() - n_wire) / max(n_wire, 1.0) if self.balanced else 1.0,
                                       device=self.device)
        if self.fresh:
            for kind, model in self.candidates.items():
                fit_statistics(model, self.train_set[kind].filters, self.train_set[kind].encoder)
            self.fresh = False
        for kind, model in self.candidates.items():
            for data in (self.train_set[kind], self.val_set[kind] if self.val_set else None,
                         self.unlabelled_set[kind] if self.unlabelled_set else None):
                if data is not None and data.encoder is not None:
                    data.encoder = model.project(data.encoder)
        self.optimizers = {k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=self.lr,
                                                weight_decay=WEIGHT_DECAY) for k, m in self.candidates.items()}

    def _active(self) -> list[str]:
        return [self.chosen] if self.chosen is not None else list(self.candidates)

    def _loss(self, logits_of, data: _PixelSet, free: _PixelSet | None) -> torch.Tensor:
        """Cross-entropy on a batch of labelled pixels (+ the entropy of a batch of unlabelled ones);
        ``logits_of(pixel_set, indices)`` is the model or stage being trained."""
        idx = torch.from_numpy(self.rng.integers(data.target.numel(), size=BATCH_PIXELS)).to(self.device)
        loss = F.binary_cross_entropy_with_logits(logits_of(data, idx), data.target[idx], pos_weight=self.pos_weight)
        if free is not None:
            idx = torch.from_numpy(self.rng.integers(free.target.numel(), size=BATCH_PIXELS)).to(self.device)
            z = logits_of(free, idx)
            loss = loss + ENTROPY_WEIGHT * F.binary_cross_entropy_with_logits(z, torch.sigmoid(z))  # = entropy
        if not torch.isfinite(loss):
            raise NanowireSSLError(f"training diverged: loss is {loss.item()}; lower the learning rate")
        return loss

    def train_step(self) -> float:
        losses = []
        for kind in self._active():
            free = self.unlabelled_set[kind] if self.unlabelled_set else None
            losses.append(self._first_stage_step(self.candidates[kind], self.optimizers[kind],
                                                 self.train_set[kind], free))
        return float(np.mean(losses))

    def _first_stage_step(self, model: PixelClassifier, optimizer, data: _PixelSet, free: _PixelSet | None) -> float:
        """One optimisation step of ``model``'s first stage on a batch of ``data`` (and ``free``)."""
        model.train()
        loss = self._loss(lambda d, i: model.pixel_logits(d.filters[i], None if d.encoder is None else d.encoder[i]),
                          data, free)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def prepare_context(self, should_stop=None) -> bool:
        """The context stage's training pixels: the first stage's probability map of every training image
        (in-sample, as ilastik's auto-context), the context bank on it, sampled where the first stage's
        pixels were; adds the stage to the model if it has none. The stage stays off until its last step
        (previews and a Stop keep the first stage alone). False when ``should_stop()`` turned true."""
        from .tiling import predict_tiled

        model = self.model.eval()
        fresh = model.context_filters is None
        if fresh:
            model.add_context()
        labelled = [lab != UNLABELLED for lab in self.labels]
        parts = [_sample(labelled, MAX_PIXELS, self.rng)]
        if self.entropy:
            parts.append(_sample([~m for m in labelled], MAX_PIXELS // 2, self.rng))
        gathered = [([], [], []) for _ in parts]
        model.context_enabled = False
        for i, (image, lab) in enumerate(zip(self.images, self.labels)):
            prob = predict_tiled(model, image, should_stop=should_stop)
            if prob is None:
                return False
            context = model.context_filters(torch.from_numpy(prob)[None, None].to(self.device))[0]
            pixels = [part[i] for part in parts]
            for (fs, cs, ts), (f, _), (ys, xs) in zip(gathered, pixel_features(model, image, pixels, self.device,
                                                                               encoder=False), pixels):
                fs.append(f)
                cs.append(context[:, torch.from_numpy(ys).to(self.device), torch.from_numpy(xs).to(self.device)].T)
                ts.append(torch.from_numpy((lab[ys, xs] == NANOWIRE).astype(np.float32)).to(self.device))
        sets = [_PixelSet(torch.cat(fs), None, torch.cat(ts), torch.cat(cs)) for fs, cs, ts in gathered]
        self.context_set, self.context_free = sets[0], sets[1] if self.entropy else None
        if fresh:
            mean, std = standardisation(self.context_set.context)
            model.context_mean.copy_(mean)
            model.context_std.copy_(std)
        self.context_optimizer = torch.optim.AdamW(model.context_parameters(), lr=self.lr, weight_decay=WEIGHT_DECAY)
        self.running_loss, self.best_loss = None, float("inf")
        return True

    def context_step(self) -> float:
        """One step of the context stage (after :meth:`prepare_context`)."""
        model = self.model.train()
        loss = self._loss(lambda d, i: model.context_logits(d.filters[i], d.context[i]), self.context_set,
                          self.context_free)
        self.context_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.context_optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def choose(self) -> str:
        """Validation Dice of every candidate on the held-out blocks; keep the best; train on all labels."""
        if self.chosen is None:
            for kind, model in self.candidates.items():
                model.eval()
                data = self.val_set[kind]
                self.validation[kind] = _dice(model.pixel_logits(data.filters, data.encoder), data.target)
            self._keep_best()
            self._prepare(split=False)
            self.running_loss, self.best_loss = None, float("inf")
        return self.chosen

    def choose_by_images(self, fold_steps: int, should_stop=None) -> bool:
        """Leave-one-image-out choice (see the module docstring): every candidate, fresh, trains
        ``fold_steps`` steps on the pixels of all images but those of one group of :attr:`folds` and is
        scored on that group's; the pooled Dice over the groups decides. The kept candidate is still
        untrained. False when ``should_stop()`` turned true (nothing chosen)."""
        for kind, model in self.candidates.items():
            logits, targets = [], []
            data, free = self.train_set[kind], self.unlabelled_set[kind] if self.unlabelled_set else None
            for group in self.folds:
                fold = copy.deepcopy(model, memo={id(model.encoder): model.encoder})  # the encoder shared
                optimizer = torch.optim.AdamW([p for p in fold.parameters() if p.requires_grad], lr=self.lr,
                                              weight_decay=WEIGHT_DECAY)
                group = torch.tensor(group, device=self.device)
                held_out = torch.isin(data.image, group)
                train, rest = data.rows(~held_out), None if free is None else free.rows(~torch.isin(free.image, group))
                for _ in range(fold_steps):
                    if should_stop is not None and should_stop():
                        return False
                    self._first_stage_step(fold, optimizer, train, rest)
                held = data.rows(held_out)
                with torch.no_grad():
                    logits.append(fold.eval().pixel_logits(held.filters, held.encoder))
                targets.append(held.target)
            self.validation[kind] = _dice(torch.cat(logits), torch.cat(targets))  # pooled over the folds
        if self.otsu:
            self.validation[OTSU] = self._otsu_score()
        self._keep_best()
        if self.chosen == OTSU:
            self.context_steps = 0
        return True

    def _otsu_score(self, sigma: float = 0.0, *, blurred: list[np.ndarray] | None = None) -> float:
        """Pooled Dice of Otsu's threshold after a blur of ``sigma`` px on the labelled pixels of each group of
        :attr:`folds`, its polarity chosen on the other images' labels. ``blurred``: the images already
        blurred by ``sigma``."""
        images = blurred if blurred is not None else [smooth(im, sigma) for im in self.images]
        predicted, targets = [], []
        for group in self.folds:
            others = [k for k in range(len(images)) if k not in group]
            dark = otsu_polarity([images[k] for k in others], [self.labels[k] for k in others])
            for k in group:
                labelled = self.labels[k] != UNLABELLED
                predicted.append(otsu_mask(images[k], dark=dark)[labelled])
                targets.append(self.labels[k][labelled] == NANOWIRE)
        return _dice(torch.from_numpy(np.concatenate(predicted)).float() - 0.5,
                     torch.from_numpy(np.concatenate(targets)).float())

    def _threshold_model(self) -> ThresholdModel:
        """The kept Otsu candidate, after the blur of :data:`OTSU_SIGMAS` that scores best on the held-out
        images (ties: the lighter). Only the unblurred threshold's score competed with the learnt models:
        the best of several scores is biased upwards by the choosing (docs/benchmarks.md)."""
        blurred = {sigma: [smooth(im, sigma) for im in self.images] for sigma in OTSU_SIGMAS}  # each blur once
        scores = {sigma: self.validation[OTSU] if sigma == 0 else self._otsu_score(blurred=blurred[sigma])
                  for sigma in OTSU_SIGMAS}
        sigma = max(OTSU_SIGMAS, key=lambda s: scores[s])  # ties: the first, the lighter blur
        return ThresholdModel(self.encoder, dark=otsu_polarity(blurred[sigma], self.labels), sigma=sigma)

    def _keep_best(self) -> None:
        """Keep the candidate with the best :attr:`validation` (the encoder's by :data:`ENCODER_MARGIN`)."""
        penalty = {k: ENCODER_MARGIN if k in self.candidates and self.candidates[k].use_encoder else 0.0
                   for k in self.validation}
        self.chosen = max(self.validation, key=lambda k: self.validation[k] - penalty[k])  # ties: the first
        model = self.candidates.get(self.chosen) or self._threshold_model().to(self.device)
        model.validation = dict(self.validation)
        self.candidates = {self.chosen: model}

    def add_confident_labels(self, *, wire: float = CONFIDENT_WIRE, background: float = CONFIDENT_BACKGROUND,
                             should_stop=None) -> float | None:
        """Self-training, as :meth:`.segment.SegmentationTrainer.add_confident_labels`."""
        from .segment import confident_labels, labelled_fraction

        model = self.restore_best()
        enabled, model.context_enabled = model.context_enabled, False  # the first stage labels for the first
        try:
            confident = confident_labels(model, self.images, self.painted, wire=wire, background=background,
                                         should_stop=should_stop)
        finally:
            model.context_enabled = enabled
        if confident is None:
            return None
        self.labels = confident
        self._prepare(split=False)
        self.running_loss, self.best_loss = None, float("inf")
        return labelled_fraction(self.labels)

    def steps(self, n_steps: int, *, self_training: int = 0, should_stop=None):
        """Events as :meth:`.segment.SegmentationTrainer.steps`; the choice is made before the first step
        (by images) or after half the steps (by blocks), the context stage trains for the last
        :attr:`context_steps`."""
        from .segment import total_steps

        first = total_steps(n_steps, self_training, self.has_unpainted)
        total = total_steps(n_steps, self_training, self.has_unpainted, self.context_steps)
        for step in range(total):
            t0 = time.perf_counter()
            if step == 0 and self.chosen is None and self.folds and not self.choose_by_images(
                    max(1, n_steps // 2), should_stop):
                return
            if self.chosen == OTSU:  # nothing to train
                return
            if step == n_steps // 2 and self.chosen is None:
                self.choose()
            if step == n_steps < first and self.add_confident_labels(should_stop=should_stop) is None:
                return
            if step == first:
                if self.chosen is None:
                    self.choose()
                if not self.prepare_context(should_stop):
                    return
            loss = self.train_step() if step < first else self.context_step()
            self.losses.append(loss)
            self.running_loss = loss if self.running_loss is None else 0.9 * self.running_loss + 0.1 * loss
            self.best_loss = min(self.best_loss, self.running_loss)
            if step + 1 == total and self.context_set is not None:
                self.model.context_enabled = True  # trained: the model is both stages from now on
            stage = "" if step < n_steps else SELF_TRAINING if step < first else CONTEXT
            yield SegmentEvent(step, total, loss, time.perf_counter() - t0, stage)
        if self.chosen is None:
            self.choose()

    def restore_best(self) -> PixelClassifier:
        """The chosen model (the last state: pixel batches make the loss smooth), in eval mode."""
        return self.model.eval()

    def choice_line(self) -> str:
        """One line for the status bar and the CLI summary: the chosen kind and the validation scores."""
        name = self.model.description
        if not self.validation:
            if self.continued:
                earlier = _scores(self.model.validation)
                return f"model: {name} (trained on from the previous model" + \
                    (f", whose kind was kept by validation Dice {earlier})" if earlier else ")")
            if not self.choosing:
                return f"model: {name} (as asked, not validated)"
            return f"model: {name} (not validated: too few labels to hold some out)" if self.chosen \
                else f"model: {name}"
        scores = _scores(self.validation)
        n_images = sum(len(g) for g in self.folds)
        where = ("held-out labelled blocks" if not self.folds
                 else f"each of {n_images} labelled images held out in turn" if n_images == len(self.folds)
                 else f"{len(self.folds)} groups of the {n_images} labelled images held out in turn")
        return f"model: {name} (validation Dice on {where}: {scores})"

