"""PairVAE cross-reconstruction on held-out synthetic pairs, against two baselines, with CPU training time.

Writes synthetic pairs (``write_synthetic_pairs``) for training and, with
another seed, for testing; trains a PairVAE on the frozen default encoder;
reports per morphology the SAXS pixel MAE of SEM->SAXS and the S2 MAE of
SAXS->SEM for

- PairVAE;
- nearest neighbour: SAXS->SEM takes the SEM of the training pair whose SAXS
  pattern is closest (L2); SEM->SAXS takes the SAXS of the training pair whose
  SEM has the closest S2 curve (pixels would compare positions, which mean
  nothing here);
- mean: the mean training SAXS pattern; the mean training SEM image
  thresholded at the mean volume fraction (a binary image is needed for S2).

``--figure`` writes a montage (one held-out pair per morphology: true SEM,
true SAXS, SEM generated from the SAXS, SAXS generated from the SEM).

    .venv/bin/python benchmarks/bench_pairvae.py --figure docs/images/pairvae/montage.png
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_nanowire_ssl.models.default import load_default_encoder
from napari_nanowire_ssl.pairvae.data import load_pairs, write_synthetic_pairs
from napari_nanowire_ssl.pairvae.metrics import grouped_errors, two_point_correlation
from napari_nanowire_ssl.pairvae.model import PairVAEConfig, generate
from napari_nanowire_ssl.pairvae.train import PairVAETrainer, TrainConfig


def nearest_neighbour(train, test):
    """(SEM->SAXS, SAXS->SEM) predictions by nearest training pair (see the module docstring)."""
    flat = train.saxs.reshape(len(train), -1)
    by_saxs = [np.argmin(((flat - x.ravel()) ** 2).sum(1)) for x in test.saxs]
    train_s2 = np.stack([two_point_correlation(s) for s in train.sem])
    by_s2 = [np.argmin(((train_s2 - two_point_correlation(s)) ** 2).sum(1)) for s in test.sem]
    return train.saxs[by_s2], train.sem[by_saxs]


def mean_images(train, n):
    """(SEM->SAXS, SAXS->SEM) predictions of the mean baseline, repeated ``n`` times."""
    mean_sem = train.sem.mean(0)
    sem = mean_sem > np.quantile(mean_sem, 1 - train.sem.mean())
    return np.repeat(train.saxs.mean(0)[None], n, 0), np.repeat(sem[None], n, 0)


def table(results: dict[str, dict]) -> str:
    methods = list(results)
    head = ("| morphology | n | " + " | ".join(f"SAXS MAE {m}" for m in methods) + " | "
            + " | ".join(f"S2 MAE {m}" for m in methods) + " |")
    lines = [head, "|" + "---|" * (2 + 2 * len(methods))]
    for group, row in results[methods[0]].items():
        cells = [f"{results[m][group]['saxs_mae']:.4f}" for m in methods]
        cells += [f"{results[m][group]['s2_mae']:.4f}" for m in methods]
        lines.append(f"| {group} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def montage(test, saxs_pred, sem_pred, path: Path, scale: int = 2) -> None:
    from PIL import Image

    rows = []
    for group in sorted(set(test.groups)):
        i = test.groups.index(group)
        tiles = [test.sem[i], test.saxs[i], sem_pred[i].astype(np.float32), saxs_pred[i]]
        rows.append(np.concatenate([np.pad(t, 2, constant_values=1) for t in tiles], axis=1))
    image = (np.concatenate(rows, axis=0) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST).save(
        path, optimize=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=60, help="training pairs per morphology (default 60)")
    p.add_argument("--n-test", type=int, default=10, help="held-out pairs per morphology (default 10)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--vae-epochs", type=int, default=20)
    p.add_argument("--joint-epochs", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", type=Path, help="montage PNG to write")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_pairs(Path(tmp) / "train", args.n_train, size=args.size, seed=args.seed)
        write_synthetic_pairs(Path(tmp) / "test", args.n_test, size=args.size, seed=args.seed + 1000)
        train, test = load_pairs(Path(tmp) / "train", args.size), load_pairs(Path(tmp) / "test", args.size)
    encoder = load_default_encoder()
    trainer = PairVAETrainer(encoder, train.saxs, train.sem, PairVAEConfig(image_size=args.size),
                             TrainConfig(vae_epochs=args.vae_epochs, joint_epochs=args.joint_epochs, seed=args.seed))
    seconds = {}
    t0 = time.perf_counter()
    for event in trainer.steps():
        seconds[event.stage] = time.perf_counter() - t0
    features_s = seconds["features"]
    train_s = seconds["joint"] - features_s
    saxs_vae = generate(trainer.vae, encoder, test.sem, "sem")
    sem_vae = generate(trainer.vae, encoder, test.saxs, "saxs")
    predictions = {"PairVAE": (saxs_vae, sem_vae), "NN": nearest_neighbour(train, test),
                   "mean": mean_images(train, len(test))}
    results = {name: grouped_errors(saxs, test.saxs, sem, test.sem, test.groups)
               for name, (saxs, sem) in predictions.items()}
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}")
    print(f"{len(train)} training pairs, {len(test)} held-out pairs, {args.size} px, default encoder; "
          f"features {features_s:.1f} s (x8 dihedral transforms), training {trainer.steps_done} steps "
          f"in {train_s:.1f} s on the CPU (total {features_s + train_s:.1f} s)")
    print(table(results))
    if args.figure:
        montage(test, saxs_vae, sem_vae, args.figure)
        print(f"wrote {args.figure} ({args.figure.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
