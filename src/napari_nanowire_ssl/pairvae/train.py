"""Training a PairVAE in stages, as one generator loop for the CLI, the widget and the tests.

Stages (Lu & Jayaraman 2023 train the two VAEs first, then together):

1. ``features``: the frozen encoder's pooled features of every training image,
   computed once (for each of the 8 dihedral transforms with ``augment``);
   after that a step costs the small heads and decoders only, cheap on a CPU;
2. ``saxs``: the SAXS VAE alone, ``w_saxs_saxs MSE(SAXS->SAXS) + w_kl KL``;
3. ``sem``: the SEM VAE alone, ``w_sem_sem BCE(SEM->SEM) + w_kl KL``;
4. ``joint``: both, with the four reconstructions (SAXS->SAXS, SAXS->SEM,
   SEM->SEM, SEM->SAXS, each from a sample of its source's latent), both KL
   terms and ``w_similarity`` times the Barlow Twins loss between the two
   latent means (:func:`~napari_nanowire_ssl.ssl.losses.barlow_twins_loss`:
   matched pairs should agree dimension by dimension, dimensions should not
   be redundant).

Augmentation: rotating or flipping a sample rotates or flips its pattern
about q = 0 (:func:`.scattering.saxs_dihedral`), so the 8 transforms of the
square give 8 exact pairs per pair.

:meth:`PairVAETrainer.steps` yields a :class:`PairVAEEvent` per feature batch
and per optimisation step, and ends early (the model keeps its current
weights) when ``should_stop()`` becomes true or when the caller leaves the loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import NanowireSSLError
from ..fewshot.symmetry import dihedral
from ..models.device import select_device
from ..models.encoder import Encoder
from ..ssl.losses import barlow_twins_loss
from .model import MODALITIES, PairVAE, PairVAEConfig, feature_dim, frozen_features
from .scattering import saxs_dihedral

STAGES = ("features", "saxs", "sem", "joint")
FEATURE_BATCH = 64


@dataclass
class TrainConfig:
    """How long and how a PairVAE trains (stored in its model file)."""

    vae_epochs: int = 10  # epochs of each VAE alone
    joint_epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    augment: bool = True
    seed: int = 0

    def validate(self) -> None:
        if self.vae_epochs < 0 or self.joint_epochs < 0 or self.vae_epochs + self.joint_epochs < 1:
            raise NanowireSSLError("epochs must not be negative and at least one stage must train")
        if self.batch_size < 2:
            raise NanowireSSLError(f"batch size must be at least 2 (the similarity loss compares samples), "
                                   f"got {self.batch_size}")
        if not self.lr > 0:
            raise NanowireSSLError(f"learning rate must be positive, got {self.lr}")


@dataclass(frozen=True)
class PairVAEEvent:
    """Progress after one feature batch or one optimisation step."""

    stage: str  # one of STAGES
    step: int  # 0-based within the stage
    n_steps: int  # of this stage
    done: int  # units of work done so far, all stages
    total: int
    losses: dict  # unweighted loss terms and "total" (empty for the features stage)

    @property
    def fraction(self) -> float:
        return self.done / self.total


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), summed over latent dimensions, mean over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1).mean()


def saxs_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``sigmoid(logits)`` against [0, 1] intensities."""
    return F.mse_loss(torch.sigmoid(logits.float()), target)


