"""PairVAE (Lu & Jayaraman, JACS Au 2023): two VAEs, SAXS and SEM, with a shared latent meaning.

Each modality has a variational encoder and a decoder. The encoder is the
project's frozen :class:`~napari_nanowire_ssl.models.encoder.Encoder` (the
default one or any loaded one) giving pooled features (``layer3`` and
``layer4``, mean and std over positions: :class:`~..fewshot.features.PooledFeatures`),
followed by a small :class:`LatentHead` that outputs ``(mu, logvar)``. Pooled
features do not depend on where a pattern sits in the image, which is right
for SAXS (it is translation invariant) and for the statistics of an SEM
morphology; so a decoded SEM image is a representative morphology, not a
pixel copy, and its likelihood is aligned over translations (see
:func:`.train.sem_loss`).

Decoders map a latent vector to an image of ``image_size`` px: a linear layer
to a ``image_size / 16`` grid, four transposed convolutions (x2 each, with
batch norm and ReLU) and a 3x3 convolution to one channel of logits. SAXS
logits are made Friedel-symmetric, ``I(q) = I(-q)`` as for any real density,
by averaging them with their point reflection about q = 0 (pixel
``size // 2``); SAXS outputs are ``sigmoid(logits)`` intensities in [0, 1],
SEM outputs are Bernoulli probabilities of block A (binarised at 0.5).

Cross-reconstruction: encode one modality, take the mean ``mu`` of its latent,
decode it with the other modality's decoder.

Model files (kind ``pairvae``): the heads' and decoders' tensors (the
encoder is not stored) with metadata ``latent_size``, ``image_size``,
``hidden``, ``width``, ``feature_dim``, ``weights`` (the loss weights it was
trained with), ``pooling``, ``backbone``, ``encoder_hash`` and
``encoder_source``; :func:`load_pairvae` refuses any other encoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelFileError, NanowireSSLError
from ..fewshot.features import PooledFeatures
from ..models.modelfile import encoder_identity
from ..models.encoder import Encoder, encode_images
from ..models.modelfile import load_tensors, save_tensors

MODALITIES = ("saxs", "sem")
KIND = "pairvae"
UPSAMPLINGS = 4  # the decoders start from an image_size / 16 grid
STATISTICS = ("mean", "std")  # pooling of the layer3 and layer4 maps (PooledFeatures)
POOLING = f"layer3+layer4 {'+'.join(STATISTICS)}"  # recorded in model files


@dataclass
class LossWeights:
    """Weights of the training loss terms (see :mod:`.train`).

    SAXS terms are mean squared errors of [0, 1] intensities (typically
    0.005-0.02), SEM terms binary cross-entropies per pixel (0.1-0.7): the
    SAXS weights of 10 bring both to a similar scale. ``kl`` weighs each
    modality's KL divergence (summed over latent dimensions, a beta-VAE with a
    small beta keeps reconstructions sharp); ``similarity`` weighs the Barlow
    Twins loss between the two latent means (summed over dimensions, so its
    size grows with the latent size).
    """

    saxs_saxs: float = 10.0
    saxs_sem: float = 1.0
    sem_sem: float = 1.0
    sem_saxs: float = 10.0
    kl: float = 1e-3
    similarity: float = 1e-2

    @classmethod
    def parse(cls, text: str) -> LossWeights:
        """``"kl=0.01,similarity=0.1"`` -> weights with those values changed; one-line errors."""
        values = asdict(cls())
        for item in filter(None, (s.strip() for s in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name.strip() not in values:
                raise NanowireSSLError(f"loss weight {item!r}: write NAME=VALUE with NAME one of {', '.join(values)}")
            try:
                values[name.strip()] = float(value)
            except ValueError:
                raise NanowireSSLError(f"loss weight {item!r}: {value!r} is not a number") from None
            if values[name.strip()] < 0:
                raise NanowireSSLError(f"loss weight {item!r}: must not be negative")
        return cls(**values)


@dataclass
class PairVAEConfig:
    """Architecture of a PairVAE (stored in its model file)."""

    latent_size: int = 32
    image_size: int = 64
    hidden: int = 256  # width of the latent heads' hidden layer
    width: int = 16  # channels of the decoders' last stage (x2 and x4 before)
    weights: LossWeights = field(default_factory=LossWeights)

    def validate(self) -> None:
        step = 2**UPSAMPLINGS
        if self.image_size < 32 or self.image_size % step:
            raise NanowireSSLError(f"image size must be a multiple of {step} px and at least 32, got {self.image_size}")
        if self.latent_size < 2:
            raise NanowireSSLError(f"latent size must be at least 2, got {self.latent_size}")
        if self.hidden < 1 or self.width < 1:
            raise NanowireSSLError("hidden and width must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PairVAEConfig:
        d = {k: d[k] for k in ("latent_size", "image_size", "hidden", "width")} | {"weights": d.get("weights", {})}
        return cls(**{**d, "weights": LossWeights(**d["weights"])})


class LatentHead(nn.Module):
    """Standardised frozen-encoder features -> ``(mu, logvar)`` through one hidden layer."""

    def __init__(self, feature_dim: int, hidden: int, latent_size: int):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_size))

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Use the training features' mean and std (std floored) to standardise inputs."""
        self.feature_mean.copy_(features.mean(dim=0))
        self.feature_std.copy_(features.std(dim=0).clamp_min(1e-3 * float(features.std()) + 1e-8))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net((features - self.feature_mean) / self.feature_std).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 10)


