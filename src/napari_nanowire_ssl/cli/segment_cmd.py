"""``nanowire-ssl segment``: train a segmentation decoder on labelled images and segment others.

Training data: ``DIR/images/<stem>.*`` with ``DIR/masks/<stem>.*`` (the same
stems, any supported image type). A mask is read in one of two conventions:

* scribbles: when its values are a subset of {0, 1, 2} and it holds both 1
  and 2, it is taken as the labels convention of the plugin (0 = not
  labelled, 1 = background, 2 = nanowire); only the painted pixels train;
* otherwise a full mask: nonzero = nanowire, zero = background (every pixel
  labelled). A 0/1 mask is therefore a full mask.

``--decoder`` loads a decoder trained earlier (on the same encoder): without
``--train`` it is used as it is, with ``--train`` training continues from it.
Every input of ``--predict`` is written as ``OUT/<stem>.tif``, uint8, 1 =
nanowire, 0 = background; a stack gives a multi-page TIFF of the same depth.

Under ``torchrun --nproc-per-node N`` every process trains the same decoder
(same data, same seed; no communication while training, and training is
short), then the weights of process 0 are broadcast so that all processes
predict with identical weights even where GPU kernels are not bit-exact.
Process r segments files r, r + N, r + 2N ... and writes their masks itself
(distinct files: nothing to merge). Only process 0 prints and saves
``--save-decoder``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import NanowireSSLError
from .distributed import bundle_parts, load_encoder_for_rank, process_group, ranks

SCRIBBLE_VALUES = {0, 1, 2}
MODELS = ("auto", "filters", "filters+encoder", "decoder")  # fewshot.segment.MODELS (not imported: fast --help)
DEFAULT_MODEL = "auto"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="train a segmentation decoder on a few labelled images and write nanowire masks",
        description="Train a decoder on frozen encoder features of DIR/images + DIR/masks (same stems; "
        "masks nonzero = nanowire, or scribbles 0 = unlabelled, 1 = background, 2 = nanowire when the "
        "values are within {0,1,2} and both 1 and 2 occur), or load one with --decoder, then write "
        "OUT_DIR/<stem>.tif (uint8, 1 = nanowire) for every image of --predict.",
    )
    p.add_argument("--train", type=Path, metavar="DIR", help="folder with images/ and masks/ sub-folders")
    trained = p.add_mutually_exclusive_group()
    trained.add_argument("--decoder", type=Path, metavar="FILE",
                         help="a decoder saved with --save-decoder: used as is, or trained further with --train")
    trained.add_argument("--bundle", type=Path, metavar="FILE",
                         help="a model bundle saved in napari (its encoder and decoder), like --decoder")
    p.add_argument("--predict", nargs="+", required=True, metavar="PATHS_OR_DIRS",
                   help="image files or folders of images (not recursive) to segment")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="folder for the masks (created)")
    p.add_argument("--encoder", metavar="FILE|default",
                   help="encoder model file or checkpoint (default: the shipped encoder; a bundle brings its own)")
    p.add_argument("--save-decoder", type=Path, metavar="FILE", help="also save the trained decoder (.safetensors)")
    p.add_argument("--epochs", type=int, default=4, metavar="N", help="training epochs (default 4)")
    p.add_argument("--steps-per-epoch", type=int, default=50, metavar="K",
                   help="optimisation steps per epoch, 4 random crops each (default 50)")
    p.add_argument("--self-training-steps", type=int, metavar="M",
                   help="after the epochs, M more steps with the confident predictions on unlabelled pixels "
                        "as labels (scribble masks only; default 100, 0 = off)")
    p.add_argument("--model", choices=MODELS, default=DEFAULT_MODEL,
                   help="auto (default): pixel classifiers on multiscale filters with and without the encoder's "
                        "features, the one that scores better on held-out labelled blocks is kept; filters or "
                        "filters+encoder: that one; decoder: the U-Net decoder on the encoder maps (slower)")
    p.add_argument("--tile", type=int, default=512, metavar="PX",
                   help="inference window, a multiple of 32 px (default 512)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="seed of the training (default 0)")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- data


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    from ..io import IMAGE_SUFFIXES

    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            if f.stem in found:
                raise NanowireSSLError(f"{f}: two {what} files have the stem '{f.stem}' ({found[f.stem].name})")
            found[f.stem] = f
    return found


def training_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) files of ``root/images`` and ``root/masks``, matched by stem; one-line errors."""
    if not root.is_dir():
        raise NanowireSSLError(f"{root}: no such folder")
    images_dir, masks_dir = root / "images", root / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise NanowireSSLError(f"{root}: expected sub-folders images/ and masks/ (with the same file stems); "
                                   f"{d.name}/ is missing")
    images, masks = _by_stem(images_dir, "image"), _by_stem(masks_dir, "mask")
    if not images and not masks:
        raise NanowireSSLError(f"{root}: images/ and masks/ hold no image files: nothing to train on")
    for stem, f in images.items():
        if stem not in masks:
            raise NanowireSSLError(f"{f}: has no mask (expected {masks_dir / stem}.<ext>)")
    for stem, f in masks.items():
        if stem not in images:
            raise NanowireSSLError(f"{f}: has no image (expected {images_dir / stem}.<ext>)")
    return [(images[s], masks[s]) for s in sorted(images)]


