"""Barlow Twins and NT-Xent losses on hand-worked inputs, and the projector's layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.ssl import PAPER_WIDTHS, Projector, barlow_twins_loss, nt_xent_loss
from napari_nanowire_ssl.ssl.losses import filter_prediction_loss

# Two columns of four samples, each with mean 0 and biased std 1, orthogonal to each other.
A = torch.tensor([1.0, 1.0, -1.0, -1.0])
B = torch.tensor([1.0, -1.0, 1.0, -1.0])


def barlow_numpy(z1: np.ndarray, z2: np.ndarray, lambd: float, eps: float = 1e-5) -> float:
    """Independent float64 reference of the Barlow Twins loss."""
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
    c = a.T @ b / len(z1)
    off = ~np.eye(c.shape[0], dtype=bool)
    return float(((1 - np.diag(c)) ** 2).sum() + lambd * (c[off] ** 2).sum())


def test_barlow_zero_for_identical_views_with_orthonormal_standardised_columns():
    z = torch.stack([A, B], dim=1) * torch.tensor([3.0, 0.5]) + torch.tensor([7.0, -2.0])
    assert barlow_twins_loss(z, z).item() < 1e-8
    # the only departure from 0 is BatchNorm's eps: c_ii = var / (var + eps), variances 9 and 0.25
    expected = (1 - 9 / (9 + 1e-5)) ** 2 + (1 - 0.25 / (0.25 + 1e-5)) ** 2
    assert barlow_twins_loss(z.double(), z.double()).item() == pytest.approx(expected, rel=1e-9)


def test_barlow_opposite_views_give_four_per_feature():
    z = torch.stack([A, B], dim=1)
    assert barlow_twins_loss(z, -z).item() == pytest.approx(4 * 2, rel=1e-4)  # c = -I: (1 - (-1))**2 per feature


def test_barlow_counts_off_diagonal_terms_with_lambda():
    z1 = torch.stack([A, B], dim=1)
    z2 = torch.stack([-A, A], dim=1)
    # c = [[-1, 1], [0, 0]]: diagonal (1+1)**2 + (1-0)**2 = 5, off-diagonal 1**2 + 0**2 = 1
    assert barlow_twins_loss(z1, z2, lambd=0.005).item() == pytest.approx(5.005, rel=1e-4)
    assert barlow_twins_loss(z1, z2, lambd=1.0).item() == pytest.approx(6.0, rel=1e-4)


def test_barlow_two_sample_example_by_hand():
    # two samples: every column standardises to (-1, 1) or (1, -1)
    z1 = torch.tensor([[0.0, 2.0], [4.0, 1.0]])  # -> [[-1, 1], [1, -1]]
    z2 = torch.tensor([[1.0, 1.0], [3.0, 5.0]])  # -> [[-1, -1], [1, 1]]
    # c = [[1, 1], [-1, -1]]: diagonal 0 + 4, off-diagonal 1 + 1
    assert barlow_twins_loss(z1, z2, lambd=0.01).item() == pytest.approx(4.02, rel=1e-4)


def test_barlow_matches_numpy_reference():
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(6, 3)) * 2 + 1, rng.normal(size=(6, 3))
    got = barlow_twins_loss(torch.from_numpy(z1), torch.from_numpy(z2), lambd=0.3)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(barlow_numpy(z1, z2, 0.3), rel=1e-12)


@pytest.mark.parametrize("t", [0.5, 1.0])
def test_nt_xent_identical_views_orthogonal_samples(t):
    n = 4
    z = torch.eye(n, 6) * torch.tensor([[1.0], [2.0], [0.5], [3.0]])  # norms do not matter: cosine similarity
    # each anchor: positive at similarity 1, 2n - 2 negatives at 0, itself excluded
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + (2 * n - 2)))
    assert nt_xent_loss(z, z, temperature=t).item() == pytest.approx(expected, rel=1e-5)
    expected_opposite = -math.log(math.exp(-1 / t) / (math.exp(-1 / t) + (2 * n - 2)))
    assert nt_xent_loss(z, -z, temperature=t).item() == pytest.approx(expected_opposite, rel=1e-5)


def test_nt_xent_matches_numpy_reference():
    rng = np.random.default_rng(2)
    z1, z2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    z = np.concatenate([z1, z2])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    s = z @ z.T / 0.2
    total = 0.0
    for i in range(10):
        positive = (i + 5) % 10
        others = [j for j in range(10) if j != i]
        total += -s[i, positive] + np.log(np.exp(s[i, others]).sum())
    got = nt_xent_loss(torch.from_numpy(z1), torch.from_numpy(z2), temperature=0.2)
    assert got.item() == pytest.approx(total / 10, rel=1e-12)


@pytest.mark.parametrize("loss", [barlow_twins_loss, nt_xent_loss])
def test_losses_symmetric_in_views_and_batch_order(loss):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    perm = torch.randperm(8, generator=g)
    ref = loss(z1, z2)
    torch.testing.assert_close(loss(z2, z1), ref)
    torch.testing.assert_close(loss(z1[perm], z2[perm]), ref)
    assert not torch.allclose(loss(z1, z2[perm]), ref)  # pairing matters


@pytest.mark.parametrize("loss", [barlow_twins_loss, nt_xent_loss])
def test_losses_gradcheck(loss):
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (z1, z2))


@pytest.mark.parametrize("loss", [barlow_twins_loss, nt_xent_loss])
def test_losses_run_in_float32_for_bfloat16_and_under_autocast(loss):
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(16, 64, generator=g), torch.randn(16, 64, generator=g)
    b1, b2 = z1.bfloat16(), z2.bfloat16()
    low = loss(b1, b2)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(loss(b1.float(), b2.float()).item(), rel=1e-5)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = loss(z1, z2)
    assert inside.dtype == torch.float32
    assert inside.item() == pytest.approx(loss(z1, z2).item(), rel=1e-5)


@pytest.mark.parametrize("loss", [barlow_twins_loss, nt_xent_loss])
def test_losses_reject_bad_shapes(loss):
    with pytest.raises(NanowireSSLError, match="equal shape"):
        loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(NanowireSSLError, match="at least 2"):
        loss(torch.zeros(1, 3), torch.zeros(1, 3))


def test_losses_reject_bad_hyperparameters():
    z = torch.randn(4, 3)
    with pytest.raises(NanowireSSLError, match="lambda"):
        barlow_twins_loss(z, z, lambd=-1.0)
    with pytest.raises(NanowireSSLError, match="temperature"):
        nt_xent_loss(z, z, temperature=0.0)


def test_projector_layout_and_shape():
    head = Projector(512)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]
    assert head(torch.randn(8, 512)).shape == (8, 1024)
    paper = Projector(512, PAPER_WIDTHS)
    assert [m.out_features for m in paper if isinstance(m, nn.Linear)] == [128, 64, 1024]
    assert [m.num_features for m in paper if isinstance(m, nn.BatchNorm1d)] == [128, 64]
    assert paper.out_dim == 1024


def test_projector_single_layer_is_linear():
    head = Projector(16, (8,))
    assert len(head) == 1 and head(torch.randn(3, 16)).shape == (3, 8)


@pytest.mark.parametrize("dims", [(), (64, 0), (64, 2.5)])
def test_projector_rejects_bad_widths(dims):
    with pytest.raises(NanowireSSLError, match="projector"):
        Projector(32, dims)


def test_filter_prediction_by_hand():
    # One image, one channel, 4 x 4: standardised, its 2 x 2 block means are the best 2 x 2 prediction.
    t = torch.arange(16.0).reshape(1, 1, 4, 4)
    z = (t - t.mean()) / t.std()
    blocks = z.reshape(2, 2, 2, 2).mean(dim=(1, 3)).reshape(1, 1, 2, 2)
    assert filter_prediction_loss([blocks], t).item() == pytest.approx(0.0, abs=1e-12)
    # Predicting zeros costs the mean square of the block means; at full size, the variance ((n-1)/n).
    assert filter_prediction_loss([torch.zeros(1, 1, 2, 2)], t).item() == pytest.approx(blocks.pow(2).mean().item())
    both = filter_prediction_loss([torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 4)], t).item()
    assert both == pytest.approx((blocks.pow(2).mean().item() + 15 / 16) / 2)
    # A constant channel stays finite (std 1) and the targets carry no gradient.
    c = torch.ones(1, 1, 4, 4, requires_grad=True)
    assert filter_prediction_loss([torch.zeros(1, 1, 1, 1)], c).item() == 0.0


def test_filter_prediction_rejects_mismatched_channels():
    with pytest.raises(NanowireSSLError, match=r"filter prediction of shape \(1, 2, 2, 2\) does not match targets "
                                               r"of shape \(1, 3, 4, 4\)"):
        filter_prediction_loss([torch.zeros(1, 2, 2, 2)], torch.zeros(1, 3, 4, 4))
    with pytest.raises(NanowireSSLError, match="at least one prediction"):
        filter_prediction_loss([], torch.zeros(1, 3, 4, 4))
