"""Train the default encoder shipped in ``src/napari_nanowire_ssl/data``.

Builds the pretraining corpus (:func:`build_corpus`): every unlabelled real
image in ``../shared/data/real`` (EMPS particles, ISBI membranes, GaAs
nanowire arrays, DeepSEM nanomembranes, fibre and nanowire mats, chips; the
instrument banners cropped as ``manifest.csv`` / ``added_manifest.csv`` list),
random 2x / 4x shrunk crops of the large ones, and a minority of generator
images with widely varied parameters; then runs the ordinary
``nanowire-ssl pretrain`` command on it and stores the result in half
precision (the shipped file must stay under 25 MB). The corpus is written to
``--work`` only (the EMPS images must never be shipped). The model card
(``docs/default-encoder.md``) records the command line used. A CUDA GPU is
used when there is one (``--device auto``).

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
from napari_nanowire_ssl.ssl.corpus import scale_crops, varied_synthetic

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
SHIPPED = ROOT / "src" / "napari_nanowire_ssl" / "data" / "default_encoder.safetensors"
LARGE_FOLDERS = ("emps_particles/images", "isbi2012_em/images")  # folders without a manifest (no banners)
LARGE_SIDE = 640  # images with a shorter side of at least this also give shrunk crops


def real_images(real: Path = REAL, hold_out: tuple[str, ...] = ()):
    """(folder, name, image) of every unlabelled real image, banners cropped; ``hold_out`` folders skipped."""
    for manifest in ("manifest.csv", "added_manifest.csv"):
        with open(real / manifest) as f:
            for row in csv.DictReader(f):
                folder = row["file"].split("/")[0]
                if folder in hold_out:
                    continue
                data = read_image(real / row["file"]).data
                crop = int(row["crop_bottom_px"] or 0)
                yield folder, Path(row["file"]).stem, data[:-crop] if crop else data
    for sub in LARGE_FOLDERS:
        folder = sub.split("/")[0]
        if folder in hold_out:
            continue
        for path in sorted((real / sub).glob("*.png")):
            yield folder, path.stem, read_image(path).data


def build_corpus(work: Path, *, synthetic_fraction: float = 0.15, synthetic_size: int = 384, seed: int = 0,
                 hold_out: tuple[str, ...] = (), real: Path = REAL) -> dict:
    """Write the pretraining images as 8-bit PNGs into ``work/images``; returns pixel counts per source.

    Large images (short side >= :data:`LARGE_SIDE`: the SEM micrographs, not the ~512 px EMPS and ISBI
    images) also give 8 random crops shrunk 2x, 3x and 4x each, where they fit.
    Generator images make up ``synthetic_fraction`` of all pixels.
    """
    out = work / "images"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels: dict[str, int] = {}
    for folder, name, data in real_images(real, hold_out):
        image = normalize(data)
        large = min(image.shape) >= LARGE_SIDE
        pieces = [image] + (scale_crops(image, rng, factors=(2, 3, 4), per_factor=8) if large else [])
        for i, piece in enumerate(pieces):
            _save(piece, out / f"{folder}__{name}__{i}.png")
            key = folder if i == 0 else "shrunk crops"
            pixels[key] = pixels.get(key, 0) + piece.size
    real_pixels = sum(pixels.values())
    n_synth = round(synthetic_fraction / (1 - synthetic_fraction) * real_pixels / synthetic_size**2)
    for i, image in enumerate(varied_synthetic(n_synth, size=synthetic_size, seed=seed)):
        _save(image, out / f"synthetic__{i:04d}.png")
    pixels["synthetic"] = n_synth * synthetic_size**2
    return pixels


def _save(image: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/default-encoder"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--synthetic-fraction", type=float, default=0.15)
    parser.add_argument("--synthetic-size", type=int, default=384)
    parser.add_argument("--hold-out", nargs="*", default=[], metavar="FOLDER",
                        help="real folders left out of the corpus (to measure on them as unseen sets)")
    parser.add_argument("--init", default=None, help="continue from this encoder (default or a file)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--filter-weight", type=float, default=0.0, help="the dense filter-prediction term")
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--no-ship", action="store_true", help="do not overwrite the shipped file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    if not (args.work / "images").is_dir():
        pixels = build_corpus(args.work, synthetic_fraction=args.synthetic_fraction,
                              synthetic_size=args.synthetic_size, seed=args.seed, hold_out=tuple(args.hold_out))
        total = sum(pixels.values())
        for key, n in sorted(pixels.items(), key=lambda kv: -kv[1]):
            print(f"  {key}: {n / 1e6:.1f} Mpx ({100 * n / total:.1f} %)")
    print(f"pretraining images: {len(list((args.work / 'images').glob('*.png')))} files in {args.work / 'images'}")
    trained = args.work / "encoder.safetensors"
    command = ["pretrain", str(args.work / "images"), "--method", "barlow", "--backbone", args.backbone,
               "--image-size", str(args.image_size), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--out", str(trained), "--seed", str(args.seed),
               "--device", args.device] + (["--resume"] if args.resume else [])
    command += (["--init", args.init] if args.init else []) + (["--lr", str(args.lr)] if args.lr else [])
    # a continuation here is a long run, not an adaptation: one warm-up epoch, the encoder learning from the start
    command += ["--warmup-epochs", "1", "--frozen-encoder-steps", "0", "--batchnorm-statistics", "update"] \
        if args.init else []
    command += ["--steps-per-epoch", str(args.steps_per_epoch)] if args.steps_per_epoch else []
    command += ["--filter-weight", str(args.filter_weight)] if args.filter_weight else []
    print("nanowire-ssl " + " ".join(command))
    start = time.perf_counter()
    status = cli(command)
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if status == 0 and not args.no_ship:
        from napari_nanowire_ssl.models.modelfile import load_encoder, save_encoder

        encoder = load_encoder(trained)
        save_encoder(encoder, SHIPPED, training=encoder.training_info, dtype="float16")
        print(f"shipped {SHIPPED} ({SHIPPED.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
