"""What the Analyse tab draws over a mask, computed without Qt: one label image of the
clusters and the skeleton's branches, the per-label features, the junctions and the
histograms' data (the napari layer only colours and shows them)."""

from __future__ import annotations

import numpy as np

from .measure import analyse_mask
from .network import degree_counts

CLUSTER, PERCOLATING, BRANCH = "cluster", "percolating cluster", "branch"


def cluster_features(labels: np.ndarray, lengths_px: np.ndarray, spanning: np.ndarray) -> dict:
    """One row per cluster (``index`` = its label, as napari's Labels features expect):
    pixels, skeleton length, the edges it touches, whether it spans and percolates."""
    n = len(lengths_px)

    def hit(values) -> np.ndarray:
        out = np.zeros(n + 1, dtype=bool)
        out[values] = True
        return out[1:]

    left, right, top, bottom = hit(labels[:, 0]), hit(labels[:, -1]), hit(labels[0]), hit(labels[-1])
    return {
        "index": np.arange(1, n + 1),
        "pixels": np.bincount(labels.ravel(), minlength=n + 1)[1:],
        "length_px": lengths_px,
        "spans_lr": left & right,
        "spans_tb": top & bottom,
        "percolating": hit(labels[spanning]),
        "touches_left": left,
        "touches_right": right,
        "touches_top": top,
        "touches_bottom": bottom,
    }


def results_labels(clusters: np.ndarray, graph, cluster_rows: dict, values) -> tuple[np.ndarray, dict]:
    """One label image of an analysed mask and its features, one row per label.

    Labels 1..n are the clusters (as in ``clusters``), n+1..n+b the skeleton's
    branches drawn over them; ``part`` says which (cluster / percolating
    cluster / branch) and ``value`` holds each branch's colouring value
    (``values``, NaN for clusters), so one layer shows all three and its
    hover names each.
    """
    n, b = len(cluster_rows["index"]), graph.n_branches
    out = clusters.astype(np.int32, copy=True)
    if b:
        ids = np.repeat(np.arange(n + 1, n + b + 1, dtype=np.int32), np.diff(graph.path_indptr))
        out[tuple(graph.path_coords.T)] = ids
    pixels = np.bincount(out.ravel(), minlength=n + b + 1)[1:]
    none = np.zeros(b, dtype=bool)
    features = {
        "index": np.arange(1, n + b + 1),
        "part": np.array([PERCOLATING if p else CLUSTER for p in cluster_rows["percolating"]] + [BRANCH] * b,
                         dtype=object),
        "pixels": pixels,
        "length_px": np.concatenate([np.asarray(cluster_rows["length_px"], float), graph.length_px]),
        "value": np.concatenate([np.full(n, np.nan), np.asarray(values, float)]),
    }
    for key in ("spans_lr", "spans_tb", "percolating", "touches_left", "touches_right", "touches_top",
                "touches_bottom"):
        features[key] = np.concatenate([cluster_rows[key], none])
    return out, features


def overlay_data(mask: np.ndarray, *, crop_bottom: int = 0, **options) -> dict:
    """The core analysis of ``mask`` (:func:`analyse_mask`) plus what the overlays show, at full
    mask size (cropped rows empty): the results label image and its features, the junctions and
    the histograms' data.

    Branches are coloured by their share of the current when the sheet resistance
    was computed, otherwise by their length (µm with a pixel size, else px)."""
    analysis = analyse_mask(mask, crop_bottom=crop_bottom, **options)
    h = mask.shape[0] - crop_bottom
    perc, wires = analysis.percolation, analysis.wires
    graph = wires.graph
    scale = 1.0 if options.get("pixel_size_nm") is None else options["pixel_size_nm"] / 1000.0
    if analysis.resistance is not None:
        colour_by, values = "current fraction", analysis.resistance.branch_current
    else:
        colour_by, values = ("length (µm)" if scale != 1.0 else "length (px)"), graph.length_px * scale
    clusters = cluster_features(perc.labels, wires.cluster_lengths_px, perc.spanning_mask)
    labels, features = results_labels(perc.labels, graph, clusters, values)
    full = np.zeros(mask.shape, dtype=np.int32)
    full[:h] = labels
    return {
        "row": analysis.row,
        "call": str(analysis.call),
        "labels": full,
        "features": features,
        "colour_by": colour_by,
        "junctions": graph.junctions,
        "junction_degree": graph.degree[graph.degree >= 3],
        "histograms": {"length": graph.length_px * scale, "width": graph.mean_width_px * scale * 1000.0
                       if scale != 1.0 else graph.mean_width_px, "degree": degree_counts(graph),
                       "unit": "µm" if scale != 1.0 else "px"},
    }
