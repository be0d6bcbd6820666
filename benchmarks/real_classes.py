"""Image-level class sets for classification benchmarks: real micrographs and an unseen synthetic style.

The one place that builds them (``bench_real_classification.py`` and the
encoder benchmarks import it)::

    images, labels, groups, class_names = load_class_set("materials")

``images`` are 2D float32 arrays (raw intensities, banners cropped),
``labels`` class names, ``groups`` the source of each sample: crops of one
micrograph (or figures of one paper) share a group, and a split must put a
group wholly in training or wholly in testing (:func:`group_splits`).

Sets (:data:`SETS`):

- ``materials`` (real): 256 px crops of the folders of ``shared/data/real``
  as classes: fibre networks (AgNW film, aramid, bacterial cellulose; the
  AgNW ``slice0000`` is a rescaled copy of ``slice0001``, same group),
  electrospun gelatin mats, nanowires dispersed on a chip, vertical GaAs
  nanowire arrays, GaAs nanomembranes in slits, neural-tissue TEM (ISBI).
  At most :data:`CROPS_PER_CLASS` crops per class, spread evenly over its
  source images and over each image.
- ``emps-dispersion`` (real): EMPS particle micrographs (centre 512 px,
  halved to 256 px) in three classes read from their expert particle masks
  (:func:`emps_shape`): ``isolated`` particles, ``packed`` particles, ``one
  or two large`` particles; images in between are left out; at most
  :data:`EMPS_PER_CLASS` per class; groups are the paper (DOI) of the figure.
- ``synth-thin`` (synthetic): the generator's four morphologies, 256 px,
  thin wires (1.5-3 px), a mottled film (coarse grain), strong uneven
  illumination, low contrast.
- ``synth-sem`` (synthetic): the four morphologies rendered at 384 px and
  shrunk to 256 px (other magnification), inverted (bright wires on a dark
  ground, as SEM), heavy noise and blur.
- ``synth-film`` (synthetic): the four morphologies with bright 2-4 px wires
  on a dark, coarsely mottled film (grain 10 px), uneven illumination, low
  contrast, a little blur: a hard style to choose features on, so that
  ``synth-thin`` (dark wires, finer grain) can report.

None of the synthetic styles is the generator's default, whose images chose the
old features. Each synthetic image is its own group.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CROP = 256
CROPS_PER_CLASS = 30
SYNTH_PER_CLASS = 30
EMPS_PER_CLASS = 40

MATERIALS = {  # class -> [(file, group)]
    "fibre network": [("agnw_network_sem/AgNWN_slice0001.tif", "agnw"), ("agnw_network_sem/AgNWN_slice0000.tif", "agnw"),
                      ("aramid_nanofiber/ANF_stack_slice0281.tif", "anf1"),
                      ("aramid_nanofiber/ANF_example_slice0000.tiff", "anf2"),
                      ("bacterial_cellulose_sem/K1.jpg", "k1"), ("bacterial_cellulose_sem/K2.jpg", "k2")],
    "gelatin mat": "gelatin_fibers_sem/*.png",
    "nanowires on chip": "sparse_nanowires_sem/*.tif",
    "nanowire array": "gaas_nanowire_arrays/*.png",
    "nanomembranes": "deepsem_nanomembranes/images/*.png",
    "neural tissue": "isbi2012_em/images/*.png",
}
SETS = ("materials", "emps-dispersion", "synth-thin", "synth-sem", "synth-film")


def _banners() -> dict[str, int]:
    out = {}
    for name in ("manifest.csv", "added_manifest.csv"):
        with open(REAL / name) as fh:
            out.update({row["file"]: int(row["crop_bottom_px"] or 0) for row in csv.DictReader(fh)})
    return out


def _read(rel: str, banners: dict[str, int]) -> np.ndarray:
    from napari_nanowire_ssl.io import read_image

    data = read_image(REAL / rel).data
    crop = banners.get(rel, 0)
    return np.asarray(data[:-crop] if crop else data, dtype=np.float32)


def _crops(image: np.ndarray, k: int) -> list[np.ndarray]:
    """``k`` CROP-px crops spread evenly over the image's non-overlapping grid (one centred crop if it is small)."""
    h, w = image.shape
    ny, nx = max(h // CROP, 1), max(w // CROP, 1)
    y0, x0 = max((h - ny * CROP) // 2, 0), max((w - nx * CROP) // 2, 0)
    corners = [(y0 + i * CROP, x0 + j * CROP) for i in range(ny) for j in range(nx)]
    picks = np.unique(np.linspace(0, len(corners) - 1, min(k, len(corners))).round().astype(int))
    return [image[y:y + CROP, x:x + CROP] for y, x in (corners[p] for p in picks)]


def _materials():
    banners = _banners()
    images, labels, groups = [], [], []
    for cls, spec in MATERIALS.items():
        files = spec if isinstance(spec, list) else [
            (str(p.relative_to(REAL)), p.stem) for p in sorted(REAL.glob(spec))]
        n_groups = len({g for _, g in files})
        per_file = -(-CROPS_PER_CLASS // n_groups)
        per_group: dict[str, int] = {}
        for rel, group in files:
            files_in_group = sum(g == group for _, g in files)
            k = -(-per_file // files_in_group)
            for crop in _crops(_read(rel, banners), k):
                if per_group.get(group, 0) >= per_file:
                    break
                images.append(crop)
                labels.append(cls)
                groups.append(f"{cls}/{group}")
                per_group[group] = per_group.get(group, 0) + 1
    return images, labels, groups


def emps_shape(mask: np.ndarray) -> str | None:
    """The dispersion class of an EMPS figure from its particle mask (None: in between, left out).

    The masks are the union of the particles, so touching particles merge:
    the classes use what survives merging, the covered fraction and the
    number of particles (components of >= 30 px).
    """
    from skimage.measure import label

    coverage = float(mask.mean())
    areas = np.bincount(label(mask).ravel())[1:]
    n = int((areas >= 30).sum())
    if coverage < 0.12 and n >= 3:
        return "isolated"
    if coverage > 0.5:
        return "packed"
    if 1 <= n <= 2 and 0.08 < coverage:
        return "one or two large"
    return None


def _emps():
    from PIL import Image
    from scipy import ndimage

    root = REAL / "emps_particles"
    with open(root / "index.csv") as fh:
        rows = list(csv.DictReader(fh))
    by_class: dict[str, list] = {}
    for row in rows:
        mask = np.asarray(Image.open(root / "masks" / row["file"])) > 0
        shape = emps_shape(mask if mask.ndim == 2 else mask.any(-1))
        if shape is not None:
            by_class.setdefault(shape, []).append(row)
    images, labels, groups = [], [], []
    rng = np.random.default_rng(0)
    for cls in sorted(by_class):
        chosen = sorted(rng.choice(len(by_class[cls]), min(EMPS_PER_CLASS, len(by_class[cls])), replace=False))
        for i in chosen:
            row = by_class[cls][i]
            from napari_nanowire_ssl.io import read_image

            image = read_image(root / "images" / row["file"]).data.astype(np.float32)
            h, w = image.shape
            s = min(h, w, 512)
            y, x = (h - s) // 2, (w - s) // 2
            images.append(ndimage.zoom(image[y:y + s, x:x + s], CROP / s, order=1).astype(np.float32))
            labels.append(cls)
            groups.append(row["figure_source_doi"])
    return images, labels, groups


SYNTH_STYLES = {
    "synth-thin": dict(params=dict(width=(1.5, 3.0), film=0.25, grain=6.0, illumination=0.6, contrast=0.3),
                       render=256, invert=False),
    "synth-sem": dict(params=dict(film=0.1, grain=2.0, blur=2.0, dose=40.0, read_noise=0.04, contrast=0.7),
                      render=384, invert=True),
    "synth-film": dict(params=dict(width=(2.0, 4.0), film=0.3, grain=10.0, illumination=0.5, contrast=0.4, blur=1.0),
                       render=256, invert=True),
}
KIND = {name: "synthetic" if name in SYNTH_STYLES else "real" for name in SETS}


def _synthetic(name: str, seed: int = 515):
    from scipy import ndimage

    from napari_nanowire_ssl.synth import CLASSES
    from napari_nanowire_ssl.synth.generator import generate, sample_seed

    style = SYNTH_STYLES[name]
    images, labels, groups = [], [], []
    for cls in CLASSES:
        params = dict(style["params"])
        if cls == "singular" and "width" in params:  # the generator's singular wires are thicker: keep them thin
            params["width"] = (2.0, 3.5)
        for i in range(SYNTH_PER_CLASS):
            image = generate(cls, size=style["render"], seed=sample_seed(seed, cls, i), **params).image
            if style["render"] != CROP:
                image = ndimage.zoom(image, CROP / style["render"], order=1)
            images.append((1.0 - image if style["invert"] else image).astype(np.float32))
            labels.append(cls)
            groups.append(f"{cls}/{i}")
    return images, labels, groups


@lru_cache(maxsize=None)
def _load(name: str):
    if name == "materials":
        return _materials()
    if name == "emps-dispersion":
        return _emps()
    if name in SYNTH_STYLES:
        return _synthetic(name)
    raise KeyError(f"unknown class set {name!r}; choose one of {', '.join(SETS)}")


def load_class_set(name: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, list[str]]:
    """``(images, labels, groups, class_names)`` of one of :data:`SETS` (see the module docstring)."""
    images, labels, groups = _load(name)
    labels, groups = np.asarray(labels), np.asarray(groups)
    return list(images), labels, groups, sorted(set(labels.tolist()))


def group_splits(labels, groups, shots: int, repeats: int, *, seed: int = 0):
    """``repeats`` (train, test) index arrays: ``shots`` training samples per class from a random
    part of the class's groups, testing on every sample of the groups no class trained on.

    Per class the groups are shuffled and taken for training until they hold
    ``shots`` samples of the class and half of its groups (at least one group
    stays for testing); the ``shots`` samples are drawn from those. A group
    (a paper) may hold samples of several classes: none of its samples is
    then tested.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels.tolist()))
    splits = []
    for _ in range(repeats):
        train, used = [], set()
        for cls in classes:
            mine = labels == cls
            names = sorted(set(groups[mine].tolist()))
            order = [names[i] for i in rng.permutation(len(names))]
            chosen, held = [], 0
            for g in order[:-1]:
                if held >= shots and len(chosen) >= len(names) // 2:
                    break
                chosen.append(g)
                held += int((mine & (groups == g)).sum())
            if held < shots:
                raise ValueError(f"class {cls!r}: {shots} training samples need more groups than {len(names)}")
            train.extend(rng.choice(np.flatnonzero(mine & np.isin(groups, chosen)), shots, replace=False).tolist())
            used.update(chosen)
        test = np.flatnonzero(~np.isin(groups, list(used)))
        missing = [c for c in classes if not (labels[test] == c).any()]
        if missing:
            raise ValueError(f"class {missing[0]!r} has no test sample left")
        splits.append((np.array(train), test))
    return splits


def balanced_accuracy(truth, predicted) -> float:
    """Mean over classes of the fraction of that class's samples predicted right."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    return float(np.mean([(predicted[truth == c] == c).mean() for c in np.unique(truth)]))
