"""Overlap scores of binary segmentations: Dice and IoU (Jaccard).

Inputs are binary masks, or probability maps thresholded at ``threshold``
(a pixel is nanowire when ``value > threshold``; boolean and 0/1 integer
masks are therefore read as they are). When prediction and truth are both
empty the segmentation is perfect and both scores are 1.0 (the usual
convention, rather than an undefined 0/0).
"""

from __future__ import annotations

import numpy as np

from ..errors import NanowireSSLError
from .policy import WIRE_THRESHOLD


def _binary(a: np.ndarray, threshold: float) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == bool else a > threshold


def _counts(pred: np.ndarray, truth: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """(intersection, predicted, true) pixel counts."""
    p, t = _binary(pred, threshold), _binary(truth, threshold)
    if p.shape != t.shape:
        raise NanowireSSLError(f"prediction has shape {p.shape} but the ground truth has shape {t.shape}")
    return int(np.count_nonzero(p & t)), int(np.count_nonzero(p)), int(np.count_nonzero(t))


def dice(pred: np.ndarray, truth: np.ndarray, *, threshold: float = WIRE_THRESHOLD) -> float:
    """``2 |P & T| / (|P| + |T|)``; 1.0 when both are empty."""
    inter, n_pred, n_true = _counts(pred, truth, threshold)
    return 1.0 if n_pred + n_true == 0 else 2 * inter / (n_pred + n_true)


def iou(pred: np.ndarray, truth: np.ndarray, *, threshold: float = WIRE_THRESHOLD) -> float:
    """``|P & T| / |P | T|``; 1.0 when both are empty."""
    inter, n_pred, n_true = _counts(pred, truth, threshold)
    union = n_pred + n_true - inter
    return 1.0 if union == 0 else inter / union


def segmentation_scores(preds, truths, *, threshold: float = WIRE_THRESHOLD) -> dict:
    """Per-image Dice and IoU and their mean and median.

    Returns ``{"dice": [...], "iou": [...], "mean_dice", "median_dice",
    "mean_iou", "median_iou"}``.
    """
    preds, truths = list(preds), list(truths)
    if len(preds) != len(truths):
        raise NanowireSSLError(f"got {len(preds)} predictions but {len(truths)} ground-truth masks")
    if not preds:
        raise NanowireSSLError("no images to score")
    d = [dice(p, t, threshold=threshold) for p, t in zip(preds, truths)]
    j = [iou(p, t, threshold=threshold) for p, t in zip(preds, truths)]
    return {
        "dice": d,
        "iou": j,
        "mean_dice": float(np.mean(d)),
        "median_dice": float(np.median(d)),
        "mean_iou": float(np.mean(j)),
        "median_iou": float(np.median(j)),
    }
