"""``nanowire-ssl analyze``: percolation, density and wire statistics of mask files, as CSV.

The default link distance is 0 (plain 8-connectivity: wires must touch);
``--link-distance 2`` reproduces the paper's DBSCAN clustering (eps = 2 px),
which also joins wires separated by a one-pixel gap.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="measure percolation, density and wire statistics of masks into a CSV",
        description="Measure wire masks (nonzero = wire): percolation, pixel density, "
        "skeleton length, width, end points, junctions, orientation order. "
        "One CSV row per mask.",
    )
    p.add_argument("inputs", nargs="+", metavar="MASKS_OR_DIRS",
                   help="mask files, or folders of them (not recursive; .png .tif .tiff .jpg .jpeg .bmp)")
    p.add_argument("--out", required=True, metavar="metrics.csv", help="CSV file to write")
    p.add_argument("--pixel-size", type=float, default=None, metavar="NM",
                   help="pixel size in nm, adds physical columns (um, nm)")
    p.add_argument("--connectivity", type=int, choices=(4, 8), default=8,
                   help="pixel connectivity of wire clusters (default 8)")
    p.add_argument("--link-distance", type=float, default=0.0, metavar="D",
                   help="also link wire pixels at most D px apart (default 0; the paper's DBSCAN uses 2)")
    p.add_argument("--criterion", choices=("both", "any", "lr", "tb"), default="both",
                   help="percolation: one cluster spans both directions (default, paper), "
                   "either, left-right or top-bottom")
    p.add_argument("--crop-bottom", type=int, default=0, metavar="ROWS",
                   help="leave out this many bottom rows (instrument banner)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import csv
    from pathlib import Path

    from ..analysis.measure import COLUMNS, measure_mask, read_mask
    from ..errors import NanowireSSLError
    from ..io.reader import list_images

    files = list_images(args.inputs, what="mask")
    rows = []
    for path in files:
        try:
            row = measure_mask(
                read_mask(path),
                pixel_size_nm=args.pixel_size,
                connectivity=args.connectivity,
                link_distance=args.link_distance,
                criterion=args.criterion,
                crop_bottom=args.crop_bottom,
            )
        except NanowireSSLError as exc:
            message = str(exc)
            raise type(exc)(message if str(path) in message else f"{path}: {message}") from None
        rows.append({"path": str(path), **row})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=("path", *COLUMNS))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    n_perc = sum(r["percolates"] for r in rows)
    mean_density = sum(r["pixel_density"] for r in rows) / len(rows)
    print(f"{len(rows)} mask(s) measured, {n_perc} percolate ({args.criterion}), "
          f"mean pixel density {mean_density:.3f}; wrote {out}")
    return 0
