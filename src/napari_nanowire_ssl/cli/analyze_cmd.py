"""``nanowire-ssl analyze``: percolation, density and wire statistics of mask files, as CSV.

The default link distance is the paper's 2 px (its DBSCAN clustering, eps =
2 px), which also joins wires separated by a one-pixel gap; ``--link-distance 0``
is plain 8-connectivity (wires must touch). The defaults are the Analyse tab's
and the bundles' (``analysis.percolation.ANALYSIS_DEFAULTS``).

``--wire-resistance`` (ohm per um, needs ``--pixel-size``) adds the sheet
resistance of the wire graph (Kirchhoff, electrodes on the left and right
edges or, with ``--electrodes tb``, top and bottom); ``--branches FILE.csv``
writes one row per graph branch of every mask.

With ``--bundle FILE`` (a model bundle saved in napari) the inputs are
images instead: each is segmented by the bundle's decoder and classified by
its classifier (:func:`..batch.process_files`, the loop the GUI's batch run
uses), the masks and overlays go to ``masks/`` and ``overlays/`` beside the
CSV, and the analysis options default to the bundle's.
"""

from __future__ import annotations

import argparse

from ..analysis.percolation import ANALYSIS_DEFAULTS as OPTION_DEFAULTS
from ..analysis.resistance import DEFAULT_ELECTRODES, DEFAULT_JUNCTION_RESISTANCE_OHM, ELECTRODES
from ..io.banner import AUTO as BANNER_AUTO
from .options import add_device, crop_bottom_setting


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="measure percolation, density and wire statistics of masks (or, with --bundle, of images) into a CSV",
        description="Measure wire masks (nonzero = wire): percolation, pixel density, "
        "skeleton length, width, end points, junctions, orientation order. "
        "One CSV row per mask. With --bundle, segment and classify images first.",
    )
    p.add_argument("inputs", nargs="+", metavar="MASKS_OR_DIRS",
                   help="mask files, or folders of them (not recursive; .png .tif .tiff .jpg .jpeg .bmp); "
                   "with --bundle: image files or folders")
    p.add_argument("--out", required=True, metavar="metrics.csv", help="CSV file to write")
    p.add_argument("--bundle", metavar="FILE",
                   help="a model bundle saved in napari: segment (and classify) the input images with it, "
                   "writing masks/ and overlays/ beside the CSV")
    p.add_argument("--pixel-size", type=float, default=None, metavar="NM",
                   help="pixel size in nm, adds physical columns (um, nm); with --bundle it overrides the "
                   "files' own calibration")
    p.add_argument("--connectivity", type=int, choices=(4, 8), default=None,
                   help="pixel connectivity of wire clusters (default 8, or the bundle's)")
    p.add_argument("--link-distance", type=float, default=None, metavar="D",
                   help=f"also link wire pixels at most D px apart (default {OPTION_DEFAULTS['link_distance']:g}, the "
                   "paper's DBSCAN, or the bundle's; 0 = wires must touch)")
    p.add_argument("--criterion", choices=("both", "any", "lr", "tb"), default=None,
                   help="percolation: one cluster spans both directions (default, paper), "
                   "either, left-right or top-bottom")
    p.add_argument("--crop-bottom", type=crop_bottom_setting, default=None, metavar="auto|ROWS",
                   help="leave out this many bottom rows (an instrument banner): default 0 for masks; with "
                   "--bundle default auto, the banner each image shows, if any")
    p.add_argument("--wire-resistance", type=float, default=None, metavar="OHM_PER_UM",
                   help="resistance of a wire per um of length: adds sheet_resistance_ohm_sq (needs --pixel-size)")
    p.add_argument("--junction-resistance", type=float, default=DEFAULT_JUNCTION_RESISTANCE_OHM, metavar="OHM",
                   help=f"contact resistance of a junction between two wires (default {DEFAULT_JUNCTION_RESISTANCE_OHM:g})")
    p.add_argument("--electrodes", choices=ELECTRODES, default=DEFAULT_ELECTRODES,
                   help=f"electrode edges for the sheet resistance: left-right or top-bottom "
                   f"(default {DEFAULT_ELECTRODES})")
    p.add_argument("--branches", metavar="FILE.csv", default=None,
                   help="also write the per-branch table (length, width, end-to-end distance, tortuosity, "
                   "current) of every mask; masks only")
    add_device(p, when="with --bundle")
    p.set_defaults(func=run)


