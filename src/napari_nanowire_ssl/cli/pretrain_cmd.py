"""``nanowire-ssl pretrain``: self-supervised pretraining of an encoder.

``--init default|FILE`` adapts an existing encoder instead of starting from
random weights (continued self-supervised training on the given images) with
``ssl.pretrain.adaptation_config``, the settings the Encoder tab uses; the
options given on the command line override them.

Runs unchanged under ``torchrun --nproc-per-node N`` (DistributedDataParallel;
each rank trains on its shard of the images, rank 0 writes the files).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .options import add_device, add_seed

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain an encoder without labels (Barlow Twins or SimCLR)",
        description="Pretrain a ResNet encoder on unlabelled micrographs. Writes the encoder "
        "model file OUT and a resumable checkpoint OUT.ckpt after every epoch; Ctrl-C stops "
        "cleanly and still writes both. With --init, continues from an existing encoder "
        "(adaptation to your images): its backbone and normalisation are kept and the file "
        "records which encoder it was adapted from.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGES_OR_DIRS",
                   help="image files or folders of images (stacks give one image per slice)")
    p.add_argument("--method", choices=("barlow", "simclr"), default=None,
                   help="default barlow; with --init, the init's")
    p.add_argument("--init", default=None, metavar="default|FILE",
                   help="start from this encoder (the shipped default, a model file or a torchvision / "
                   "CEM500K checkpoint) instead of random weights")
    p.add_argument("--backbone", choices=("resnet18", "resnet34", "resnet50"), default=None,
                   help="default resnet18; with --init, the init's")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="size of the views (default 128; with --init, the init's)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="default 10; with --init, 1")
    p.add_argument("--batch-size", type=int, default=None, metavar="B", help="per process (default 64; 32 with --init)")
    p.add_argument("--steps-per-epoch", type=int, default=None, metavar="N",
                   help="steps between checkpoints (default: as many batches as windows tile the images; "
                        "with --init, 200)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 1e-3 AdamW, 0.2 LARS; 2e-4 AdamW with --init)")
    p.add_argument("--optimizer", choices=("adamw", "lars"), default="adamw")
    p.add_argument("--filter-weight", type=float, default=None, metavar="W",
                   help="add W x the dense filter-prediction term: every encoder stage also predicts the "
                        "views' classical filter responses (default 0: the SSL loss alone; with --init, the init's)")
    p.add_argument("--warmup-epochs", type=float, default=None, metavar="E",
                   help="linear learning-rate warm-up (default 1 epoch; with --init, a tenth of the steps)")
    p.add_argument("--batchnorm-statistics", choices=("update", "keep"), default=None,
                   help="update the encoder's BatchNorm statistics from the views or keep them "
                        "(default update; with --init, keep)")
    p.add_argument("--frozen-encoder-steps", type=int, default=None, metavar="N",
                   help="the first N steps train only the new projector (default 0; with --init, 20, at most half)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="encoder model file (.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.ckpt")
    add_device(p)
    add_seed(p, of="the views and the initial weights")
    p.set_defaults(func=run)


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def load_init(spec: str):
    """(encoder, source, content hash or None) for ``--init``."""
    from ..models.default import default_encoder_path, resolve_encoder
    from ..models.modelfile import read_metadata

    encoder = resolve_encoder(spec)
    path = default_encoder_path() if spec == "default" else Path(spec)
    content_hash = read_metadata(path).get("content_hash") if path.suffix == ".safetensors" else None
    return encoder, spec if spec == "default" else str(path.resolve()), content_hash


def run(args) -> int:
    from tqdm import tqdm

    from ..errors import NanowireSSLError
    from ..io import list_images, read_image
    from ..ssl.pretrain import ADAPT_STEPS, PretrainConfig, Pretrainer, adaptation_config

    files = list_images(args.inputs, report=lambda line: print(line, file=sys.stderr))
    images = []
    for f in files:
        data = read_image(f).data
        images.extend(data if data.ndim == 3 else [data])
    init = source = content_hash = None
    if args.init is not None:
        init, source, content_hash = load_init(args.init)
        if args.backbone not in (None, init.backbone):
            raise NanowireSSLError(f"--init {args.init} is a {init.backbone}; drop --backbone {args.backbone}")
    given = {"method": args.method, "image_size": args.image_size, "epochs": args.epochs,
             "batch_size": args.batch_size, "optimizer": args.optimizer, "seed": args.seed,
             "steps_per_epoch": args.steps_per_epoch, "filter_weight": args.filter_weight,
             "warmup_epochs": args.warmup_epochs, "frozen_encoder_steps": args.frozen_encoder_steps,
             "keep_batchnorm_statistics": None if args.batchnorm_statistics is None
             else args.batchnorm_statistics == "keep",
             "lr": 0.2 if args.lr is None and args.optimizer == "lars" else args.lr}
    given = {k: v for k, v in given.items() if v is not None}
    if init is not None:
        config = adaptation_config(init, steps=given.pop("steps_per_epoch", ADAPT_STEPS), **given)
    else:
        config = PretrainConfig(backbone=args.backbone or "resnet18", **given)
    trainer = Pretrainer(images, config, device=args.device, checkpoint=checkpoint_path(args.out), init=init,
                         init_source=source, init_content_hash=content_hash)
    if args.resume:
        trainer.resume()
    main_rank = trainer.rank == 0
    total = config.epochs * trainer.steps_per_epoch
    bar = tqdm(total=total, initial=trainer.steps_done,
               disable=not main_rank, unit="step", file=sys.stderr)
    try:
        for event in trainer.steps():
            bar.set_postfix(epoch=f"{event.epoch + 1}/{event.epochs}", loss=f"{event.loss:.4g}",
                            img_s=f"{event.images_per_s:.0f}")
            bar.update(1)
    except KeyboardInterrupt:
        if main_rank:
            print("\nstopped: writing checkpoint and encoder", file=sys.stderr)
    finally:
        bar.close()
    out = trainer.finish(args.out, data_description=f"{len(images)} images from {len(files)} files")
    if trainer.world_size > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    if main_rank:
        print(f"wrote {out} and {checkpoint_path(args.out)} "
              f"({trainer.epoch} of {config.epochs} epochs, final loss {trainer.losses[-1]:.4g})")
    return 0
