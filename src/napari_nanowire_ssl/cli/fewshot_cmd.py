"""``nanowire-ssl fewshot``: the paper's few-shot evaluation of an encoder on a labelled dataset.

n labelled images per class train a linear head on frozen features, all other
images test it; repeated over random splits for each n (Lu et al. 2022, Fig. 2C).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NanowireSSLError
from .options import add_crop_bottom, add_device, add_encoder, add_seed, load_encoder


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fewshot",
        help="few-shot accuracy of an encoder on a folder-per-class dataset (CSV + box plot)",
        description="Measure how well a linear classifier on frozen encoder features does with "
        "n labelled images per class (the rest are the test set), over random splits. Writes "
        "OUT/fewshot.csv (shots,repeat,accuracy), OUT/summary.csv "
        "(shots,median,ci_low,ci_high,n_test; 95%% interval over the splits) and OUT/fewshot.png.",
    )
    p.add_argument("data", type=Path, metavar="DATA_DIR",
                   help="one sub-folder of images per class, sub-folders included (a 'masks' folder is skipped)")
    add_encoder(p)
    p.add_argument("--shots", default="1,2,4,8,16,32", metavar="LIST",
                   help="labelled images per class, comma-separated (default 1,2,4,8,16,32)")
    p.add_argument("--repeats", type=int, default=100, metavar="R", help="random splits per shot count (default 100)")
    add_seed(p, of="the splits")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR", help="keep image features here for later runs")
    add_crop_bottom(p)
    add_device(p)
    p.set_defaults(func=run)


def parse_shots(text: str) -> list[int]:
    try:
        shots = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        shots = []
    if not shots or min(shots) < 1:
        raise NanowireSSLError(f"--shots: expected comma-separated positive integers, got {text!r}")
    return sorted(set(shots))


def run(args) -> int:
    from collections import Counter

    from ..fewshot.classify import LinearHead
    from ..fewshot.evaluation import fewshot_accuracy, plot_fewshot, write_fewshot_csv
    from ..fewshot.features import DEFAULT_MAX_TILES, DEFAULT_TILE, FeatureCache
    from .classes import encode_files, labelled_files

    shots = parse_shots(args.shots)
    if args.repeats < 1:
        raise NanowireSSLError(f"--repeats: must be at least 1, got {args.repeats}")
    files, labels, names = labelled_files(args.data)
    counts = Counter(labels)
    smallest = min(names, key=lambda c: counts[c])
    usable = [n for n in shots if n < counts[smallest]]
    for n in shots:
        if n not in usable:
            print(f"note: skipping {n} shots: class '{smallest}' has only {counts[smallest]} images, "
                  "none would be left to test")
    if not usable:
        raise NanowireSSLError(f"{args.data}: class '{smallest}' has only {counts[smallest]} images; "
                               f"no shot count in {args.shots} leaves test images")
    encoder = load_encoder(args)
    tiling = {"tile": DEFAULT_TILE, "max_tiles": DEFAULT_MAX_TILES}
    feats = encode_files(encoder, files, cache=FeatureCache(args.cache_dir), tiling=tiling, crop_bottom=args.crop_bottom)
    results = fewshot_accuracy(feats, labels, usable, repeats=args.repeats, seed=args.seed,
                               make_head=lambda: LinearHead.for_encoder(encoder, tiling=tiling))
    args.out.mkdir(parents=True, exist_ok=True)
    per_split, summary = write_fewshot_csv(results, args.out)
    plot = plot_fewshot(results, args.out / "fewshot.png",
                        title=f"{args.data.name}: {len(files)} images, {len(names)} classes, "
                        f"encoder {Path(args.encoder or 'default').name}, {args.repeats} splits")
    print(f"{len(files)} images in {len(names)} classes ({', '.join(f'{c} {counts[c]}' for c in names)})")
    print(f"{'shots':>5}  {'median':>6}  {'95% interval':>13}  {'n_test':>6}")
    for r in results:
        print(f"{r.shots:>5}  {r.median:>6.3f}  {r.interval[0]:.3f}-{r.interval[1]:.3f}  {r.n_test:>6}")
    print(f"wrote {per_split}, {summary} and {plot}")
    return 0
