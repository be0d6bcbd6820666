"""Synthetic nanowire TEM images with exact ground truth (sample data, tests, benchmarks).

Plain numpy/scipy: importing this package pulls in neither torch nor Qt.
"""

from .generator import CLASSES, DEFAULTS, NanowireSample, generate, generate_dataset, sample_seed
from .geometry import Wire, rasterize
from .render import Imaging

__all__ = [
    "CLASSES",
    "DEFAULTS",
    "Imaging",
    "NanowireSample",
    "Wire",
    "generate",
    "generate_dataset",
    "rasterize",
    "sample_seed",
]
