"""Dice and IoU on small hand-computed masks."""

import numpy as np
import pytest

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.fewshot.metrics import dice, iou, segmentation_scores

PRED = np.array([[1, 1, 0], [0, 1, 0]], dtype=np.uint8)  # 3 pixels
TRUTH = np.array([[1, 0, 0], [0, 1, 1]], dtype=bool)  # 3 pixels, 2 shared


def test_dice_and_iou_by_hand():
    assert dice(PRED, TRUTH) == pytest.approx(2 * 2 / (3 + 3))
    assert iou(PRED, TRUTH) == pytest.approx(2 / 4)


def test_probabilities_are_thresholded():
    prob = np.array([[0.9, 0.51, 0.5], [0.2, 0.7, 0.49]], dtype=np.float32)  # > 0.5: same as PRED
    assert dice(prob, TRUTH) == dice(PRED, TRUTH)
    assert iou(prob, TRUTH, threshold=0.8) == pytest.approx(1 / 3)  # only the 0.9 pixel, shared


def test_empty_and_disjoint_masks():
    empty = np.zeros((2, 3), bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(empty, TRUTH) == 0.0 and iou(PRED, ~TRUTH & (PRED == 0)) == 0.0
    assert dice(TRUTH, TRUTH) == 1.0 and iou(TRUTH, TRUTH) == 1.0


def test_mask_file_values_count_as_nanowire():
    assert dice(PRED * 255, TRUTH.astype(np.uint16) * 7) == dice(PRED, TRUTH)


def test_segmentation_scores_summary():
    empty = np.zeros((2, 3), bool)
    s = segmentation_scores([PRED, TRUTH, empty], [TRUTH, TRUTH, TRUTH])
    assert s["dice"] == pytest.approx([2 / 3, 1.0, 0.0])
    assert s["iou"] == pytest.approx([0.5, 1.0, 0.0])
    assert s["mean_dice"] == pytest.approx(5 / 9) and s["median_dice"] == pytest.approx(2 / 3)
    assert s["mean_iou"] == pytest.approx(0.5) and s["median_iou"] == pytest.approx(0.5)


def test_shape_and_count_mismatches_are_refused():
    with pytest.raises(NanowireSSLError, match=r"\(2, 3\).*\(3, 2\)"):
        dice(PRED, TRUTH.T)
    with pytest.raises(NanowireSSLError, match="2 predictions but 1"):
        segmentation_scores([PRED, PRED], [TRUTH])
