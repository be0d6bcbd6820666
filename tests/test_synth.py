"""Synthetic nanowire generator: class semantics, exact ground truth, determinism, CLI."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from napari_nanowire_ssl.analysis.percolation import percolation
from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.synth import CLASSES, NanowireSample, Wire, generate, generate_dataset, rasterize

EIGHT = np.ones((3, 3), dtype=bool)
SEEDS = range(6)
CLEAN = dict(dose=None, read_noise=0.0, film=0.0, illumination=0.0, blur=0.0)


def clusters(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=EIGHT)[1]


def axis_angle(points: np.ndarray) -> float:
    """Orientation (rad, modulo pi) of the principal axis of a point set."""
    centred = points - points.mean(axis=0)
    vec = np.linalg.svd(centred, full_matrices=False)[2][0]
    return float(np.arctan2(vec[0], vec[1]) % np.pi)


@pytest.mark.parametrize("morphology", CLASSES)
def test_sample_types_and_consistency(morphology):
    s = generate(morphology, size=(96, 128), seed=1)
    assert isinstance(s, NanowireSample) and s.morphology == morphology
    assert s.image.dtype == np.float32 and s.image.shape == (96, 128)
    assert s.mask.dtype == bool and s.mask.shape == (96, 128)
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    assert s.density == s.mask.mean()
    r = percolation(s.mask, connectivity=8)
    assert (s.spans_lr, s.spans_tb) == (r.spans_lr, r.spans_tb)


@pytest.mark.parametrize("morphology", CLASSES)
def test_same_seed_is_bit_identical_other_seed_differs(morphology):
    a, b, c = (generate(morphology, size=128, seed=k) for k in (5, 5, 6))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.mask, c.mask)


@pytest.mark.parametrize("morphology", CLASSES)
def test_wires_are_darker_than_the_film(morphology):
    for seed in range(3):
        s = generate(morphology, seed=seed)
        assert s.image[s.mask].mean() < s.image[~s.mask].mean() - 0.15


@pytest.mark.parametrize("morphology", CLASSES)
def test_mask_is_exactly_the_recorded_wires(morphology):
    s = generate(morphology, size=128, seed=2)
    mask, _ = rasterize(s.params["wires"], s.mask.shape)
    assert len(s.params["wires"]) == s.params["n_wires_drawn"] > 0
    assert np.array_equal(mask, s.mask)


def test_network_percolates_and_dispersed_spans_nothing():
    for seed in SEEDS:
        net = generate("network", seed=seed)
        assert net.spans_lr and net.spans_tb
        assert percolation(net.mask, connectivity=8).percolates
        dis = generate("dispersed", seed=seed)
        assert not dis.spans_lr and not dis.spans_tb


@pytest.mark.parametrize(
    "morphology, lo, hi",
    [("singular", 0.003, 0.06), ("dispersed", 0.02, 0.25), ("network", 0.26, 0.5), ("bundle", 0.03, 0.35)],
)
def test_density_ranges(morphology, lo, hi):
    densities = [generate(morphology, seed=seed).density for seed in SEEDS]
    assert lo <= min(densities) and max(densities) <= hi


def test_dispersed_wires_are_separate():
    s = generate("dispersed", seed=4, n_wires=6)
    assert clusters(s.mask) == 6


def test_singular_is_one_or_two_isolated_wires_inside_the_image():
    counts = set()
    for seed in range(8):
        s = generate("singular", seed=seed)
        n = s.params["n_wires_drawn"]
        assert clusters(s.mask) == n
        counts.add(n)
        border = np.concatenate([s.mask[0], s.mask[-1], s.mask[:, 0], s.mask[:, -1]])
        assert not border.any()
    assert counts == {1, 2}
    assert clusters(generate("singular", seed=3, n_wires=1).mask) == 1


def test_bundle_wires_are_near_parallel_and_side_by_side():
    s = generate("bundle", seed=0, n_bundles=3, bundle_size=(4, 4))
    wires = s.params["wires"]
    groups = sorted({w.group for w in wires})
    assert groups == [0, 1, 2] and len(wires) == 12
    for g in groups:
        members = [w for w in wires if w.group == g]
        angles = np.array([axis_angle(w.path) for w in members])
        spread = np.abs((angles - angles[0] + np.pi / 2) % np.pi - np.pi / 2)
        assert spread.max() < np.radians(10)
        # Each wire's mask lies within a pixel or two of another wire of its bundle.
        masks = [rasterize([w], s.mask.shape)[0] for w in members]
        for i, m in enumerate(masks):
            others = np.logical_or.reduce([o for j, o in enumerate(masks) if j != i])
            assert ndimage.distance_transform_edt(~others)[m].min() <= 2.0


def test_rasterized_straight_wire_is_the_geometric_band():
    wire = Wire(np.array([[20.0, 10.0], [20.0, 50.0]]), 5.0)
    mask, absorbance = rasterize([wire], (64, 64))
    assert mask[18:23, 10:51].all()
    assert not mask[:18].any() and not mask[23:].any()
    rows, cols = np.mgrid[:64, :64]
    nearest_col = np.clip(cols, 10, 50)
    expected = (rows - 20.0) ** 2 + (cols - nearest_col) ** 2 <= 2.5**2
    assert np.array_equal(mask, expected)
    # Darkness comes from the same geometry: every mask pixel absorbs more than any other pixel.
    assert absorbance[mask].min() > absorbance[~mask].max()
    assert absorbance[20, 30] == pytest.approx(1.0)


def test_clean_rendering_leaves_the_film_untouched():
    s = generate("singular", seed=0, background=0.8, contrast=0.5, **CLEAN)
    wire = s.params["wires"][0]
    near = ndimage.distance_transform_edt(~s.mask) <= 2
    assert np.all(s.image[~near] == np.float32(0.8))
    assert s.image[s.mask].max() < 0.8
    assert s.image[s.mask].min() < 0.8 * 0.6
    assert wire.width >= 1


def test_dose_sets_the_shot_noise():
    flat = dict(CLEAN, background=0.5)
    stds = {}
    for dose in (50.0, 2000.0):
        s = generate("singular", seed=0, **dict(flat, dose=dose))
        stds[dose] = s.image[ndimage.distance_transform_edt(~s.mask) > 2].std()
    assert stds[50.0] == pytest.approx(np.sqrt(0.5 / 50.0), rel=0.15)
    assert stds[2000.0] == pytest.approx(np.sqrt(0.5 / 2000.0), rel=0.15)


def test_parameters_are_honoured_and_recorded():
    s = generate("network", seed=0, n_wires=40, width=4.0)
    assert s.params["n_wires_drawn"] == 40
    assert all(w.width == 4.0 for w in s.params["wires"])
    assert s.params["width"] == (4.0, 4.0) and s.params["seed"] == 0
    straight = generate("singular", seed=0, curvature=0.0, n_wires=1).params["wires"][0].path
    assert np.linalg.svd(straight - straight.mean(axis=0), compute_uv=False)[1] < 1e-6


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: generate("mesh"), "singular, dispersed, network, bundle"),
        (lambda: generate("network", size=63), "at least 64"),
        (lambda: generate("network", size=(64, "x")), "size"),
        (lambda: generate("network", seed=-1), "seed"),
        (lambda: generate("dispersed", n_wires=-2), "n_wires"),
        (lambda: generate("bundle", n_wires=3), "unknown parameter"),
        (lambda: generate("singular", width=(6, 3)), "width"),
        (lambda: generate("singular", dose=-5), "dose"),
        (lambda: generate("singular", size=64, length=(200, 300)), "could not draw"),
        (lambda: generate_dataset(-1), "per_class"),
        (lambda: generate_dataset(1, classes=("network", "foam")), "foam"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(NanowireSSLError, match=message):
        call()


def test_dataset_ids_and_reproducibility():
    items = list(generate_dataset(2, size=64, seed=9))
    assert [i for i, _ in items] == [f"{c}_{k:04d}" for c in CLASSES for k in range(2)]
    assert all(s.morphology == i.rsplit("_", 1)[0] for i, s in items)
    again = dict(generate_dataset(2, size=64, seed=9, classes=("network",)))
    assert np.array_equal(again["network_0001"].image, dict(items)["network_0001"].image)
    other = dict(generate_dataset(2, size=64, seed=10))
    assert not np.array_equal(other["network_0001"].image, dict(items)["network_0001"].image)


def test_synth_does_not_import_torch_or_qt():
    heavy = "{'torch', 'qtpy', 'PyQt5', 'PyQt6', 'napari'}"
    code = f"import sys, napari_nanowire_ssl.synth; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def cli(capsys):
    """Run ``nanowire-ssl``: (status, stdout, stderr)."""
    from napari_nanowire_ssl.cli import main

    def run(*argv):
        status = main([str(a) for a in argv])
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


def test_cli_writes_images_masks_and_truth(cli, tmp_path):
    status, out, _ = cli("synth", tmp_path, "--per-class", 2, "--size", 64, "--seed", 3)
    assert status == 0 and "8 images" in out
    with open(tmp_path / "truth.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["id", "class", "image", "mask", "density", "spans_lr", "spans_tb"]
        rows = list(reader)
    expected = dict(generate_dataset(2, size=64, seed=3))
    assert [r["id"] for r in rows] == list(expected)
    for row in rows:
        assert row["image"] == f"{row['class']}/{row['id']}.png" and row["mask"] == f"masks/{row['id']}.png"
        image = Image.open(tmp_path / row["image"])
        assert image.mode == "L"
        sample = expected[row["id"]]
        assert np.array_equal(np.asarray(image), np.round(sample.image * 255).astype(np.uint8))
        mask_png = np.asarray(Image.open(tmp_path / row["mask"]))
        assert set(np.unique(mask_png)) <= {0, 255}
        mask = mask_png == 255
        assert np.array_equal(mask, sample.mask)
        assert float(row["density"]) == mask.mean()
        r = percolation(mask, connectivity=8)
        assert (row["spans_lr"], row["spans_tb"]) == (str(r.spans_lr).lower(), str(r.spans_tb).lower())
    assert {r["spans_tb"] for r in rows if r["class"] == "network"} == {"true"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--per-class", "0"], "--per-class"),
        (["--size", "32"], "at least 64"),
        (["--classes", "network,foam"], "foam"),
    ],
)
def test_cli_rejects_bad_arguments(cli, tmp_path, argv, message):
    status, _, err = cli("synth", tmp_path / "out", *argv)
    assert status == 2 and message in err and err.startswith("error: ")
    assert not (tmp_path / "out" / "truth.csv").exists()


def test_brush_clicks_land_inside_wires_and_well_away_from_them():
    from napari_nanowire_ssl.synth.strokes import brush_clicks

    mask = np.zeros((64, 64), bool)
    mask[20:30, :] = True  # one horizontal wire, 10 px wide
    clicks = brush_clicks(mask, n=6, seed=1)
    assert clicks == brush_clicks(mask, n=6, seed=1) and len(clicks) == 12
    assert [c[2] for c in clicks] == [2] * 6 + [1] * 6
    assert all(22 <= y <= 27 for y, _, label in clicks if label == 2)  # >= 3 px inside the wire
    gap = ndimage.distance_transform_edt(~mask)
    assert all(gap[y, x] >= 8 for y, x, label in clicks if label == 1)
    with pytest.raises(ValueError, match="only 0 pixels qualify for label 2"):
        brush_clicks(np.zeros((16, 16), bool), n=1)


def test_correction_strokes_paint_the_largest_errors_and_keep_the_strokes():
    from napari_nanowire_ssl.synth.strokes import correction_strokes

    mask = np.zeros((96, 96), bool)
    mask[10:16, 5:90] = True  # wire A, predicted
    mask[60:66, 5:90] = True  # wire B, missed by the prediction
    prediction = mask.copy()
    prediction[60:66] = False
    prediction[30:50, 30:50] = True  # a 20 x 20 false blob, far from both wires
    prediction[80:84, 80:84] = True  # a 16 px false speck: below min_pixels
    labels = np.zeros(mask.shape, np.uint8)
    labels[12:14, 20:40] = 2  # a stroke already painted
    labels[40:45, 40:45] = 2  # deliberately wrong earlier stroke inside the blob: painted pixels stay
    out = correction_strokes(prediction, mask, labels, n=3)
    assert (out[labels != 0] == labels[labels != 0]).all()
    added = (out != 0) & (labels == 0)
    # the blob gets background within 12 px of its centre, nothing outside it
    assert (out[added & prediction & ~mask] == 1).all() and (added & (out == 1)).sum() > 200
    assert not (added & (out == 1) & ~prediction).any()
    # the missed wire gets a wire stroke along its centre line, inside it, 3 px wide and 31 + 2 px long
    stroke = added & (out == 2)
    assert stroke.any() and mask[stroke].all() and (np.nonzero(stroke)[0] >= 60).all()
    assert set(np.nonzero(stroke)[0]) <= {61, 62, 63, 64} and np.ptp(np.nonzero(stroke)[1]) == 32
    # the speck and correct wire A are left alone; at most one stroke per region
    assert not added[80:84, 80:84].any() and not added[:20].any()
    # with n=1 only the largest region, the 510 px missed wire (the blob has 400 px), is corrected
    one = correction_strokes(prediction, mask, labels, n=1)
    assert ((one == 2) & (labels == 0)).sum() == stroke.sum() and not ((one == 1) & (labels == 0)).any()
