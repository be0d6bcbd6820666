"""Instrument banners: found on constructed bands and on the real SEM files whose banner height
the data folder's manifests give; never proposed where there is none."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_nanowire_ssl.io import read_image
from napari_nanowire_ssl.io.banner import detect_banner, fill_fraction

# Text burnt onto the micrograph without a fill band: not detectable by design (the user crops).
OVERLAID_TEXT = {"bacterial_cellulose_sem/K1.jpg", "bacterial_cellulose_sem/K2.jpg",
                 "aramid_nanofiber/ANF_example_slice0000.tiff"}


def micrograph(h=300, w=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(120, 20, (h, w)).round().clip(0, 255)


def with_banner(image, rows, *, fill=0.0, text=255.0, border=0):
    out = image.copy()
    h = out.shape[0]
    out[h - rows:] = fill
    for x in range(10, out.shape[1] - 30, 40):  # letters: blocks of text on the fill
        out[h - rows + 6: h - rows + 18, x: x + 14] = text
    if border:  # an anti-aliased frame line on top of the band
        out[h - rows - border: h - rows] = 230 + np.arange(out.shape[1]) % 3
    return out


def test_fill_fraction_counts_the_most_common_value_per_row_and_segment():
    rows = np.array([[5, 5, 5, 1, 2, 3, 5, 5], [1, 2, 3, 4, 5, 6, 7, 8]])
    np.testing.assert_allclose(fill_fraction(rows), [5 / 8, 1 / 8])
    # In halves: the first row's mode 5 fills 3 of 4 and 2 of 4.
    np.testing.assert_allclose(fill_fraction(rows, 2), [2 / 4, 0.0])
    # More segments than columns: one column each (no empty segment, no division by zero).
    np.testing.assert_allclose(fill_fraction(np.array([[7, 7, 1], [4, 4, 4]]), 8), [0.0, 1.0])
    assert detect_banner(np.zeros((3, 3))) == 0


@pytest.mark.parametrize("rows,fill,border", [(40, 0.0, 0), (25, 255.0, 0), (60, 90.0, 2)])
def test_a_filled_band_with_text_is_found_to_the_row(rows, fill, border):
    image = with_banner(micrograph(), rows, fill=fill, text=255.0 - fill if fill else 255.0, border=border)
    assert detect_banner(image) == rows + border


def test_no_banner_where_the_bottom_is_picture():
    image = micrograph()
    assert detect_banner(image) == 0
    # A label box in one corner is not a banner.
    boxed = image.copy()
    boxed[-30:, :80] = 255
    assert detect_banner(boxed) == 0
    # A black vacuum region under a ragged edge (saturated pixels fading upwards) is picture.
    vacuum = image.copy()
    edge = (220 + 30 * np.sin(np.arange(400) / 15)).astype(int)
    for x, top in enumerate(edge):
        vacuum[top:, x] = 0
    assert detect_banner(vacuum) == 0
    assert detect_banner(np.zeros((100, 100))) == 0  # blank: nothing to tell
    with pytest.raises(ValueError, match="expected a 2D image"):
        detect_banner(np.zeros((2, 50, 50)))


def test_real_banners_match_the_manifests(real_data):
    rows = []
    for name in ("manifest.csv", "added_manifest.csv"):
        with open(real_data / name, newline="") as fh:
            rows += list(csv.DictReader(fh))
    found = {}
    for row in rows:
        data = read_image(real_data / row["file"]).data
        found[row["file"]] = (detect_banner(data if data.ndim == 2 else data[0]), int(row["crop_bottom_px"]))
    for file, (got, truth) in found.items():
        if file in OVERLAID_TEXT:
            assert got == 0, file
        elif truth == 0:
            assert got == 0, file
        else:  # the manifests' heights include a margin of a row or so
            assert abs(got - truth) <= 2, (file, got, truth)
    assert sum(truth > 0 for got, truth in found.values()) >= 10


def test_no_banner_on_real_micrographs_without_one(real_data):
    for path in sorted((real_data / "isbi2012_em" / "images").iterdir()):
        assert detect_banner(read_image(path).data) == 0, path.name
