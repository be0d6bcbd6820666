"""Pooled encoder features of whole micrographs.

Policy for large images: wires are a few pixels wide, so shrinking a
1280-px micrograph to the encoder's nominal size would erase them. Instead an
image is cut into non-overlapping ``tile`` x ``tile`` windows at its native
resolution (centred, at most ``max_tiles`` of them, spread evenly over the
image) and its feature vector is the mean of the windows' embeddings. Images
smaller than a tile are embedded whole. The instrument banner, when its height
is known, should be cropped by the caller.
"""

from __future__ import annotations

import numpy as np

from ..io.normalize import check_network_input, normalize
from ..models.encoder import encode_images

DEFAULT_TILE = 256
DEFAULT_MAX_TILES = 16


def tiles_of(image: np.ndarray, tile: int = DEFAULT_TILE, max_tiles: int = DEFAULT_MAX_TILES) -> list[np.ndarray]:
    """Non-overlapping tiles covering the centre of ``image`` (the whole image if smaller)."""
    h, w = image.shape
    if min(h, w) < tile:
        return [image]
    ny, nx = h // tile, w // tile
    y0, x0 = (h - ny * tile) // 2, (w - nx * tile) // 2
    corners = [(y0 + i * tile, x0 + j * tile) for i in range(ny) for j in range(nx)]
    if len(corners) > max_tiles:  # evenly spread subset
        corners = [corners[k] for k in np.linspace(0, len(corners) - 1, max_tiles).round().astype(int)]
    return [image[y:y + tile, x:x + tile] for y, x in corners]


def image_features(encoder, images, *, tile: int = DEFAULT_TILE, max_tiles: int = DEFAULT_MAX_TILES,
                   batch_size: int = 16, names=None) -> np.ndarray:
    """(N, D) float32: each image's mean tile embedding (see the module docstring)."""
    out = []
    for i, image in enumerate(images):
        name = names[i] if names is not None else f"image {i}"
        check_network_input(image, name=name)
        parts = tiles_of(normalize(image, name=name), tile, max_tiles)
        out.append(encode_images(encoder, parts, batch_size=batch_size).mean(axis=0))
    return np.stack(out).astype(np.float32)
