"""Image features (tiling and orientation policy) and the few-shot evaluation protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.fewshot.evaluation import fewshot_accuracy
from napari_nanowire_ssl.fewshot.features import PooledFeatures, dihedral, image_features, tiles_of, views_of
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


def test_dihedral_gives_the_eight_orientations_of_the_square():
    image = np.arange(12.0).reshape(3, 4)
    turned = [dihedral(image, k) for k in range(8)]
    assert np.array_equal(turned[0], image)
    assert np.array_equal(turned[1], np.rot90(image)) and np.array_equal(turned[4], image[:, ::-1])
    assert np.array_equal(turned[5], np.rot90(image)[:, ::-1]) and np.array_equal(dihedral(image, 9), turned[1])
    assert len({t.tobytes() + bytes(t.shape) for t in turned}) == 8
    assert all(t.flags.c_contiguous for t in turned)


def test_views_show_every_tile_equally_often_in_turning_orientations():
    rng = np.random.default_rng(0)
    single = rng.random((100, 100))
    views = views_of(single, 256, 16)  # smaller than a tile: one window in all 8 orientations
    assert len(views) == 8 and all(np.array_equal(v, dihedral(single, k)) for k, v in enumerate(views))
    image = rng.random((768, 256))  # 3 tiles -> 9 views, 3 per tile
    tiles = tiles_of(image, 256, 16)
    views = views_of(image, 256, 16)
    assert len(views) == 9 and all(np.array_equal(v, dihedral(tiles[i % 3], i)) for i, v in enumerate(views))
    big = rng.random((1024, 1024))  # 16 tiles: one view each, as many passes as without orientations
    views = views_of(big, 256, 16)
    assert len(views) == 16 and np.array_equal(views[11], dihedral(tiles_of(big, 256, 16)[11], 3))


def test_features_are_the_root_mean_view_embedding_and_ignore_orientation():
    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    rng = np.random.default_rng(0)
    big = rng.random((128, 256)).astype(np.float32)
    feats = image_features(encoder, [big], tile=128)
    from napari_nanowire_ssl.io import normalize

    norm = normalize(big)
    halves = [norm[:, :128], norm[:, 128:]]
    views = [np.rot90(halves[i % 2], i % 4) for i in range(8)]
    views = [v[:, ::-1] if i >= 4 else v for i, v in enumerate(views)]
    expected = np.sqrt(encode_images(PooledFeatures(encoder), [v.copy() for v in views]).mean(0))
    np.testing.assert_allclose(feats[0], expected, rtol=1e-5, atol=1e-6)
    # One window seen in all 8 orientations: turning or flipping the image changes nothing.
    square = big[:, :128]
    turned = image_features(encoder, [square, np.rot90(square), square[::-1]], tile=128)
    np.testing.assert_allclose(turned[1:], turned[[0, 0]], rtol=1e-4, atol=1e-5)
    assert not np.allclose(turned[0], image_features(encoder, [big[:, 128:]], tile=128)[0], rtol=1e-3)
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
