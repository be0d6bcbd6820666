"""``nanowire-ssl pairvae``: cross-reconstruct SAXS patterns and SEM images (PairVAE).

``pairvae synth OUT_DIR --n N`` writes N synthetic pairs per morphology in the
pairs layout; ``pairvae train PAIRS_DIR --out FILE`` trains a PairVAE on a
pairs folder (``PAIRS_DIR/saxs/<stem>.*`` + ``PAIRS_DIR/sem/<stem>.*``),
holding out a fraction of the pairs to report the errors (per morphology when
``PAIRS_DIR/labels.csv`` names them); ``pairvae generate --model FILE --from
saxs|sem INPUTS... --out DIR`` writes the other modality of each input as
``DIR/<stem>.tif`` (SEM: uint8, 1 = block A; SAXS: float32 log intensities in
[0, 1]). See ``docs/pairvae.md``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import NanowireSSLError
from .options import add_device, add_encoder, add_seed, load_encoder


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pairvae",
        help="PairVAE: generate SEM morphologies from SAXS patterns and back",
        description="Train a PairVAE (Lu & Jayaraman, JACS Au 2023) on paired SAXS patterns and SEM images, "
        "generate one from the other, or write synthetic block-copolymer pairs. See docs/pairvae.md.",
    )
    sub = p.add_subparsers(dest="pairvae_command", metavar="ACTION", required=True)

    s = sub.add_parser("synth", help="write synthetic SAXS/SEM pairs of block-copolymer morphologies",
                       description="Write N pairs per morphology (lamellae, cylinders end-on and side-on, spheres, "
                       "disordered): OUT_DIR/saxs/<stem>.tif (float32 detector counts), OUT_DIR/sem/<stem>.png "
                       "(8-bit SEM rendering) and OUT_DIR/labels.csv (stem, morphology, period_px, "
                       "volume_fraction). The same seed gives the same files.")
    s.add_argument("out", type=Path, metavar="OUT_DIR", help="output folder (created)")
    s.add_argument("--n", type=int, default=20, metavar="N", help="pairs per morphology (default 20)")
    s.add_argument("--size", type=int, default=64, metavar="PX", help="image side in px (default 64)")
    add_seed(s, of="the generated pairs")
    s.set_defaults(func=run_synth)

    t = sub.add_parser("train", help="train a PairVAE on a folder of SAXS/SEM pairs",
                       description="Train on PAIRS_DIR/saxs/<stem>.* (TIFF, PNG, EDF, HDF5) matched by stem with "
                       "PAIRS_DIR/sem/<stem>.* (any image): both VAEs alone, then jointly. Prints the held-out "
                       "SAXS pixel MAE and S2 MAE (per morphology with PAIRS_DIR/labels.csv).")
    t.add_argument("pairs", type=Path, metavar="PAIRS_DIR", help="folder with saxs/ and sem/ sub-folders")
    t.add_argument("--out", type=Path, required=True, metavar="FILE", help="model file to write (.safetensors)")
    add_encoder(t, what="frozen encoder model file or checkpoint")
    t.add_argument("--epochs", type=int, default=30, metavar="N", help="epochs of joint training (default 30)")
    t.add_argument("--vae-epochs", type=int, default=10, metavar="N",
                   help="epochs of each VAE alone before joint training (default 10)")
    t.add_argument("--batch-size", type=int, default=32, metavar="B", help="pairs per step (default 32)")
    t.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    t.add_argument("--latent", type=int, default=32, metavar="D", help="latent size (default 32)")
    t.add_argument("--image-size", type=int, default=64, metavar="PX",
                   help="side the images are resized to, a multiple of 16 (default 64)")
    t.add_argument("--weights", default="", metavar="NAME=W,...",
                   help="loss weights to change: saxs_saxs, saxs_sem, sem_sem, sem_saxs, kl, similarity "
                   "(defaults 10, 1, 1, 10, 0.001, 0.01)")
    t.add_argument("--no-augment", action="store_true", help="do not train on the 8 rotations/flips of each pair")
    t.add_argument("--holdout", type=float, default=0.2, metavar="F",
                   help="fraction of pairs held out for the reported errors (default 0.2; 0 = none)")
    add_device(t)
    add_seed(t, of="the split and training")
    t.set_defaults(func=run_train)

    g = sub.add_parser("generate", help="generate SEM images from SAXS patterns or the reverse",
                       description="Write OUT_DIR/<stem>.tif for every input: from SAXS, a generated SEM "
                       "morphology (uint8, 1 = block A); from SEM, a generated SAXS pattern (float32 log "
                       "intensities in [0, 1]).")
    g.add_argument("--model", type=Path, required=True, metavar="FILE", help="a model file from pairvae train")
    g.add_argument("--from", dest="source", choices=("saxs", "sem"), required=True, help="modality of the inputs")
    g.add_argument("inputs", nargs="+", metavar="INPUTS", help="files or folders (sub-folders included)")
    g.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="output folder (created)")
    add_encoder(g, what="the encoder the model was trained with")
    add_device(g)
    g.set_defaults(func=run_generate)


def run_synth(args) -> int:
    from ..pairvae.data import write_synthetic_pairs

    if args.size < 32:
        raise NanowireSSLError(f"--size: must be at least 32 px, got {args.size}")
    rows = write_synthetic_pairs(args.out, args.n, size=args.size, seed=args.seed)
    print(f"wrote {len(rows)} pairs to {args.out} (saxs/, sem/, labels.csv)")
    return 0


def holdout_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) indices: ``round(fraction * n)`` random pairs held out, at least 2 left to train."""
    import numpy as np

    if not 0 <= fraction < 1:
        raise NanowireSSLError(f"--holdout: must be in [0, 1), got {fraction}")
    n_out = min(int(round(fraction * n)), n - 2)
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[n_out:].tolist()), sorted(order[:n_out].tolist())


