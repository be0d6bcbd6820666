"""Turning published ResNet checkpoints into grayscale :class:`Encoder` objects.

Supported layouts (all read with ``torch.load(weights_only=True)``: plain
tensors, numbers, strings and containers only, never arbitrary pickled
objects, so a checkpoint cannot run code):

- torchvision: a ResNet state dict (``conv1.weight``, ``layer1.0...``, ``fc.*``)
  saved with ``torch.save``, e.g. ImageNet weights;
- CEM500K MoCoV2 (``cem500k_mocov2_resnet50_200ep.pth.tar``): a dict whose
  ``state_dict`` holds ``module.encoder_q.<torchvision name>`` (plus the MoCo
  MLP head ``fc.*``, dropped) and possibly ``norms`` (mean, std);
- CEM1.5M SwAV: the same with the prefix ``encoder.`` (or ``module.``).

Three-channel ``conv1`` weights are folded to one channel by summing over the
input channels, which is exact for a gray image replicated to RGB (see
:mod:`.encoder`). ImageNet weights expect per-channel RGB statistics; a gray
image replicated to 3 channels can only be normalised with one mean and std,
so we use the averages of the ImageNet ones, mean 0.449 and std 0.226 (the
per-channel values differ by less than 0.08 from these).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import ModelFileError
from .encoder import BACKBONES, Encoder, infer_backbone
from .modelfile import check_model_path, load_encoder

IMAGENET_GRAY_MEAN = 0.449  # mean of (0.485, 0.456, 0.406)
IMAGENET_GRAY_STD = 0.226  # mean of (0.229, 0.224, 0.225)
CEM500K_MEAN = 0.5729  # CEM500K dataset statistics (Conrad & Narayan 2021)
CEM500K_STD = 0.1274

# Prefixes of the query/backbone encoder in self-supervised checkpoints, most specific first.
_SSL_PREFIXES = ("module.encoder_q.", "encoder_q.", "module.encoder.", "encoder.", "module.")
# Projection heads and prototypes of MoCo / SwAV: not part of the encoder.
_HEAD_PREFIXES = ("fc.", "projection_head.", "prototypes.")


def _torch_load(path: Path) -> object:
    """``torch.load`` restricted to plain tensors, with one-line errors naming ``path``."""
    check_model_path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if str(e).startswith("Weights only load failed"):
            raise ModelFileError(
                f"{path}: contains pickled Python objects; only plain tensor checkpoints are loaded for safety"
            ) from None
        raise ModelFileError(f"{path}: truncated or not a PyTorch checkpoint ({str(e).splitlines()[0]})") from None
    except Exception as e:  # torch raises RuntimeError, IndexError, EOFError ... on damaged files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path}: truncated or not a PyTorch checkpoint ({reason[:120]})") from None


def _encoder_weights(state: object, path: Path, prefixes: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], str]:
    """The encoder's tensors under the first prefix that has a ``conv1.weight``, heads dropped."""
    if isinstance(state, Mapping):
        for prefix in prefixes:
            if isinstance(state.get(prefix + "conv1.weight"), torch.Tensor):
                weights = {
                    k[len(prefix) :]: v
                    for k, v in state.items()
                    if k.startswith(prefix) and not k[len(prefix) :].startswith(_HEAD_PREFIXES)
                }
                return weights, prefix
    expected = " or ".join(repr(p + "conv1.weight") for p in prefixes)
    raise ModelFileError(f"{path}: not a recognised ResNet checkpoint (no {expected} tensor)")


def _build(
    weights: dict[str, torch.Tensor], path: Path, backbone: str | None, mean: float, std: float, layout: str
) -> Encoder:
    """Fold ``conv1`` to one channel and load ``weights`` strictly into a new encoder."""
    if backbone is None:
        backbone = infer_backbone(weights)
        if backbone is None:
            raise ModelFileError(
                f"{path}: cannot tell the ResNet backbone from its layers (supported: {', '.join(BACKBONES)})"
            )
    conv1 = weights["conv1.weight"]
    if conv1.ndim != 4 or conv1.shape[1] not in (1, 3):
        raise ModelFileError(
            f"{path}: conv1.weight has shape {tuple(conv1.shape)}; expected 1 (gray) or 3 (RGB) input channels"
        )
    weights = {**weights, "conv1.weight": conv1.sum(dim=1, keepdim=True)}
    encoder = Encoder(backbone, mean=mean, std=std)
    encoder.load_checked_state_dict(weights, source=str(path))
    encoder.training_info = {"method": f"imported from {path.name}", "layout": layout}
    return encoder.eval()


def _norms(checkpoint: Mapping, path: Path) -> tuple[float, float] | None:
    """``(mean, std)`` from a ``norms`` entry (top level or in ``state_dict``), if any."""
    norms = checkpoint.get("norms", checkpoint["state_dict"].get("norms"))
    if norms is None:
        return None
    try:
        values = torch.as_tensor(norms, dtype=torch.float64).flatten().tolist()
    except (TypeError, ValueError, RuntimeError):
        values = []
    if len(values) != 2 or not values[1] > 0:
        raise ModelFileError(f"{path}: unreadable 'norms' entry (expected mean and std), got {norms!r:.80}")
    return values[0], values[1]


def _from_torchvision(checkpoint: object, path: Path, backbone: str | None) -> Encoder:
    weights, _ = _encoder_weights(checkpoint, path, ("",))
    return _build(weights, path, backbone, IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD, "torchvision")


def _from_ssl(checkpoint: object, path: Path) -> Encoder:
    if not (isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping)):
        raise ModelFileError(f"{path}: has no 'state_dict' entry; not a CEM500K / MoCo / SwAV checkpoint")
    weights, prefix = _encoder_weights(checkpoint["state_dict"], path, _SSL_PREFIXES)
    mean, std = _norms(checkpoint, path) or (CEM500K_MEAN, CEM500K_STD)
    layout = "moco" if "encoder_q." in prefix else "swav"
    return _build(weights, path, None, mean, std, layout)


def import_torchvision_state_dict(path: str | os.PathLike, backbone: str | None = None) -> Encoder:
    """Encoder from a torchvision ResNet state dict (``torch.save(model.state_dict())``).

    ``backbone`` is inferred from the layers when None. ``fc.*`` is dropped,
    ``conv1`` folded to one channel, and the ImageNet statistics averaged over
    RGB (0.449 / 0.226) become the encoder's normalisation.
    """
    path = Path(path)
    return _from_torchvision(_torch_load(path), path, backbone)


def import_cem500k(path: str | os.PathLike) -> Encoder:
    """Encoder from the CEM500K MoCoV2 (or CEM1.5M SwAV) ResNet50 ``.pth.tar`` checkpoint.

    Uses the file's ``norms`` when present, else the CEM500K statistics
    (mean 0.5729, std 0.1274).
    """
    path = Path(path)
    return _from_ssl(_torch_load(path), path)


def import_checkpoint(path: str | os.PathLike) -> Encoder:
    """Encoder from any supported file, detecting its layout.

    A plugin model file (safetensors) is loaded with :func:`load_encoder`; a
    PyTorch checkpoint with a ``state_dict`` entry is read as CEM500K / SwAV,
    and a plain state dict as torchvision.
    """
    path = Path(path)
    check_model_path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # neither a zip (torch.save) nor a legacy pickle
        return load_encoder(path)
    checkpoint = _torch_load(path)
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        return _from_ssl(checkpoint, path)
    return _from_torchvision(checkpoint, path, None)
