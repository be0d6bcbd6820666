"""Morphology analysis of wire masks: percolation, density, wire statistics and
the morphology call (numpy, scipy and scikit-image only; no Qt, no torch)."""

from .density import DensityResult, density, pixel_density
from .measure import COLUMNS, MaskAnalysis, analyse_mask, measure_mask, read_mask
from .morphology import MorphologyCall, morphology_call
from .percolation import PercolationResult, cluster_labels, percolation
from .wires import WireStats, skeleton_length, wire_stats

__all__ = [
    "COLUMNS",
    "DensityResult",
    "MorphologyCall",
    "PercolationResult",
    "WireStats",
    "cluster_labels",
    "density",
    "MaskAnalysis",
    "analyse_mask",
    "measure_mask",
    "morphology_call",
    "percolation",
    "pixel_density",
    "read_mask",
    "skeleton_length",
    "wire_stats",
]
