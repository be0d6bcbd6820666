"""Grayscale ResNet encoder, batched inference and device selection."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.models import Encoder, autocast_context, encode_images, select_device


@pytest.fixture(scope="module")
def encoder18() -> Encoder:
    torch.manual_seed(0)
    return Encoder("resnet18").eval()


def test_feature_maps_have_strides_2_to_32_and_resnet18_channels(encoder18):
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        features = encoder18.forward_features(x)
    assert encoder18.feature_channels == [64, 64, 128, 256, 512]
    assert [tuple(f.shape) for f in features] == [
        (2, c, 64 // s, 96 // s) for c, s in zip([64, 64, 128, 256, 512], [2, 4, 8, 16, 32])
    ]


def test_resnet50_is_default_with_2048_dim_embedding():
    encoder = Encoder().eval()
    assert encoder.backbone == "resnet50"
    assert encoder.feature_channels == [64, 256, 512, 1024, 2048]
    assert encoder.conv1.weight.shape == (64, 1, 7, 7)
    assert not hasattr(encoder, "fc")
    with torch.no_grad():
        emb = encoder.embed(torch.rand(2, 32, 32))
    assert emb.shape == (2, 2048) == (2, encoder.embedding_dim)


def test_embedding_is_global_average_of_layer4_and_accepts_bhw(encoder18):
    x = torch.rand(3, 64, 64)
    with torch.no_grad():
        layer4 = encoder18.forward_features(x.unsqueeze(1))[-1]
        emb = encoder18.embed(x)
    assert emb.shape == (3, 512)
    torch.testing.assert_close(emb, layer4.mean(dim=(2, 3)))
    with torch.no_grad():
        torch.testing.assert_close(encoder18.embed(x.double()), emb)  # cast to the weights' dtype


def test_encoder_applies_its_own_normalisation(encoder18):
    """Same weights, other statistics: equal to the default encoder on re-scaled input."""
    other = Encoder("resnet18", mean=0.3, std=0.1).eval()
    other.load_state_dict(encoder18.state_dict())
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        expected = encoder18.embed((x - 0.3) / 0.1 * 0.25 + 0.5)
        got = other.embed(x)
        default_on_x = encoder18.embed(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, default_on_x, atol=1e-3)


def test_config_describes_the_encoder():
    assert Encoder("resnet34", mean=0.4, std=0.2, input_size=128).config == {
        "backbone": "resnet34",
        "in_channels": 1,
        "mean": 0.4,
        "std": 0.2,
        "input_size": 128,
    }


def test_bad_backbone_and_inputs_raise(encoder18):
    with pytest.raises(NanowireSSLError, match="unknown backbone 'resnet101'"):
        Encoder("resnet101")
    with pytest.raises(NanowireSSLError, match=r"shape \(B, 1, H, W\) or \(B, H, W\), got \(1, 3, 64, 64\)"):
        encoder18.embed(torch.rand(1, 3, 64, 64))
    with pytest.raises(NanowireSSLError, match="image is 20x40 px; the encoder needs at least 32x32"):
        encoder18.embed(torch.rand(1, 20, 40))


def test_encode_images_batched_equals_unbatched(encoder18):
    rng = np.random.default_rng(1)
    images = rng.random((5, 64, 64), dtype=np.float32)
    batched = encode_images(encoder18, images, batch_size=4)
    single = np.concatenate([encode_images(encoder18, [im], batch_size=1) for im in images])
    assert batched.shape == (5, 512) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-5)
    with torch.no_grad():
        direct = encoder18.embed(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(batched, direct, atol=1e-5)


def test_encode_images_keeps_order_with_mixed_sizes(encoder18):
    rng = np.random.default_rng(2)
    images = [rng.random(shape) for shape in [(32, 32), (48, 40), (48, 40), (32, 32)]]  # float64 accepted
    together = encode_images(encoder18, iter(images), batch_size=8)
    for i, image in enumerate(images):
        np.testing.assert_allclose(together[i], encode_images(encoder18, [image])[0], atol=1e-5)


def test_encode_images_uses_eval_mode_and_restores_training_mode():
    """Batch-norm running statistics: an image's embedding must not depend on its batch mates."""
    torch.manual_seed(3)
    encoder = Encoder("resnet18")
    encoder.train()
    rng = np.random.default_rng(3)
    a = rng.random((64, 64), dtype=np.float32)
    others = rng.random((3, 64, 64), dtype=np.float32) * 0.2
    alone = encode_images(encoder, [a])[0]
    with_others = encode_images(encoder, [a, *others])[0]
    np.testing.assert_allclose(alone, with_others, atol=1e-5)
    assert encoder.training
    encoder.eval()
    with torch.no_grad():
        np.testing.assert_allclose(alone, encoder.embed(torch.from_numpy(a)[None]).numpy()[0], atol=1e-5)


def test_encode_images_errors_and_empty_input(encoder18):
    with pytest.raises(NanowireSSLError, match="image 1: is 20x20 px; the encoder needs at least 32x32"):
        encode_images(encoder18, [np.zeros((32, 32)), np.zeros((20, 20))])
    with pytest.raises(NanowireSSLError, match=r"got an array of shape \(64, 64\)"):
        encode_images(encoder18, np.zeros((64, 64)))
    with pytest.raises(NanowireSSLError, match=r"image 0: expected a 2D grayscale image, got shape \(2, 64, 64\)"):
        encode_images(encoder18, [np.zeros((2, 64, 64))])
    empty = encode_images(encoder18, [])
    assert empty.shape == (0, 512) and empty.dtype == np.float32


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    auto = select_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    else:
        assert auto.type in ("mps", "cpu")
        with pytest.raises(NanowireSSLError, match="CUDA was requested but is not available"):
            select_device("cuda")
        with pytest.raises(NanowireSSLError, match="CUDA was requested but is not available"):
            select_device("cuda:1")
    with pytest.raises(NanowireSSLError, match="unknown device 'gpu0'"):
        select_device("gpu0")


def test_autocast_only_on_cuda():
    conv = torch.nn.Conv2d(1, 2, 3)
    with autocast_context(torch.device("cpu")):
        assert conv(torch.rand(1, 1, 8, 8)).dtype == torch.float32
    with warnings.catch_warnings():  # torch warns when building a CUDA autocast without CUDA
        warnings.simplefilter("ignore")
        cuda = autocast_context("cuda")
    assert isinstance(cuda, torch.autocast) and cuda.fast_dtype == torch.bfloat16


def test_importing_the_package_does_not_import_torch():
    code = "import napari_nanowire_ssl, napari_nanowire_ssl.io, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