def friedel_symmetrise(x: torch.Tensor) -> torch.Tensor:
    """Average ``(..., N, N)`` maps with their point reflection about pixel ``(N // 2, N // 2)`` (q -> -q)."""
    return 0.5 * (x + torch.roll(torch.flip(x, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1)))


class ImageDecoder(nn.Module):
    """Latent vector -> ``(B, size, size)`` logits; see the module docstring."""

    def __init__(self, latent_size: int, image_size: int, width: int, *, friedel: bool):
        super().__init__()
        self.start = image_size // 2**UPSAMPLINGS
        channels = [4 * width, 4 * width, 2 * width, width, width]
        self.fc = nn.Linear(latent_size, channels[0] * self.start**2)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU()]
        layers.append(nn.Conv2d(channels[-1], 1, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.friedel = friedel

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc(z)).view(z.shape[0], -1, self.start, self.start)
        logits = self.net(x)[:, 0]
        return friedel_symmetrise(logits) if self.friedel else logits


class PairVAE(nn.Module):
    """Latent heads and decoders of both modalities (the frozen encoder lives outside)."""

    def __init__(self, feature_dim: int, config: PairVAEConfig | None = None):
        super().__init__()
        self.config = config or PairVAEConfig()
        self.config.validate()
        self.feature_dim = int(feature_dim)
        c = self.config
        self.heads = nn.ModuleDict({m: LatentHead(feature_dim, c.hidden, c.latent_size) for m in MODALITIES})
        self.decoders = nn.ModuleDict({m: ImageDecoder(c.latent_size, c.image_size, c.width, friedel=m == "saxs")
                                       for m in MODALITIES})

    def encode(self, modality: str, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads[modality](features)

    def decode(self, modality: str, z: torch.Tensor) -> torch.Tensor:
        return self.decoders[modality](z)

    @torch.no_grad()
    def translate(self, features: torch.Tensor, source: str, target: str) -> torch.Tensor:
        """Probabilities / intensities in [0, 1] of ``target`` decoded from the latent mean of ``source``."""
        self.eval()
        mu, _ = self.encode(source, features)
        return torch.sigmoid(self.decode(target, mu))


def check_modality(name: str) -> str:
    if name not in MODALITIES:
        raise NanowireSSLError(f"unknown modality {name!r}; choose saxs or sem")
    return name


def other(modality: str) -> str:
    return MODALITIES[1 - MODALITIES.index(check_modality(modality))]


def frozen_features(encoder: Encoder, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """(N, feature_dim) pooled frozen-encoder features of (N, S, S) [0, 1] network inputs."""
    return encode_images(PooledFeatures(encoder, STATISTICS), list(np.asarray(images, np.float32)), batch_size=batch_size)


def feature_dim(encoder: Encoder) -> int:
    return PooledFeatures(encoder, STATISTICS).embedding_dim


def as_output(probabilities: np.ndarray, target: str) -> np.ndarray:
    """Output convention: SEM uint8 0/1 (1 = block A, binarised at 0.5), SAXS float32 [0, 1] log intensities."""
    if target == "sem":
        return (probabilities > 0.5).astype(np.uint8)
    return probabilities.astype(np.float32)


def generate(vae: PairVAE, encoder: Encoder, images: np.ndarray, source: str) -> np.ndarray:
    """The other modality of (N, S, S) network inputs of ``source`` (see :func:`as_output`)."""
    target = other(source)
    if images.shape[-2:] != (vae.config.image_size,) * 2:
        raise NanowireSSLError(f"inputs must be {vae.config.image_size} px squares (the model's image size), "
                               f"got {images.shape[-2:]}")
    device = next(vae.parameters()).device
    features = torch.from_numpy(frozen_features(encoder, images)).to(device)
    return as_output(vae.translate(features, source, target).cpu().numpy(), target)


def save_pairvae(vae: PairVAE, path: str | Path, *, encoder: Encoder, encoder_source: str,
                 training: dict | None = None) -> str:
    """Write a ``pairvae`` model file (see the module docstring); return its content hash."""
    metadata = {
        "kind": KIND,
        **vae.config.to_dict(),
        "feature_dim": vae.feature_dim,
        "pooling": POOLING,
        "backbone": encoder.backbone,
        "encoder_hash": encoder_identity(encoder),
        "encoder_source": encoder_source,
        "training": training or {},
    }
    return save_tensors(path, vae.state_dict(), metadata)


def load_pairvae(path: str | Path, encoder: Encoder) -> PairVAE:
    """Rebuild a saved PairVAE (eval mode) for ``encoder``; refuses, in one line, another encoder."""
    tensors, meta = load_tensors(path, kind=KIND)
    missing = [k for k in ("latent_size", "image_size", "hidden", "width", "feature_dim", "encoder_hash")
               if k not in meta]
    if missing:
        raise ModelFileError(f"{path}: metadata lacks {', '.join(missing)}: file corrupt or edited")
    if encoder_identity(encoder) != meta["encoder_hash"]:
        raise ModelFileError(
            f"{path}: this PairVAE was trained on another encoder ({meta.get('backbone', '?')}, hash "
            f"{meta['encoder_hash'][:12]}, from {meta.get('encoder_source', '?')}); "
            "load the encoder it was trained with"
        )
    vae = PairVAE(meta["feature_dim"], PairVAEConfig.from_dict(meta))
    expected = vae.state_dict()
    if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
        raise ModelFileError(f"{path}: tensors do not match the PairVAE its metadata describes: file corrupt or edited")
    vae.load_state_dict(tensors)
    return vae.to(next(encoder.parameters()).device).eval()
