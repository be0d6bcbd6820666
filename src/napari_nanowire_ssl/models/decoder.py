"""U-Net decoder on the encoder's feature pyramid, and the segmentation model.

The decoder follows the paper's design (DESIGN.md section 3: skips from
``conv1``, ``layer1``, ``layer2``, ``layer3``, bottleneck ``layer4``) but is
slimmer so that it trains on a CPU: from the stride-32 map upward, each stage
reduces the deeper map with a 1x1 conv (cheap at low resolution), upsamples it
x2 bilinearly, concatenates the encoder map of that stride and applies two
3x3 conv + BN + ReLU. Stage widths are ``width`` at stride 2, doubling per
stage up to ``max_width``. The last stage (stride 2) ends in a 1x1 conv to one
logit channel that is upsampled bilinearly to stride 1: both are linear, so
this equals a 1x1 conv on upsampled features at a quarter of the cost.
Its bias starts at the logit of a ``WIRE_PRIOR`` wire probability (the
prior initialisation of Lin et al. 2017, focal loss): where the features
carry no evidence, e.g. all ReLUs off in a region unlike any labelled pixel,
the model then says background rather than 0.5. Trained from scribbles this
turns large false-positive patches of open background into background.

With ``filters=True`` the decoder also sees what the classical tools see, at
full resolution (the thin wires the stride-2 maps blur): the last stage's
features are upsampled to stride 1 and concatenated with the standardised
:class:`~.filters.FilterBank` responses of the image, and a per-pixel MLP
(two 1x1 convolutions) maps both to the logit. The pixel classifiers'
filters, with the decoder's context beside them.

Inputs whose sides are not multiples of 32 are reflection-padded by
:func:`pad_to_multiple` and the logits cropped back.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..io.normalize import ENCODER_STRIDE
from .encoder import Encoder
from .filters import SIGMAS, FilterBank

STRIDE = ENCODER_STRIDE  # total downsampling of the encoder
WIRE_PRIOR = 0.12  # initial wire probability of the head (see the module docstring)


def pad_to_multiple(x: torch.Tensor, multiple: int = STRIDE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflection-pad the last two dims of ``x`` at the bottom/right to multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` to crop back to.
    Reflection needs sides of at least ``multiple`` px (the encoder's minimum).
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        squeeze = x.ndim == 3
        x = F.pad(x.unsqueeze(1) if squeeze else x, (0, pw, 0, ph), mode="reflect")
        x = x.squeeze(1) if squeeze else x
    return x, (h, w)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _UpStage(nn.Module):
    """1x1 reduce, x2 bilinear upsample, concatenate the skip, two 3x3 conv + BN + ReLU."""

    def __init__(self, deep: int, skip: int, out: int):
        super().__init__()
        self.reduce = nn.Conv2d(deep, out, 1, bias=False)
        self.convs = nn.Sequential(_conv_bn_relu(out + skip, out), _conv_bn_relu(out, out))

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.reduce(deep), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([up, skip], dim=1))


class UNetDecoder(nn.Module):
    """Maps the 5 encoder maps (strides 2..32) to one logit channel at stride 1."""

    def __init__(self, encoder_channels: list[int], width: int = 32, max_width: int = 256, *,
                 filters: bool = False):
        super().__init__()
        if len(encoder_channels) != 5:
            raise ValueError(f"expected 5 encoder channel counts (strides 2..32), got {encoder_channels}")
        if width < 1 or max_width < width:
            raise ValueError(f"need 1 <= width <= max_width, got {width}, {max_width}")
        self.encoder_channels = [int(c) for c in encoder_channels]
        self.width, self.max_width = int(width), int(max_width)
        widths = [min(width * 2**i, max_width) for i in range(4)]  # strides 2, 4, 8, 16
        deeper = [*widths[1:], self.encoder_channels[4]]
        self.stages = nn.ModuleList(
            _UpStage(deeper[i], self.encoder_channels[i], widths[i]) for i in reversed(range(4))
        )
        self.uses_filters = bool(filters)
        if self.uses_filters:
            self.filters = FilterBank(SIGMAS)
            n = self.filters.out_channels
            self.register_buffer("filter_mean", torch.zeros(n))
            self.register_buffer("filter_std", torch.ones(n))
            self.mix = nn.Sequential(nn.Conv2d(widths[0] + n, widths[0], 1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(widths[0], 1, 1)
        nn.init.constant_(self.head.bias, math.log(WIRE_PRIOR / (1 - WIRE_PRIOR)))

    @property
    def config(self) -> dict:
        return {"encoder_channels": self.encoder_channels, "width": self.width, "max_width": self.max_width,
                "filters": self.uses_filters}

    def standardised_filters(self, image: torch.Tensor) -> torch.Tensor:
        """The filter bank of ``(B, 1, H, W)`` images, standardised with the training statistics."""
        return self.standardise(self.filters(image))

    def standardise(self, responses: torch.Tensor) -> torch.Tensor:
        return (responses - self.filter_mean.view(1, -1, 1, 1)) / self.filter_std.view(1, -1, 1, 1)

    def forward(self, features: list[torch.Tensor], filters: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 1, 2*H2, 2*W2)`` logits from the stride-2..32 maps (``H2, W2``: stride-2 map size) and,
        for a decoder with ``filters``, the standardised filter responses at stride 1."""
        x = features[4]
        for stage, skip in zip(self.stages, reversed(features[:4])):
            x = stage(x, skip)
        if not self.uses_filters:
            return F.interpolate(self.head(x), scale_factor=2, mode="bilinear", align_corners=False)
        x = F.interpolate(x, size=filters.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.mix(torch.cat([x, filters.to(x.dtype)], 1)))


