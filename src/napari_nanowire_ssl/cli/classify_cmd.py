"""``nanowire-ssl classify``: train a few-shot classifier on labelled folders and classify images.

``--predict`` takes files and folder trees. The CSV gives each image's label,
calibrated class probabilities, whether the call is uncertain and its rank in
the "label next" order (1 = the most ambiguous image, the one to label
first). With ``--truth-from-folders`` the class of an image is the name of
the sub-folder of a ``--predict`` folder it lies in: the accuracy is printed
and a confusion matrix written beside the CSV (``<out>_confusion.csv`` and
``.png``).

Runs under ``torchrun --nproc-per-node N``: every process trains the same
head (the training features are cheap with ``--cache-dir``), process r
classifies files r, r + N, r + 2N ... into a part file, and process 0 merges
the parts into ``--out`` in the original file order.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .distributed import bundle_parts, process_group, ranks
from .classes import encode_each, encode_files, labelled_files
from .failures import failed_note, report_failures
from .options import add_crop_bottom, add_device, add_encoder, load_encoder


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "classify",
        help="train a linear classifier on a few labelled images and classify others into a CSV",
        description="Train a linear head on frozen encoder features of DIR/<class>/<images> "
        "(a 'masks' folder is not a class), or load one with --head, then classify the images of "
        "--predict (files or folder trees). The CSV has columns path,label,prob_<class>... (the head's class "
        "order, calibrated probabilities),uncertain,label_next (1 = the most ambiguous image: label it first); "
        "with --truth-from-folders also truth.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--train", type=Path, metavar="DIR", help="folder with one sub-folder of images per class")
    source.add_argument("--head", type=Path, metavar="FILE", help="a head saved with --save-head")
    source.add_argument("--bundle", type=Path, metavar="FILE",
                        help="a model bundle saved in napari (its encoder and classifier)")
    p.add_argument("--predict", nargs="+", required=True, metavar="PATHS_OR_DIRS",
                   help="image files or folders of images (sub-folders included) to classify")
    p.add_argument("--truth-from-folders", action="store_true",
                   help="the class of each image is its sub-folder under a --predict folder: print the accuracy "
                   "and write a confusion matrix (<out>_confusion.csv and .png)")
    p.add_argument("--out", type=Path, required=True, metavar="preds.csv", help="CSV file to write")
    add_encoder(p)
    p.add_argument("--save-head", type=Path, metavar="FILE", help="also save the trained head (.safetensors)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR", help="keep image features here for later runs")
    add_crop_bottom(p, what="every training and classified image")
    add_device(p)
    p.set_defaults(func=run)


def write_predictions(path: Path, files, probabilities, class_names) -> None:
    """CSV ``path,label,prob_<class>...,uncertain``: one row per file, the label is the most probable class."""
    import numpy as np

    from ..fewshot.classify import is_uncertain

    flags = is_uncertain(np.asarray(probabilities)) if len(files) else []
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", *(f"prob_{c}" for c in class_names), "uncertain"])
        for f, p, flag in zip(files, probabilities, flags):
            writer.writerow([str(f), class_names[int(p.argmax())], *(f"{v:.6f}" for v in p), "yes" if flag else ""])


def folder_truth(files: list[Path], roots) -> dict[str, str]:
    """The class of each file (by its path): its first sub-folder under the ``--predict`` folder it was
    found in."""
    from ..errors import NanowireSSLError

    folders = [Path(r) for r in roots if Path(r).is_dir()]
    truth = {}
    for f in files:
        under = next((r for r in folders if f.is_relative_to(r) and len(f.relative_to(r).parts) > 1), None)
        if under is None:
            raise NanowireSSLError(f"{f}: --truth-from-folders needs every image in a class sub-folder of a "
                                   "--predict folder")
        truth[str(f)] = f.relative_to(under).parts[0]
    return truth


def finish_predictions(out: Path, class_names: list[str], truth: dict[str, str] | None) -> tuple[float | None, int]:
    """Add the ``label_next`` rank (and ``truth``, the class of each path) columns to the CSV; with
    ``truth`` and some rows write the confusion matrix beside it. Returns (the accuracy or None, the
    number of rows)."""
    import numpy as np

    from ..fewshot.classify import label_next
    from ..fewshot.evaluation import confusion_matrix, plot_confusion, write_confusion_csv

    with open(out, newline="") as fh:
        table = list(csv.reader(fh))
    header, body = table[0], table[1:]
    probs = np.array([[float(v) for v in r[2:2 + len(class_names)]] for r in body]).reshape(len(body), len(class_names))
    rank = np.empty(len(body), dtype=int)
    rank[label_next(probs)] = np.arange(1, len(body) + 1) if len(body) else []
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header + ["label_next"] + (["truth"] if truth is not None else []))
        for k, r in enumerate(body):
            writer.writerow(r + [rank[k]] + ([truth[r[0]]] if truth is not None else []))
    if truth is None or not body:
        return None, len(body)
    predicted, true = [r[1] for r in body], [truth[r[0]] for r in body]
    labels = list(class_names) + sorted(set(true) - set(class_names))
    matrix = confusion_matrix(true, predicted, labels)
    write_confusion_csv(matrix, labels, out.with_name(f"{out.stem}_confusion.csv"))
    plot_confusion(matrix, labels, out.with_name(f"{out.stem}_confusion.png"))
    return float(np.mean([t == p for t, p in zip(true, predicted)])), len(body)


def part_path(out: Path, rank: int) -> Path:
    return out.with_name(f".{out.name}.part{rank}")


def merge_parts(out: Path, parts: list[Path], files: list[Path]) -> None:
    """The rows of every process's part, in the order of ``files`` (a process leaves out the files
    it could not classify), into ``out``; then delete the parts."""
    tables = []
    for part in parts:
        with open(part, newline="") as fh:
            tables.append(list(csv.reader(fh)))
    position = {str(f): k for k, f in enumerate(files)}
    header, body = tables[0][0], [row for t in tables for row in t[1:]]
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(sorted(body, key=lambda row: position[row[0]]))
    for part in parts:
        part.unlink()


def run(args) -> int:
    from ..errors import NanowireSSLError
    from ..fewshot.classify import LinearHead
    from ..fewshot.features import DEFAULT_MAX_TILES, DEFAULT_TILE, FeatureCache
    from ..io import list_images

    if args.save_head is not None and args.train is None:
        raise NanowireSSLError("--save-head: needs --train (the head of --head is saved already)")
    me = ranks()
    rank, world, main_rank = me.rank, me.world, me.main
    predict_files = list_images(args.predict)
    truth = folder_truth(predict_files, args.predict) if args.truth_from_folders else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(args.cache_dir)
    if args.bundle is not None:
        encoder, head = bundle_parts(args, me.local_rank, "head")
    elif args.head is not None:
        encoder = load_encoder(args, me.local_rank)
        head = LinearHead.load(args.head, encoder)
    else:
        encoder = load_encoder(args, me.local_rank)
        files, labels, names = labelled_files(args.train)
        tiling = {"tile": DEFAULT_TILE, "max_tiles": DEFAULT_MAX_TILES}
        feats = encode_files(encoder, files, cache=cache, tiling=tiling, crop_bottom=args.crop_bottom, show=main_rank)
        head = LinearHead.for_encoder(encoder, tiling=tiling).fit(feats, labels, names)
        train_acc = float((head.predict(feats) == labels).mean())
        if main_rank:
            note = head.calibration_note()
            print(f"trained on {len(files)} images of {len(names)} classes ({', '.join(names)}); "
                  f"training accuracy {train_acc:.2f}; temperature {head.temperature:.2f}"
                  + (f"; {note}" if note else ""))
            if args.save_head is not None:
                head.save(args.save_head)
                print(f"wrote {args.save_head}")
    feats, done, failed = encode_each(encoder, me.shard(predict_files), cache=cache, tiling=head.tiling,
                                      crop_bottom=args.crop_bottom, show=main_rank)
    probs = head.predict_proba(feats) if done else []
    if world > 1:
        with process_group(world) as dist:
            write_predictions(part_path(args.out, rank), done, probs, head.class_names)
            dist.barrier()
            if main_rank:
                merge_parts(args.out, [part_path(args.out, r) for r in range(world)], predict_files)
    report_failures(failed, len(done))  # every process its own files; a lone one before it writes
    if world == 1:
        write_predictions(args.out, done, probs, head.class_names)
    if main_rank:
        accuracy, n_rows = finish_predictions(args.out, head.class_names, truth)
        print(f"classified {n_rows} of {len(predict_files)} images into {len(head.class_names)} classes; "
              f"wrote {args.out}" + (failed_note(failed) if world == 1 else ""))
        if accuracy is not None:
            print(f"accuracy {accuracy:.3f} against the folder names; confusion matrix in "
                  f"{args.out.stem}_confusion.csv and .png")
    return 0
