"""Image features of whole micrographs for the few-shot head, and a cache so they are computed once.

An image's feature vector has three blocks (:func:`feature_blocks`):

- **encoder**: the image seen by the frozen encoder at its native resolution
  (wires are a few pixels wide: shrinking would erase them), in
  :data:`ORIENTATIONS` (the identity and a quarter turn + flip, so the
  block does not depend on one orientation the encoder is not invariant
  to). Images larger than ``tile`` px are cut into non-overlapping
  ``tile`` x ``tile`` windows (centred, at most ``max_tiles``, spread evenly),
  window ``i`` shown in orientation ``ORIENTATIONS[i % 2]`` and at least two
  views, so a 512 px image costs 2 encoder passes, a larger one about one
  pass per 512 x 512 px. Each view's ``layer3`` and ``layer4`` maps are
  pooled by the generalised mean (:data:`GEM_POWER`, between the mean and the
  maximum: a pattern covering a small part of the image, such as sparse wires
  on an empty ground, is not averaged away by the background); the block is the
  element-wise square root of the mean over views (power normalisation of the
  skewed values), 768 values for a ResNet18.
- **texture**: :func:`.texture.texture_features` of the same windows
  (averaged over them), 185 values: multiscale filter statistics (with
  percentiles, so sparse wires count) and LBP histograms at full resolution.
- **lines**: :func:`.line_measures.line_features` of the same windows
  (averaged), 66 values: what the wires of a classical line mask measure
  (length per area, clusters, extent, branch and end pixels, alignment), at
  three scales, for dark and bright wires; the morphology itself, which the
  texture of the ground does not move.

The head standardises every value and weighs each block by its
:data:`BLOCK_WEIGHTS` over the square root of its size (:func:`block_weights`),
so a block's total weight does not grow with its number of values: 768
encoder values do not drown 185 texture or 66 line ones. How this was chosen (and on which class sets):
``docs/benchmarks.md``, "Classification on real images".

Caching: a frozen encoder gives the same features for the same pixels, so
training a classifier again (other labels, other classes, another split) must
not encode again. :class:`FeatureCache` keys each image's features by the
sha256 of its pixels (float32 bytes and shape), the encoder's identity
(:func:`..models.modelfile.encoder_identity`), the feature recipe (:data:`FEATURES`) and the
tiling parameters.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io.normalize import check_network_input, normalize
from ..models.encoder import encode_images
from ..models.modelfile import encoder_identity
from .symmetry import dihedral
from .line_measures import LINES, line_features, line_names
from .texture import TEXTURE, scale_space, texture_features, texture_names

DEFAULT_TILE = 512
DEFAULT_MAX_TILES = 16
STATISTICS = ("gem",)  # over positions, of layer3 and layer4 (PooledFeatures)
GEM_POWER = 3.0
ORIENTATIONS = (0, 5)  # dihedral(): identity, and a quarter turn + left-right flip
# An image's feature (image_features): recorded in cache keys and head files.
FEATURES = (f"encoder: layer3+layer4 {'+'.join(STATISTICS)}{GEM_POWER:g} of tiles in orientations "
            f"{'/'.join(map(str, ORIENTATIONS))}, mean, square root; texture: {TEXTURE}; lines: {LINES}")
BLOCKS = ("encoder", "texture", "lines")
# Total weight of each block in the head (after standardisation, spread over its values): the
# shipped encoder's block did not help on the class sets the recipe was chosen on, at full weight it hurt.
BLOCK_WEIGHTS = {"encoder": 0.25, "texture": 1.0, "lines": 1.0}


class PooledFeatures(nn.Module):
    """View of an encoder whose ``embed`` pools the ``layer3`` and ``layer4`` maps, for :func:`encode_images`.

    ``statistics`` over positions, per map, in this order: any of ``mean``,
    ``std``, ``max`` and ``gem`` (generalised mean of power :data:`GEM_POWER`
    of the non-negative maps).
    """

    def __init__(self, encoder, statistics=STATISTICS) -> None:
        super().__init__()
        unknown = set(statistics) - {"mean", "std", "max", "gem"}
        if unknown:
            raise ValueError(f"unknown pooling statistics {sorted(unknown)}")
        self.encoder = encoder
        self.statistics = tuple(statistics)
        self.training = encoder.training  # encode_images restores this mode on the encoder too

    @property
    def embedding_dim(self) -> int:
        return len(self.statistics) * sum(self.encoder.feature_channels[-2:])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        pool = {"mean": lambda m: m.mean(dim=(2, 3)),
                "std": lambda m: m.std(dim=(2, 3), correction=0),  # a 1 x 1 map (32-px tile) has spread 0, not NaN
                "max": lambda m: m.amax(dim=(2, 3)),
                "gem": lambda m: m.clamp(min=0).pow(GEM_POWER).mean(dim=(2, 3)).pow(1 / GEM_POWER)}
        maps = [m.float() for m in self.encoder.forward_features(x)[-2:]]
        return torch.cat([pool[s](m) for m in maps for s in self.statistics], dim=1)


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


def views_of(image: np.ndarray, tile: int = DEFAULT_TILE, max_tiles: int = DEFAULT_MAX_TILES) -> list[np.ndarray]:
    """The tiles of ``image``, tile ``i % n`` in orientation ``ORIENTATIONS[i % 2]``, at least two views."""
    tiles = tiles_of(image, tile, max_tiles)
    n = max(len(tiles), len(ORIENTATIONS))
    return [dihedral(tiles[i % len(tiles)], ORIENTATIONS[i % len(ORIENTATIONS)]) for i in range(n)]


def feature_blocks(encoder) -> dict[str, slice]:
    """Where each of :data:`BLOCKS` lies in an :func:`image_features` vector of ``encoder``."""
    sizes = {"encoder": PooledFeatures(encoder).embedding_dim, "texture": len(texture_names()),
             "lines": len(line_names())}
    ends = np.cumsum([sizes[b] for b in BLOCKS])
    return {b: slice(int(end - sizes[b]), int(end)) for b, end in zip(BLOCKS, ends)}


def block_weights(blocks: dict[str, slice]) -> np.ndarray:
    """Per-value weight after standardisation: :data:`BLOCK_WEIGHTS` of the block / sqrt(its size), so a
    block's weight does not grow with its number of values (blocks of other names weigh 1)."""
    size = max(s.stop for s in blocks.values())
    weights = np.ones(size)
    for name, s in blocks.items():
        weights[s] = BLOCK_WEIGHTS.get(name, 1.0) / np.sqrt(s.stop - s.start)
    return weights


