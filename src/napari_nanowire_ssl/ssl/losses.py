"""Self-supervised losses: Barlow Twins and SimCLR's NT-Xent, written out in plain torch, and the
dense filter-prediction term (:func:`filter_prediction_loss`).

Both take the projections ``z1``, ``z2`` (N, D) of two augmented views of the
same N images, row i of ``z1`` and row i of ``z2`` coming from the same image.
They are computed in at least float32 (float64 inputs stay float64, which
``gradcheck`` needs) with autocast switched off: under bfloat16 autocast the
matrix products would otherwise run in bfloat16, whose 8-bit significand makes
every entry of a 1024 x 1024 cross-correlation matrix coarse (errors near 1e-2).

Distributed training: each rank computes the loss on its local batch and
DistributedDataParallel averages the gradients, as many reimplementations do.
The batch statistics (Barlow Twins' standardisation and cross-correlation,
SimCLR's negatives) then span the local batch only, not the global one as in
the original code (which all-reduces the cross-correlation); that estimate is
noisier but has the same target, so keep the per-rank batch at 64 or more.
Gathering across ranks, with its own gradient rules, is not implemented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import NanowireSSLError

_BN_EPS = 1e-5  # as torch.nn.BatchNorm1d(affine=False) in the original Barlow Twins code


def _check_pair(z1: torch.Tensor, z2: torch.Tensor, name: str) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise NanowireSSLError(f"{name} needs two (N, D) projections of equal shape, got {tuple(z1.shape)} "
                               f"and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise NanowireSSLError(f"{name} needs a batch of at least 2 samples, got {z1.shape[0]}")


def _compute_dtype(z: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else (float16, bfloat16, float32) becomes float32."""
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _standardise(z: torch.Tensor) -> torch.Tensor:
    """Mean 0, unit (biased) std per feature along the batch, with BatchNorm's eps."""
    mean = z.mean(dim=0)
    var = z.var(dim=0, unbiased=False)
    return (z - mean) / torch.sqrt(var + _BN_EPS)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, *, lambd: float = 5e-3) -> torch.Tensor:
    """Barlow Twins loss (Zbontar et al. 2021): push the views' cross-correlation to the identity.

    Each projection is standardised along the batch, ``c = z1n.T @ z2n / N`` is
    the (D, D) cross-correlation, and the loss is
    ``sum_i (1 - c_ii)**2 + lambd * sum_{i != j} c_ij**2``: the sums of the
    original paper. The reference notebooks of Lu et al. (2022) averaged the
    diagonal term over D and the off-diagonal one over D(D-1), which makes the
    redundancy-reduction term D-1 times weaker relative to invariance; we follow
    the original paper, for which ``lambd = 5e-3`` was tuned.
    """
    _check_pair(z1, z2, "Barlow Twins loss")
    if lambd < 0:
        raise NanowireSSLError(f"Barlow Twins lambda must be non-negative, got {lambd}")
    dtype = _compute_dtype(z1)
    with torch.autocast(device_type=z1.device.type, enabled=False):
        a, b = _standardise(z1.to(dtype)), _standardise(z2.to(dtype))
        c = a.T @ b / a.shape[0]
        diag = torch.diagonal(c)
        on_diag = (1 - diag).pow(2).sum()
        off_diag = c.pow(2).sum() - diag.pow(2).sum()
        return on_diag + lambd * off_diag


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020): each of the 2N samples must pick out its other view.

    Cosine similarities between all 2N projections, divided by ``temperature``,
    are the logits of a 2N-way classification per anchor (self-similarity
    excluded) whose right answer is the other view of the same image; the loss
    is the cross-entropy averaged over all 2N anchors.
    """
    _check_pair(z1, z2, "NT-Xent loss")
    if temperature <= 0:
        raise NanowireSSLError(f"NT-Xent temperature must be positive, got {temperature}")
    dtype = _compute_dtype(z1)
    n = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)
        logits = z @ z.T / temperature
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        idx = torch.arange(n, device=z.device)
        targets = torch.cat([idx + n, idx])
        return F.cross_entropy(logits, targets)


def filter_prediction_loss(predictions: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between each ``(N, C, h, w)`` prediction and the ``(N, C, H, W)`` ``targets``
    averaged over ``H / h`` x ``W / w`` blocks, mean over the predictions.

    The targets are classical filter responses of the views (``models.filters.FilterBank``), each channel
    standardised over the batch, so every filter and scale weighs the same; predicting them from an
    encoder stage (through a 1x1 convolution) asks that stage to keep the intensity, edge, ridge and
    texture information the classical pixel features hold, which invariance alone may discard (a
    hand-crafted target, as MaskFeat's HOG; Wei et al. 2022).
    """
    if not predictions:
        raise NanowireSSLError("filter prediction needs at least one prediction")
    dtype = _compute_dtype(targets)
    with torch.autocast(device_type=targets.device.type, enabled=False):
        t = targets.detach().to(dtype)
        mean, std = t.mean(dim=(0, 2, 3), keepdim=True), t.std(dim=(0, 2, 3), keepdim=True)
        t = (t - mean) / torch.where(std > 1e-6, std, torch.ones_like(std))
        losses = []
        for p in predictions:
            if p.shape[:2] != t.shape[:2]:
                raise NanowireSSLError(f"filter prediction of shape {tuple(p.shape)} does not match targets of "
                                       f"shape {tuple(t.shape)}")
            losses.append(F.mse_loss(p.to(dtype), F.adaptive_avg_pool2d(t, p.shape[-2:])))
        return torch.stack(losses).mean()
