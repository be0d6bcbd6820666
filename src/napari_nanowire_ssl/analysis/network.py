"""Network metrics of a wire graph: the CSV row's graph columns, the per-branch table,
degree counts and the overlay images (formulas in docs/analysis.md)."""

from __future__ import annotations

import math

import numpy as np

from .graph import WireGraph

# Stick percolation: N_c L^2 = 5.63726 for widthless sticks of length L (Li & Zhang 2009).
STICK_PERCOLATION_CONSTANT = 5.63726

GRAPH_COLUMNS = (
    "n_branches",
    "mean_degree",
    "n_graph_components",
    "largest_component_length_fraction",
    "median_branch_length_px",
    "branch_length_iqr_px",
    "median_branch_width_px",
    "branch_width_iqr_px",
    "median_tortuosity",
    "n_wires",
    "mean_wire_length_px",
    "stick_percolation_ratio",
    "junction_density_per_um2",
    "median_branch_length_um",
    "branch_length_iqr_um",
    "median_branch_width_nm",
    "branch_width_iqr_nm",
    "mean_wire_length_um",
)
RESISTANCE_COLUMNS = ("wire_resistance_ohm_per_um", "junction_resistance_ohm", "electrodes",
                      "sheet_resistance_ohm_sq")
NETWORK_COLUMNS = GRAPH_COLUMNS + RESISTANCE_COLUMNS
BRANCH_COLUMNS = ("branch", "wire", "src_row", "src_col", "dst_row", "dst_col", "src_degree", "dst_degree",
                  "length_px", "end_to_end_px", "tortuosity", "mean_width_px", "length_um", "end_to_end_um",
                  "mean_width_nm", "current_fraction")


def _median_iqr(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q2), float(q3 - q1)


def network_metrics(wires, *, region_pixels: int, pixel_size_nm: float | None) -> dict:
    """The graph columns of the CSV row (:data:`GRAPH_COLUMNS`), physical ones None
    without a pixel size. ``wires`` is a :class:`.wires.WireStats`."""
    g: WireGraph = wires.graph
    n_nodes = len(g.nodes)
    length_med, length_iqr = _median_iqr(g.length_px)
    width_med, width_iqr = _median_iqr(g.mean_width_px)
    n_comp, comp = g.components()
    if g.n_branches:
        per_comp = np.bincount(comp[g.src], weights=g.length_px, minlength=n_comp)
        largest = float(per_comp.max() / per_comp.sum()) if per_comp.sum() > 0 else math.nan
    else:
        largest = math.nan
    wire_lengths = g.wire_lengths_px()
    mean_wire = float(wire_lengths.mean()) if len(wire_lengths) else math.nan
    # n / n_c = (wires per area) * L^2 / 5.637, L the mean wire length.
    ratio = g.n_wires / region_pixels * mean_wire**2 / STICK_PERCOLATION_CONSTANT if g.n_wires else math.nan
    um = None if pixel_size_nm is None else pixel_size_nm / 1000.0

    def phys(value, power=1):
        return None if um is None else value * um**power

    return {
        "n_branches": g.n_branches,
        "mean_degree": float(g.degree.mean()) if n_nodes else math.nan,
        "n_graph_components": int(n_comp),
        "largest_component_length_fraction": largest,
        "median_branch_length_px": length_med,
        "branch_length_iqr_px": length_iqr,
        "median_branch_width_px": width_med,
        "branch_width_iqr_px": width_iqr,
        "median_tortuosity": _median_iqr(g.tortuosity)[0],
        "n_wires": g.n_wires,
        "mean_wire_length_px": mean_wire,
        "stick_percolation_ratio": ratio,
        "junction_density_per_um2": None if um is None else len(g.junctions) / (region_pixels * um * um),
        "median_branch_length_um": phys(length_med),
        "branch_length_iqr_um": phys(length_iqr),
        "median_branch_width_nm": None if um is None else width_med * pixel_size_nm,
        "branch_width_iqr_nm": None if um is None else width_iqr * pixel_size_nm,
        "mean_wire_length_um": phys(mean_wire),
    }


def branch_table(graph: WireGraph, *, pixel_size_nm: float | None = None, current=None) -> dict:
    """One entry per branch (:data:`BRANCH_COLUMNS` -> arrays); physical columns and the
    current (fraction of the total, from :func:`.resistance.sheet_resistance`) None when unknown."""
    um = None if pixel_size_nm is None else pixel_size_nm / 1000.0
    n = graph.n_branches
    e2e = graph.end_to_end_px

    def phys(values, scale):
        return [None] * n if scale is None else values * scale

    return {
        "branch": np.arange(n),
        "wire": graph.wire,
        "src_row": graph.nodes[graph.src, 0],
        "src_col": graph.nodes[graph.src, 1],
        "dst_row": graph.nodes[graph.dst, 0],
        "dst_col": graph.nodes[graph.dst, 1],
        "src_degree": graph.degree[graph.src],
        "dst_degree": graph.degree[graph.dst],
        "length_px": graph.length_px,
        "end_to_end_px": e2e,
        "tortuosity": graph.tortuosity,
        "mean_width_px": graph.mean_width_px,
        "length_um": phys(graph.length_px, um),
        "end_to_end_um": phys(e2e, um),
        "mean_width_nm": phys(graph.mean_width_px, pixel_size_nm),
        "current_fraction": [None] * n if current is None else np.asarray(current),
    }


def degree_counts(graph: WireGraph) -> dict[int, int]:
    """Number of nodes of each degree."""
    values, counts = np.unique(graph.degree, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}
