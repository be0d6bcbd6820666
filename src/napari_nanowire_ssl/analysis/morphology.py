"""A morphology call from percolation, density and (optionally) the classifier.

The rule, after Lu et al. (Digital Discovery 2022), where networks percolate at
pixel densities of about 0.26-0.50 and dispersed wires do not, at 0.02-0.25:

1. Percolation decides between ``network`` (a cluster meets the percolation
   criterion) and ``dispersed`` (none does).
2. Percolation cannot tell single wires or bundles from dispersed wires, so
   when the classifier's top class is ``singular`` or ``bundle`` with
   probability >= ``keep_probability``, that class is the call.
3. Otherwise the classifier is only reported: the reasons say whether it
   agrees with percolation, and a density outside the paper's range for the
   call is pointed out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import NanowireSSLError
from .percolation import PercolationResult

CLASSES = ("dispersed", "network", "singular", "bundle")
DENSITY_RANGE = {"network": (0.26, 0.50), "dispersed": (0.02, 0.25)}
KEEP_PROBABILITY = 0.8


@dataclass(frozen=True)
class MorphologyCall:
    """The call and why, e.g. ``network: percolates in both directions; density 0.31``."""

    label: str
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.label}: {'; '.join(self.reasons)}"


def describe_percolation(result: PercolationResult) -> str:
    """Plain words for which edges the clusters of a percolation result join.

    A cluster joining left and right and one joining top and bottom always
    meet (they cross, and crossing clusters are connected), so spanning both
    ways means one cluster touches all four edges.
    """
    if result.spans_lr and result.spans_tb:
        return "percolates in both directions"
    if result.spans_lr:
        return "spans left-right only"
    if result.spans_tb:
        return "spans top-bottom only"
    return "does not percolate"


def morphology_call(
    percolation: PercolationResult,
    density: float,
    probabilities: dict[str, float] | None = None,
    *,
    keep_probability: float = KEEP_PROBABILITY,
) -> MorphologyCall:
    """Call the morphology of one image; see the module docstring for the rule."""
    if not (isinstance(density, (int, float)) and 0.0 <= density <= 1.0):
        raise NanowireSSLError(f"density: must be a fraction in [0, 1], got {density!r}")
    label = "network" if percolation.percolates else "dispersed"
    reasons = [describe_percolation(percolation), f"density {density:.2f}"]
    if probabilities:
        for name, p in probabilities.items():
            if not (isinstance(p, (int, float)) and math.isfinite(p) and 0.0 <= p <= 1.0):
                raise NanowireSSLError(f"probabilities: {name!r} has probability {p!r}, not in [0, 1]")
        top = max(probabilities, key=probabilities.get)
        p = probabilities[top]
        if top in ("singular", "bundle") and p >= keep_probability:
            reasons.append(f"classifier: {top} (p={p:.2f}), kept: percolation cannot tell {top} wires apart")
            label = top
        elif top == label:
            reasons.append(f"classifier agrees: {top} (p={p:.2f})")
        else:
            reasons.append(f"classifier disagrees: {top} (p={p:.2f}), percolation says {label}")
    low, high = DENSITY_RANGE.get(label, (0.0, 1.0))
    if not low <= density <= high:
        reasons.append(f"density outside the paper's {low:.2f}-{high:.2f} for {label}")
    return MorphologyCall(label, tuple(reasons))
