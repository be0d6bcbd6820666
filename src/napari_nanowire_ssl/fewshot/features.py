"""Pooled encoder features of whole micrographs, and a cache so they are computed once.

Policy for large images: wires are a few pixels wide, so shrinking a
1280-px micrograph to the encoder's nominal size would erase them (even
halving 256-px synthetic images lowers few-shot accuracy by 0.07-0.16).
Instead an image is cut into non-overlapping ``tile`` x ``tile`` windows at
its native resolution (centred, at most ``max_tiles`` of them, spread evenly
over the image); images smaller than a tile are one window. The instrument
banner, when its height is known, should be cropped by the caller.

Two scales: the image is seen at its native resolution and enlarged 2x
(:data:`SCALES`; windows of ``tile / 2`` px cut the same way and enlarged
bilinearly to ``tile``, so memory stays bounded on huge images). Enlarged,
each wire is twice as wide for the encoder's filters and a window holds a
quarter of the field of view: the two scales see fine structure and wider
context differently (the length of a wire, its ends), which separates single
wires from sparse dispersed ones better than either scale alone.

Orientation: a micrograph's orientation carries no information (the encoder
was pretrained to ignore it, but is not exactly invariant), so the windows
are shown to the encoder in the 8 orientations of the square (quarter turns
and flips, :func:`dihedral`): window ``i`` in orientation ``i mod 8``, the
windows repeated until there are at least 8 views (:func:`views_of`). A
256-px image thus costs 8 encoder passes per scale, a 1024-px one 16, and a
scale's feature is the mean over its views, every window weighing the same.
On 512-px images (4 windows) these 8 views score as well as all 32 (every
window in every orientation).

Pooling: a view's embedding (:class:`PooledFeatures`) is the mean, the
standard deviation and the maximum over positions of the ``layer3`` and
``layer4`` maps, concatenated (3 x (256 + 512) = 2304 values for a ResNet18).
The standard deviation keeps how unevenly a pattern is spread (a bundle vs
dispersed wires), the maximum whether a pattern occurs anywhere at all (a
crossing, a wire end), ``layer3`` finer texture than ``layer4``. Each scale's
feature is the element-wise square root of the mean over its views (power
normalisation; every pooled value is >= 0 as the maps follow a ReLU): it
makes the skewed, heavy-tailed pooled values closer to normal before the head
standardises them. The image's feature is the two scales' concatenated
(4608 values for a ResNet18).

How this was chosen: few-shot accuracy (100 random splits) on synthetic
four-class sets (30 per class, 256 px) of seeds 99, 2024, 31 and 4242, never
on the benchmark's seed 1234; figures in ``docs/benchmarks.md``.

Caching: a frozen encoder gives the same features for the same pixels, so
training a classifier again (other labels, other classes, another split) must
not encode again. :class:`FeatureCache` keys each image's features by the
sha256 of its pixels (float32 bytes and shape), the encoder's identity
(:func:`encoder_identity`), the feature policy (:data:`FEATURES`) and the
tiling parameters.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..io.normalize import check_network_input, normalize
from ..models.encoder import encode_images

DEFAULT_TILE = 256
DEFAULT_MAX_TILES = 16
STATISTICS = ("mean", "std", "max")  # over positions, of layer3 and layer4 (PooledFeatures)
SCALES = (1, 2)
# An image's feature (image_features): recorded in cache keys and head files.
FEATURES = (f"layer3+layer4 {'+'.join(STATISTICS)}; mean over tiles x 8 dihedral views; square root; "
            f"scales {' and '.join(f'{s}x' for s in SCALES)} concatenated")
MIN_VIEWS = 8

_IDENTITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encoder_identity(encoder) -> str:
    """``tensor_hash`` of the encoder's weights: the ``encoder_hash`` of heads trained on it.

    Computed once per encoder object (hashing a ResNet50 takes a while):
    weights are assumed frozen once features have been taken from them.
    """
    if encoder not in _IDENTITIES:
        from ..models.modelfile import tensor_hash

        _IDENTITIES[encoder] = tensor_hash(encoder.state_dict())
    return _IDENTITIES[encoder]


class PooledFeatures(nn.Module):
    """View of an encoder whose ``embed`` pools the ``layer3`` and ``layer4`` maps, for :func:`encode_images`.

    ``statistics`` over positions, per map, in this order: any of ``mean``,
    ``std`` and ``max``.
    """

    def __init__(self, encoder, statistics=STATISTICS) -> None:
        super().__init__()
        unknown = set(statistics) - {"mean", "std", "max"}
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
                "max": lambda m: m.amax(dim=(2, 3))}
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


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """``image`` turned ``k % 4`` quarter turns, then flipped left-right if ``k % 8 >= 4``."""
    turned = np.rot90(image, k % 4)
    return np.ascontiguousarray(turned[:, ::-1] if k % 8 >= 4 else turned)


def views_of(image: np.ndarray, tile: int = DEFAULT_TILE, max_tiles: int = DEFAULT_MAX_TILES,
             scale: int = 1) -> list[np.ndarray]:
    """The tiles of ``image``, tile ``i % n`` in orientation ``i % 8``, each tile equally often, at least 8 views.

    With ``scale`` > 1 the tiles are ``tile // scale`` px, enlarged ``scale``
    times (bilinear): the image seen enlarged, one tile at a time.
    """
    tiles = tiles_of(image, tile // scale, max_tiles)
    if scale != 1:
        tiles = [ndimage.zoom(t, scale, order=1) for t in tiles]
    n = len(tiles) * -(-MIN_VIEWS // len(tiles))
    return [dihedral(tiles[i % len(tiles)], i) for i in range(n)]


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
    """(N, D) float32: per scale, the square root of each image's mean pooled view features, scales
    concatenated (see the module docstring).

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
            feature = np.concatenate([
                np.sqrt(encode_images(pooled, views_of(image, tile, max_tiles, scale), batch_size=batch_size).mean(0))
                for scale in SCALES])
            if cache is not None:
                cache.put(key, feature)
        out.append(feature)
    return np.stack(out).astype(np.float32)
