"""A bank of classical multiscale filters in torch (CPU or GPU), at full resolution.

What ilastik and scikit-image's trainable segmentation feed their random
forests, so that the pixel models of :mod:`.pixel_classifier` never know less
than the classical tools: the intensity, then at each scale ``sigma`` of
:data:`SIGMAS` the Gaussian smoothing, the gradient magnitude, the two
eigenvalues of the Hessian (ridges and valleys: thin bright or dark wires;
their sum is the Laplacian) and the two eigenvalues of the structure tensor
(gradient products smoothed at ``2 sigma``: edges and oriented texture).
Derivatives are scale-normalised (times ``sigma`` per order) so one scale does
not dominate. Gaussians are separable 1D convolutions truncated at 4 sigma,
with replicated borders (valid for images of any size). Scales above 2 px are
computed on the image averaged over ``f x f`` blocks (``f`` = the power of two
nearest ``sigma / 2``) with ``sigma / f`` and upsampled bilinearly: these
responses are smooth, and the full-resolution convolutions cost 10 times more.

Written in torch rather than taken from ``skimage.feature`` so that the same
code runs on the GPU, inside the tiled inference of any model; on the CPU the
Gaussian blurs go through scipy.ndimage, the faster there (:func:`_blur`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)  # px
PER_SCALE = ("gaussian", "gradient", "hessian_max", "hessian_min", "structure_max", "structure_min")


def standardisation(responses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per channel of ``(N, C)`` responses, the one rule every model that
    standardises the bank's responses uses: a constant channel gets std 1 (it stays constant, not NaN)."""
    std = responses.std(0)
    return responses.mean(0), torch.where(std > 1e-6, std, torch.ones_like(std))


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(4 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable blur of every channel of ``x`` (B, C, H, W), replicated borders.

    On the CPU (no gradient wanted) through scipy.ndimage, whose 1D correlations are several times
    faster there than torch's grouped convolutions (docs/benchmarks.md); the same sums up to float
    rounding. On the GPU, or where gradients flow, through torch."""
    if x.device.type == "cpu" and not (torch.is_grad_enabled() and x.requires_grad):
        k = kernel.numpy()
        out = ndimage.correlate1d(x.detach().contiguous().numpy(), k, axis=3, mode="nearest")
        return torch.from_numpy(ndimage.correlate1d(out, k, axis=2, mode="nearest", output=out))
    c, r = x.shape[1], kernel.numel() // 2
    k = kernel.to(x.dtype)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def smooth(image, sigma: float):
    """A 2D numpy image blurred by the bank's Gaussian of ``sigma`` px (the image itself for 0)."""
    if sigma <= 0:
        return image
    x = torch.from_numpy(np.require(image, np.float32, ["C", "W"]))[None, None]  # a read-only image copied
    return _blur(x, gaussian_kernel(sigma))[0, 0].numpy()


def _diff(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Central difference along H (axis 2) or W (axis 3), replicated borders."""
    pad = (1, 1, 0, 0) if axis == 3 else (0, 0, 1, 1)
    p = F.pad(x, pad, mode="replicate")
    n = x.shape[axis]
    return 0.5 * (p.narrow(axis, 2, n) - p.narrow(axis, 0, n))


def _eig2(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (larger, smaller) of the symmetric 2x2 matrices [[a, b], [b, c]]."""
    mean, root = 0.5 * (a + c), torch.sqrt(0.25 * (a - c) ** 2 + b**2)
    return mean + root, mean - root


class FilterBank(nn.Module):
    """``(B, 1, H, W)`` images -> ``(B, C, H, W)`` filter responses; see the module docstring."""

    def __init__(self, sigmas: tuple[float, ...] = SIGMAS):
        super().__init__()
        self.sigmas = tuple(float(s) for s in sigmas)
        self.factors = tuple(2 ** max(0, round(math.log2(s / 2))) if s > 2 else 1 for s in self.sigmas)
        for i, (s, f) in enumerate(zip(self.sigmas, self.factors)):
            self.register_buffer(f"k{i}", gaussian_kernel(s / f), persistent=False)
            self.register_buffer(f"k{i}_outer", gaussian_kernel(2 * s / f), persistent=False)

    @property
    def out_channels(self) -> int:
        return 1 + len(PER_SCALE) * len(self.sigmas)

    @property
    def names(self) -> list[str]:
        return ["intensity"] + [f"{f}_{s:g}" for s in self.sigmas for f in PER_SCALE]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        # Each response is written once, into its channels of the output (no concatenation of copies).
        out = x.new_empty(x.shape[0], self.out_channels, *x.shape[-2:])
        out[:, :1] = x
        n = len(PER_SCALE)
        for i, (s, f) in enumerate(zip(self.sigmas, self.factors)):
            level = x if f == 1 else F.avg_pool2d(x, f, ceil_mode=True, count_include_pad=False)
            channels = out[:, 1 + i * n:1 + (i + 1) * n]
            if f == 1:
                for k, response in enumerate(self._scale(level, i, s)):
                    channels[:, k:k + 1] = response
            else:
                channels[:] = F.interpolate(torch.cat(self._scale(level, i, s / f), 1), size=x.shape[-2:],
                                            mode="bilinear", align_corners=False)
        return out

    def _scale(self, x: torch.Tensor, i: int, s: float) -> list[torch.Tensor]:
        """The :data:`PER_SCALE` responses at scale ``s`` (px of ``x``), ``(B, 1, H, W)`` each."""
        g = _blur(x, getattr(self, f"k{i}"))
        gy, gx = _diff(g, 2), _diff(g, 3)
        gyy, gxx, gxy = _diff(gy, 2), _diff(gx, 3), _diff(gx, 2)
        h_max, h_min = _eig2(gyy, gxy, gxx)
        tensor = _blur(torch.cat([gy * gy, gx * gy, gx * gx], 1), getattr(self, f"k{i}_outer"))
        t_max, t_min = _eig2(tensor[:, 0:1], tensor[:, 1:2], tensor[:, 2:3])
        return [g, s * torch.sqrt(gx**2 + gy**2), s**2 * h_max, s**2 * h_min, s**2 * t_max, s**2 * t_min]