def read_labels(path: Path):
    """Training labels (uint8: 0 = unlabelled, 1 = background, 2 = nanowire) of a mask file.

    Scribbles when the values are within {0, 1, 2} and both 1 and 2 occur, else nonzero = nanowire.
    """
    import numpy as np

    from ..analysis.measure import read_mask
    from ..errors import ImageReadError
    from ..fewshot.segment import labels_from_mask

    wire = read_mask(path)  # checks the file; colour masks: any channel nonzero
    raw = None
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            raw = np.asarray(tifffile.imread(path))
        else:
            from PIL import Image

            with Image.open(path) as im:
                raw = np.asarray(im)
    except Exception:  # read_mask has read it already; be safe
        raise ImageReadError(f"{path}: cannot be read as a mask image") from None
    if raw.ndim == 2 and raw.dtype.kind in "uib":
        values = set(np.unique(raw).tolist())
        if values <= SCRIBBLE_VALUES and {1, 2} <= values:
            return raw.astype(np.uint8), True
    return labels_from_mask(wire), False


def load_training_set(root: Path):
    """(images, labels, names, n_scribble_masks) of a training folder."""
    from ..io import read_image

    images, labels, names, scribbles = [], [], [], 0
    for image_file, mask_file in training_pairs(root):
        image = read_image(image_file).data
        if image.ndim != 2:
            raise NanowireSSLError(f"{image_file}: training images must be 2D, this is a stack of shape {image.shape}")
        lab, is_scribble = read_labels(mask_file)
        if lab.shape != image.shape:
            raise NanowireSSLError(f"{mask_file}: mask has shape {lab.shape} but its image {image_file.name} "
                                   f"has shape {image.shape}")
        images.append(image)
        labels.append(lab)
        names.append(image_file.stem)
        scribbles += is_scribble
    return images, labels, names, scribbles


def output_paths(files: list[Path], out: Path) -> list[Path]:
    """``out/<stem>.tif`` per input; refuses two inputs with the same stem."""
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise NanowireSSLError(f"{f}: same stem as {seen[f.stem]}; both would be written to "
                                   f"{out / (f.stem + '.tif')}")
        seen[f.stem] = f
    return [out / f"{f.stem}.tif" for f in files]


