"""Few-shot image classification: a linear head on frozen image features, with calibrated probabilities.

The head is the paper's classifier (one dense softmax layer on frozen pooled
features), fitted as a standardised multinomial logistic regression
(scikit-learn, L-BFGS) on a few hundred cached feature vectors in well under
a second. Each feature block (:func:`.features.feature_blocks`) is weighed
after standardisation so none drowns another (:func:`.features.block_weights`).

Calibration comes from the labelled images themselves: when every class has
at least :data:`CV_MIN_PER_CLASS` of them, a temperature (logits divided by
it) is fitted to held-out predictions of stratified cross-validation (lowest
log-loss); with fewer, :data:`DEFAULT_TEMPERATURE`. The regularisation is
:data:`DEFAULT_C` (on block-weighted features; choosing it by
cross-validation among 1, 10 and 100 did not help on the benchmark's choosing
sets). A call whose
calibrated probability is below :data:`UNCERTAIN_BELOW` is flagged uncertain,
and :func:`label_next` ranks images by how ambiguous the head finds them
(spread over the predicted classes).

Predictions are computed here with numpy from the stored arrays, so a head
saved to a model file and loaded back predicts exactly the same
probabilities, and loading never unpickles anything.

Data on disk for training: ``DIR/<class>/<images>``, one sub-folder per
class (a ``masks`` folder, as written by ``nanowire-ssl synth``, is not a
class).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ImageReadError, ModelFileError, NanowireSSLError
from ..io import IMAGE_SUFFIXES, list_images, read_image
from ..models.modelfile import encoder_identity
from .features import DEFAULT_MAX_TILES, DEFAULT_TILE, FEATURES, block_weights, feature_blocks

NOT_A_CLASS = "masks"
DEFAULT_C = 10.0
CV_MIN_PER_CLASS = 2
CV_FOLDS = 5
DEFAULT_TEMPERATURE = 1.0
TEMPERATURES = np.geomspace(0.1, 20.0, 61)
UNCERTAIN_BELOW = 0.7


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The temperature of :data:`TEMPERATURES` whose softmax(logits / T) gives ``truth`` (column
    indices) the lowest mean negative log-likelihood (the smallest such T on ties)."""
    rows = np.arange(len(truth))
    nll = [-np.log(softmax(logits / t)[rows, truth] + 1e-300).mean() for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(nll))])


