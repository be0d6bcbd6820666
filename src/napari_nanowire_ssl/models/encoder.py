"""The grayscale ResNet encoder shared by every network in the plugin.

Micrographs are single-channel, so the encoder takes ONE input channel: its
first convolution ``conv1`` has one input plane. This loses nothing against the
usual RGB networks: replicating a gray image to 3 channels and applying a
3-channel ``conv1`` gives exactly the same result as a 1-channel ``conv1``
whose weights are the sum of the 3-channel weights over the input channels
(convolution is linear in its input). Importers therefore fold RGB ``conv1``
weights by summing (exact), and the first layer is 3x cheaper at inference.

Input convention: float images in [0, 1] (the reader's robust percentile
normalisation), shape ``(B, 1, H, W)`` or ``(B, H, W)``. The encoder applies its
own normalisation ``(x - mean) / std`` from its metadata, so every model file
carries the statistics its weights were trained with. The default for
networks trained by this plugin is mean 0.5, std 0.25: it centres the [0, 1]
range on zero and maps it to [-2, 2], close to unit variance for typical
percentile-normalised micrographs (a uniform [0, 1] image has std 0.29).
Importers set the statistics of the checkpoint they read (ImageNet: 0.449 /
0.226; CEM500K: 0.5729 / 0.1274).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch
import torchvision
from torch import nn

from ..errors import ModelFileError, NanowireSSLError
from ..io.normalize import MIN_SIDE_PX, check_network_input
from .device import autocast_context, select_device

BACKBONES = ("resnet18", "resnet34", "resnet50")
DEFAULT_BACKBONE = "resnet50"  # as in Lu et al. 2022
DEFAULT_MEAN = 0.5
DEFAULT_STD = 0.25
DEFAULT_INPUT_SIZE = 224  # nominal training crop size, as for ImageNet ResNets

# Blocks per stage (layer1..layer4) of each torchvision backbone.
_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}


class Encoder(nn.Module):
    """One-channel torchvision ResNet without its classifier (no ``fc``).

    Submodules keep the torchvision names (``conv1``, ``bn1``, ``layer1`` ...),
    so a torchvision state dict minus ``fc.*`` loads as is (after folding
    ``conv1``). ``training_info`` records how the weights were obtained and
    is written to model files.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        mean: float = DEFAULT_MEAN,
        std: float = DEFAULT_STD,
        input_size: int = DEFAULT_INPUT_SIZE,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise NanowireSSLError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        if not std > 0:
            raise NanowireSSLError(f"normalisation std must be positive, got {std}")
        net = getattr(torchvision.models, backbone)(weights=None)
        self.backbone = backbone
        self.mean = float(mean)
        self.std = float(std)
        self.input_size = int(input_size)
        self.training_info: dict = {"method": "random init"}
        self.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    @property
    def feature_channels(self) -> list[int]:
        """Channels of the 5 feature maps (strides 2, 4, 8, 16, 32)."""
        expansion = type(self.layer1[0]).expansion
        return [self.conv1.out_channels] + [64 * 2**i * expansion for i in range(4)]

    @property
    def embedding_dim(self) -> int:
        """Length of the pooled embedding (channels of ``layer4``)."""
        return self.feature_channels[-1]

    @property
    def config(self) -> dict:
        """What is needed to rebuild this encoder (weights aside)."""
        return {
            "backbone": self.backbone,
            "in_channels": 1,
            "mean": self.mean,
            "std": self.std,
            "input_size": self.input_size,
        }

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] != 1:
            raise NanowireSSLError(
                f"encoder input must have shape (B, 1, H, W) or (B, H, W), got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIDE_PX:
            raise NanowireSSLError(f"image is {h}x{w} px; the encoder needs at least {MIN_SIDE_PX}x{MIN_SIDE_PX}")
        if x.dtype != self.conv1.weight.dtype:
            x = x.to(self.conv1.weight.dtype)
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32: stem (conv1+bn+relu), layer1..layer4."""
        x = self.relu(self.bn1(self.conv1(self._prepare(x))))
        features = [x]
        x = self.layer1(self.maxpool(x))
        features.append(x)
        for layer in (self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, embedding_dim)`` vectors: global average of the ``layer4`` map."""
        return self.forward_features(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(x)

    def load_checked_state_dict(self, state: Mapping[str, torch.Tensor], *, source: str) -> None:
        """Strict load that explains a mismatch in one line naming ``source``.

        Missing or unexpected keys and wrong shapes raise :class:`ModelFileError`
        with a guess at the backbone the weights belong to.
        """
        expected = self.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing keys ({_first(missing)})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
            guess = infer_backbone(state)
            if guess is None:
                hint = "; its layers match no supported ResNet"
            elif guess != self.backbone:
                hint = f"; is it a {guess} file?"
            else:
                hint = ""
            raise ModelFileError(f"{source}: does not match a {self.backbone} encoder: {' and '.join(parts)}{hint}")
        for key, value in expected.items():
            if tuple(state[key].shape) != tuple(value.shape):
                raise ModelFileError(
                    f"{source}: tensor {key} has shape {tuple(state[key].shape)}, "
                    f"a {self.backbone} encoder needs {tuple(value.shape)}"
                )
        self.load_state_dict(state, strict=True)


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def infer_backbone(state: Mapping[str, torch.Tensor]) -> str | None:
    """Guess the torchvision backbone from state-dict keys (torchvision names), or None.

    Bottleneck blocks (``conv3``) mean resnet50; otherwise the number of blocks
    in ``layer3`` tells resnet18 (2) from resnet34 (6).
    """
    blocks = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    bottleneck = any(k.startswith("layer1.0.conv3.") for k in state)
    for name, counts in _BLOCKS.items():
        if counts == blocks and bottleneck == (name == "resnet50"):
            return name
    return None


def _batches(images: Iterable, batch_size: int) -> Iterator[np.ndarray]:
    """Stack consecutive images of equal size into batches of at most ``batch_size``."""
    batch: list[np.ndarray] = []
    for i, image in enumerate(images):
        arr = np.asarray(image, dtype=np.float32)
        if arr.ndim != 2:
            raise NanowireSSLError(f"image {i}: expected a 2D grayscale image, got shape {arr.shape}")
        check_network_input(arr, name=f"image {i}")
        if batch and (arr.shape != batch[0].shape or len(batch) == batch_size):
            yield np.stack(batch)
            batch = []
        batch.append(arr)
    if batch:
        yield np.stack(batch)


def encode_images(
    encoder: Encoder,
    images: Iterable[np.ndarray] | np.ndarray,
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Embed 2D float images in [0, 1]: ``(N, embedding_dim)`` float32 array.

    ``images`` is an ``(N, H, W)`` array or any iterable of 2D arrays (sizes may
    differ; consecutive equal-size images are batched together). Runs in eval
    mode under ``torch.inference_mode``; on CUDA also channels-last with bf16
    autocast. ``device=None`` keeps the encoder where it is; otherwise the
    encoder is moved to ``select_device(device)``.
    """
    if isinstance(images, np.ndarray) and images.ndim != 3:
        raise NanowireSSLError(
            f"expected an (N, H, W) stack or a list of 2D images, got an array of shape {images.shape}"
        )
    if batch_size < 1:
        raise NanowireSSLError(f"batch_size must be at least 1, got {batch_size}")
    if device is not None:
        encoder.to(select_device(device))
    dev = next(encoder.parameters()).device
    cuda = dev.type == "cuda"
    if cuda:
        encoder.to(memory_format=torch.channels_last)
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        with torch.inference_mode(), autocast_context(dev):
            for batch in _batches(images, batch_size):
                x = torch.from_numpy(batch).unsqueeze(1).to(dev, non_blocking=cuda)
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                out.append(encoder.embed(x).float().cpu().numpy())
    finally:
        encoder.train(was_training)
    if not out:
        return np.zeros((0, encoder.embedding_dim), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
