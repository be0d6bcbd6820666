"""``nanowire-ssl synth OUT``: write a synthetic labelled dataset to a folder."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import NanowireSSLError
from .options import add_seed

TRUTH_COLUMNS = ("id", "class", "image", "mask", "density", "spans_lr", "spans_tb")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write synthetic nanowire micrographs with exact masks and a truth table",
        description="Write N synthetic micrographs per morphology: OUT/<class>/<id>.png "
        "(8-bit grayscale), OUT/masks/<id>.png (255 = wire, 0 = background) and OUT/truth.csv "
        "with columns id,class,image,mask,density,spans_lr,spans_tb (image and mask relative to OUT, "
        "density = wire pixel fraction, spans_* = 'true' or 'false': an 8-connected wire cluster "
        "touches the left and right / top and bottom edges). The same seed gives the same files.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="output folder (created; existing files are overwritten)")
    p.add_argument("--per-class", type=int, default=10, metavar="N", help="images per class (default 10)")
    p.add_argument("--size", type=int, default=256, metavar="S", help="image side in px, >= 64 (default 256)")
    add_seed(p, of="the dataset")
    p.add_argument(
        "--classes",
        metavar="LIST",
        help="comma-separated morphologies (default: singular,dispersed,network,bundle)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    from PIL import Image

    from ..synth import CLASSES, generate_dataset

    if args.per_class < 1:
        raise NanowireSSLError(f"--per-class: must be at least 1, got {args.per_class}")
    classes = CLASSES if args.classes is None else tuple(c.strip() for c in args.classes.split(",") if c.strip())
    if not classes:
        raise NanowireSSLError("--classes: name at least one morphology")
    samples = generate_dataset(args.per_class, size=args.size, seed=args.seed, classes=classes)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise NanowireSSLError(f"{out}: exists and is not a folder")
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for sample_id, sample in samples:
        image_rel = f"{sample.morphology}/{sample_id}.png"
        mask_rel = f"masks/{sample_id}.png"
        (out / sample.morphology).mkdir(exist_ok=True)
        Image.fromarray(np.round(sample.image * 255).astype(np.uint8)).save(out / image_rel)
        Image.fromarray(sample.mask.astype(np.uint8) * 255).save(out / mask_rel)
        rows.append(
            (
                sample_id,
                sample.morphology,
                image_rel,
                mask_rel,
                repr(sample.density),
                str(sample.spans_lr).lower(),
                str(sample.spans_tb).lower(),
            )
        )
    with open(out / "truth.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(TRUTH_COLUMNS)
        writer.writerows(rows)
    print(f"wrote {len(rows)} images ({len(classes)} classes x {args.per_class}, {args.size} px) to {out}")
    return 0
