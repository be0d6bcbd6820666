"""Few-shot image classification: a linear head on frozen encoder features.

The head is the paper's classifier (one dense softmax layer on frozen pooled
features), fitted as a standardised multinomial logistic regression
(scikit-learn, L-BFGS): on a few hundred cached feature vectors it trains in
well under a second. Predictions are computed here with numpy from the stored
arrays (scaler mean / scale, coefficients, intercepts), so a head saved to a
model file and loaded back predicts exactly the same probabilities, and
loading never unpickles anything.

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
from ..io import IMAGE_SUFFIXES, read_image
from .features import DEFAULT_MAX_TILES, DEFAULT_TILE, FEATURES, encoder_identity

NOT_A_CLASS = "masks"


class LinearHead:
    """Standardised features -> multinomial logistic regression over named classes.

    ``class_names`` fixes the column order of :meth:`predict_proba`.
    ``encoder_hash`` (see :func:`.features.encoder_identity`) and ``tiling``
    record what produced the features; they are written to the model file.
    """

    def __init__(self, *, c: float = 1.0, encoder_hash: str | None = None,
                 tiling: dict | None = None) -> None:
        self.c = float(c)
        self.encoder_hash = encoder_hash
        self.tiling = dict(tiling or {"tile": DEFAULT_TILE, "max_tiles": DEFAULT_MAX_TILES})
        self.class_names: list[str] = []
        self.mean = self.scale = self.coef = self.intercept = None

    def fit(self, features: np.ndarray, labels, class_names=None) -> LinearHead:
        """Fit on ``(N, D)`` features and N string labels; ``class_names`` defaults to the sorted labels.

        Refuses fewer than two classes, a named class without images and a
        label that is not among ``class_names``.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

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
        scaler = StandardScaler().fit(features)
        model = LogisticRegression(C=self.c, max_iter=2000).fit(scaler.transform(features), labels)
        coef, intercept = model.coef_, model.intercept_
        if coef.shape[0] == 1:  # binary: one logit z for classes_[1]; softmax([-z/2, z/2]) = sigmoid(z)
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
        order = [list(model.classes_).index(n) for n in names]
        self.class_names = names
        self.mean, self.scale = scaler.mean_, scaler.scale_
        self.coef, self.intercept = coef[order], intercept[order]
        return self

    def _check_fitted(self) -> None:
        if self.coef is None:
            raise NanowireSSLError("the classifier is not trained yet")

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``(N, C)`` class probabilities, columns in ``class_names`` order."""
        self._check_fitted()
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.coef.shape[1]:
            raise NanowireSSLError(
                f"features of shape {features.shape} do not fit a head trained on {self.coef.shape[1]}-d features")
        logits = ((features - self.mean) / self.scale) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The most probable class name of each feature vector."""
        return np.asarray(self.class_names)[self.predict_proba(features).argmax(axis=1)]

    def state(self) -> tuple[dict, dict]:
        """``(tensors, metadata)`` of a ``linear_head`` model file (float64 arrays; also embedded in bundles)."""
        self._check_fitted()
        tensors = {name: torch.from_numpy(np.ascontiguousarray(getattr(self, name), dtype=np.float64))
                   for name in ("mean", "scale", "coef", "intercept")}
        metadata = {"kind": "linear_head", "class_names": self.class_names, "encoder_hash": self.encoder_hash or "",
                    "tiling": self.tiling, "pooling": FEATURES, "c": self.c}
        return tensors, metadata

    def save(self, path: str | os.PathLike) -> str:
        """Write a ``linear_head`` model file (no pickle); return its content hash."""
        from ..models.modelfile import save_tensors

        return save_tensors(path, *self.state())

    @classmethod
    def from_state(cls, tensors: dict, meta: dict, *, source: str, encoder=None) -> LinearHead:
        """The head of :meth:`state` output read back from ``source``; with ``encoder``,
        refuse one trained on other weights."""
        missing = [k for k in ("mean", "scale", "coef", "intercept") if k not in tensors]
        missing += [k for k in ("class_names", "encoder_hash", "tiling") if k not in meta]
        if missing:
            raise ModelFileError(f"{source}: linear head lacks {', '.join(missing)}: file corrupt or edited")
        if meta.get("pooling") != FEATURES:
            raise ModelFileError(f"{source}: was trained on {meta.get('pooling')!r} features; "
                                 f"this version computes {FEATURES!r} features, train the head again")
        if encoder is not None and meta["encoder_hash"] != encoder_identity(encoder):
            raise ModelFileError(f"{source}: was trained on encoder {meta['encoder_hash'][:8] or '(unknown)'}, "
                                 f"not on the loaded encoder {encoder_identity(encoder)[:8]}")
        head = cls(c=float(meta.get("c", 1.0)), encoder_hash=meta["encoder_hash"] or None, tiling=meta["tiling"])
        head.class_names = list(meta["class_names"])
        head.mean, head.scale, head.coef, head.intercept = (
            tensors[k].numpy() for k in ("mean", "scale", "coef", "intercept"))
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


def class_folders(root: str | os.PathLike) -> tuple[dict[str, list[Path]], list[Path]]:
    """``({class: sorted image files}, skipped folders)`` of a folder-per-class dataset.

    Every sub-folder is a class except ``masks`` and hidden ones (returned
    as skipped). A class folder without image files, or fewer than two
    classes, is refused naming the folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ImageReadError(f"{root}: no such folder (expected one sub-folder of images per class)")
    classes, skipped = {}, []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name == NOT_A_CLASS or sub.name.startswith("."):
            skipped.append(sub)
            continue
        files = sorted(f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ImageReadError(f"{sub}: class folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        classes[sub.name] = files
    if len(classes) < 2:
        raise ImageReadError(f"{root}: needs at least two class sub-folders of images, found {len(classes)}")
    return classes, skipped


def read_single_image(path: Path) -> np.ndarray:
    """The 2D float32 pixels of one image file; a stack is refused naming the file."""
    data = read_image(path).data
    if data.ndim != 2:
        raise ImageReadError(f"{path}: is a stack of {data.shape[0]} images; classification takes one per file")
    return data
