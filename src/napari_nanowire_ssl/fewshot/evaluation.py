"""The paper's few-shot protocol: n labelled images per class, the rest as test set.

For each n and each of R random splits, a linear classifier (standardised
features, multinomial logistic regression) is trained on n images per class
and scored on all remaining images; the result is the median accuracy and its
95 % interval over the splits (Lu et al. 2022, Fig. 2C).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NanowireSSLError


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, *, c: float = 1.0):
    """Standardised features + multinomial logistic regression (a fitted sklearn pipeline)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    return model.fit(train_x, train_y)


@dataclass(frozen=True)
class ShotResult:
    shots: int
    accuracies: np.ndarray  # one per split

    @property
    def median(self) -> float:
        return float(np.median(self.accuracies))

    @property
    def interval(self) -> tuple[float, float]:
        lo, hi = np.percentile(self.accuracies, [2.5, 97.5])
        return float(lo), float(hi)


def fewshot_accuracy(features: np.ndarray, labels, shots=(1, 2, 4, 8), *, repeats: int = 20,
                     seed: int = 0) -> list[ShotResult]:
    """Accuracy of :func:`linear_probe` over random splits, for each number of shots.

    Shot counts that leave a class without test images are refused.
    """
    labels = np.asarray(labels)
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
            model = linear_probe(features[train], labels[train])
            accuracies.append(float((model.predict(features[test]) == labels[test]).mean()))
        results.append(ShotResult(n, np.array(accuracies)))
    return results
