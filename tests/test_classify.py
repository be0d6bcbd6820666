"""Few-shot classification core: feature cache, linear head and its model file, anchors, feature map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nanowire_ssl.errors import ModelFileError, NanowireSSLError
from napari_nanowire_ssl.fewshot import features as features_module
from napari_nanowire_ssl.fewshot.anchors import suggest_anchors
from napari_nanowire_ssl.fewshot.classify import DEFAULT_TEMPERATURE, LinearHead, softmax
from napari_nanowire_ssl.fewshot.embedding import embed_2d
from napari_nanowire_ssl.fewshot.features import FEATURES, FeatureCache, image_features
from napari_nanowire_ssl.models.modelfile import encoder_identity
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import read_metadata, save_tensors, tensor_hash


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n_per_class, centres, dim=16, spread=0.3, seed=0):
    """Gaussian blobs around ``centres`` (class name -> offset along every axis), with their labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(list(centres), n_per_class)
    feats = np.stack([rng.normal(centres[c], spread, dim) for c in labels])
    return feats.astype(np.float32), labels


@pytest.fixture(scope="module")
def encoders():
    torch.manual_seed(0)
    a = Encoder("resnet18").eval()
    torch.manual_seed(1)
    return a, Encoder("resnet18").eval()


def test_cache_avoids_encoding_again_and_misses_on_other_pixels_or_encoder(encoders, monkeypatch, tmp_path):
    calls = []  # one per image encoded: encode_images runs once per image
    real = features_module.encode_images
    monkeypatch.setattr(features_module, "encode_images",
                        lambda enc, parts, **kw: calls.append(1) or real(enc, parts, **kw))
    a, b = encoders
    rng = np.random.default_rng(0)
    images = [rng.random((64, 64)).astype(np.float32) for _ in range(2)]
    cache = FeatureCache(tmp_path / "cache")
    first = image_features(a, images, tile=64, cache=cache)
    assert sum(calls) == 2 and len(list((tmp_path / "cache").glob("*.npy"))) == 2
    again = image_features(a, images, tile=64, cache=cache)
    assert sum(calls) == 2
    np.testing.assert_array_equal(again, first)
    # A new cache over the same folder reads the files: still no encoding.
    np.testing.assert_array_equal(image_features(a, images, tile=64, cache=FeatureCache(tmp_path / "cache")), first)
    assert sum(calls) == 2
    changed = images[0].copy()
    changed[0, 0] += 0.5
    image_features(a, [changed], tile=64, cache=cache)
    assert sum(calls) == 3
    other = image_features(b, images[:1], tile=64, cache=cache)
    assert sum(calls) == 4 and not np.allclose(other[0], first[0])
    image_features(a, images[:1], tile=32, cache=cache)  # other tiling: another key
    assert sum(calls) == 5
    monkeypatch.setattr(features_module, "FEATURES", "another pooling")  # features of another version: not reused
    image_features(a, images[:1], tile=64, cache=FeatureCache(tmp_path / "cache"))
    assert sum(calls) == 6
    assert encoder_identity(a) == tensor_hash(a.state_dict()) != encoder_identity(b)


def test_cache_lru_keeps_the_most_recent_items():
    cache = FeatureCache(max_items=2)
    for k in "abc":
        cache.put(k, np.array([ord(k)]))
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c")[0] == ord("c")


