"""The self-supervised pretraining loop (Barlow Twins or SimCLR).

One loop serves the CLI, the napari widget and the tests: :class:`Pretrainer`
yields a :class:`PretrainEvent` after every step from :meth:`Pretrainer.steps`;
the caller stops by leaving the loop (the widget's Stop, Ctrl-C in the CLI)
and calls :meth:`Pretrainer.finish`, which writes a checkpoint and a usable
encoder file either way.

Data: the images live in memory as uint8 tensors on the training device. Each
step draws ``batch_size`` square windows (side ``2 * image_size``) at random
positions, an image being chosen in proportion to its area, so a large
micrograph gives many different crops per epoch. The batched, per-sample
augmentation (:mod:`.augment`) then cuts two random resized views out of each
window. An epoch is as many windows as tile the images without overlap.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
DistributedDataParallel (gloo on CPU, NCCL on CUDA), each rank draws its crops
from its own shard of the images, and only rank 0 writes files. Gradients are
averaged, so the parameters stay identical on every rank; BatchNorm running
statistics come from each rank's local batch (rank 0's are written), and the
SSL losses see the local batch, as in most Barlow Twins and SimCLR code.

Adaptation (the paper's method applied to the user's own images): given an
``init`` encoder, training continues from a copy of its weights, with its
normalisation and nominal input size, instead of random weights; the
projector starts afresh (model files keep the encoder only), so it learns alone
for the first steps (``frozen_encoder_steps``). The written file records the
encoder it was adapted from (``training.adapted_from``).
:func:`adaptation_config` holds the settings the CLI and the widget use for it:
the init's own recipe, a lower learning rate, a fixed number of steps.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..errors import NanowireSSLError
from ..io.normalize import normalize
from ..models.device import autocast_context, select_device
from ..models.encoder import Encoder
from ..models.filters import FilterBank
from ..models.modelfile import encoder_identity, save_encoder
from .augment import AugmentConfig, two_views
from .losses import barlow_twins_loss, filter_prediction_loss, nt_xent_loss
from .projector import Projector

METHODS = ("barlow", "simclr")
OPTIMIZERS = ("adamw", "lars")
ADAPT_STEPS = 200  # default length of an adaptation (a few minutes on a laptop CPU, batch 32)
ADAPT_LR = 2e-4  # AdamW rate when continuing from trained weights: 5x below the from-scratch 1e-3
ADAPT_BATCH = 32
ADAPT_FROZEN_STEPS = 20  # first steps of an adaptation (at most half): the new projector learns before the encoder moves
# What an adaptation takes over from the recipe that trained its init (``training_info["config"]``):
RECIPE_FIELDS = ("method", "image_size", "projector_dims", "barlow_lambda", "temperature", "filter_weight", "augment")


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (stored in checkpoints and model files)."""

    method: str = "barlow"
    backbone: str = "resnet18"
    image_size: int = 128
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    projector_dims: tuple[int, ...] = (1024, 1024, 1024)
    barlow_lambda: float = 5e-3
    temperature: float = 0.1
    seed: int = 0
    filter_weight: float = 0.0  # weight of the dense filter-prediction term (0: the SSL loss alone)
    frozen_encoder_steps: int = 0  # the first steps train the projector (and filter heads) only
    keep_batchnorm_statistics: bool = False  # the encoder's BatchNorm layers normalise with the running statistics
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    steps_per_epoch: int | None = None  # None: as many as windows tile the images (see the module docstring)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise NanowireSSLError(f"unknown method {self.method!r}; choose {' or '.join(METHODS)}")
        if self.optimizer not in OPTIMIZERS:
            raise NanowireSSLError(f"unknown optimizer {self.optimizer!r}; choose {' or '.join(OPTIMIZERS)}")
        if self.image_size < 32:
            raise NanowireSSLError(f"image size must be at least 32 px, got {self.image_size}")
        if self.batch_size < 2:
            raise NanowireSSLError(f"batch size must be at least 2 (the losses compare samples), got {self.batch_size}")
        if self.epochs < 1:
            raise NanowireSSLError(f"epochs must be at least 1, got {self.epochs}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise NanowireSSLError(f"steps per epoch must be at least 1, got {self.steps_per_epoch}")
        if not self.filter_weight >= 0:
            raise NanowireSSLError(f"filter-prediction weight must be at least 0, got {self.filter_weight}")
        if self.frozen_encoder_steps < 0:
            raise NanowireSSLError(f"frozen-encoder steps must be at least 0, got {self.frozen_encoder_steps}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["projector_dims"] = list(self.projector_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        d = dict(d)
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        d["projector_dims"] = tuple(d["projector_dims"])
        return cls(**d)


@dataclass(frozen=True)
class PretrainEvent:
    """Progress after one optimisation step."""

    epoch: int  # 0-based
    epochs: int
    step: int  # 0-based within the epoch
    steps_per_epoch: int
    loss: float
    images_per_s: float
    lr: float

    @property
    def fraction(self) -> float:
        return (self.epoch * self.steps_per_epoch + self.step + 1) / (self.epochs * self.steps_per_epoch)


class SSLModel(nn.Module):
    """Encoder followed by the projector: what the SSL loss sees; with ``filter_heads`` (one 1x1
    convolution per encoder stage) also each stage's prediction of the views' filter responses."""

    def __init__(self, encoder: Encoder, projector: Projector, filter_heads: nn.ModuleList | None = None):
        super().__init__()
        self.encoder, self.projector, self.filter_heads = encoder, projector, filter_heads

    def forward(self, x: torch.Tensor, frozen_encoder: bool = False,
                keep_batchnorm_statistics: bool = False) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``frozen_encoder``: no gradient reaches the encoder; it and ``keep_batchnorm_statistics`` run
        the encoder in eval mode, so its BatchNorm statistics stay as they are."""
        if frozen_encoder or keep_batchnorm_statistics:
            self.encoder.eval()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_encoder):
            maps = self.encoder.forward_features(x)
        z = self.projector(maps[-1].mean(dim=(2, 3)))  # the projection of Encoder.embed
        if self.filter_heads is None:
            return z, None
        return z, [head(m) for head, m in zip(self.filter_heads, maps)]


FILTER_SIGMAS = (1.0, 2.0, 4.0, 8.0)  # px of the views: the filter-prediction targets' scales


def filter_heads(encoder: Encoder, bank: FilterBank) -> nn.ModuleList:
    """One 1x1 convolution per encoder stage to the ``bank``'s channels (dropped after pretraining)."""
    return nn.ModuleList(nn.Conv2d(c, bank.out_channels, 1) for c in encoder.feature_channels)


class CropPool:
    """Images as uint8 tensors on the device; draws random square windows."""

    def __init__(self, images: list[np.ndarray], window: int, device: torch.device):
        if not images:
            raise NanowireSSLError("no images to pretrain on")
        self.window = window
        self.images = [self._to_uint8(img, window, device) for img in images]
        areas = np.array([t.shape[-2] * t.shape[-1] for t in self.images], dtype=np.float64)
        self.weights = torch.from_numpy(areas / areas.sum())
        self.n_windows = count_windows([t.shape for t in self.images], window)

    @staticmethod
    def _to_uint8(image: np.ndarray, window: int, device) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(normalize(image) * 255).round().astype(np.uint8))
        h, w = t.shape
        if min(h, w) < window:  # small images are upscaled so that one window fits
            scale = window / min(h, w)
            size = (max(window, math.ceil(h * scale)), max(window, math.ceil(w * scale)))
            t = nn.functional.interpolate(t[None, None].float(), size=size, mode="bilinear",
                                          align_corners=False)[0, 0].round().clamp(0, 255).to(torch.uint8)
        return t.to(device)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 1, window, window) uint8 windows at random positions."""
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        u = torch.rand(n, 2, generator=generator)
        crops = []
        for i, (fy, fx) in zip(idx.tolist(), u.tolist()):
            img = self.images[i]
            y = int(fy * (img.shape[0] - self.window + 1))
            x = int(fx * (img.shape[1] - self.window + 1))
            crops.append(img[y:y + self.window, x:x + self.window])
        return torch.stack(crops)[:, None]


def count_windows(shapes, window: int) -> int:
    """Windows that tile images of these shapes without overlap (at least one each)."""
    return int(sum(max(1, (h * w) // window**2) for h, w in shapes))


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017).

    Biases and batch-norm parameters (1-d tensors) get neither weight decay nor
    the trust ratio, as in the Barlow Twins and SimCLR recipes.
    """

    def __init__(self, params, lr: float, weight_decay: float = 1e-6, momentum: float = 0.9, eta: float = 1e-3):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "eta": eta})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where((p_norm > 0) & (g_norm > 0), group["eta"] * p_norm / g_norm,
                                        torch.ones_like(p_norm))
                    grad = grad.mul(trust)
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])


