"""Image features (tiling and orientation policy) and the few-shot evaluation protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.fewshot.evaluation import fewshot_accuracy
from napari_nanowire_ssl.fewshot.features import PooledFeatures, image_features, tiles_of, views_of
from napari_nanowire_ssl.fewshot.symmetry import dihedral
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


def test_views_show_every_tile_once_in_alternating_orientations():
    rng = np.random.default_rng(0)
    single = rng.random((100, 100))
    views = views_of(single, 512, 16)  # smaller than a tile: the whole image, as it is and turned + flipped
    assert len(views) == 2 and np.array_equal(views[0], single) and np.array_equal(views[1], dihedral(single, 5))
    image = rng.random((1536, 512))  # 3 tiles -> 3 views: 3 encoder passes of 512 px
    tiles = tiles_of(image, 512, 16)
    views = views_of(image, 512, 16)
    assert len(views) == 3 and all(np.array_equal(v, dihedral(tiles[i], (0, 5)[i % 2])) for i, v in enumerate(views))
    assert len(views_of(rng.random((512, 512)), 512, 16)) == 2  # a 512 px image: 2 passes (the issue allows 4)


def test_pooling_statistics_of_layer3_and_layer4():
    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        maps = encoder.forward_features(x)[-2:]
        pooled = PooledFeatures(encoder).embed(x)
        three = PooledFeatures(encoder, ("mean", "std", "max")).embed(x)
    assert pooled.shape == (2, PooledFeatures(encoder).embedding_dim) == (2, 256 + 512)
    l3, l4 = maps[0].flatten(2), maps[1].flatten(2)
    torch.testing.assert_close(pooled[:, :256], l3.clamp(min=0).pow(3).mean(2).pow(1 / 3))  # generalised mean, p = 3
    torch.testing.assert_close(pooled[:, 256:], l4.clamp(min=0).pow(3).mean(2).pow(1 / 3))
    assert (pooled[:, :256] >= l3.mean(2) - 1e-6).all() and (pooled[:, :256] <= l3.amax(2) + 1e-6).all()
    torch.testing.assert_close(three[:, :256], l3.mean(2))
    torch.testing.assert_close(three[:, 256:512], l3.std(2, correction=0))
    torch.testing.assert_close(three[:, -512:], l4.amax(2))
    with pytest.raises(ValueError, match="unknown pooling statistics"):
        PooledFeatures(encoder, ("median",))


def test_features_are_the_root_mean_view_embedding_then_the_texture_and_lines_of_the_tiles():
    from napari_nanowire_ssl.fewshot.features import BLOCK_WEIGHTS, block_weights, feature_blocks
    from napari_nanowire_ssl.fewshot.line_measures import line_features
    from napari_nanowire_ssl.fewshot.texture import texture_features
    from napari_nanowire_ssl.io import normalize

    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    rng = np.random.default_rng(0)
    big = rng.random((128, 256)).astype(np.float32)
    feats = image_features(encoder, [big], tile=128)
    norm = normalize(big)
    tiles = [norm[:, :128], norm[:, 128:]]
    views = [tiles[0], dihedral(tiles[1], 5)]
    native = np.sqrt(encode_images(PooledFeatures(encoder), views).mean(0))
    texture = np.mean([texture_features(t, normalized=True) for t in tiles], 0)
    lines = np.mean([line_features(t, normalized=True) for t in tiles], 0)
    blocks = feature_blocks(encoder)
    assert feats.shape == (1, 256 + 512 + 185 + 66)
    assert blocks == {"encoder": slice(0, 768), "texture": slice(768, 953), "lines": slice(953, 1019)}
    np.testing.assert_allclose(feats[0, blocks["encoder"]], native, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[0, blocks["texture"]], texture, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(feats[0, blocks["lines"]], lines, rtol=1e-5, atol=1e-6)
    weights = block_weights(blocks)  # a block's total weight does not grow with its size
    assert weights[0] == pytest.approx(BLOCK_WEIGHTS["encoder"] / np.sqrt(768))
    assert weights[800] == pytest.approx(BLOCK_WEIGHTS["texture"] / np.sqrt(185))
    assert weights[-1] == pytest.approx(BLOCK_WEIGHTS["lines"] / np.sqrt(66))
    assert (block_weights({"a": slice(0, 4), "b": slice(4, 20)}) == np.r_[[0.5] * 4, [0.25] * 16]).all()
    # Orientation is seen both ways: a square image and its turned + flipped copy give the same encoder block.
    square = big[:64, :64]
    turned = image_features(encoder, [square, dihedral(square, 5)], tile=128)
    np.testing.assert_allclose(turned[1, :768], turned[0, :768], rtol=1e-4, atol=1e-5)
    assert not np.allclose(turned[0], image_features(encoder, [big[:, 128:]], tile=128)[0], rtol=1e-3)
    with pytest.raises(NanowireSSLError, match="tiny.png: is 16x16 px"):
        image_features(encoder, [np.zeros((16, 16))], names=["tiny.png"])


@pytest.mark.slow
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