def test_head_separates_classes_in_the_given_order():
    names = ["network", "dispersed", "bundle"]
    feats, labels = blobs(10, {"network": 0.0, "dispersed": 3.0, "bundle": -3.0})
    head = LinearHead().fit(feats, labels, names)
    assert head.class_names == names
    probs = head.predict_proba(feats)
    assert probs.shape == (30, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert (head.predict(feats) == labels).all()
    # Column j is the probability of names[j]: each class's own column wins.
    assert (np.asarray(names)[probs.argmax(axis=1)] == labels).all()
    default_order = LinearHead().fit(feats, labels)
    assert default_order.class_names == sorted(names)


def test_binary_head_has_two_columns_matching_scikit_learn_before_its_temperature():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    feats, labels = blobs(8, {"b": 0.0, "a": 0.6}, spread=1.0)
    head = LinearHead(c=1.0).fit(feats, labels, ["b", "a"])
    probs = head.predict_proba(feats)
    assert probs.shape == (16, 2) and head.c == 1.0
    scaler = StandardScaler().fit(feats)
    reference = LogisticRegression(max_iter=2000).fit(scaler.transform(feats), labels)
    expected = reference.predict_proba(scaler.transform(feats))  # columns in sorted order: a, b
    np.testing.assert_allclose(softmax(head.logits(feats)), expected[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(probs, softmax(head.logits(feats) / head.temperature))


def test_head_refuses_bad_training_sets():
    feats, labels = blobs(3, {"a": 0.0, "b": 1.0})
    with pytest.raises(NanowireSSLError, match=r"class 'c' has no images"):
        LinearHead().fit(feats, labels, ["a", "b", "c"])
    with pytest.raises(NanowireSSLError, match=r"at least two classes, got \['a'\]"):
        LinearHead().fit(feats[:3], labels[:3])
    with pytest.raises(NanowireSSLError, match=r"label 'b' is not one of the classes \['a', 'x'\]"):
        LinearHead().fit(feats, labels, ["a", "x"])
    with pytest.raises(NanowireSSLError, match="not trained yet"):
        LinearHead().predict(feats)


def test_saved_head_predicts_identically_and_refuses_another_encoder(encoders, tmp_path):
    a, b = encoders
    feats, labels = blobs(6, {"x": 0.0, "y": 1.0, "z": 2.0}, dim=512, spread=1.0)
    blocks = {"encoder": slice(0, 500), "texture": slice(500, 512)}
    head = LinearHead(encoder_hash=encoder_identity(a), tiling={"tile": 128, "max_tiles": 4},
                      blocks=blocks).fit(feats, labels)
    path = tmp_path / "head.safetensors"
    head.save(path)
    meta = read_metadata(path, kind="linear_head")
    assert meta["class_names"] == ["x", "y", "z"] and meta["encoder_hash"] == encoder_identity(a)
    assert meta["tiling"] == {"tile": 128, "max_tiles": 4} and meta["package_version"] and meta["pooling"] == FEATURES
    loaded = LinearHead.load(path, a)
    test = np.random.default_rng(5).normal(1.0, 1.0, (7, 512))
    np.testing.assert_array_equal(loaded.predict_proba(test), head.predict_proba(test))
    assert loaded.class_names == head.class_names and loaded.tiling == head.tiling and loaded.blocks == blocks
    assert loaded.temperature == head.temperature and meta["temperature"] == head.temperature
    assert loaded.calibrated and meta["calibrated"] is True  # 6 images per class: the temperature was fitted
    with pytest.raises(ModelFileError) as err:
        LinearHead.load(path, b)
    assert str(err.value) == (f"{path}: was trained on encoder {encoder_identity(a)[:8]}, "
                              f"not on the loaded encoder {encoder_identity(b)[:8]}")
    tensors, meta = head.state()
    save_tensors(tmp_path / "old.safetensors", tensors, {**meta, "pooling": "layer3+layer4 mean+std"})
    with pytest.raises(ModelFileError, match="trained on 'layer3\\+layer4 mean\\+std' features; .* train the head again"):
        LinearHead.load(tmp_path / "old.safetensors", a)
    # A head of the previous recipe (two scales, 8 views, no block weights nor temperature) is refused too.
    previous = "layer3+layer4 mean+std+max; mean over tiles x 8 dihedral views; square root; scales 1x and 2x concatenated"
    old = {k: v for k, v in tensors.items() if k != "weight"}
    save_tensors(tmp_path / "previous.safetensors", old,
                 {k: v for k, v in meta.items() if k not in ("temperature", "blocks")} | {"pooling": previous})
    with pytest.raises(ModelFileError, match="previous.safetensors: was trained on .*scales 1x and 2x.* train the head again"):
        LinearHead.load(tmp_path / "previous.safetensors", a)
    with pytest.raises(ModelFileError, match="is an encoder file, expected a linear_head"):
        from napari_nanowire_ssl.models.modelfile import save_encoder

        save_encoder(a, tmp_path / "enc.safetensors")
        LinearHead.load(tmp_path / "enc.safetensors")


def test_training_on_hundreds_of_images_separates_their_classes():
    """400 images of 4 classes (the head's speed is a benchmark's business, not a test's)."""
    feats, labels = blobs(100, {"a": 0.0, "b": 0.2, "c": 0.4, "d": 0.6}, dim=512, spread=1.0)
    head = LinearHead().fit(feats, labels)
    assert (head.predict(feats) == labels).mean() > 0.95


def test_anchors_cover_every_blob_first():
    rng = np.random.default_rng(0)
    sizes = {0.0: 20, 10.0: 12, -10.0: 6}
    feats = np.concatenate([rng.normal(c, 1.0, (n, 5)) for c, n in sizes.items()])
    blob = np.repeat([0, 1, 2], list(sizes.values()))
    anchors = suggest_anchors(feats, 3)
    assert list(blob[anchors]) == [0, 1, 2]  # one per blob, largest blob first
    for i in anchors:  # each anchor is the member nearest its blob's mean (in standardised space)
        members = np.flatnonzero(blob == blob[i])
        from sklearn.preprocessing import StandardScaler

        x = StandardScaler().fit_transform(feats)
        assert i == members[np.argmin(np.linalg.norm(x[members] - x[members].mean(0), axis=1))]
    with pytest.raises(NanowireSSLError, match="cannot suggest 40 anchors among 38 images"):
        suggest_anchors(feats, 40)
    # Weights decide which values the distances see: a block of 200 noise values drowns the
    # 5 informative ones (an anchor-less blob) unless it is weighed down.
    noisy = np.hstack([feats, np.random.default_rng(1).normal(0, 1, (len(feats), 200))])
    assert sorted(blob[suggest_anchors(noisy, 3)]) != [0, 1, 2]
    weights = np.r_[np.ones(5), np.full(200, 1e-3)]
    assert sorted(blob[suggest_anchors(noisy, 3, weights=weights)]) == [0, 1, 2]


def test_tsne_keeps_clusters_apart():
    feats, labels = blobs(15, {"a": 0.0, "b": 2.0, "c": -2.0}, dim=32, spread=1.0)
    xy = embed_2d(feats, "tsne", seed=0)
    assert xy.shape == (45, 2)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(axis=1)] == labels).mean() > 0.9
    np.testing.assert_array_equal(embed_2d(feats, "tsne", seed=0), xy)
    assert embed_2d(feats[:4], "tsne").shape == (4, 2)  # small sets: perplexity shrinks


def test_embedding_errors():
    with pytest.raises(NanowireSSLError, match="unknown embedding method 'pca'"):
        embed_2d(np.zeros((5, 2)), "pca")
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(NanowireSSLError, match="UMAP is not installed"):
            embed_2d(np.random.default_rng(0).random((10, 3)), "umap")


def test_features_of_tiny_images_are_finite_and_leave_the_encoder_mode_alone(encoders):
    a, _ = encoders  # how features are pooled and composed: tests/test_fewshot.py
    image = np.random.default_rng(3).random((32, 32)).astype(np.float32)
    assert np.isfinite(image_features(a, [image])).all()  # 1 x 1 layer4 map: spread 0, not NaN
    assert not a.training


def test_fit_temperature_recovers_the_overconfidence_factor():
    from napari_nanowire_ssl.fewshot.classify import fit_temperature

    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (4000, 3))  # true logits; labels drawn from softmax(z)
    truth = np.array([rng.choice(3, p=p) for p in softmax(z)])
    assert fit_temperature(3 * z, truth) == pytest.approx(3.0, rel=0.1)  # a head 3x too sure
    assert fit_temperature(z, truth) == pytest.approx(1.0, rel=0.1)


