"""Sliding-window inference of a segmentation model on images of any size.

The image is normalised with :func:`~napari_nanowire_ssl.io.normalize.normalize`
(robust percentiles to [0, 1], per slice of a stack), exactly as the training
images were. It is then cut into windows of at most ``tile`` x ``tile`` px
that overlap by at least ``overlap`` px, each side as short as the same number
of windows allows (:func:`window_side`); the last window of a row or column is
shifted back to end at the image edge, so no window reaches outside the image. Images smaller
than a tile are predicted whole, unpadded: a model pads what it needs itself
(the encoder to a multiple of 32), and the pixel classifiers see the image
exactly as in training (padding it shifted their coarse filter scales).

Blending: each window's probabilities are weighted by a separable window that
ramps linearly from ~0 at the tile edge to 1 at ``overlap`` px inside. Tile
borders, where the network's receptive field is cut short, thus count little
wherever a neighbouring tile sees the same pixel with full context, and seams
vanish. Because the window is separable and the tiles form a grid, the sum of
the weights at ``(y, x)`` is the outer product of two 1D sums: no weight image
is stored.

Memory: the probability map (4 bytes per pixel), the normalised slice (4
bytes per pixel) and one batch of tiles with their activations. An 8192 x
8192 image needs 2 x 4 x 8192^2 B = 512 MB for the two full-size arrays plus
about 1 GB of activations for a batch of four 512 px tiles through a ResNet50:
comfortable on a 24 GB machine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..errors import NanowireSSLError
from ..io.normalize import check_network_input, normalize
from ..io.banner import with_banner_rows, without_banner
from ..models.decoder import STRIDE
from ..models.device import autocast_context, select_device
from .policy import DEFAULT_TILE, WIRE_THRESHOLD, round_to_stride, tile_overlap


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Window starts along a side of ``n`` px: every ``tile - overlap`` px, the last ending at ``n``."""
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, tile - overlap))
    return starts + [n - tile]


