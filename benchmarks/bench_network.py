"""Time the network analysis (wire graph, graph metrics, sheet resistance) on a large mask.

The mask is the "network" mask of bench_percolation.py (random straight wires,
about 10 px wide at 4096, pixel density 0.3). Stages, each the median of
``--repeat`` runs after one warm-up run (skan compiles its numba code on the
first call in a process; that first call is reported apart):

- skeleton: skeletonize + distance transform + spur pruning (what wire_stats did before);
- graph: :func:`wire_graph` on the pruned skeleton (skan, pruning, crossings, wires);
- metrics + resistance: :func:`network_metrics` and :func:`sheet_resistance`;
- analyse_mask: the whole row with the sheet resistance, as the CLI computes it.

    OMP_NUM_THREADS=1 python benchmarks/bench_network.py [--size 4096] [--repeat 3]
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
from napari_nanowire_ssl.analysis.wires import prune_spurs, wire_stats  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; median of {args.repeat} runs after a first call\n")
    mask = wire_mask(args.size, 0.3, 2.0 * args.size)
    skel = skeletonize(mask)
    edt = ndimage.distance_transform_edt(mask)
    prune = max(2, round(float(np.median(2.0 * edt[skel] - 1.0))))

    def skeleton_stage():
        s = skeletonize(mask)
        return prune_spurs(s, prune), ndimage.distance_transform_edt(mask)

    first_skel, t_skel, (pruned, edt) = timed(skeleton_stage, args.repeat)
    first_graph, t_graph, graph = timed(lambda: wire_graph(pruned, edt, prune_px=prune), args.repeat)
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
    for name, first, med in (("skeleton + EDT + spur pruning", first_skel, t_skel),
                             ("wire graph (skan, pruning, crossings, wires)", first_graph, t_graph),
                             ("graph metrics + sheet resistance", first_mr, t_mr),
                             ("graph + metrics + sheet resistance", first_graph + first_mr, t_graph + t_mr),
                             ("analyse_mask, whole row with R_s", first_all, t_all)):
        print(f"| {name} | {first:.2f} | {med:.2f} |")
    assert analysis.row["n_junctions"] == len(graph.junctions)


if __name__ == "__main__":
    main()
