"""The real image sets with expert masks in ``../shared/data/real``: loading and splits.

The one place that reads them (segmentation benchmarks of the decoder and of
the encoder import it):

- ``isbi2012_em``: 30 serial-section TEM images, 512 px; the target class is
  the membrane (label value 0 in ``labels/``, see that folder's README);
- ``emps_particles``: 465 SEM/TEM particle figures (~512 px); target = particle;
  only benchmarks and development may read them, the package never ships them;
- ``deepsem_nanomembranes``: 7 SEM images, 1024 x 768, downscaled x0.5 here
  (512 x 384, images by area averaging, masks by nearest neighbour) to keep
  the benchmarks affordable on a CPU; target = nanomembrane or nanowire.

``load_set(name)`` returns ``(images, masks, names)``: float32 2D images (raw
intensities; the pipeline normalises), boolean masks (True = target class),
file stems. ``splits(name, n_train, seed)`` returns ``(train, test)`` index
lists: the test images are drawn once per seed, the training images from the
rest, so every method and every number of labelled images of a seed sees the
same test images. ``n_train`` larger than the images left is refused.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
SETS = ("isbi2012_em", "emps_particles", "deepsem_nanomembranes")
N_TEST = {"isbi2012_em": 10, "emps_particles": 12, "deepsem_nanomembranes": 3}
DOWNSCALE = {"deepsem_nanomembranes": 2}


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L") if im.mode not in ("L", "I;16", "I") else im)


def _shrink(a: np.ndarray, k: int, *, mask: bool) -> np.ndarray:
    h, w = (a.shape[0] // k) * k, (a.shape[1] // k) * k
    a = a[:h, :w]
    if mask:
        return a[k // 2::k, k // 2::k]
    return a.reshape(h // k, k, w // k, k).mean(axis=(1, 3), dtype=np.float32)


def _files(name: str) -> tuple[Path, Path, list[str]]:
    root = REAL / name
    if name not in SETS:
        raise ValueError(f"unknown set {name!r}; known: {', '.join(SETS)}")
    masks = root / ("labels" if name == "isbi2012_em" else "masks")
    if not (root / "images").is_dir():
        raise FileNotFoundError(f"{root / 'images'}: not found (the real data sets live in ../shared/data/real)")
    stems = sorted(p.name for p in (root / "images").iterdir() if p.suffix.lower() == ".png")
    return root / "images", masks, stems


@cache
def load_set(name: str) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """``(images float32, masks bool, names)`` of a set; see the module docstring."""
    images_dir, masks_dir, files = _files(name)
    images, masks = [], []
    for f in files:
        image = _read(images_dir / f).astype(np.float32)
        raw = _read(masks_dir / f)
        mask = raw < 128 if name == "isbi2012_em" else raw > 0  # ISBI: 0 = membrane, the target
        if name in DOWNSCALE:
            image, mask = _shrink(image, DOWNSCALE[name], mask=False), _shrink(mask, DOWNSCALE[name], mask=True)
        images.append(image)
        masks.append(mask.astype(bool))
    return images, masks, [Path(f).stem for f in files]


def n_images(name: str) -> int:
    return len(_files(name)[2])


def splits(name: str, n_train: int, seed: int) -> tuple[list[int], list[int]]:
    """``(train, test)`` image indices of ``name`` for ``seed``; see the module docstring."""
    n = n_images(name)
    order = np.random.default_rng([seed, SETS.index(name)]).permutation(n)
    n_test = min(N_TEST[name], n - 1)
    test, rest = order[:n_test], order[n_test:]
    if not 1 <= n_train <= rest.size:
        raise ValueError(f"{name}: {n_train} training images asked, {rest.size} are left beside the "
                         f"{n_test} test images")
    return sorted(int(i) for i in rest[:n_train]), sorted(int(i) for i in test)
