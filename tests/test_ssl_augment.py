"""Batched per-sample augmentation: geometry, intensity, blur and noise on known inputs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.ssl import AugmentConfig, augment_batch, two_views

IDENTITY = AugmentConfig.identity()


def only(**changes) -> AugmentConfig:
    """The identity configuration with the given fields changed."""
    return dataclasses.replace(IDENTITY, **changes)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def crops() -> torch.Tensor:
    return torch.randint(0, 256, (6, 1, 48, 48), dtype=torch.uint8, generator=gen(7))


def test_output_shape_dtype_and_range(crops):
    out = augment_batch(crops[:, 0], AugmentConfig(), 32, gen())  # (B, H, W) is accepted too
    assert out.shape == (6, 1, 32, 32) and out.dtype == torch.float32
    assert 0.0 <= out.min().item() and out.max().item() <= 1.0
    v1, v2 = two_views(torch.rand(3, 1, 40, 56, generator=gen(1)), AugmentConfig(), 24, gen())
    assert v1.shape == v2.shape == (3, 1, 24, 24)


def test_same_seed_same_views_other_seed_other_views(crops):
    a1, a2 = two_views(crops, AugmentConfig(), 32, gen(5))
    b1, b2 = two_views(crops, AugmentConfig(), 32, gen(5))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    c1, _ = two_views(crops, AugmentConfig(), 32, gen(6))
    assert not torch.allclose(a1, c1)


def test_parameters_are_drawn_per_sample(crops):
    noiseless = dataclasses.replace(AugmentConfig(), p_noise=0.0, p_shot=0.0)  # differences from parameters only
    same = crops[:1].expand(8, -1, -1, -1)
    out = augment_batch(same, noiseless, 32, gen())
    for i in range(1, 8):
        assert (out[i] - out[0]).abs().max() > 0.05
    v1, v2 = two_views(same[:1], noiseless, 32, gen())
    assert (v1 - v2).abs().max() > 0.05


def test_identity_config_returns_the_input(crops):
    out = augment_batch(crops, IDENTITY, 48, gen())
    torch.testing.assert_close(out, crops.float() / 255, atol=1e-5, rtol=0)


def test_identity_config_resizes_like_bilinear_interpolation():
    x = torch.rand(4, 1, 64, 64, generator=gen(2))
    expected = F.interpolate(x, size=(40, 40), mode="bilinear", align_corners=False)
    torch.testing.assert_close(augment_batch(x, IDENTITY, 40, gen()), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("p_hflip", "p_vflip", "dims"), [(1.0, 0.0, (-1,)), (0.0, 1.0, (-2,)), (1.0, 1.0, (-2, -1))])
def test_certain_flips_equal_torch_flip(crops, p_hflip, p_vflip, dims):
    out = augment_batch(crops, only(p_hflip=p_hflip, p_vflip=p_vflip), 48, gen())
    torch.testing.assert_close(out, torch.flip(crops, dims).float() / 255, atol=1e-5, rtol=0)
    assert torch.equal((out * 255).round().to(torch.uint8), torch.flip(crops, dims))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_known_quarter_turn_equals_torch_rot90(crops, k):
    out = augment_batch(crops, only(quarter_turns=(k,)), 48, gen())
    torch.testing.assert_close(out, torch.rot90(crops, k, dims=(-2, -1)).float() / 255, atol=1e-5, rtol=0)
    assert torch.equal((out * 255).round().to(torch.uint8), torch.rot90(crops, k, dims=(-2, -1)))
    assert not torch.allclose(out, crops.float() / 255)


@pytest.mark.parametrize(("area", "slope"), [(0.25, 1.0), (1.0, 2.0)])
def test_crop_area_sets_the_magnification(area, slope):
    # a horizontal ramp rising by 1/63 per source pixel; a square crop of side sqrt(area) * 64
    # resized to 32 px advances sqrt(area) * 64 / 32 source pixels per output pixel
    ramp = (torch.arange(64.0) / 63).expand(5, 1, 64, 64)
    out = augment_batch(ramp, only(scale=(area, area)), 32, gen(3))
    torch.testing.assert_close(out.diff(dim=-1), torch.full((5, 1, 32, 31), slope / 63), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.diff(dim=-2), torch.zeros(5, 1, 31, 32), atol=1e-6, rtol=0)
    if area < 1:  # the crops sit at different places
        assert out[:, 0, 0, 0].std() > 0.01


def test_jitter_applies_contrast_brightness_and_gamma_per_sample():
    x = torch.tensor([0.25, 0.75]).repeat(8).view(1, 1, 4, 4).expand(3, 1, 4, 4)
    cfg = only(p_jitter=1.0, contrast=(1.5, 1.5), brightness=(0.1, 0.1), gamma=(2.0, 2.0))
    out = augment_batch(x, cfg, 4, gen())
    # mean 0.5: 0.25 -> (0.25 - 0.5) * 1.5 + 0.5 + 0.1 = 0.225, 0.75 -> 0.975, then squared
    assert torch.allclose(out[:, 0, 0, :2], torch.tensor([0.225**2, 0.975**2]).expand(3, 2), atol=1e-6)
    varied = augment_batch(x, only(p_jitter=1.0), 4, gen())
    assert varied[:, 0, 0, 0].std() > 0.01


def gaussian_kernel_energy(sigma: float, radius: int) -> float:
    """Sum of squared weights of the normalised 2-d Gaussian kernel: the variance gain on white noise."""
    t = np.arange(-radius, radius + 1)
    w = np.exp(-(t**2) / (2 * sigma**2))
    w /= w.sum()
    return float((w**2).sum() ** 2)


def test_blur_divides_white_noise_variance_by_the_kernel_energy():
    noise = torch.rand(8, 1, 96, 96, generator=gen(4))
    out = augment_batch(noise, only(p_blur=1.0, blur_sigma=(1.0, 1.0)), 96, gen())
    inner = out[..., 3:-3, 3:-3]  # away from the replicated border
    ratio = inner.var().item() / noise.var().item()
    assert ratio == pytest.approx(gaussian_kernel_energy(1.0, radius=3), rel=0.05)  # about 0.08
    torch.testing.assert_close(out.mean(), noise.mean(), atol=2e-3, rtol=0)


def test_blur_keeps_a_constant_image_constant_and_can_be_skipped_per_sample():
    flat = torch.full((4, 1, 32, 32), 0.3)
    out = augment_batch(flat, only(p_blur=1.0, blur_sigma=(0.5, 1.5)), 32, gen())
    torch.testing.assert_close(out, flat, atol=1e-6, rtol=0)
    noise = torch.rand(16, 1, 32, 32, generator=gen(8))
    out = augment_batch(noise, only(p_blur=0.5), 32, gen(9))
    unchanged = [(out[i] - noise[i]).abs().max().item() < 1e-6 for i in range(16)]
    assert 0 < sum(unchanged) < 16


def test_gaussian_noise_has_the_requested_std():
    flat = torch.full((8, 1, 128, 128), 0.5)
    out = augment_batch(flat, only(p_noise=1.0, noise_std=(0.05, 0.05)), 128, gen())
    assert (out - 0.5).std().item() == pytest.approx(0.05, rel=0.02)
    assert out.mean().item() == pytest.approx(0.5, abs=1e-3)


def test_shot_noise_std_is_sqrt_of_intensity_over_dose():
    flat = torch.full((8, 1, 128, 128), 0.25)
    out = augment_batch(flat, only(p_shot=1.0, shot_dose=(100.0, 100.0)), 128, gen())
    assert (out - 0.25).std().item() == pytest.approx(math.sqrt(0.25 / 100), rel=0.02)  # 0.05


def test_config_from_json_lists_and_rejection_of_bad_values():
    cfg = AugmentConfig(**{"scale": [0.5, 1], "quarter_turns": [0, 2]})
    assert cfg.scale == (0.5, 1.0) and cfg.quarter_turns == (0, 2)
    assert AugmentConfig(**dataclasses.asdict(cfg)) == cfg
    for bad in [{"scale": (0.0, 1.0)}, {"scale": (0.8, 0.5)}, {"scale": 0.5}, {"p_blur": 1.5}, {"quarter_turns": (4,)},
                {"contrast": (0.0, 1.0)}, {"noise_std": (-0.1, 0.1)}]:
        with pytest.raises(NanowireSSLError, match="augmentation"):
            AugmentConfig(**bad)


@pytest.mark.parametrize("batch", [torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.int32), torch.zeros(8, 8)])
def test_rejects_bad_batches(batch):
    with pytest.raises(NanowireSSLError, match="augmentation"):
        augment_batch(batch, AugmentConfig(), 8, gen())


def test_rejects_bad_output_size(crops):
    with pytest.raises(NanowireSSLError, match="output size"):
        augment_batch(crops, AugmentConfig(), 0, gen())
