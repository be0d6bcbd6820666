"""Time the network analysis (wire graph, graph metrics, sheet resistance) on a large mask.

The mask is the "network" mask of bench_percolation.py (random straight wires,
about 10 px wide at 4096, pixel density 0.3). Stages, each the median of
``--repeat`` runs after one warm-up run (skan compiles its numba code on the
first call in a process; that first call is reported apart):

- skeleton: small holes filled, skeletonize, distance transform, spur pruning (as in wire_stats);
- graph: :func:`wire_graph` on the pruned skeleton (skan, pruning, crossings, wires);
- metrics + resistance: :func:`network_metrics` and :func:`sheet_resistance`;
- analyse_mask: the whole row with the sheet resistance, as the CLI computes it.

    OMP_NUM_THREADS=1 python benchmarks/bench_network.py [--size 4096] [--repeat 3]

With ``--agnw FILE`` it measures instead the Otsu mask of a real silver-nanowire
SEM image (banner of ``--crop-bottom`` rows cut off) and, when StructuralGT is
importable (``PYTHONPATH`` to a separate install; it is not a dependency), the
graph StructuralGT 1.0 builds from the same mask (skeletonize, node merging by
radius-2 discs, sknw graph, self loops dropped) with the quantities both define:

    OMP_NUM_THREADS=1 python benchmarks/bench_network.py \
        --agnw ../shared/data/real/agnw_network_sem/AgNWN_slice0001.tif --crop-bottom 67 --pixel-size 32.3

``--crossings`` runs the sweep of constructed X crossings the merging rule was set
on (two round-ended straight wires, angles 25-90 degrees, widths 3-9 px, three
orientations) and prints the cases that do not give one 4-way junction and two wires.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

sys.path.insert(0, str(Path(__file__).parent))
from bench_percolation import wire_mask  # noqa: E402

from napari_nanowire_ssl.analysis.graph import wire_graph  # noqa: E402
from napari_nanowire_ssl.analysis.measure import analyse_mask  # noqa: E402
from napari_nanowire_ssl.analysis.resistance import sheet_resistance  # noqa: E402
from napari_nanowire_ssl.analysis.wires import (  # noqa: E402
    default_prune_px,
    fill_small_holes,
    prune_spurs,
    width_map,
    wire_stats,
)
from napari_nanowire_ssl.analysis.network import network_metrics  # noqa: E402

PIXEL_SIZE_NM, WIRE_OHM_PER_UM, JUNCTION_OHM = 10.0, 10.0, 100.0


def timed(fn, repeat: int):
    """(first-call seconds, median seconds of ``repeat`` further calls, last result)."""
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return first, float(np.median(times)), out


def structuralgt_graph(mask: np.ndarray):
    """StructuralGT 1.0's graph of ``mask`` (merge nodes on, pruning and cleaning off), or None."""
    try:
        import sknw
        from StructuralGT import skel_ID
    except ImportError:
        return None
    np.bool = bool  # StructuralGT 1.0 still uses the alias numpy removed
    skel = skel_ID.make_skel((mask * 255).astype(np.uint8), 1, 0, 0, 0)[0]
    graph = sknw.build_sknw(skel.astype(np.uint16))
    graph.remove_edges_from([(s, e) for s, e in graph.edges() if s == e])
    return graph


