"""Time percolation and the full per-image measurement on square wire masks.

Masks are random straight wires (width about 5 px at 1024, scaled with the
size): a "network" of long wires at a pixel density near 0.3 (one percolating
cluster, as in the paper) and "dispersed" short wires (a tenth of the image
long) at about 0.12, many clusters for the link distance to merge. Prints a
Markdown table of median wall times over ``--repeat`` runs.

    python benchmarks/bench_percolation.py [--sizes 1024 2048 4096] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from scipy import ndimage
from skimage.draw import line

from napari_nanowire_ssl.analysis.measure import measure_mask
from napari_nanowire_ssl.analysis.percolation import percolation


def wire_mask(size: int, density: float, max_length: float, seed: int = 0) -> np.ndarray:
    """Random straight wires at most ``max_length`` px long, drawn until about
    ``density`` of the pixels are wire."""
    rng = np.random.default_rng(seed)
    half_width = max(1, round(2 * size / 1024))
    skeleton = np.zeros((size, size), bool)
    mask = skeleton
    while mask.mean() < density:
        for _ in range(20):
            r0, c0 = rng.integers(0, size, 2)
            angle, length = rng.uniform(0, np.pi), rng.uniform(0.5, 1) * max_length
            r1 = int(np.clip(r0 + length * np.sin(angle), 0, size - 1))
            c1 = int(np.clip(c0 + length * np.cos(angle), 0, size - 1))
            rr, cc = line(r0, c0, r1, c1)
            skeleton[rr, cc] = True
        mask = ndimage.binary_dilation(skeleton, iterations=half_width)
    return mask


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}; median of {args.repeat} runs\n")
    print("| size | mask | density | clusters (d=0) | percolation d=0 (s) | percolation d=2 (s) "
          "| percolation d=3 (s) | measure_mask d=2 (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for kind, density, max_length in (("network", 0.3, 2.0 * size), ("dispersed", 0.12, size / 10)):
            mask = wire_mask(size, density, max_length)
            cells = [
                median_time(lambda d=d: percolation(mask, link_distance=d), args.repeat) for d in (0, 2, 3)
            ]
            cells.append(median_time(lambda: measure_mask(mask, link_distance=2), max(1, args.repeat // 2)))
            print(f"| {size} x {size} | {kind} | {mask.mean():.2f} | {percolation(mask).n_clusters} | "
                  + " | ".join(f"{t:.3f}" for t in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
