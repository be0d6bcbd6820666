"""Image features (tiling policy) and the few-shot evaluation protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.fewshot.evaluation import fewshot_accuracy
from napari_nanowire_ssl.fewshot.features import PooledFeatures, image_features, tiles_of
from napari_nanowire_ssl.models.encoder import Encoder, encode_images


def test_tiles_cover_the_centre_without_overlap():
    image = np.arange(600 * 700, dtype=np.float32).reshape(600, 700)
    tiles = tiles_of(image, 256, 16)
    assert len(tiles) == 2 * 2 and all(t.shape == (256, 256) for t in tiles)
    # 600 = 2*256 + 88 -> rows start at 44; 700 = 2*256 + 188 -> columns start at 94.
    assert tiles[0][0, 0] == image[44, 94] and tiles[3][0, 0] == image[44 + 256, 94 + 256]
    assert len(tiles_of(np.zeros((2048, 2048)), 256, 16)) == 16  # 64 possible, evenly subsampled
    small = np.zeros((100, 300))
    assert tiles_of(small, 256)[0] is small


def test_features_are_the_mean_tile_embedding():
    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    rng = np.random.default_rng(0)
    big = rng.random((128, 256)).astype(np.float32)
    feats = image_features(encoder, [big], tile=128)
    from napari_nanowire_ssl.io import normalize

    norm = normalize(big)
    expected = encode_images(PooledFeatures(encoder), [norm[:, :128], norm[:, 128:]]).mean(0)
    np.testing.assert_allclose(feats[0], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(NanowireSSLError, match="tiny.png: is 16x16 px"):
        image_features(encoder, [np.zeros((16, 16))], names=["tiny.png"])


def test_separable_classes_score_perfectly_and_noise_scores_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 12)
    centres = {"a": 0.0, "b": 5.0, "c": 10.0}
    separable = np.stack([rng.normal(centres[l], 0.3, 8) for l in labels])
    results = fewshot_accuracy(separable, labels, (1, 4), repeats=10)
    assert [r.shots for r in results] == [1, 4]
    assert all(r.median == 1.0 and r.interval == (1.0, 1.0) for r in results)
    noise = rng.normal(size=(36, 8))
    chance = fewshot_accuracy(noise, labels, (4,), repeats=30)[0]
    assert 0.15 < chance.median < 0.55  # three classes: chance is 1/3
    assert len(chance.accuracies) == 30


def test_protocol_refuses_impossible_splits():
    feats = np.zeros((9, 2))
    with pytest.raises(NanowireSSLError, match=r"4 labelled images per class leaves no test image for class 'b' \(4"):
        fewshot_accuracy(feats, ["a"] * 5 + ["b"] * 4, (4,))
    with pytest.raises(NanowireSSLError, match="at least two classes"):
        fewshot_accuracy(feats, ["a"] * 9, (1,))
