"""The analysis against the synthetic generator's ground truth (what was drawn)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_nanowire_ssl.analysis import analyse_mask
from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.synth import generate


def test_analyze_cli_reproduces_truth_csv_of_synth(tmp_path):
    data, out = tmp_path / "data", tmp_path / "metrics.csv"
    assert main(["synth", str(data), "--per-class", "3", "--size", "192", "--seed", "7"]) == 0
    assert main(["analyze", str(data / "masks"), "--out", str(out)]) == 0
    with open(data / "truth.csv") as f:
        truth = {row["id"]: row for row in csv.DictReader(f)}
    with open(out) as f:
        measured = {row["path"].rsplit("/", 1)[-1][:-4]: row for row in csv.DictReader(f)}
    assert set(measured) == set(truth)
    for sample_id, row in measured.items():
        expected = truth[sample_id]
        assert float(row["pixel_density"]) == pytest.approx(float(expected["density"]), abs=1e-9)
        assert (row["spans_lr"] == "True") == (expected["spans_lr"] == "true"), sample_id
        assert (row["spans_tb"] == "True") == (expected["spans_tb"] == "true"), sample_id
        if expected["class"] == "network":
            assert row["percolates"] == "True" and row["morphology"] == "network"
        if expected["class"] == "dispersed":
            assert row["percolates"] == "False"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_width_and_length_of_a_single_drawn_wire(seed):
    sample = generate("singular", size=256, seed=seed, n_wires=1, curvature=0.2)
    (wire,) = sample.params["wires"]
    analysis = analyse_mask(sample.mask)
    drawn_length = float(np.linalg.norm(np.diff(wire.path, axis=0), axis=1).sum())
    # The skeleton stops about half a width short of each round end cap.
    assert analysis.wires.total_length_px == pytest.approx(drawn_length, abs=wire.width + 3)
    assert analysis.row["mean_width_px"] == pytest.approx(wire.width, abs=1.5)
    assert analysis.row["n_end_points"] == 2 and analysis.row["n_clusters"] == 1


def test_bundles_are_more_aligned_than_networks():
    # Wires of a bundle touch, so the mask alone cannot separate them: the
    # skeleton also follows the slits between them and the order stays below 1.
    bundle = analyse_mask(generate("bundle", size=256, seed=4, n_bundles=1, curvature=0).mask).row
    network = analyse_mask(generate("network", size=256, seed=4).mask).row
    assert bundle["nematic_order"] > 0.55
    assert network["nematic_order"] < bundle["nematic_order"] - 0.25