def distributed_context() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not distributed."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def adaptation_config(init: Encoder, *, steps: int = ADAPT_STEPS, batch_size: int = ADAPT_BATCH,
                      **overrides) -> PretrainConfig:
    """Settings for continuing ``init`` for exactly ``steps`` steps (``overrides`` win).

    The init's own recipe (:data:`RECIPE_FIELDS`: loss, view size, projector,
    filter-prediction term, augmentations) where its file records one, so
    adaptation keeps optimising what the encoder was trained for. One epoch of
    ``steps`` steps whatever the images' size, so the learning rate decays to
    zero at the end; the projector starts from random weights, so for the first
    :data:`ADAPT_FROZEN_STEPS` steps (at most half) only it and the filter heads
    learn, and its first, random gradients never reach the encoder. The init's
    BatchNorm statistics are kept: those of a few minutes of augmented views
    would replace what the features were learnt with (what an adaptation with
    learning rate 0 would otherwise change).
    """
    if steps < 1:
        raise NanowireSSLError(f"adaptation needs at least 1 step, got {steps}")
    recipe = (init.training_info or {}).get("config")
    base = PretrainConfig.from_dict(recipe) if recipe else PretrainConfig()
    settings = {**{k: getattr(base, k) for k in RECIPE_FIELDS}, "backbone": init.backbone,
                "batch_size": batch_size, "lr": ADAPT_LR, "epochs": 1, "steps_per_epoch": steps,
                "warmup_epochs": 0.1, "frozen_encoder_steps": min(ADAPT_FROZEN_STEPS, steps // 2),
                "keep_batchnorm_statistics": True, **overrides}
    return PretrainConfig(**settings)


def describe_init(encoder: Encoder, source: str, content_hash: str | None = None) -> dict:
    """What ``training.adapted_from`` records: the source, the weights' hash (as heads record it),
    the model file's content hash when there is one, and how the init was trained."""
    return {"source": source, "encoder_hash": encoder_identity(encoder), "content_hash": content_hash,
            "method": encoder.training_info.get("method", "unknown")}


class Pretrainer:
    """Holds the model, optimiser and data of one run; see the module docstring.

    ``init``: continue from this encoder's weights (a copy; ``init`` itself is
    not changed), ``init_source`` names it in the written file.
    """

    def __init__(self, images: list[np.ndarray], config: PretrainConfig, *, device="auto",
                 checkpoint: str | Path | None = None, init: Encoder | None = None, init_source: str = "",
                 init_content_hash: str | None = None):
        config.validate()
        self.config = config
        self.rank, self.world_size = distributed_context()
        self.device = select_device(device)
        if self.world_size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        self.checkpoint = Path(checkpoint) if checkpoint else None
        torch.manual_seed(config.seed)  # same initial weights on every rank
        self.adapted_from = None
        if init is None:
            encoder = Encoder(config.backbone, input_size=config.image_size)
        else:
            if init.backbone != config.backbone:
                raise NanowireSSLError(f"the initial encoder is a {init.backbone}, not a {config.backbone}")
            # requires_grad: a decoder or pixel model trained on ``init`` froze its parameters
            encoder = copy.deepcopy(init).cpu().float().train().requires_grad_(True)
            self.adapted_from = describe_init(init, init_source or "encoder", init_content_hash)
        projector = Projector(encoder.embedding_dim, config.projector_dims)
        self.filter_bank = FilterBank(FILTER_SIGMAS).to(self.device) if config.filter_weight > 0 else None
        heads = filter_heads(encoder, self.filter_bank) if self.filter_bank is not None else None
        self.model = SSLModel(encoder, projector, heads).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        window = 2 * config.image_size
        self.pool = CropPool(images[self.rank::self.world_size] or images, window, self.device)
        # Every rank must run the same number of steps: count over all images.
        total_windows = count_windows([np.shape(img)[-2:] for img in images], window)
        self.steps_per_epoch = config.steps_per_epoch or max(1, total_windows // (config.batch_size * self.world_size))
        self.generator = torch.Generator().manual_seed(config.seed * 1009 + self.rank)
        self.net = self._wrap_distributed(self.model)
        self.optimizer = self._make_optimizer()
        total = config.epochs * self.steps_per_epoch
        warmup = min(total - 1, round(config.warmup_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: _warmup_cosine(s, warmup, total))
        self.epoch = 0
        self.step_in_epoch = 0
        self.losses: list[float] = []

    def _wrap_distributed(self, model: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return model
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        ids = [self.device.index] if self.device.type == "cuda" else None
        # The frozen-encoder steps leave the encoder's parameters without gradients.
        return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                   find_unused_parameters=self.config.frozen_encoder_steps > 0)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "lars":
            return LARS(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    @property
    def encoder(self) -> Encoder:
        return self.model.encoder

    @property
    def steps_done(self) -> int:
        """Optimisation steps so far, over all epochs (a resumed run included)."""
        return self.epoch * self.steps_per_epoch + self.step_in_epoch

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if self.config.method == "barlow":
            return barlow_twins_loss(z1, z2, lambd=self.config.barlow_lambda)
        return nt_xent_loss(z1, z2, temperature=self.config.temperature)

    def train_step(self) -> float:
        """One optimisation step on a fresh batch; returns the loss."""
        c = self.config
        windows = self.pool.sample(c.batch_size, self.generator)
        v1, v2 = two_views(windows, c.augment, c.image_size, self.generator)
        if self.device.type == "cuda":
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        self.net.train()
        views = torch.cat([v1, v2])
        frozen = self.steps_done < c.frozen_encoder_steps
        with autocast_context(self.device):
            z, predictions = self.net(views, frozen, c.keep_batchnorm_statistics)
        z1, z2 = z.chunk(2)
        loss = self.loss(z1, z2)
        if self.filter_bank is not None:
            with torch.no_grad():
                targets = self.filter_bank(views.float())
            loss = loss + c.filter_weight * filter_prediction_loss(predictions, targets)
        if not torch.isfinite(loss):
            raise NanowireSSLError(f"pretraining diverged at epoch {self.epoch + 1}: loss is {loss.item()}; "
                                   "lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def steps(self):
        """Generator of :class:`PretrainEvent`, one per step, until the last epoch ends.

        Checkpoints at the end of every epoch. Leaving the loop early is safe;
        call :meth:`finish` afterwards.
        """
        c = self.config
        while self.epoch < c.epochs:
            while self.step_in_epoch < self.steps_per_epoch:
                t0 = time.perf_counter()
                loss = self.train_step()
                elapsed = time.perf_counter() - t0
                self.losses.append(loss)
                event = PretrainEvent(self.epoch, c.epochs, self.step_in_epoch, self.steps_per_epoch, loss,
                                      c.batch_size * self.world_size / max(elapsed, 1e-9),
                                      self.optimizer.param_groups[0]["lr"])
                self.step_in_epoch += 1
                yield event
            self.epoch += 1
            self.step_in_epoch = 0
            self.save_checkpoint()

    def state_dict(self) -> dict:
        return {
            "format": "napari-nanowire-ssl/pretrain-checkpoint",
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "encoder_config": self.encoder.config,
            "adapted_from": self.adapted_from,
            "generator": self.generator.get_state(),
            "losses": torch.tensor(self.losses),
        }

    def save_checkpoint(self) -> None:
        """Write the resumable state (rank 0 only), atomically."""
        if self.checkpoint is None or self.rank != 0:
            return
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, self.checkpoint)

    def resume(self) -> None:
        """Continue from :attr:`checkpoint` (written by an earlier run with the same config)."""
        if self.checkpoint is None or not self.checkpoint.exists():
            raise NanowireSSLError(f"{self.checkpoint}: no checkpoint to resume from")
        try:
            state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise NanowireSSLError(f"{self.checkpoint}: not a readable pretraining checkpoint ({exc})") from None
        if state.get("format") != "napari-nanowire-ssl/pretrain-checkpoint":
            raise NanowireSSLError(f"{self.checkpoint}: not a napari-nanowire-ssl pretraining checkpoint")
        saved = PretrainConfig.from_dict(state["config"])
        if (saved.method, saved.backbone, saved.image_size) != (self.config.method, self.config.backbone,
                                                                 self.config.image_size):
            raise NanowireSSLError(
                f"{self.checkpoint}: was trained as {saved.method}/{saved.backbone}/{saved.image_size}px, "
                f"not {self.config.method}/{self.config.backbone}/{self.config.image_size}px"
            )
        self.model.load_state_dict(state["model"])
        encoder_config = state.get("encoder_config") or {}  # normalisation of an adapted encoder
        self.encoder.mean = float(encoder_config.get("mean", self.encoder.mean))
        self.encoder.std = float(encoder_config.get("std", self.encoder.std))
        self.encoder.input_size = int(encoder_config.get("input_size", self.encoder.input_size))
        self.adapted_from = state.get("adapted_from", self.adapted_from)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.generator.set_state(state["generator"])
        self.losses = state["losses"].tolist()

    def finish(self, out: str | Path, *, data_description: str = "") -> Path | None:
        """Checkpoint and write the encoder model file (rank 0); returns its path."""
        self.save_checkpoint()
        if self.rank != 0:
            return None
        encoder = self.encoder
        encoder.training_info = {
            "method": self.config.method,
            "data": data_description,
            "epochs_completed": self.epoch + self.step_in_epoch / self.steps_per_epoch,
            "steps": len(self.losses),
            "final_loss": self.losses[-1] if self.losses else None,
            "config": self.config.to_dict(),
            "package_version": __version__,
        }
        if self.adapted_from is not None:
            encoder.training_info["adapted_from"] = self.adapted_from
        save_encoder(encoder.cpu() if self.device.type != "cpu" else encoder, out, training=encoder.training_info)
        encoder.to(self.device)
        return Path(out)


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
