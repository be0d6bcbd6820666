"""Class-folder data sets for the commands that train or test classifiers (``classify``, ``fewshot``):
reading them with a note for folders that are no class, and encoding their files with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path

from ..io.banner import AUTO as BANNER_AUTO


def encode_files(encoder, files: list[Path], *, cache, tiling: dict, crop_bottom: int | str = BANNER_AUTO,
                 show: bool = True):
    """Features of image files to train or test on, without their instrument banners
    (:func:`..io.banner.banner_crop` of ``crop_bottom``), with a progress bar over images; a file
    that cannot be read or encoded is an error (the first one's reason)."""
    from ..errors import NanowireSSLError

    features, _, failed = encode_each(encoder, files, cache=cache, tiling=tiling, crop_bottom=crop_bottom, show=show)
    if failed:
        raise NanowireSSLError(failed[0])
    return features


def encode_each(encoder, files: list[Path], *, cache, tiling: dict, crop_bottom: int | str = BANNER_AUTO,
                show: bool = True):
    """As :func:`encode_files`, but a file that cannot be read or encoded is left out (for files to
    classify: the policy of :mod:`.failures`). Returns (features of the others, those files, the
    reasons of the failed ones)."""
    import numpy as np
    from tqdm import tqdm

    from ..errors import NanowireSSLError, naming
    from ..fewshot.features import image_features

    features, done, failed = [], [], []
    for f in tqdm(files, unit="image", desc="encoding", file=sys.stderr, disable=not show):
        try:
            features.append(image_features(encoder, [_read(f, crop_bottom)], names=[str(f)], cache=cache, **tiling)[0])
            done.append(f)
        except NanowireSSLError as exc:
            failed.append(naming(f, exc))
    return np.array(features, dtype=np.float32), done, failed


def _read(f: Path, crop_bottom: int | str):
    """The single image of file ``f`` without its banner."""
    from ..fewshot.classify import read_single_image
    from ..io.banner import banner_crop, without_banner

    image = read_single_image(f)
    return without_banner(image, banner_crop(image, crop_bottom, name=str(f)))


def labelled_files(root: Path) -> tuple[list[Path], list[str], list[str]]:
    """(files, labels, class names) of a folder-per-class dataset; prints which folders are no class."""
    from ..fewshot.classify import class_folders

    classes, skipped = class_folders(root)
    for folder in skipped:
        print(f"note: {folder} is not taken as a class", file=sys.stderr)
    files = [f for fs in classes.values() for f in fs]
    labels = [c for c, fs in classes.items() for _ in fs]
    return files, labels, list(classes)