def run_train(args) -> int:
    from tqdm import tqdm

    from ..models.device import select_device
    from ..pairvae.data import load_pairs
    from ..pairvae.metrics import evaluate, format_table
    from ..pairvae.model import LossWeights, PairVAEConfig, save_pairvae
    from ..pairvae.train import PairVAETrainer, TrainConfig

    config = PairVAEConfig(latent_size=args.latent, image_size=args.image_size, weights=LossWeights.parse(args.weights))
    config.validate()
    train = TrainConfig(vae_epochs=args.vae_epochs, joint_epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, augment=not args.no_augment, seed=args.seed)
    train.validate()
    if not args.out.parent.is_dir():
        raise NanowireSSLError(f"--out: folder {args.out.parent} does not exist")
    pairs = load_pairs(args.pairs, config.image_size)
    train_idx, held_idx = holdout_split(len(pairs), args.holdout, args.seed)
    device = select_device(args.device)
    encoder = load_encoder(args)
    fit = pairs.subset(train_idx)
    trainer = PairVAETrainer(encoder, fit.saxs, fit.sem, config, train, device=device)
    t0 = time.perf_counter()
    with tqdm(total=sum(n for _, n in trainer.plan()), unit="step", file=sys.stderr) as bar:
        for event in trainer.steps():
            bar.update()
            bar.set_description(event.stage)
            if event.losses:
                bar.set_postfix(loss=f"{event.losses['total']:.4f}", refresh=False)
    seconds = time.perf_counter() - t0
    save_pairvae(trainer.vae, args.out, encoder=encoder, encoder_source=args.encoder or "default",
                 training=trainer.training_info(str(args.pairs)) | {"held_out": len(held_idx)})
    print(f"trained on {len(fit)} pairs in {seconds:.1f} s; wrote {args.out}")
    if held_idx:
        held = pairs.subset(held_idx)
        print(f"held-out errors ({len(held)} pairs):")
        print(format_table(evaluate(trainer.vae, encoder, held.saxs, held.sem, held.groups)))
    return 0


def run_generate(args) -> int:
    import numpy as np
    import tifffile

    from ..io import list_images
    from ..io.datasets import output_paths
    from ..pairvae.data import SAXS_SUFFIXES, load_saxs, load_sem
    from ..pairvae.model import generate, load_pairvae

    encoder = load_encoder(args)
    vae = load_pairvae(args.model, encoder)
    size = vae.config.image_size
    if args.source == "saxs":
        files = list_images(args.inputs, what="SAXS", suffixes=SAXS_SUFFIXES)
    else:
        files = list_images(args.inputs, what="SEM image")
    outputs = output_paths(files, args.out)
    load = load_saxs if args.source == "saxs" else load_sem
    images = np.stack([load(f, size) for f in files])
    generated = generate(vae, encoder, images, args.source)
    args.out.mkdir(parents=True, exist_ok=True)
    for image, dst in zip(generated, outputs):
        tifffile.imwrite(dst, image, photometric="minisblack")
    target = "SEM" if args.source == "saxs" else "SAXS"
    print(f"generated {len(files)} {target} images ({size} px) into {args.out}")
    return 0