def test_cross_validated_temperature_tames_an_overconfident_head():
    # Two barely separated classes in 40 dimensions, 12 training images each: the plain
    # logistic regression fits the training set perfectly and is far too sure on new images.
    rng = np.random.default_rng(1)
    dim = 40

    def draw(n):
        y = np.repeat(["a", "b"], n)
        return rng.normal(0, 1, (2 * n, dim)) + np.where(y == "a", 0.0, 0.2)[:, None], y

    x, y = draw(12)
    xt, yt = draw(500)
    head = LinearHead(c=1.0).fit(x, y)
    truth = (yt == "b").astype(int)
    nll = lambda p: -np.log(p[np.arange(len(truth)), truth]).mean()  # noqa: E731
    raw = softmax(head.logits(xt))
    assert head.temperature > 1.5
    assert nll(head.predict_proba(xt)) < nll(raw) - 0.1
    one = LinearHead(c=1.0).fit(x[[0, 12]], y[[0, 12]])  # one image per class: no cross-validation
    assert one.temperature == DEFAULT_TEMPERATURE
    assert head.calibrated and head.calibration_note() == ""
    assert not one.calibrated and one.calibration_note() == (
        "probabilities not calibrated (that takes at least 2 labelled images per class)")


def test_label_next_puts_the_ambiguous_image_first_and_flags_it():
    from napari_nanowire_ssl.fewshot.classify import UNCERTAIN_BELOW, is_uncertain, label_next, uncertainty

    p = np.array([[0.90, 0.05, 0.05], [0.40, 0.38, 0.22], [0.10, 0.75, 0.15], [0.55, 0.05, 0.40]])
    np.testing.assert_allclose(uncertainty(p), [0.15, 0.98, 0.40, 0.85])
    # Predicted classes 0, 0, 1, 0. Round 1: class 0's most ambiguous (row 1, 0.98), class 1's (row 2,
    # 0.40); round 2: class 0's next (row 3, 0.85); round 3: row 0.
    assert list(label_next(p)) == [1, 2, 3, 0]
    assert list(label_next(p[[0, 1, 3]])) == [1, 2, 0]  # one predicted class: most ambiguous first
    assert list(is_uncertain(p)) == [p[i].max() < UNCERTAIN_BELOW for i in range(4)] == [False, True, False, True]
