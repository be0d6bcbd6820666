"""The paper's few-shot protocol: n labelled images per class, the rest as test set.

For each n and each of R random splits, a :class:`~.classify.LinearHead`
(standardised features, multinomial logistic regression) is trained on n
images per class and scored on all remaining images; the result is the median
accuracy and its 95 % interval over the splits (Lu et al. 2022, Fig. 2C).
Also the confusion matrix of a set of predictions, as CSV and PNG.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NanowireSSLError
from .classify import LinearHead


@dataclass(frozen=True)
class ShotResult:
    shots: int
    accuracies: np.ndarray  # one per split
    n_test: int = 0  # test images per split

    @property
    def median(self) -> float:
        return float(np.median(self.accuracies))

    @property
    def interval(self) -> tuple[float, float]:
        lo, hi = np.percentile(self.accuracies, [2.5, 97.5])
        return float(lo), float(hi)


def fewshot_accuracy(features: np.ndarray, labels, shots=(1, 2, 4, 8), *, repeats: int = 20,
                     seed: int = 0, make_head=LinearHead) -> list[ShotResult]:
    """Accuracy of the head ``make_head()`` builds over random splits, for each number of shots.

    Shot counts that leave a class without test images are refused.
    """
    labels = np.asarray(labels).astype(str)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise NanowireSSLError("few-shot evaluation needs at least two classes")
    rng = np.random.default_rng(seed)
    results = []
    for n in shots:
        if n >= counts.min():
            raise NanowireSSLError(
                f"{n} labelled images per class leaves no test image for class "
                f"'{classes[counts.argmin()]}' ({counts.min()} images)")
        accuracies = []
        for _ in range(repeats):
            train = np.concatenate([rng.choice(np.flatnonzero(labels == c), n, replace=False) for c in classes])
            test = np.setdiff1d(np.arange(len(labels)), train)
            head = make_head().fit(features[train], labels[train], classes)
            accuracies.append(float((head.predict(features[test]) == labels[test]).mean()))
        results.append(ShotResult(n, np.array(accuracies), len(labels) - n * len(classes)))
    return results


def write_fewshot_csv(results: list[ShotResult], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``fewshot.csv`` (shots, repeat, accuracy) and ``summary.csv``
    (shots, median, ci_low, ci_high, n_test) into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    per_split, summary = out_dir / "fewshot.csv", out_dir / "summary.csv"
    with per_split.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("shots", "repeat", "accuracy"))
        writer.writerows((r.shots, i, f"{a:.6f}") for r in results for i, a in enumerate(r.accuracies))
    with summary.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("shots", "median", "ci_low", "ci_high", "n_test"))
        writer.writerows((r.shots, f"{r.median:.6f}", f"{r.interval[0]:.6f}", f"{r.interval[1]:.6f}", r.n_test)
                         for r in results)
    return per_split, summary


def plot_fewshot(results: list[ShotResult], path: str | os.PathLike, *, title: str = "") -> Path:
    """Box plot of accuracy per number of labelled images per class (as the paper's Fig. 2C), as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on the Agg canvas: no pyplot, so napari's Qt backend is left alone.
    fig = Figure(figsize=(1.2 + 0.8 * len(results), 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.boxplot([r.accuracies for r in results], tick_labels=[str(r.shots) for r in results])
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def confusion_matrix(truth, predicted, labels) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = predicted class, in ``labels`` order."""
    index = {name: k for k, name in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(truth, predicted):
        matrix[index[t], index[p]] += 1
    return matrix


def write_confusion_csv(matrix: np.ndarray, labels, path: str | os.PathLike) -> Path:
    """CSV with a header ``truth \\ predicted,<labels>...`` and one row per true class."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["truth \\ predicted", *labels])
        writer.writerows([name, *map(int, row)] for name, row in zip(labels, matrix))
    return Path(path)


def plot_confusion(matrix: np.ndarray, labels, path: str | os.PathLike) -> Path:
    """The confusion matrix as a PNG, counts written in the cells."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = len(labels)
    fig = Figure(figsize=(2.0 + 0.7 * k, 1.6 + 0.6 * k))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth (folder)")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
