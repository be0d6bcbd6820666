"""What the Analyse tab draws, computed without Qt: one label image of clusters and branches."""

from __future__ import annotations

import numpy as np

from napari_nanowire_ssl.analysis import measure_mask
from napari_nanowire_ssl.analysis.overlays import BRANCH, CLUSTER, PERCOLATING, overlay_data


def test_clusters_then_branches_in_one_label_image_with_their_parts():
    mask = np.zeros((40, 60), bool)
    mask[18:21, :] = True  # a wire across: percolates left-right
    mask[5:8, 10:25] = True  # a short one apart
    data = overlay_data(mask, criterion="lr", crop_bottom=4)
    row, labels, features = data["row"], data["labels"], data["features"]
    assert row == measure_mask(mask, criterion="lr", crop_bottom=4)  # the same numbers as the CLI
    n, b = row["n_clusters"], row["n_branches"]
    assert (n, b) == (2, 2) and labels.shape == mask.shape and not labels[36:].any()
    assert list(features["index"]) == [1, 2, 3, 4]
    assert sorted(features["part"][:n]) == [CLUSTER, PERCOLATING] and list(features["part"][n:]) == [BRANCH] * b
    # Each cluster's pixels: its label or a branch drawn over it; branch pixels lie on the wires.
    assert ((labels > 0) == mask).all()
    assert features["pixels"].sum() == mask.sum()
    across = features["index"][features["part"] == PERCOLATING][0]
    assert set(np.unique(labels[18:21])) - {0} >= {across}
    assert (labels[19, 5:55] > n).all()  # the skeleton runs along the wire's middle row
    np.testing.assert_allclose(features["value"][n:], features["length_px"][n:])  # coloured by length (px)
    assert np.isnan(features["value"][:n]).all() and data["colour_by"] == "length (px)"
    assert len(data["junctions"]) == 0 and data["histograms"]["unit"] == "px"