def agnw(args) -> None:
    import networkx as nx
    import tifffile
    from skimage.filters import threshold_otsu

    image = tifffile.imread(args.agnw).astype(float)
    image = image[: image.shape[0] - args.crop_bottom]
    mask = image > threshold_otsu(image)
    t = time.perf_counter()
    a = analyse_mask(mask, pixel_size_nm=args.pixel_size, wire_resistance_ohm_per_um=WIRE_OHM_PER_UM,
                     junction_resistance_ohm=JUNCTION_OHM)
    ours_s = time.perf_counter() - t
    row = a.row
    print(f"{args.agnw}: {mask.shape[1]} x {mask.shape[0]} px after cropping {args.crop_bottom} rows, "
          f"{args.pixel_size} nm/px; Otsu mask, pixel density {row['pixel_density']:.3f}\n")
    g = a.wires.graph
    ours = {"nodes": len(g.nodes), "edges": g.n_branches, "nodes of degree >= 3": len(g.junctions),
            "nodes of degree 1": int((g.degree == 1).sum()), "average degree": row["mean_degree"],
            "median edge length (px)": row["median_branch_length_px"], "time (s)": ours_s}
    t = time.perf_counter()
    sgt = structuralgt_graph(mask)
    sgt_s = time.perf_counter() - t
    theirs = {}
    if sgt is not None:
        deg = np.array([d for _, d in sgt.degree()])
        theirs = {"nodes": sgt.number_of_nodes(), "edges": sgt.number_of_edges(),
                  "nodes of degree >= 3": int((deg >= 3).sum()), "nodes of degree 1": int((deg == 1).sum()),
                  "average degree": float(deg.mean()),
                  "median edge length (px)": float(np.median([d["weight"] for *_, d in sgt.edges(data=True)])),
                  "time (s)": sgt_s}
        print(f"StructuralGT graph: {nx.number_connected_components(sgt)} components")
    print("| quantity | this plugin | StructuralGT 1.0 |")
    print("|---|---|---|")
    for key, value in ours.items():
        other = theirs.get(key, "not installed")
        fmt = (lambda v: f"{v:.3g}" if isinstance(v, float) else str(v))
        print(f"| {key} | {fmt(value)} | {fmt(other)} |")
    print("\nAll the plugin's network columns:\n")
    print("| column | value |")
    print("|---|---|")
    for key in ("n_junctions", "junction_density_per_um2", "mean_degree", "n_graph_components",
                "largest_component_length_fraction", "median_branch_length_um", "branch_length_iqr_um",
                "median_branch_width_nm", "branch_width_iqr_nm", "median_tortuosity", "n_wires",
                "mean_wire_length_um", "stick_percolation_ratio", "length_per_area_um", "nematic_order",
                "sheet_resistance_ohm_sq"):
        value = row[key]
        print(f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |")
    print(f"\n(sheet resistance with {WIRE_OHM_PER_UM} ohm/um per wire and {JUNCTION_OHM} ohm per junction)")


def crossing_sweep() -> None:
    import math

    from skimage.draw import disk

    def wire(mask, angle_deg, width, length=170):
        a = math.radians(angle_deg)
        d = np.array([-math.sin(a), math.cos(a)])
        for t in np.linspace(-length / 2, length / 2, 4 * length):
            mask[disk(tuple(np.array([110.0, 110.0]) + t * d), width / 2 + 1e-9, shape=mask.shape)] = True

    cases = [(w, a, b) for w in range(3, 10) for a in (25, 30, 40, 50, 60, 75, 90) for b in (0, 10, 33)]
    failed = []
    for width, angle, base in cases:
        mask = np.zeros((220, 220), bool)
        wire(mask, base, width)
        wire(mask, base + angle, width)
        g = wire_stats(mask).graph
        if not (len(g.junctions) == 1 and sorted(g.degree.tolist()) == [1, 1, 1, 1, 4] and g.n_wires == 2):
            failed.append((width, angle, base, len(g.junctions), g.n_wires))
    print(f"{len(cases) - len(failed)} of {len(cases)} crossings give one 4-way junction and two wires")
    for width, angle, base, n_junctions, n_wires in failed:
        print(f"  width {width} px, angle {angle} deg, first wire at {base} deg: "
              f"{n_junctions} junctions, {n_wires} wires")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--agnw", metavar="TIFF", help="measure the Otsu mask of this image instead")
    parser.add_argument("--crop-bottom", type=int, default=0)
    parser.add_argument("--pixel-size", type=float, default=PIXEL_SIZE_NM)
    parser.add_argument("--crossings", action="store_true", help="run the sweep of constructed crossings instead")
    args = parser.parse_args()
    if args.crossings:
        crossing_sweep()
        return
    if args.agnw:
        agnw(args)
        return
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; median of {args.repeat} runs after a first call\n")
    mask = wire_mask(args.size, 0.3, 2.0 * args.size)
    def skeleton_stage():
        solid = fill_small_holes(mask)
        skel, edt = skeletonize(solid), ndimage.distance_transform_edt(solid)
        width = width_map(solid, edt)
        prune = default_prune_px(skel, width)
        return prune_spurs(skel, prune), edt, width, prune

    first_skel, t_skel, (pruned, edt, width, prune) = timed(skeleton_stage, args.repeat)
    first_graph, t_graph, graph = timed(lambda: wire_graph(pruned, edt, width, prune_px=prune), args.repeat)
    wires = wire_stats(mask)

    def metrics_and_resistance():
        row = network_metrics(wires, region_pixels=mask.size, pixel_size_nm=PIXEL_SIZE_NM)
        res = sheet_resistance(graph, pixel_size_nm=PIXEL_SIZE_NM, wire_resistance_ohm_per_um=WIRE_OHM_PER_UM,
                               junction_resistance_ohm=JUNCTION_OHM)
        return row, res

    first_mr, t_mr, (row, res) = timed(metrics_and_resistance, args.repeat)
    first_all, t_all, analysis = timed(
        lambda: analyse_mask(mask, pixel_size_nm=PIXEL_SIZE_NM, wire_resistance_ohm_per_um=WIRE_OHM_PER_UM,
                             junction_resistance_ohm=JUNCTION_OHM), args.repeat)
    print(f"mask {args.size} x {args.size}, pixel density {mask.mean():.3f}; {graph.n_branches} branches, "
          f"{len(graph.junctions)} junctions, {graph.n_wires} wires, mean degree {row['mean_degree']:.2f}, "
          f"R_s = {res.sheet_resistance_ohm_sq:.4g} ohm/sq ({WIRE_OHM_PER_UM} ohm/um, {JUNCTION_OHM} ohm, "
          f"{PIXEL_SIZE_NM} nm/px)\n")
    print("| stage | first call (s) | median (s) |")
    print("|---|---|---|")
    for name, first, med in (("holes + skeleton + EDT + spur pruning", first_skel, t_skel),
                             ("wire graph (skan, pruning, crossings, wires)", first_graph, t_graph),
                             ("graph metrics + sheet resistance", first_mr, t_mr),
                             ("graph + metrics + sheet resistance", first_graph + first_mr, t_graph + t_mr),
                             ("analyse_mask, whole row with R_s", first_all, t_all)):
        print(f"| {name} | {first:.2f} | {med:.2f} |")
    assert analysis.row["n_junctions"] == len(graph.junctions)


if __name__ == "__main__":
    main()