def window_side(n: int, tile: int, overlap: int) -> int:
    """Side of the windows along a side of ``n`` px: at most ``tile``, and the smallest multiple of the
    stride with which that many windows still cover ``n`` (a 1024 px side takes three 384 px windows
    instead of three 512 px ones: the same count, less overlap to compute). ``n`` itself when it fits
    one window."""
    if n <= tile:
        return n
    count = -(-(n - overlap) // (tile - overlap))
    return min(tile, round_to_stride(-(-(n + (count - 1) * overlap) // count)))


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """1D weights: a linear ramp over ``overlap`` px at both ends, 1 inside; all positive."""
    i = np.arange(tile, dtype=np.float32) + 0.5
    if overlap == 0:
        return np.ones(tile, np.float32)
    return np.minimum(1.0, np.minimum(i, tile - i) / overlap).astype(np.float32)


def _check_options(tile: int, overlap: int, batch_size: int) -> None:
    if tile < STRIDE or tile % STRIDE:
        raise NanowireSSLError(f"tile must be a positive multiple of {STRIDE} px, got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise NanowireSSLError(f"overlap must be between 0 and half the tile ({tile // 2} px), got {overlap}")
    if batch_size < 1:
        raise NanowireSSLError(f"batch size must be at least 1, got {batch_size}")


def widened_tile(model: nn.Module, tile: int) -> int:
    """The tile :func:`predict_tiled` uses for ``model`` by default: ``tile``, or the model's ``min_tile``
    when larger (the pixel classifiers: they need little memory per pixel, so larger windows mean fewer
    seams and less overlap to compute)."""
    return max(tile, getattr(model, "min_tile", 0))


def widened_overlap(model: nn.Module, tile: int) -> int:
    """The overlap :func:`predict_tiled` blends over by default for ``model`` and ``tile``: the policy's
    (:func:`~.policy.tile_overlap`), or the model's ``min_overlap`` when larger (the reach of a pixel
    classifier's filters), at most half the tile."""
    return min(tile // 2, max(tile_overlap(tile), getattr(model, "min_overlap", 0)))


def predict_tiled(
    model: nn.Module,
    image: np.ndarray,
    *,
    tile: int = DEFAULT_TILE,
    widen: bool = True,
    overlap: int | None = None,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    name: str = "image",
) -> np.ndarray | None:
    """Nanowire probability map, float32 of the image's shape (``(H, W)`` or a stack ``(N, H, W)``).

    ``model`` maps ``(B, 1, h, w)`` images in [0, 1] to logits of the same size
    (a :class:`~napari_nanowire_ssl.models.decoder.SegmentationModel`).
    ``overlap=None``: :func:`widened_overlap`.
    ``widen``: tiles at least as large as the model's ``min_tile`` (:func:`widened_tile`);
    off, ``tile`` as given (the fallback of :func:`segment_image` after running
    out of memory). A model with a ``prepare_input(image) -> (C, H, W)``
    method gets tiles of what it makes of the whole normalised image (a statistic
    of the whole image, not of a tile: Otsu's threshold). ``device=None`` keeps the model where it is. ``progress(done, total)`` is
    called after every batch of tiles (counted over all slices);
    ``should_stop()`` is asked before every batch and, when true, the
    prediction stops and ``None`` is returned. ``name`` (a file or layer) names the image in errors.
    """
    tile = widened_tile(model, tile) if widen else tile
    overlap = widened_overlap(model, tile) if overlap is None else overlap
    prepare = getattr(model, "prepare_input", None)
    _check_options(tile, overlap, batch_size)
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise NanowireSSLError(f"expected a 2D image or an (N, H, W) stack, got shape {image.shape}")
    check_network_input(image, name=name)
    if device is not None:
        model.to(select_device(device))
    dev = next(model.parameters()).device
    slices = image[None] if image.ndim == 2 else image
    h, w = slices.shape[-2:]
    th, tw = (window_side(n, tile, overlap) for n in (h, w))
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    wy, wx = blend_window(th, min(overlap, th // 2)), blend_window(tw, min(overlap, tw // 2))
    weight = wy[:, None] * wx[None, :]
    # Sum of the weights of all windows covering each row / column (see the module docstring).
    norm_y, norm_x = np.zeros(h, np.float32), np.zeros(w, np.float32)
    for y in ys:
        norm_y[y:y + th] += wy
    for x in xs:
        norm_x[x:x + tw] += wx
    corners = [(y, x) for y in ys for x in xs]
    total, done = len(slices) * -(-len(corners) // batch_size), 0
    out = np.zeros((len(slices), h, w), np.float32)  # accumulated in place
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast_context(dev):
            for k, raw in enumerate(slices):
                src = normalize(raw, name=f"{name}, slice {k}" if image.ndim == 3 else name)
                src = prepare(src) if prepare is not None else src[None]  # (C, H, W)
                acc = out[k]
                for b in range(0, len(corners), batch_size):
                    if should_stop is not None and should_stop():
                        return None
                    batch = corners[b:b + batch_size]
                    tiles = np.stack([src[:, y:y + th, x:x + tw] for y, x in batch])
                    prob = torch.sigmoid(model(torch.from_numpy(tiles).to(dev)).float()).cpu().numpy()[:, 0]
                    for (y, x), p in zip(batch, prob):
                        acc[y:y + th, x:x + tw] += p * weight
                    done += 1
                    if progress is not None:
                        progress(done, total)
                acc /= norm_y[:, None]
                acc /= norm_x[None, :]
    finally:
        model.train(was_training)
    return out[0] if image.ndim == 2 else out


MIN_FALLBACK_TILE = 128  # smallest tile tried after a GPU out-of-memory error


def segment_image(model: nn.Module, image: np.ndarray, *, threshold: float = WIRE_THRESHOLD, crop_bottom: int = 0,
                  on_fallback: Callable[[str], None] | None = None, **kwargs):
    """``(probability float32, mask uint8 with 1 = nanowire)`` via :func:`predict_tiled`
    (same keyword options); ``None`` when stopped. The bottom ``crop_bottom`` rows (an
    instrument banner) are left out of the prediction and come back as background.

    Out of memory, it tries again with half the batch, then half the tile
    (down to 128 px), then on the CPU (the model stays there), telling
    ``on_fallback`` each time in a line for the user; out of memory on the
    CPU with the smallest tiles, it stops with a one-line error.
    """
    tile, batch_size = widened_tile(model, kwargs.pop("tile", DEFAULT_TILE)), kwargs.pop("batch_size", 4)
    overlap = kwargs.pop("overlap", None)  # None: widened_overlap for the tile in use
    while True:
        try:
            prob = predict_tiled(model, without_banner(image, crop_bottom), tile=tile, widen=False,
                                 batch_size=batch_size, overlap=None if overlap is None else min(overlap, tile // 2),
                                 **kwargs)
            break
        except torch.OutOfMemoryError:
            device = next(model.parameters()).device
            where = {"cuda": "GPU", "mps": "GPU (MPS)"}.get(device.type, device.type.upper())
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch_size > 1:
                batch_size //= 2
                message = f"Out of {where} memory: continuing with {batch_size} tile(s) per batch"
            elif tile // 2 >= MIN_FALLBACK_TILE and (tile // 2) % STRIDE == 0:
                tile //= 2
                message = f"Out of {where} memory: continuing with {tile} px tiles"
            elif device.type != "cpu":
                model.to("cpu")
                kwargs.pop("device", None)
                message = f"Out of {where} memory even with {tile} px tiles: continuing on the CPU"
            else:
                raise NanowireSSLError(f"out of memory predicting a {'x'.join(map(str, np.shape(image)))} image "
                                       f"even with {tile} px tiles; close other programs") from None
            if on_fallback is not None:
                on_fallback(message)
    if prob is None:
        return None
    return with_banner_rows(prob, crop_bottom), with_banner_rows(wire_mask(prob, threshold), crop_bottom)


def wire_mask(prob: np.ndarray, threshold: float = WIRE_THRESHOLD) -> np.ndarray:
    """uint8 mask, 1 = nanowire: the pixels whose wire probability is above ``threshold``."""
    return (prob > threshold).astype(np.uint8)
