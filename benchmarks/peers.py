"""The classical peers every segmentation figure is printed beside (same split, same run).

- :func:`rf_dice`: the ilastik / scikit-image trainable-segmentation recipe, a
  random forest (50 trees) on ``skimage.feature.multiscale_basic_features``
  (intensity, edges, texture, sigma 1-16) of up to 100 000 labelled pixels;
- :func:`otsu_dice`: Otsu's threshold per image, the polarity (target darker
  or brighter than the threshold) picked on the training labels (the library's
  functions, which the pipeline's ``otsu`` candidate uses too).
"""

from __future__ import annotations

import numpy as np

from napari_nanowire_ssl.fewshot.metrics import dice
from napari_nanowire_ssl.fewshot.pixel_classifier import otsu_mask
from napari_nanowire_ssl.fewshot.pixel_classifier import otsu_polarity as library_otsu_polarity
from napari_nanowire_ssl.io import normalize

RF_TREES, RF_MAX_PIXELS = 50, 100_000


def rf_features(image: np.ndarray) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(normalize(image), intensity=True, edges=True, texture=True,
                                     sigma_min=1, sigma_max=16)


def rf_dice(train_images, train_labels, test_images, truths, *, seed: int = 0, n_jobs: int = 1,
            features=rf_features) -> list[float]:
    """Per-test-image Dice of the random forest trained on the labelled pixels (1 = background, 2 = target)."""
    masks = rf_masks(train_images, train_labels, test_images, seed=seed, n_jobs=n_jobs, features=features)
    return [dice(m, t) for m, t in zip(masks, truths)]


def rf_masks(train_images, train_labels, test_images, *, seed: int = 0, n_jobs: int = 1,
             features=rf_features) -> list[np.ndarray]:
    """The random forest's masks of the test images (see :func:`rf_dice`)."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    per_image = RF_MAX_PIXELS // len(train_images)
    for im, lab in zip(train_images, train_labels):
        f = features(im)
        idx = np.flatnonzero(lab.reshape(-1) != 0)
        idx = rng.choice(idx, size=min(per_image, idx.size), replace=False)
        xs.append(f.reshape(-1, f.shape[-1])[idx])
        ys.append(lab.reshape(-1)[idx] == 2)
    rf = RandomForestClassifier(n_estimators=RF_TREES, n_jobs=n_jobs, random_state=seed)
    rf.fit(np.concatenate(xs), np.concatenate(ys))
    out = []
    for im in test_images:
        f = features(im)
        out.append(rf.predict(f.reshape(-1, f.shape[-1])).reshape(im.shape).astype(bool))
    return out


def otsu_masks(images, *, dark: bool) -> list[np.ndarray]:
    return [otsu_mask(normalize(im), dark=dark) for im in images]


def otsu_polarity(train_images, train_labels) -> bool:
    """True (target darker) when that agrees better with the labelled pixels of the training images
    (the rule of the pipeline's own Otsu candidate, ``fewshot.pixel_classifier.otsu_polarity``)."""
    return library_otsu_polarity([normalize(im) for im in train_images], train_labels)


def otsu_dice(test_images, truths, *, dark: bool = True) -> list[float]:
    return [dice(m, t) for m, t in zip(otsu_masks(test_images, dark=dark), truths)]
