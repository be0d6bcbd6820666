"""Morphology analysis of wire masks: percolation, density, wire statistics, the
morphology call, the wire graph and its sheet resistance (numpy, scipy,
scikit-image and skan only; no Qt, no torch)."""

from .density import DensityResult, density, pixel_density
from .graph import WireGraph, wire_graph
from .measure import COLUMNS, MaskAnalysis, analyse_mask, measure_mask, read_mask
from .morphology import MorphologyCall, morphology_call
from .network import branch_table, network_metrics
from .percolation import PercolationResult, cluster_labels, percolation
from .resistance import SheetResistance, sheet_resistance
from .wires import WireStats, skeleton_length, wire_stats

__all__ = [
    "COLUMNS",
    "DensityResult",
    "MorphologyCall",
    "PercolationResult",
    "SheetResistance",
    "WireGraph",
    "WireStats",
    "branch_table",
    "cluster_labels",
    "density",
    "MaskAnalysis",
    "analyse_mask",
    "measure_mask",
    "morphology_call",
    "network_metrics",
    "percolation",
    "pixel_density",
    "read_mask",
    "sheet_resistance",
    "skeleton_length",
    "wire_graph",
    "wire_stats",
]
