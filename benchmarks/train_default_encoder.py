"""Train the default encoder shipped in ``src/napari_nanowire_ssl/data``.

Builds the pretraining set: every real image in ``../shared/data/real`` (with
the instrument banners cropped as listed in its manifest) and synthetic
nanowire images of the four morphologies, then runs the ordinary
``nanowire-ssl pretrain`` command on it and stores the result in half
precision (the shipped file must stay under 25 MB). The model card
(``docs/default-encoder.md``) records the command line used.

    python benchmarks/train_default_encoder.py --work /tmp/default-encoder --epochs 30
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from napari_nanowire_ssl.cli import main as cli
from napari_nanowire_ssl.io import normalize, read_image
from napari_nanowire_ssl.synth import generate_dataset

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
SHIPPED = ROOT / "src" / "napari_nanowire_ssl" / "data" / "default_encoder.safetensors"


def build_dataset(work: Path, synthetic_per_class: int, synthetic_size: int, seed: int) -> dict:
    """Write the pretraining images as 8-bit PNGs into ``work/images``; returns counts."""
    out = work / "images"
    out.mkdir(parents=True, exist_ok=True)
    counts = {"real_sem": 0, "real_isbi": 0, "synthetic": 0}
    with open(REAL / "manifest.csv") as f:
        for row in csv.DictReader(f):
            data = read_image(REAL / row["file"]).data
            crop = int(row["crop_bottom_px"] or 0)
            if crop:
                data = data[:-crop]
            _save(normalize(data), out / f"real_{Path(row['file']).stem}.png")
            counts["real_sem"] += 1
    for path in sorted((REAL / "isbi2012_em" / "images").glob("*.png")):
        _save(normalize(read_image(path).data), out / f"isbi_{path.stem}.png")
        counts["real_isbi"] += 1
    for sample_id, sample in generate_dataset(synthetic_per_class, size=synthetic_size, seed=seed):
        _save(sample.image, out / f"synth_{sample_id}.png")
        counts["synthetic"] += 1
    return counts


def _save(image: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/default-encoder"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--synthetic-per-class", type=int, default=60)
    parser.add_argument("--synthetic-size", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    counts = build_dataset(args.work, args.synthetic_per_class, args.synthetic_size, args.seed)
    print("pretraining images:", counts)
    trained = args.work / "encoder.safetensors"
    command = ["pretrain", str(args.work / "images"), "--method", "barlow", "--backbone", args.backbone,
               "--image-size", str(args.image_size), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--out", str(trained), "--seed", str(args.seed),
               "--device", args.device] + (["--resume"] if args.resume else [])
    print("nanowire-ssl " + " ".join(command))
    start = time.perf_counter()
    status = cli(command)
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if status == 0:
        from napari_nanowire_ssl.models.modelfile import load_encoder, save_encoder

        encoder = load_encoder(trained)
        save_encoder(encoder, SHIPPED, training=encoder.training_info, dtype="float16")
        print(f"shipped {SHIPPED} ({SHIPPED.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
