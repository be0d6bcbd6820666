"""The segmentation policy: the choices every caller (CLI, widget, batch runs, bundles) makes,
in one place so that Predict, Predict folder and a batch run give the same mask.

- training crop: 256 px, or the largest image side rounded up to the network's stride when smaller;
- inference tile: a multiple of the stride, at least :data:`MIN_TILE` px (512 by default);
- tile overlap: a quarter of the tile, at most 64 px (more where a model asks for it: a pixel
  classifier's filter reach, `fewshot.tiling.widened_overlap`);
- self-training: only when some pixels are unpainted (full masks leave nothing to pseudo-label);
- wire: a pixel whose wire probability is above :data:`WIRE_THRESHOLD`.
"""

from __future__ import annotations

from ..errors import NanowireSSLError
from ..io.normalize import ENCODER_STRIDE as STRIDE

CROP = 256
WIRE_THRESHOLD = 0.5
DEFAULT_TILE = 512
MIN_TILE = 64
MAX_OVERLAP = 64


def round_to_stride(n: int) -> int:
    """The smallest multiple of the network's stride of at least ``n`` px."""
    return -(-n // STRIDE) * STRIDE


def training_crop(images) -> int:
    """Training crop side for these images (no padding work on small images)."""
    return min(CROP, round_to_stride(max(max(image.shape[-2:]) for image in images)))


def check_tile(tile, what: str = "tile") -> int:
    """``tile`` when it is a multiple of the stride of at least :data:`MIN_TILE` px, else a one-line
    error naming ``what`` (the setting, option or flag)."""
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < MIN_TILE or tile % STRIDE:
        raise NanowireSSLError(f"{what}: {tile!r} is not a multiple of {STRIDE} px of at least {MIN_TILE}")
    return tile


def tile_overlap(tile: int) -> int:
    """Overlap of neighbouring inference windows of ``tile`` px."""
    return min(MAX_OVERLAP, tile // 4)


def self_training_steps(wanted: int, has_unpainted: bool) -> int:
    """Self-training steps to run: ``wanted`` when some pixels are unpainted, else none."""
    return wanted if has_unpainted else 0