def explicit_options(args: argparse.Namespace) -> dict:
    """The analysis options given on the command line (not left at None)."""
    return {k: getattr(args, k) for k in OPTION_DEFAULTS if getattr(args, k) is not None}


def run(args: argparse.Namespace) -> int:
    return run_bundle(args) if args.bundle is not None else run_masks(args)


def run_masks(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..analysis.measure import COLUMNS, analyse_mask, read_mask
    from ..analysis.network import BRANCH_COLUMNS, branch_table
    from ..errors import NanowireSSLError, naming
    from ..io.reader import list_images
    from .failures import failed_note, report_failures

    if args.wire_resistance is not None and args.pixel_size is None:
        raise NanowireSSLError("--wire-resistance: needs --pixel-size (the wire resistance is per um)")
    if args.crop_bottom == BANNER_AUTO:
        raise NanowireSSLError("--crop-bottom auto: banners are found in images (with --bundle); "
                               "give masks a number of rows")
    files = list_images(args.inputs, what="mask")
    options = {**OPTION_DEFAULTS, **explicit_options(args)}
    rows, branches, failed = [], [], []
    for path in files:
        try:
            analysis = analyse_mask(read_mask(path), pixel_size_nm=args.pixel_size, crop_bottom=args.crop_bottom or 0,
                                    wire_resistance_ohm_per_um=args.wire_resistance,
                                    junction_resistance_ohm=args.junction_resistance, electrodes=args.electrodes,
                                    **options)
        except NanowireSSLError as exc:
            failed.append(naming(path, exc))
            continue
        rows.append({"path": str(path), **analysis.row})
        if args.branches is not None:
            current = None if analysis.resistance is None else analysis.resistance.branch_current
            table = branch_table(analysis.wires.graph, pixel_size_nm=args.pixel_size, current=current)
            branches += [{"path": str(path), **{k: table[k][i] for k in BRANCH_COLUMNS}}
                         for i in range(analysis.wires.graph.n_branches)]
    report_failures(failed, len(rows))  # before writing: a run that measured nothing keeps an earlier CSV
    out = Path(args.out)
    _write_csv(out, ("path", *COLUMNS), rows)
    if args.branches is not None:
        _write_csv(Path(args.branches), ("path", *BRANCH_COLUMNS), branches)
    n_perc = sum(r["percolates"] for r in rows)
    density = f", mean pixel density {sum(r['pixel_density'] for r in rows) / len(rows):.3f}" if rows else ""
    print(f"{len(rows)} mask(s) measured, {n_perc} percolate ({options['criterion']}){density}; wrote {out}"
          + (f" and {args.branches} ({len(branches)} branches)" if args.branches is not None else "")
          + failed_note(failed))
    return 0


def _write_csv(path, columns, rows) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def run_bundle(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from ..batch import process_files
    from ..bundle import check_options, load_bundle
    from ..errors import NanowireSSLError
    from .failures import failed_note, report_failures
    from ..io.reader import list_images

    if args.branches is not None or args.wire_resistance is not None:
        raise NanowireSSLError("--branches / --wire-resistance: not available with --bundle (they apply to masks)")
    files = list_images(args.inputs)
    bundle = load_bundle(args.bundle, device=args.device)
    bundle.options = check_options({**bundle.options, **explicit_options(args)}, source="options")
    out = Path(args.out)
    rows = []
    with tqdm(total=len(files), unit="image", desc="analysing", file=sys.stderr) as bar:
        for event in process_files(bundle, files, out.parent, csv_name=out.name, pixel_size_nm=args.pixel_size,
                                   crop_bottom=BANNER_AUTO if args.crop_bottom is None else args.crop_bottom):
            rows.append(event.row)
            bar.update()
    failed = [row["error"] for row in rows if row["error"]]
    done = [row for row in rows if not row["error"]]
    report_failures(failed, len(done))
    summary = [f"{len(done)} image(s) processed with {bundle.describe()}"]
    if bundle.decoder is not None and done:
        summary.append(f"{sum(bool(r['percolates']) for r in done)} percolate")
    if bundle.head is not None and done:
        labels = [r["label"] for r in done]
        summary.append(", ".join(f"{labels.count(c)} {c}" for c in bundle.head.class_names))
    print(f"{'; '.join(summary)}; wrote {out}{failed_note(failed)}")
    return 0
