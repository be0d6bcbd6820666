"""The projection head: an MLP between the encoder's embedding and the SSL loss.

The loss is computed on the projector's output and the projector is thrown
away after pretraining; only the encoder is kept (Chen et al. 2020 showed the
embedding before the head transfers better than the projection itself).
"""

from __future__ import annotations

from torch import nn

from ..errors import NanowireSSLError

PAPER_WIDTHS = (128, 64, 1024)
"""Widths of the projector in the reference notebooks of Lu et al. (2022)."""

DEFAULT_WIDTHS = (1024, 1024, 1024)
"""Our default: the shape of Barlow Twins' 8192-8192-8192 head at a CPU-friendly width."""


class Projector(nn.Sequential):
    """MLP ``Linear -> BatchNorm -> ReLU`` for every width but the last, then a plain ``Linear``.

    This is the layout of the original Barlow Twins head (hidden linear layers
    without bias, as batch norm removes it). The wide default matters for
    Barlow Twins, whose redundancy reduction works on the output features;
    :data:`PAPER_WIDTHS` reproduces the paper's smaller head (whose notebooks
    put batch norm after the ReLU and on the output as well).
    """

    def __init__(self, in_dim: int, dims: tuple[int, ...] = DEFAULT_WIDTHS):
        dims = tuple(dims)
        if in_dim < 1 or not dims or any(int(d) != d or d < 1 for d in dims):
            raise NanowireSSLError(f"projector needs a positive input size and positive widths, got {in_dim} -> {dims}")
        layers: list[nn.Module] = []
        widths = (in_dim, *dims)
        for d_in, d_out in zip(widths[:-2], widths[1:-1]):
            layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-2], widths[-1]))
        super().__init__(*layers)
        self.in_dim, self.out_dim = in_dim, dims[-1]
