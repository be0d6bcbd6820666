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
from collections import Counter
from pathlib import Path

from ..errors import NanowireSSLError, naming
from ..fewshot.policy import DEFAULT_TILE
from .distributed import bundle_parts, process_group, ranks
from .failures import failed_note, report_failures
from .options import add_crop_bottom, add_device, add_encoder, add_seed, load_encoder

MODELS = ("auto", "filters", "filters+encoder", "decoder", "decoder+filters", "decoder+finetune")  # fewshot.segment.MODELS (not imported: fast --help)
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
                   help="image files or folders of images (sub-folders included) to segment")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="folder for the masks (created)")
    add_encoder(p)
    p.add_argument("--save-decoder", type=Path, metavar="FILE", help="also save the trained decoder (.safetensors)")
    p.add_argument("--epochs", type=int, default=4, metavar="N", help="training epochs (default 4)")
    p.add_argument("--steps-per-epoch", type=int, default=50, metavar="K",
                   help="optimisation steps per epoch, 4 random crops each (default 50)")
    p.add_argument("--self-training-steps", type=int, metavar="M",
                   help="after the epochs, M more steps with the confident predictions on unlabelled pixels "
                        "as labels (scribble masks only; default 100, 0 = off)")
    p.add_argument("--model", choices=MODELS, default=DEFAULT_MODEL,
                   help="auto (default): pixel classifiers on multiscale filters with and without the encoder's "
                        "features, the one that scores better on held-out labels (each image in turn when "
                        "several are labelled, blocks of one otherwise) is kept, or, with several images, "
                        "Otsu's threshold of each image when it scores better still; filters or "
                        "filters+encoder: that one; decoder: the U-Net decoder on the encoder maps (slower); "
                        "decoder+filters: the decoder that also sees the filters at full resolution; "
                        "decoder+finetune: the decoder and the encoder's last stage")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, metavar="PX",
                   help=f"inference window, a multiple of 32 px (default {DEFAULT_TILE})")
    add_crop_bottom(p, what="every training and predicted image (banner rows come out as background)")
    add_device(p)
    add_seed(p, of="the training")
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- run


def train(encoder, args, decoder_model, *, show: bool):
    """Train (or continue training) the model on ``args.train``; returns (model, summary line,
    number of self-training steps done, trainer)."""
    import numpy as np
    from tqdm import tqdm

    from ..fewshot.policy import self_training_steps, training_crop
    from ..fewshot.segment import SELF_TRAINING, SELF_TRAINING_STEPS, make_trainer
    from ..io.datasets import load_training_set
    from ..labels import BACKGROUND, NANOWIRE

    images, labels, names, n_scribble = load_training_set(args.train, crop_bottom=args.crop_bottom)
    n_steps = args.epochs * args.steps_per_epoch
    t0 = time.perf_counter()
    trainer = make_trainer(encoder, images, labels, model=args.model, previous=decoder_model,
                           crop=training_crop(images), seed=args.seed, device=next(encoder.parameters()).device,
                           names=names)
    wanted = SELF_TRAINING_STEPS if args.self_training_steps is None else args.self_training_steps
    self_training = self_training_steps(wanted, trainer.has_unpainted)
    with tqdm(total=n_steps + self_training + trainer.context_steps, unit="step", desc="training", file=sys.stderr,
              disable=not show) as bar:
        later = Counter()  # steps of the stages after the painted labels and self-training (context, decoder)
        for event in trainer.steps(n_steps, self_training=self_training):
            bar.update()
            if event.stage not in ("", SELF_TRAINING):
                later[event.stage] += 1
            if event.stage:
                bar.set_postfix(stage=event.stage, loss=f"{trainer.running_loss:.3f}")
            elif (event.step + 1) % args.steps_per_epoch == 0:
                bar.set_postfix(epoch=(event.step + 1) // args.steps_per_epoch, loss=f"{trainer.running_loss:.3f}")
        bar.update(bar.total - bar.n)  # Otsu's threshold kept: nothing left to train
    model = trainer.restore_best()
    labelled = sum(int(np.isin(lab, (BACKGROUND, NANOWIRE)).sum()) for lab in labels)
    total = sum(lab.size for lab in labels)
    work = (f"{n_steps} steps + {self_training} self-training steps"
            + "".join(f" + {n} {stage} steps" for stage, n in later.items()) if trainer.losses
            else "no steps (the threshold kept has nothing to train)")
    loss = f"best running loss {trainer.best_loss:.3f}; " if trainer.losses else ""
    summary = (f"trained on {len(images)} images ({n_scribble} as scribbles; {labelled / total:.1%} of pixels "
               f"labelled), {work} in {time.perf_counter() - t0:.1f} s; {loss}{trainer.choice_line()}")
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

    from ..models.modelfile import encoder_identity
    from ..fewshot.policy import check_tile
    from ..fewshot.segment import load_decoder, save_decoder
    from ..fewshot.tiling import segment_image
    from ..io import banner_crop, list_images, read_image
    from ..io.datasets import output_paths

    if args.train is None and args.decoder is None and args.bundle is None:
        raise NanowireSSLError("give --train DIR (masks to learn from), --decoder FILE or --bundle FILE "
                               "(a trained decoder)")
    if args.save_decoder is not None and args.train is None:
        raise NanowireSSLError("--save-decoder: needs --train (a loaded decoder is saved already)")
    if args.epochs < 1 or args.steps_per_epoch < 1:
        raise NanowireSSLError("--epochs and --steps-per-epoch must be at least 1")
    if args.self_training_steps is not None and args.self_training_steps < 0:
        raise NanowireSSLError(f"--self-training-steps: must be at least 0, got {args.self_training_steps}")
    check_tile(args.tile, "--tile")
    me = ranks()
    predict_files = list_images(args.predict)
    outputs = output_paths(predict_files, args.out)
    if args.bundle is not None:
        encoder, model = bundle_parts(args, me.local_rank, "decoder")
    else:
        encoder = load_encoder(args, me.local_rank)
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
        wire_fractions, failed = [], []
        t0 = time.perf_counter()
        with tqdm(total=len(mine), unit="file", desc="segmenting", file=sys.stderr, disable=not me.main) as bar:
            for src, dst in mine:
                try:
                    image = read_image(src).data
                    rows = banner_crop(image, args.crop_bottom, name=str(src))
                    _, mask = segment_image(model, image, tile=args.tile, crop_bottom=rows, name=str(src))
                except NanowireSSLError as exc:
                    failed.append(naming(src, exc))
                else:
                    tifffile.imwrite(dst, mask.astype(np.uint8), photometric="minisblack", compression="zlib")
                    wire_fractions.append(float(mask.mean()))
                bar.update()
        if dist is not None:
            dist.barrier()
    report_failures(failed, len(wire_fractions))  # every process reports its own files
    if me.main:
        share = "" if me.world == 1 else f" (this process's share of {len(predict_files)}, {me.world} processes)"
        median = f"; median nanowire fraction {np.median(wire_fractions):.1%}" if wire_fractions else ""
        print(f"segmented {len(wire_fractions)} of {len(mine)} images in {time.perf_counter() - t0:.1f} s"
              f"{share}{median}; wrote masks to {args.out}{failed_note(failed)}")
    return 0
