"""All per-image metrics of a mask as one flat, CSV-ready row: percolation,
density, wire statistics, the wire graph's metrics and, given a wire
resistance, the sheet resistance (docs/analysis.md).

The CLI (``nanowire-ssl analyze``) and the napari widget both call
:func:`measure_mask`, so a table written by one matches the other. Physical
columns are always present (empty/None without a pixel size), so every row of
a table has the same columns in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NanowireSSLError
from ..labels import read_mask  # noqa: F401 (masks are read by the conventions module; callers import it here too)
from .density import check_pixel_size, density, region
from .morphology import MorphologyCall, morphology_call
from .network import NETWORK_COLUMNS, network_metrics
from .percolation import PercolationResult, as_mask, percolation
from .resistance import DEFAULT_ELECTRODES, DEFAULT_JUNCTION_RESISTANCE_OHM, SheetResistance, check_resistances, \
    sheet_resistance
from .wires import WireStats, wire_stats

# Column names in output order.
COLUMNS = (
    "pixel_density",
    "spans_lr",
    "spans_tb",
    "percolates",
    "n_clusters",
    "largest_cluster_fraction",
    "total_length_px",
    "mean_width_px",
    "median_width_px",
    "n_end_points",
    "n_junctions",
    "nematic_order",
    "director_deg",
    "morphology",
    "pixel_size_nm",
    "wire_area_um2",
    "region_area_um2",
    "total_length_um",
    "mean_width_nm",
    "length_per_area_um",
    *NETWORK_COLUMNS,
)


@dataclass(frozen=True)
class MaskAnalysis:
    """Everything computed for one mask: the CSV row and the intermediate results
    (cluster labels, spanning mask, skeleton) that overlays are drawn from. The
    arrays cover the analysed rows (``crop_bottom`` rows fewer than the mask)."""

    row: dict
    percolation: PercolationResult
    wires: WireStats
    call: MorphologyCall
    resistance: SheetResistance | None = None


def measure_mask(mask, **options) -> dict:
    """Measure one wire mask (nonzero = wire) into a dict with :data:`COLUMNS` as keys;
    options as for :func:`analyse_mask`."""
    return analyse_mask(mask, **options).row


def analyse_mask(
    mask,
    *,
    pixel_size_nm: float | None = None,
    connectivity: int = 8,
    link_distance: float = 0,
    criterion: str = "both",
    roi=None,
    crop_bottom: int = 0,
    wire_resistance_ohm_per_um: float | None = None,
    junction_resistance_ohm: float = DEFAULT_JUNCTION_RESISTANCE_OHM,
    electrodes: str = DEFAULT_ELECTRODES,
) -> MaskAnalysis:
    """Analyse one wire mask (nonzero = wire): percolation, density, wire statistics,
    the wire graph and, given ``wire_resistance_ohm_per_um`` and a pixel size, the
    sheet resistance between the ``electrodes`` edges (``lr`` or ``tb``).

    ``crop_bottom`` rows (an instrument banner) are cut off before anything is
    measured, so the image edges for percolation are those of the cropped
    mask; ``roi`` (same shape as the mask, nonzero = inside) drops wire pixels
    outside it and is the area for the density.
    """
    mask = as_mask(mask)
    if pixel_size_nm is not None:
        pixel_size_nm = check_pixel_size(pixel_size_nm)
    if wire_resistance_ohm_per_um is not None:
        check_resistances(wire_resistance_ohm_per_um, junction_resistance_ohm, electrodes)
        if pixel_size_nm is None:
            raise NanowireSSLError("sheet resistance: needs a pixel size (the wire resistance is per um)")
    h = mask.shape[0] - crop_bottom
    inside = region(mask.shape, roi=roi, crop_bottom=crop_bottom)[:h]
    mask = mask[:h] & inside
    perc = percolation(mask, connectivity=connectivity, link_distance=link_distance, criterion=criterion)
    wires = wire_stats(mask, labels=perc.labels, pixel_size_nm=pixel_size_nm)
    dens = density(mask, pixel_size_nm=pixel_size_nm, roi=inside, length_px=wires.total_length_px)
    call = morphology_call(perc, dens.pixel_density)
    resistance = None
    if wire_resistance_ohm_per_um is not None:
        resistance = sheet_resistance(wires.graph, pixel_size_nm=pixel_size_nm,
                                      wire_resistance_ohm_per_um=wire_resistance_ohm_per_um,
                                      junction_resistance_ohm=junction_resistance_ohm, electrodes=electrodes)
    row = {
        "pixel_density": dens.pixel_density,
        "spans_lr": perc.spans_lr,
        "spans_tb": perc.spans_tb,
        "percolates": perc.percolates,
        "n_clusters": perc.n_clusters,
        "largest_cluster_fraction": perc.largest_cluster_fraction,
        "total_length_px": wires.total_length_px,
        "mean_width_px": wires.mean_width_px,
        "median_width_px": wires.median_width_px,
        "n_end_points": wires.n_end_points,
        "n_junctions": wires.n_junctions,
        "nematic_order": wires.nematic_order,
        "director_deg": wires.director_deg,
        "morphology": call.label,
        "pixel_size_nm": pixel_size_nm,
        "wire_area_um2": dens.wire_area_um2,
        "region_area_um2": dens.region_area_um2,
        "total_length_um": wires.total_length_um,
        "mean_width_nm": wires.mean_width_nm,
        "length_per_area_um": dens.length_per_area_um,
        **network_metrics(wires, region_pixels=dens.region_pixels, pixel_size_nm=pixel_size_nm),
        "wire_resistance_ohm_per_um": None if resistance is None else float(wire_resistance_ohm_per_um),
        "junction_resistance_ohm": None if resistance is None else float(junction_resistance_ohm),
        "electrodes": None if resistance is None else electrodes,
        "sheet_resistance_ohm_sq": None if resistance is None else resistance.sheet_resistance_ohm_sq,
    }
    return MaskAnalysis(row, perc, wires, call, resistance)