def default_crop(images) -> int:
    """Training crop: 256 px, or the largest image side rounded up to 32 px when smaller."""
    side = max(max(im.shape) for im in images)
    return min(256, -(-side // 32) * 32)


# ---------------------------------------------------------------------------------------------- run


def train(encoder, args, decoder_model, *, show: bool):
    """Train (or continue training) the model on ``args.train``; returns (model, summary line,
    number of self-training steps done, trainer)."""
    import numpy as np
    from tqdm import tqdm

    from ..fewshot.segment import (
        BACKGROUND,
        NANOWIRE,
        SELF_TRAINING_STEPS,
        make_trainer,
    )

    images, labels, names, n_scribble = load_training_set(args.train)
    n_steps = args.epochs * args.steps_per_epoch
    t0 = time.perf_counter()
    trainer = make_trainer(encoder, images, labels, model=args.model, previous=decoder_model,
                           crop=default_crop(images), seed=args.seed, device=next(encoder.parameters()).device)
    wanted = SELF_TRAINING_STEPS if args.self_training_steps is None else args.self_training_steps
    self_training = wanted if trainer.has_unpainted else 0
    with tqdm(total=n_steps + self_training, unit="step", desc="training", file=sys.stderr, disable=not show) as bar:
        for event in trainer.steps(n_steps, self_training=self_training):
            bar.update()
            if event.step >= n_steps:
                bar.set_postfix(self_training=event.step + 1 - n_steps, loss=f"{trainer.running_loss:.3f}")
            elif (event.step + 1) % args.steps_per_epoch == 0:
                bar.set_postfix(epoch=(event.step + 1) // args.steps_per_epoch, loss=f"{trainer.running_loss:.3f}")
    model = trainer.restore_best()
    labelled = sum(int(np.isin(lab, (BACKGROUND, NANOWIRE)).sum()) for lab in labels)
    total = sum(lab.size for lab in labels)
    summary = (f"trained on {len(images)} images ({n_scribble} as scribbles; {labelled / total:.1%} of pixels "
               f"labelled), {n_steps} steps + {self_training} self-training steps in "
               f"{time.perf_counter() - t0:.1f} s; best running loss {trainer.best_loss:.3f}; {trainer.choice_line()}")
    return model, summary, self_training, trainer


def share_weights(model, dist) -> None:
    """Give every process the weights of process 0."""
    state = [{k: v.detach().cpu() for k, v in model.trainable_state().items()}]
    dist.broadcast_object_list(state, src=0)
    model.load_state_dict(state[0], strict=False)


def run(args) -> int:
    import numpy as np
    import tifffile
    from tqdm import tqdm

    from ..fewshot.features import encoder_identity
    from ..fewshot.segment import load_decoder, save_decoder
    from ..fewshot.tiling import segment_image
    from ..io import list_images, read_image

    if args.train is None and args.decoder is None and args.bundle is None:
        raise NanowireSSLError("give --train DIR (masks to learn from), --decoder FILE or --bundle FILE "
                               "(a trained decoder)")
    if args.save_decoder is not None and args.train is None:
        raise NanowireSSLError("--save-decoder: needs --train (a loaded decoder is saved already)")
    if args.epochs < 1 or args.steps_per_epoch < 1:
        raise NanowireSSLError("--epochs and --steps-per-epoch must be at least 1")
    if args.self_training_steps is not None and args.self_training_steps < 0:
        raise NanowireSSLError(f"--self-training-steps: must be at least 0, got {args.self_training_steps}")
    if args.tile < 32 or args.tile % 32:
        raise NanowireSSLError(f"--tile: must be a positive multiple of 32 px, got {args.tile}")
    me = ranks()
    predict_files = list_images(args.predict)
    outputs = output_paths(predict_files, args.out)
    if args.bundle is not None:
        encoder, model = bundle_parts(args, me.local_rank, "decoder")
    else:
        encoder = load_encoder_for_rank(args.encoder or "default", args.device, me.local_rank)
        model = load_decoder(args.decoder, encoder) if args.decoder is not None else None
    encoder_hash = encoder_identity(encoder)
    if args.train is not None:
        model, summary, self_training, trainer = train(encoder, args, model, show=me.main)
        if me.main:
            print(summary)
            if args.save_decoder is not None:
                args.save_decoder.parent.mkdir(parents=True, exist_ok=True)
                save_decoder(model, args.save_decoder, encoder_hash=encoder_hash, training={
                    "data": str(args.train), "steps": args.epochs * args.steps_per_epoch,
                    "self_training_steps": self_training, "seed": args.seed, "choice": trainer.choice_line(),
                    "continued_from": str(args.decoder or args.bundle or "") or None})
                print(f"wrote {args.save_decoder}")
    args.out.mkdir(parents=True, exist_ok=True)
    with process_group(me.world) as dist:
        if dist is not None and args.train is not None:
            share_weights(model, dist)
        mine = list(zip(me.shard(predict_files), me.shard(outputs)))
        wire_fractions = []
        t0 = time.perf_counter()
        with tqdm(total=len(mine), unit="file", desc="segmenting", file=sys.stderr, disable=not me.main) as bar:
            for src, dst in mine:
                image = read_image(src).data
                _, mask = segment_image(model, image, tile=args.tile, overlap=min(64, args.tile // 4))
                tifffile.imwrite(dst, mask.astype(np.uint8), photometric="minisblack", compression="zlib")
                wire_fractions.append(float(mask.mean()))
                bar.update()
        if dist is not None:
            dist.barrier()
    if me.main:
        share = "" if me.world == 1 else f" (this process: {len(mine)} of them, {me.world} processes)"
        median = f"; median nanowire fraction {np.median(wire_fractions):.1%}" if wire_fractions else ""
        print(f"segmented {len(predict_files)} images in {time.perf_counter() - t0:.1f} s{share}{median}; "
              f"wrote masks to {args.out}")
    return 0
