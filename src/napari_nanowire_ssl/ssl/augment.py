"""Batched augmentation of grayscale TEM crops with per-sample random parameters.

Everything runs on the batch's device in a handful of batched tensor calls:
one ``grid_sample`` for crop, flips and quarter turns together (they are one
affine map per sample), elementwise intensity jitter, grouped convolutions
for a different Gaussian blur per sample, and noise. torchvision's v2
transforms would draw a single set of parameters for a whole batched tensor,
so they are not used. The recipe and the reasons for its ranges are in
docs/augmentations.md.

Per-sample parameters are drawn from a CPU ``torch.Generator`` (reproducible
from a seed on any device) and then moved to the device; the noise images are
drawn on the device itself from a generator seeded by the CPU one, so no
image-sized tensor crosses the bus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import NanowireSSLError

# Quarter turns as 2x2 maps from output to source coordinates (x right, y down,
# both in [-1, 1]); power k reproduces torch.rot90(image, k, dims=(-2, -1)).
_QUARTER_TURNS = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, -1.0], [1.0, 0.0]],
                               [[-1.0, 0.0], [0.0, -1.0]], [[0.0, 1.0], [-1.0, 0.0]]])

_RANGES = ("scale", "ratio", "brightness", "contrast", "gamma", "blur_sigma", "noise_std", "shot_dose")
_PROBABILITIES = ("p_hflip", "p_vflip", "p_jitter", "p_blur", "p_noise", "p_shot")


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges (lo, hi) and probabilities of each augmentation step; see docs/augmentations.md.

    ``scale`` is the crop's area as a fraction of the source crop's area,
    ``ratio`` its width/height (a side longer than the source's is cut to it);
    ``quarter_turns`` the choice of k for ``torch.rot90``; ``contrast``, ``gamma``, ``ratio`` and
    ``shot_dose`` are drawn log-uniformly (multiplicative quantities),
    the rest uniformly. ``blur_sigma`` is in output pixels, ``noise_std`` in
    intensity units of [0, 1], ``shot_dose`` in counts per pixel at intensity 1.
    """

    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    p_hflip: float = 0.5
    p_vflip: float = 0.5
    quarter_turns: tuple[int, ...] = (0, 1, 2, 3)
    p_jitter: float = 0.8
    brightness: tuple[float, float] = (-0.15, 0.15)
    contrast: tuple[float, float] = (0.6, 1.6)
    gamma: tuple[float, float] = (0.7, 1.4)
    p_blur: float = 0.4
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    p_noise: float = 0.4
    noise_std: tuple[float, float] = (0.005, 0.05)
    p_shot: float = 0.3
    shot_dose: tuple[float, float] = (50.0, 1000.0)

    def __post_init__(self):
        for name in _RANGES:  # lists come back from JSON; store tuples
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2 or value[0] > value[1]:
                raise NanowireSSLError(f"augmentation {name} must be a range (lo, hi) with lo <= hi, got {value}")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if not self.quarter_turns or any(k not in (0, 1, 2, 3) for k in self.quarter_turns):
            raise NanowireSSLError(f"augmentation quarter_turns must be a non-empty choice of 0..3, "
                                   f"got {self.quarter_turns}")
        object.__setattr__(self, "quarter_turns", tuple(int(k) for k in self.quarter_turns))
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise NanowireSSLError(f"augmentation {name} must be a probability in [0, 1], got {value}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise NanowireSSLError(f"augmentation scale must lie in (0, 1], got {self.scale}")
        for name in ("ratio", "contrast", "gamma", "blur_sigma", "shot_dose"):
            if getattr(self, name)[0] <= 0:
                raise NanowireSSLError(f"augmentation {name} must be positive, got {getattr(self, name)}")
        if self.noise_std[0] < 0:
            raise NanowireSSLError(f"augmentation noise_std must be non-negative, got {self.noise_std}")

    @classmethod
    def identity(cls) -> AugmentConfig:
        """No randomness at all: the whole source crop, resized; for tests and previews."""
        return cls(scale=(1.0, 1.0), ratio=(1.0, 1.0), p_hflip=0.0, p_vflip=0.0, quarter_turns=(0,),
                   p_jitter=0.0, p_blur=0.0, p_noise=0.0, p_shot=0.0)


def _as_float_batch(batch: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) float32 in [0, 1] from uint8 [0, 255] or float [0, 1], (B, H, W) accepted."""
    if batch.ndim == 3:
        batch = batch[:, None]
    if batch.ndim != 4 or batch.shape[1] != 1 or batch.shape[0] == 0:
        raise NanowireSSLError(f"augmentation needs a (B, 1, H, W) or (B, H, W) batch of grayscale crops, "
                               f"got shape {tuple(batch.shape)}")
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    if batch.is_floating_point():
        return batch.float()
    raise NanowireSSLError(f"augmentation needs uint8 or float crops, got {batch.dtype}")


def _lerp(u: torch.Tensor, lo_hi: tuple[float, float]) -> torch.Tensor:
    return lo_hi[0] + u * (lo_hi[1] - lo_hi[0])


def _log_lerp(u: torch.Tensor, lo_hi: tuple[float, float]) -> torch.Tensor:
    return torch.exp(_lerp(u, (math.log(lo_hi[0]), math.log(lo_hi[1]))))


def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """The generator itself if it lives on ``device``, else a device generator seeded from it."""
    if generator.device == device:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def _crop_thetas(u: torch.Tensor, config: AugmentConfig, height: int, width: int) -> torch.Tensor:
    """(B, 2, 3) affine maps from output to source coordinates: crop, then flips and quarter turns."""
    area = _lerp(u[:, 0], config.scale) * (height * width)
    ratio = _log_lerp(u[:, 1], config.ratio)
    w = torch.sqrt(area * ratio).clamp(max=width)
    h = torch.sqrt(area / ratio).clamp(max=height)
    cx = (u[:, 2] * (width - w) + w / 2) / width * 2 - 1
    cy = (u[:, 3] * (height - h) + h / 2) / height * 2 - 1
    flips = torch.stack([torch.where(u[:, 4] < config.p_hflip, -1.0, 1.0),
                         torch.where(u[:, 5] < config.p_vflip, -1.0, 1.0)], dim=1)
    turns = torch.tensor(config.quarter_turns)[(u[:, 6] * len(config.quarter_turns)).long()
                                              .clamp(max=len(config.quarter_turns) - 1)]
    linear = _QUARTER_TURNS[turns] * flips[:, None, :]  # turn applied after the flip of the output
    linear = linear * torch.stack([w / width, h / height], dim=1)[:, :, None]  # crop size scales source axes
    return torch.cat([linear, torch.stack([cx, cy], dim=1)[:, :, None]], dim=2)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur sample i with its own ``sigma[i]``: two grouped 1-d convolutions, reflected borders."""
    b, _, h, w = x.shape
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-t**2 / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    y = F.pad(x.reshape(1, b, h, w), (radius, radius, radius, radius), mode="reflect")
    y = y.contiguous(memory_format=torch.channels_last)  # much faster depthwise convolution on CPU
    y = F.conv2d(y, kernel.view(b, 1, 1, -1), groups=b)
    y = F.conv2d(y, kernel.view(b, 1, -1, 1), groups=b)
    return y.reshape(b, 1, h, w)


def augment_batch(batch: torch.Tensor, config: AugmentConfig, out_size: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One random view of each source crop: (B, 1, out_size, out_size) float32 in [0, 1] on the batch's device.

    ``batch`` is (B, 1, H, W) or (B, H, W), uint8 in [0, 255] or float in [0, 1].
    Every sample gets its own crop, flips, quarter turn, jitter, blur and noise,
    drawn from ``generator`` (a CPU generator; torch's global RNG seeds a fresh one if None).
    """
    if isinstance(out_size, bool) or not isinstance(out_size, int) or out_size < 1:
        raise NanowireSSLError(f"augmentation output size must be a positive integer, got {out_size!r}")
    x = _as_float_batch(batch)
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
    b, _, height, width = x.shape
    device = x.device
    u = torch.rand(b, 17, generator=generator)  # column j: the uniform draw of parameter j below

    theta = _crop_thetas(u, config, height, width).to(device)
    grid = F.affine_grid(theta, [b, 1, out_size, out_size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # each step below touches only the samples it was drawn for (indices known on the CPU: no device sync)
    on = u[:, 7] < config.p_jitter
    if on.any():
        idx, n = on.nonzero().flatten().to(device), int(on.sum())
        shift = _lerp(u[on, 8], config.brightness).to(device).view(n, 1, 1, 1)
        contrast = _log_lerp(u[on, 9], config.contrast).to(device).view(n, 1, 1, 1)
        gamma = _log_lerp(u[on, 10], config.gamma).to(device).view(n, 1, 1, 1)
        xs = x[idx]
        mean = xs.mean(dim=(2, 3), keepdim=True)
        x[idx] = ((xs - mean) * contrast + mean + shift).clamp_(0.0, 1.0).pow_(gamma)

    on = u[:, 11] < config.p_blur
    if on.any():
        idx = on.nonzero().flatten().to(device)
        sigma = _lerp(u[on, 12], config.blur_sigma).to(device)
        x[idx] = _gaussian_blur(x[idx], sigma, radius=min(math.ceil(3 * config.blur_sigma[1]), out_size - 1))

    shot_on, noise_on = u[:, 15] < config.p_shot, u[:, 13] < config.p_noise
    if shot_on.any() or noise_on.any():
        noise_generator = _device_generator(generator, device)
    if shot_on.any():  # Poisson counting noise of the electron dose, in its Gaussian approximation
        idx, n = shot_on.nonzero().flatten().to(device), int(shot_on.sum())
        dose = _log_lerp(u[shot_on, 16], config.shot_dose).to(device).view(n, 1, 1, 1)
        xs = x[idx]
        noise = torch.randn(xs.shape, generator=noise_generator, device=device)
        x[idx] = xs + torch.sqrt(xs.clamp(min=0.0) / dose) * noise
    if noise_on.any():  # detector read-out noise
        idx, n = noise_on.nonzero().flatten().to(device), int(noise_on.sum())
        std = _lerp(u[noise_on, 14], config.noise_std).to(device).view(n, 1, 1, 1)
        x[idx] += std * torch.randn((n, *x.shape[1:]), generator=noise_generator, device=device)
    return x.clamp_(0.0, 1.0)


def two_views(batch: torch.Tensor, config: AugmentConfig, out_size: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent augmentations of the same source crops, made in one batched pass."""
    x = _as_float_batch(batch)
    views = augment_batch(torch.cat([x, x]), config, out_size, generator)
    return views[: x.shape[0]], views[x.shape[0]:]