class FeatureCache:
    """Image features by (pixels, encoder, tiling): an in-memory LRU, optionally backed by a folder.

    With ``directory``, every entry is also written there as ``<key>.npy``
    and read back by later sessions. ``max_items`` bounds the in-memory part.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, max_items: int = 4096) -> None:
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.max_items = max_items
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()

    @staticmethod
    def key(encoder, image: np.ndarray, *, tile: int, max_tiles: int) -> str:
        """Hex sha256 of the image's float32 pixels and shape, the encoder identity, the features and the tiling."""
        pixels = np.ascontiguousarray(image, dtype=np.float32)
        h = hashlib.sha256()
        h.update(f"{encoder_identity(encoder)}\0{FEATURES}\0{pixels.shape}\0{tile}\0{max_tiles}\0".encode())
        h.update(pixels.tobytes())
        return h.hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.directory is not None:
            path = self.directory / f"{key}.npy"
            if path.exists():
                try:
                    value = np.load(path)
                except (OSError, ValueError):  # a half-written or foreign file: recompute it
                    return None
                self._remember(key, value)
                return value
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        self._remember(key, value)
        if self.directory is not None:
            tmp = self.directory / f".{key}.{os.getpid()}.npy"
            np.save(tmp, value)
            os.replace(tmp, self.directory / f"{key}.npy")

    def _remember(self, key: str, value: np.ndarray) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)

    def __len__(self) -> int:
        return len(self._memory)


def image_features(encoder, images, *, tile: int = DEFAULT_TILE, max_tiles: int = DEFAULT_MAX_TILES,
                   batch_size: int = 16, names=None, cache: FeatureCache | None = None) -> np.ndarray:
    """(N, D) float32: each image's encoder, texture and line blocks (see the module docstring).

    ``images`` may be any iterable (a generator reading files one by one, a
    tqdm bar); ``names`` (same order) name images in error messages. With a
    ``cache``, images seen before with this encoder and tiling are not encoded.
    """
    pooled = PooledFeatures(encoder)
    out = []
    for i, image in enumerate(images):
        name = names[i] if names is not None else f"image {i}"
        check_network_input(image, name=name)
        key = None if cache is None else cache.key(encoder, image, tile=tile, max_tiles=max_tiles)
        feature = None if cache is None else cache.get(key)
        if feature is None:
            image = normalize(image, name=name)
            views = views_of(image, tile, max_tiles)
            encoded = np.sqrt(encode_images(pooled, views, batch_size=batch_size).mean(0))
            tiles = [t.astype(np.float64) for t in tiles_of(image, tile, max_tiles)]
            spaces = [scale_space(t) for t in tiles]  # shared by the texture and line blocks
            texture = np.mean([texture_features(t, normalized=True, scales=sp) for t, sp in zip(tiles, spaces)], 0)
            lines = np.mean([line_features(t, normalized=True, scales=sp) for t, sp in zip(tiles, spaces)], 0)
            feature = np.concatenate([encoded, texture, lines]).astype(np.float32)
            if cache is not None:
                cache.put(key, feature)
        out.append(feature)
    return np.stack(out).astype(np.float32)