def sem_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood per pixel, at the best circular shift of the target.

    ``BCE(z, t) = softplus(z) - t z`` per pixel; the sum of ``t z`` over all
    shifts of ``t`` is a cross-correlation (one FFT), so the minimum over all
    N^2 shifts costs little. The latent holds no position (pooled features,
    and SAXS has none to give), so the best-aligned likelihood asks the
    decoder for the right morphology at whatever position; a plain BCE would
    reward a blur. Mean over pixels and batch.
    """
    z = logits.float()
    correlation = torch.fft.irfft2(torch.fft.rfft2(target) * torch.conj(torch.fft.rfft2(z)), s=z.shape[-2:])
    per_shift = F.softplus(z).sum(dim=(-2, -1), keepdim=True) - correlation
    return per_shift.flatten(1).min(dim=1).values.mean() / z[0].numel()


class PairVAETrainer:
    """Trains a :class:`PairVAE` on (N, S, S) SAXS [0, 1] and SEM {0, 1} arrays; see the module docstring."""

    def __init__(self, encoder: Encoder, saxs: np.ndarray, sem: np.ndarray, config: PairVAEConfig | None = None,
                 train: TrainConfig | None = None, *, device: str | torch.device = "cpu"):
        self.config, self.train_config = config or PairVAEConfig(), train or TrainConfig()
        self.config.validate()
        self.train_config.validate()
        size = self.config.image_size
        saxs, sem = np.asarray(saxs, np.float32), np.asarray(sem, np.float32)
        if saxs.shape != sem.shape or saxs.ndim != 3 or saxs.shape[1:] != (size, size):
            raise NanowireSSLError(f"need (N, {size}, {size}) SAXS and SEM arrays of equal shape, "
                                   f"got {saxs.shape} and {sem.shape}")
        if len(saxs) < 2:
            raise NanowireSSLError(f"need at least 2 pairs to train, got {len(saxs)}")
        self.saxs, self.sem = saxs, sem
        self.encoder = encoder
        self.device = select_device(device)
        torch.manual_seed(self.train_config.seed)
        self.rng = np.random.default_rng(self.train_config.seed)
        self.vae = PairVAE(feature_dim(encoder), self.config).to(self.device)
        self.optimizer = torch.optim.Adam(self.vae.parameters(), lr=self.train_config.lr)
        self.features: dict[str, torch.Tensor] = {}  # modality -> (N, T, D)
        self.steps_done = 0
        self.last_losses: dict[str, float] = {}

    @property
    def transforms(self) -> int:
        return 8 if self.train_config.augment else 1

    def plan(self) -> list[tuple[str, int]]:
        """(stage, number of steps) in order."""
        t = self.train_config
        per_epoch = math.ceil(len(self.saxs) / t.batch_size)
        n_feature = 2 * self.transforms * math.ceil(len(self.saxs) / FEATURE_BATCH)
        return [("features", 0 if self.features else n_feature), ("saxs", t.vae_epochs * per_epoch),
                ("sem", t.vae_epochs * per_epoch), ("joint", t.joint_epochs * per_epoch)]

    def _transformed(self, modality: str, index: np.ndarray, transform: np.ndarray) -> np.ndarray:
        op = saxs_dihedral if modality == "saxs" else dihedral
        images = self.saxs if modality == "saxs" else self.sem
        return np.stack([op(images[i], int(t)) for i, t in zip(index, transform)])

    def _feature_batches(self) -> Iterator[None]:
        """Fill :attr:`features`, one yield per encoder batch; the heads' standardisation is set after."""
        chunks = {m: [] for m in MODALITIES}
        n = len(self.saxs)
        for m in MODALITIES:
            for t in range(self.transforms):
                for start in range(0, n, FEATURE_BATCH):
                    index = np.arange(start, min(n, start + FEATURE_BATCH))
                    images = self._transformed(m, index, np.full(len(index), t))
                    chunks[m].append((t, torch.from_numpy(frozen_features(self.encoder, images))))
                    yield
        for m in MODALITIES:
            per_t = [torch.cat([f for t, f in chunks[m] if t == k]) for k in range(self.transforms)]
            self.features[m] = torch.stack(per_t, dim=1).to(self.device)
            self.vae.heads[m].set_standardisation(self.features[m].flatten(0, 1))

    def _batch(self):
        b = min(self.train_config.batch_size, len(self.saxs))
        index = self.rng.choice(len(self.saxs), size=b, replace=False)
        transform = self.rng.integers(self.transforms, size=b)
        feats = {m: self.features[m][torch.from_numpy(index), torch.from_numpy(transform)] for m in MODALITIES}
        targets = {m: torch.from_numpy(self._transformed(m, index, transform)).to(self.device) for m in MODALITIES}
        return feats, targets

    def losses(self, stage: str, feats: dict, targets: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted total loss of ``stage`` and its unweighted terms."""
        w = self.config.weights
        recon = {"saxs": saxs_loss, "sem": sem_loss}
        modalities = (stage,) if stage in MODALITIES else MODALITIES
        latents = {m: self.vae.encode(m, feats[m]) for m in modalities}
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        for source in modalities:
            mu, logvar = latents[source]
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            for target in modalities:
                weight = getattr(w, f"{source}_{target}")
                terms[f"{source}_{target}"] = (weight, recon[target](self.vae.decode(target, z), targets[target]))
            terms[f"kl_{source}"] = (w.kl, kl_divergence(mu, logvar))
        if stage == "joint":
            terms["similarity"] = (w.similarity, barlow_twins_loss(latents["saxs"][0], latents["sem"][0]))
        total = sum(weight * value for weight, value in terms.values())
        values = {k: float(v.detach()) for k, (_, v) in terms.items()} | {"total": float(total.detach())}
        return total, values

    def steps(self, should_stop: Callable[[], bool] | None = None) -> Iterator[PairVAEEvent]:
        """Run the stages of :meth:`plan`, yielding an event per unit of work; see the module docstring."""
        plan = self.plan()
        total, done = sum(n for _, n in plan), 0
        for stage, n_steps in plan:
            work = self._feature_batches() if stage == "features" else (None for _ in range(n_steps))
            for step, _ in enumerate(work):
                if should_stop is not None and should_stop():
                    return
                losses = {} if stage == "features" else self.train_step(stage)
                done += 1
                yield PairVAEEvent(stage, step, n_steps, done, total, losses)

    def train_step(self, stage: str) -> dict[str, float]:
        """One optimisation step of ``stage`` ("saxs", "sem" or "joint"); returns the loss terms."""
        t0 = time.perf_counter()
        self.vae.train()
        feats, targets = self._batch()
        loss, values = self.losses(stage, feats, targets)
        if not torch.isfinite(loss):
            raise NanowireSSLError(f"training diverged in stage {stage}: loss is {loss.item()}; "
                                   "lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps_done += 1
        self.last_losses = values | {"seconds": time.perf_counter() - t0}
        return values

    def training_info(self, data: str) -> dict:
        """What goes into the model file's ``training`` entry."""
        return {**asdict(self.train_config), "data": data, "pairs": len(self.saxs), "steps": self.steps_done}