def _logistic(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def _cv_logits(x: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float, names: list[str],
               seed: int = 0) -> np.ndarray:
    """Held-out logits (columns in ``names`` order) of stratified folds: each image scored by a
    model that did not see it (standardisation refitted per fold too)."""
    from sklearn.model_selection import StratifiedKFold

    folds = min(CV_FOLDS, int(min((y == n).sum() for n in names)))
    out = np.zeros((len(y), len(names)))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        mean, scale = x[train].mean(0), x[train].std(0)
        scale = np.where(scale > 0, scale, 1.0)
        model = _logistic((x[train] - mean) / scale * weight, y[train], c)
        logits = model.decision_function((x[test] - mean) / scale * weight)
        if logits.ndim == 1:
            logits = np.stack([-logits / 2, logits / 2], 1)
        order = [list(model.classes_).index(n) for n in names]
        out[test] = logits[:, order]
    return out


class LinearHead:
    """Standardised, block-weighted features -> multinomial logistic regression over named classes.

    ``class_names`` fixes the column order of :meth:`predict_proba`.
    ``encoder_hash`` (see :func:`.features.encoder_identity`), ``tiling`` and
    ``blocks`` (name -> slice of the feature vector) record what produced the
    features; they are written to the model file. ``c`` is the inverse regularisation.
    """

    def __init__(self, *, c: float = DEFAULT_C, encoder_hash: str | None = None,
                 tiling: dict | None = None, blocks: dict | None = None) -> None:
        self.c = float(c)
        self.encoder_hash = encoder_hash
        self.tiling = dict(tiling or {"tile": DEFAULT_TILE, "max_tiles": DEFAULT_MAX_TILES})
        self.blocks = dict(blocks) if blocks else None
        self.class_names: list[str] = []
        self.mean = self.scale = self.weight = self.coef = self.intercept = None
        self.temperature = DEFAULT_TEMPERATURE
        self.calibrated = False  # the temperature was fitted (at least CV_MIN_PER_CLASS images per class)

    @classmethod
    def for_encoder(cls, encoder, **kwargs) -> LinearHead:
        """A head for :func:`.features.image_features` of ``encoder`` (its hash and feature blocks)."""
        return cls(encoder_hash=encoder_identity(encoder), blocks=feature_blocks(encoder), **kwargs)

    def fit(self, features: np.ndarray, labels, class_names=None) -> LinearHead:
        """Fit on ``(N, D)`` features and N string labels; ``class_names`` defaults to the sorted labels.

        Refuses fewer than two classes, a named class without images and a
        label that is not among ``class_names``.
        """
        labels = np.asarray(labels, dtype=str)
        features = np.asarray(features, dtype=np.float64)
        names = sorted(set(labels.tolist())) if class_names is None else [str(c) for c in class_names]
        if len(set(names)) != len(names):
            raise NanowireSSLError(f"class names must be distinct, got {names}")
        if len(names) < 2:
            raise NanowireSSLError(f"a classifier needs at least two classes, got {names}")
        if len(labels) != len(features):
            raise NanowireSSLError(f"{len(features)} feature vectors but {len(labels)} labels")
        unknown = sorted(set(labels.tolist()) - set(names))
        if unknown:
            raise NanowireSSLError(f"label {unknown[0]!r} is not one of the classes {names}")
        empty = [n for n in names if not (labels == n).any()]
        if empty:
            raise NanowireSSLError(f"class {empty[0]!r} has no images; label at least one")
        if self.blocks is not None and max(b.stop for b in self.blocks.values()) != features.shape[1]:
            raise NanowireSSLError(f"features of {features.shape[1]} values do not match the blocks {self.blocks}")
        weight = block_weights(self.blocks) if self.blocks else np.ones(features.shape[1])
        temperature = DEFAULT_TEMPERATURE
        calibrated = min((labels == n).sum() for n in names) >= CV_MIN_PER_CLASS
        if calibrated:
            truth = np.array([names.index(label) for label in labels])
            temperature = fit_temperature(_cv_logits(features, labels, weight, self.c, names), truth)
        self.mean = features.mean(0)
        scale = features.std(0)
        self.scale = np.where(scale > 0, scale, 1.0)
        self.weight = weight
        model = _logistic((features - self.mean) / self.scale * weight, labels, self.c)
        coef, intercept = model.coef_, model.intercept_
        if coef.shape[0] == 1:  # binary: one logit z for classes_[1]; softmax([-z/2, z/2]) = sigmoid(z)
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
        order = [list(model.classes_).index(n) for n in names]
        self.class_names = names
        self.coef, self.intercept = coef[order], intercept[order]
        self.temperature, self.calibrated = float(temperature), bool(calibrated)
        return self

    def calibration_note(self) -> str:
        """Empty for a calibrated head; else one clause for status lines: why its probabilities are raw."""
        return "" if self.calibrated else (f"probabilities not calibrated (that takes at least {CV_MIN_PER_CLASS} "
                                           "labelled images per class)")

    def _check_fitted(self) -> None:
        if self.coef is None:
            raise NanowireSSLError("the classifier is not trained yet")

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(N, C)`` uncalibrated logits, columns in ``class_names`` order."""
        self._check_fitted()
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.coef.shape[1]:
            raise NanowireSSLError(
                f"features of shape {features.shape} do not fit a head trained on {self.coef.shape[1]}-d features")
        return ((features - self.mean) / self.scale * self.weight) @ self.coef.T + self.intercept

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``(N, C)`` calibrated class probabilities (softmax of logits / temperature)."""
        return softmax(self.logits(features) / self.temperature)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The most probable class name of each feature vector."""
        return np.asarray(self.class_names)[self.logits(features).argmax(axis=1)]

    def state(self) -> tuple[dict, dict]:
        """``(tensors, metadata)`` of a ``linear_head`` model file (float64 arrays; also embedded in bundles)."""
        self._check_fitted()
        tensors = {name: torch.from_numpy(np.ascontiguousarray(getattr(self, name), dtype=np.float64))
                   for name in ("mean", "scale", "weight", "coef", "intercept")}
        blocks = {k: [v.start, v.stop] for k, v in (self.blocks or {}).items()}
        metadata = {"kind": "linear_head", "class_names": self.class_names, "encoder_hash": self.encoder_hash or "",
                    "tiling": self.tiling, "pooling": FEATURES, "blocks": blocks, "c": self.c,
                    "temperature": self.temperature, "calibrated": self.calibrated}
        return tensors, metadata

    def save(self, path: str | os.PathLike) -> str:
        """Write a ``linear_head`` model file (no pickle); return its content hash."""
        from ..models.modelfile import save_tensors

        return save_tensors(path, *self.state())

    @classmethod
    def from_state(cls, tensors: dict, meta: dict, *, source: str, encoder=None) -> LinearHead:
        """The head of :meth:`state` output read back from ``source``; with ``encoder``,
        refuse one trained on other weights."""
        if meta.get("pooling") != FEATURES:
            raise ModelFileError(f"{source}: was trained on {meta.get('pooling')!r} features; "
                                 f"this version computes {FEATURES!r} features, train the head again")
        missing = [k for k in ("mean", "scale", "weight", "coef", "intercept") if k not in tensors]
        missing += [k for k in ("class_names", "encoder_hash", "tiling", "temperature") if k not in meta]
        if missing:
            raise ModelFileError(f"{source}: linear head lacks {', '.join(missing)}: file corrupt or edited")
        if encoder is not None and meta["encoder_hash"] != encoder_identity(encoder):
            raise ModelFileError(f"{source}: was trained on encoder {meta['encoder_hash'][:8] or '(unknown)'}, "
                                 f"not on the loaded encoder {encoder_identity(encoder)[:8]}")
        blocks = {k: slice(int(a), int(b)) for k, (a, b) in (meta.get("blocks") or {}).items()}
        head = cls(c=float(meta.get("c", DEFAULT_C)), encoder_hash=meta["encoder_hash"] or None,
                   tiling=meta["tiling"], blocks=blocks or None)
        head.class_names = list(meta["class_names"])
        head.mean, head.scale, head.weight, head.coef, head.intercept = (
            tensors[k].numpy() for k in ("mean", "scale", "weight", "coef", "intercept"))
        head.temperature, head.calibrated = float(meta["temperature"]), bool(meta.get("calibrated", False))
        if head.coef.shape[0] != len(head.class_names):
            raise ModelFileError(f"{source}: {head.coef.shape[0]} coefficient rows for "
                                 f"{len(head.class_names)} classes: file corrupt or edited")
        return head

    @classmethod
    def load(cls, path: str | os.PathLike, encoder=None) -> LinearHead:
        """Read a head saved by :meth:`save` (see :meth:`from_state`)."""
        from ..models.modelfile import load_tensors

        tensors, meta = load_tensors(path, kind="linear_head")
        return cls.from_state(tensors, meta, source=str(path), encoder=encoder)


def uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """``1 - (p_first - p_second)`` per row: 0 for a sure call, 1 when the two likeliest classes tie."""
    p = np.sort(np.asarray(probabilities, dtype=np.float64), axis=1)
    return 1.0 - (p[:, -1] - p[:, -2])


def is_uncertain(probabilities: np.ndarray) -> np.ndarray:
    """True where the most probable class has a calibrated probability below :data:`UNCERTAIN_BELOW`."""
    return np.asarray(probabilities).max(axis=1) < UNCERTAIN_BELOW


def label_next(probabilities: np.ndarray) -> np.ndarray:
    """Row indices in the order to label them: round-robin over the predicted classes, each round
    taking every class's most ambiguous remaining image (:func:`uncertainty`), most ambiguous first.

    Why round-robin: the most ambiguous images overall often sit on one
    boundary, so labelling them teaches one distinction; one per predicted
    class spreads the new labels over the classes (on the benchmark's
    choosing sets this beat the plain most-ambiguous-first order).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    u, predicted = uncertainty(p), p.argmax(axis=1)
    rank_in_class = np.empty(len(p), dtype=int)
    for c in np.unique(predicted):
        members = np.flatnonzero(predicted == c)
        rank_in_class[members[np.argsort(-u[members], kind="stable")]] = np.arange(len(members))
    return np.lexsort((np.arange(len(p)), -u, rank_in_class))


def class_folders(root: str | os.PathLike) -> tuple[dict[str, list[Path]], list[Path]]:
    """``({class: sorted image files}, skipped folders)`` of a folder-per-class dataset.

    Every sub-folder is a class except ``masks`` and hidden ones (returned
    as skipped); a class's images may lie in its own sub-folders too
    (:func:`..io.list_images`). A class folder without image files, or fewer
    than two classes, is refused naming the folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ImageReadError(f"{root}: no such folder (expected one sub-folder of images per class)")
    classes, skipped = {}, []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name == NOT_A_CLASS or sub.name.startswith("."):
            skipped.append(sub)
            continue
        try:
            classes[sub.name] = list_images([sub])
        except ImageReadError:
            raise ImageReadError(f"{sub}: class folder holds no image files ({', '.join(IMAGE_SUFFIXES)})") from None
    if len(classes) < 2:
        raise ImageReadError(f"{root}: needs at least two class sub-folders of images, found {len(classes)}")
    return classes, skipped


def read_single_image(path: Path) -> np.ndarray:
    """The 2D float32 pixels of one image file; a stack is refused naming the file."""
    data = read_image(path).data
    if data.ndim != 2:
        raise ImageReadError(f"{path}: is a stack of {data.shape[0]} images; classification takes one per file")
    return data
