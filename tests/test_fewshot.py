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
    # Enlarged 2x: 128 px tiles (4 of them on a 256 px image) enlarged bilinearly to 256 px, corners kept.
    image = rng.random((256, 256)).astype(np.float32)
    views = views_of(image, 256, 16, scale=2)
    assert len(views) == 8 and all(v.shape == (256, 256) and v.dtype == np.float32 for v in views)
    first = views[0]
    assert first[0, 0] == pytest.approx(image[0, 0]) and first[-1, -1] == pytest.approx(image[127, 127])
    assert first[0, 255] == pytest.approx(image[0, 127])
    assert first[0, 1] == pytest.approx(image[0, 0] + (image[0, 1] - image[0, 0]) * 127 / 255, rel=1e-5)
    np.testing.assert_allclose(views[5], dihedral(views_of(image[:128, 128:], 256, 16, scale=2)[0], 5))  # tile 1


def test_pooling_is_mean_std_and_max_of_layer3_and_layer4():
    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        maps = encoder.forward_features(x)[-2:]
        pooled = PooledFeatures(encoder).embed(x)
        pair = PooledFeatures(encoder, ("mean", "std")).embed(x)
    assert pooled.shape == (2, PooledFeatures(encoder).embedding_dim) == (2, 3 * (256 + 512))
    l3 = maps[0].flatten(2)
    torch.testing.assert_close(pooled[:, :256], l3.mean(2))
    torch.testing.assert_close(pooled[:, 256:512], l3.std(2, correction=0))
    torch.testing.assert_close(pooled[:, 512:768], l3.amax(2))
    torch.testing.assert_close(pooled[:, -512:], maps[1].flatten(2).amax(2))
    torch.testing.assert_close(pair, torch.cat([pooled[:, :512], pooled[:, 768:1792]], 1))
    with pytest.raises(ValueError, match="unknown pooling statistics"):
        PooledFeatures(encoder, ("median",))


def test_features_are_the_root_mean_view_embedding_at_two_scales_and_ignore_orientation():
    from scipy import ndimage

    from napari_nanowire_ssl.io import normalize

    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    rng = np.random.default_rng(0)
    big = rng.random((128, 256)).astype(np.float32)
    feats = image_features(encoder, [big], tile=128)
    norm = normalize(big)

    def root_mean(tiles):
        views = [np.rot90(tiles[i % len(tiles)], i % 4) for i in range(max(8, len(tiles)))]
        views = [v[:, ::-1] if i % 8 >= 4 else v for i, v in enumerate(views)]
        return np.sqrt(encode_images(PooledFeatures(encoder), [v.copy() for v in views]).mean(0))

    native = root_mean([norm[:, :128], norm[:, 128:]])  # two 128 px tiles
    enlarged = root_mean([ndimage.zoom(norm[y:y + 64, x:x + 64], 2, order=1)  # eight 64 px tiles, enlarged
                          for y in (0, 64) for x in (0, 64, 128, 192)])
    assert feats.shape == (1, 2 * 3 * (256 + 512))
    np.testing.assert_allclose(feats[0], np.concatenate([native, enlarged]), rtol=1e-5, atol=1e-6)
    # One window seen in all 8 orientations at both scales: turning or flipping the image changes nothing.
    square = big[:64, :64]
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