class SegmentationModel(nn.Module):
    """Encoder + decoder: ``(B, 1, H, W)`` images in [0, 1] -> ``(B, 1, H, W)`` nanowire logits.

    The encoder is frozen (no gradients, always in eval mode so BatchNorm keeps
    its statistics). With ``unfreeze_last_stage=True`` its ``layer4`` trains
    too; the model then works on a private copy of the encoder so the caller's
    encoder (and its hash, which decoder files refer to) stays unchanged.
    """

    def __init__(self, encoder: Encoder, decoder: UNetDecoder, *, unfreeze_last_stage: bool = False):
        super().__init__()
        if decoder.encoder_channels != encoder.feature_channels:
            raise ValueError(
                f"decoder expects encoder channels {decoder.encoder_channels}, "
                f"this {encoder.backbone} encoder gives {encoder.feature_channels}"
            )
        self.unfreeze_last_stage = bool(unfreeze_last_stage)
        self.validation: dict[str, float] = {}  # validation Dice of the candidates when chosen by ``auto``
        self.encoder = copy.deepcopy(encoder) if unfreeze_last_stage else encoder
        self.decoder = decoder
        self.encoder.requires_grad_(False)
        if unfreeze_last_stage:
            self.encoder.layer4.requires_grad_(True)
        self.train(self.training)

    @property
    def kind(self) -> str:
        """The model's name among the segmentation models (``fewshot.segment.MODELS``)."""
        return "decoder" + ("+filters" if self.decoder.uses_filters else "") + (
            "+finetune" if self.unfreeze_last_stage else "")

    @property
    def description(self) -> str:
        """What status lines name (as the pixel classifiers')."""
        return self.kind

    def train(self, mode: bool = True) -> SegmentationModel:
        """Train mode for the decoder (and ``layer4`` when unfrozen); the rest of the encoder stays in eval."""
        super().train(mode)
        self.encoder.eval()
        if self.unfreeze_last_stage:
            self.encoder.layer4.train(mode)
        return self

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors that training changes: ``decoder.*`` (and ``encoder.layer4.*`` when unfrozen)."""
        prefixes = ("decoder.", "encoder.layer4.") if self.unfreeze_last_stage else ("decoder.",)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def decode(self, features: list[torch.Tensor], size: tuple[int, int],
               filters: torch.Tensor | None = None) -> torch.Tensor:
        """Logits cropped to ``size`` from the 5 encoder maps, or from the first 4 (``layer4``
        is then applied here: cached features of a model whose ``layer4`` trains), and the
        standardised filter responses for a decoder that uses them."""
        if len(features) == 4:
            features = [*features, self.encoder.layer4(features[3])]
        return self.decoder(features, filters)[..., : size[0], : size[1]]

    def forward(self, x: torch.Tensor, encoder_features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``(B, 1, H, W)`` for any ``H, W >= 32`` (padded to multiples of 32 internally);
        ``encoder_features``: the encoder's maps of the padded ``x``, when the caller has them already."""
        if x.ndim == 3:
            x = x.unsqueeze(1)
        x, size = pad_to_multiple(x)
        filters = self.decoder.standardised_filters(x) if self.decoder.uses_filters else None
        if encoder_features is None:
            encoder_features = self.encoder.forward_features(x)
        return self.decode(encoder_features, size, filters)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Nanowire probabilities ``(B, 1, H, W)``, in eval mode (the mode is restored after)."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(x).float())
        finally:
            self.train(was_training)
