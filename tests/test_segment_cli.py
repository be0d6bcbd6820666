"""``nanowire-ssl segment`` end to end on tiny synthetic data with a random encoder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.labels import read_training_labels as read_labels
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import read_metadata, save_encoder
from napari_nanowire_ssl.synth import generate

FAST = ["--epochs", "2", "--steps-per-epoch", "3", "--device", "cpu", "--tile", "96"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def to_uint8(image: np.ndarray) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    return np.round(255 * (image - lo) / max(hi - lo, 1e-6)).astype(np.uint8)


def write_pair(root: Path, stem: str, sample, mask: np.ndarray | None = None) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(sample.image)).save(root / "images" / f"{stem}.png")
    mask = (sample.mask.astype(np.uint8) * 255) if mask is None else mask
    Image.fromarray(mask).save(root / "masks" / f"{stem}.png")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Random resnet18 encoders, a 2-image train folder, and inputs to predict (PNG, TIFF, a TIFF stack)."""
    root = tmp_path_factory.mktemp("segment")
    torch.manual_seed(0)
    save_encoder(Encoder("resnet18"), root / "enc.safetensors")
    torch.manual_seed(1)
    save_encoder(Encoder("resnet18"), root / "other.safetensors")
    write_pair(root / "train", "a", generate("network", size=96, seed=1))
    write_pair(root / "train", "b", generate("dispersed", size=96, seed=2))
    pred = root / "pred"
    pred.mkdir()
    Image.fromarray(to_uint8(generate("network", size=96, seed=3).image)).save(pred / "p1.png")
    tifffile.imwrite(pred / "p2.tif", generate("dispersed", size=(96, 128), seed=4).image)
    stack = np.stack([generate("network", size=64, seed=s).image for s in (5, 6, 7)])
    tifffile.imwrite(pred / "p3.tif", stack, photometric="minisblack")
    return root


def segment(ws, *extra) -> int:
    return main(["segment", "--encoder", str(ws / "enc.safetensors"), *FAST, *map(str, extra)])


def test_trains_and_writes_binary_masks(ws, tmp_path, capsys):
    out = tmp_path / "out"
    assert segment(ws, "--train", ws / "train", "--predict", ws / "pred", "--out", out,
                   "--save-decoder", tmp_path / "dec.safetensors") == 0
    printed = capsys.readouterr().out
    # two labelled images: each is held out in turn for the choice; after 3 fold steps the learnt models
    # carry to the other image worse than Otsu's threshold of each image, which is kept (nothing to train)
    assert "trained on 2 images (0 as scribbles; 100.0% of pixels labelled), no steps (the threshold kept " \
           "has nothing to train)" in printed
    assert re.search(r"; model: otsu \(dark target\) \(validation Dice on each of 2 labelled images held out in "
                     r"turn: filters 0\.\d{3}, filters\+encoder 0\.\d{3}, otsu 0\.\d{3}\)", printed), printed
    meta = read_metadata(tmp_path / "dec.safetensors", kind="decoder")
    assert meta["model"] == "otsu" and meta["training"]["choice"] in printed
    assert "segmented 3 of 3 images" in printed
    shapes = {"p1": (96, 96), "p2": (96, 128), "p3": (3, 64, 64)}
    for stem, shape in shapes.items():
        mask = tifffile.imread(out / f"{stem}.tif")
        assert mask.dtype == np.uint8 and mask.shape == shape
        assert set(np.unique(mask).tolist()) <= {0, 1}
    with tifffile.TiffFile(out / "p3.tif") as tif:
        assert len(tif.pages) == 3
    # The saved decoder alone reproduces the same masks.
    again = tmp_path / "again"
    assert segment(ws, "--decoder", tmp_path / "dec.safetensors", "--predict", ws / "pred" / "p1.png",
                   ws / "pred" / "p3.tif", "--out", again) == 0
    for stem in ("p1", "p3"):
        np.testing.assert_array_equal(tifffile.imread(again / f"{stem}.tif"), tifffile.imread(out / f"{stem}.tif"))
    # Continuing training from it runs too.
    assert segment(ws, "--decoder", tmp_path / "dec.safetensors", "--train", ws / "train",
                   "--predict", ws / "pred" / "p1.png", "--out", tmp_path / "more") == 0
    assert (tmp_path / "more" / "p1.tif").exists()


def test_same_seed_same_masks(ws, tmp_path):
    for name in ("x", "y"):
        assert segment(ws, "--train", ws / "train", "--predict", ws / "pred" / "p1.png",
                       "--out", tmp_path / name, "--seed", "3") == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "x" / "p1.tif"), tifffile.imread(tmp_path / "y" / "p1.tif"))


def test_scribble_masks_are_accepted(ws, tmp_path, capsys):
    sample = generate("network", size=96, seed=8)
    scribble = np.zeros((96, 96), np.uint8)
    ys, xs = np.nonzero(sample.mask)
    scribble[ys[::7], xs[::7]] = 2
    scribble[:4, :] = np.where(sample.mask[:4, :], 0, 1)
    write_pair(tmp_path / "train", "s", sample, scribble)
    labels, is_scribble = read_labels(tmp_path / "train" / "masks" / "s.png")
    assert is_scribble and (labels == 0).sum() > 0.8 * labels.size
    assert segment(ws, "--train", tmp_path / "train", "--predict", ws / "pred" / "p1.png", "--out", tmp_path / "o",
                   "--self-training-steps", 2, "--save-decoder", tmp_path / "dec.safetensors") == 0
    printed = capsys.readouterr().out
    assert "(1 as scribbles;" in printed and "6 steps + 2 self-training steps" in printed
    assert read_metadata(tmp_path / "dec.safetensors")["training"]["self_training_steps"] == 2
    assert tifffile.imread(tmp_path / "o" / "p1.tif").shape == (96, 96)


def test_mask_conventions(tmp_path):
    """0/1 and 0/255 masks, and {0, 2} masks, are full masks: nonzero = nanowire."""
    for name, values in {"01": (0, 1), "0255": (0, 255), "02": (0, 2)}.items():
        mask = np.zeros((8, 8), np.uint8)
        mask[2:4] = values[1]
        Image.fromarray(mask).save(tmp_path / f"{name}.png")
        labels, is_scribble = read_labels(tmp_path / f"{name}.png")
        assert not is_scribble and labels[2:4].min() == 2 and labels[4:].max() == 1


def test_a_file_that_cannot_be_segmented_is_skipped_and_reported(ws, tmp_path, capsys):
    """One bad file among the ones to predict does not cost the others (or the training); when all are
    bad the command fails with the first reason and keeps nothing."""
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "good.png").write_bytes((ws / "pred" / "p1.png").read_bytes())
    (pred / "broken.png").write_bytes(b"not a png at all")
    tifffile.imwrite(pred / "tiny.tif", np.zeros((3, 3), np.float32))
    tifffile.imwrite(pred / "flat.tif", np.full((64, 64), 5, np.uint8))
    dec, out = tmp_path / "dec.safetensors", tmp_path / "out"
    assert segment(ws, "--train", ws / "train", "--predict", pred, "--out", out, "--save-decoder", dec) == 0
    captured = capsys.readouterr()
    assert "segmented 1 of 4 images" in captured.out and "(3 failed)" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and warnings[0].startswith(f"warning: {pred / 'broken.png'}: ")
    assert warnings[1] == f"warning: {pred / 'flat.tif'}: the image is constant (every pixel is 5); nothing to analyse"
    assert warnings[2].startswith(f"warning: {pred / 'tiny.tif'}: ")
    assert sorted(p.name for p in out.iterdir()) == ["good.tif"]
    assert segment(ws, "--decoder", dec, "--predict", pred / "good.png", "--out", tmp_path / "alone") == 0
    np.testing.assert_array_equal(tifffile.imread(out / "good.tif"), tifffile.imread(tmp_path / "alone" / "good.tif"))
    capsys.readouterr()
    (pred / "good.png").unlink()
    assert segment(ws, "--decoder", dec, "--predict", pred, "--out", tmp_path / "none") == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"error: {pred / 'broken.png'}: ") and err[-1].endswith(
        "(and 2 more file(s) failed, warned above)")
    assert err[-2].startswith(f"warning: {pred / 'tiny.tif'}: ")


@pytest.mark.parametrize("case, message", [
    ("no_mask", "b.png: has no mask"),
    ("no_image", "c.png: has no image"),
    ("shape", "a.png: mask has shape (64, 64) but its image a.png has shape (96, 96)"),
    ("unreadable", "a.png"),
    ("empty", "nothing to train on"),
    ("no_masks_dir", "masks/ is missing"),
    ("all_nan", "images/a.tif: no finite pixel values (all NaN or infinite)"),
])
def test_training_folder_errors(ws, tmp_path, capsys, case, message):
    train = tmp_path / "train"
    a, b = generate("network", size=96, seed=1), generate("dispersed", size=96, seed=2)
    if case == "empty":
        (train / "images").mkdir(parents=True)
        (train / "masks").mkdir()
    elif case == "no_masks_dir":
        (train / "images").mkdir(parents=True)
    else:
        write_pair(train, "a", a)
        write_pair(train, "b", b)
    if case == "no_mask":
        (train / "masks" / "b.png").unlink()
    elif case == "no_image":
        Image.fromarray(np.zeros((96, 96), np.uint8)).save(train / "masks" / "c.png")
    elif case == "shape":
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(train / "masks" / "a.png")
    elif case == "unreadable":
        (train / "masks" / "a.png").write_bytes(b"not a png at all")
    elif case == "all_nan":  # the error names the file, not "image 0"
        (train / "images" / "a.png").unlink()
        tifffile.imwrite(train / "images" / "a.tif", np.full((96, 96), np.nan, np.float32))
    code = segment(ws, "--train", train, "--predict", ws / "pred" / "p1.png", "--out", tmp_path / "o")
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err


def test_decoder_of_another_encoder_is_refused(ws, tmp_path, capsys):
    dec = tmp_path / "dec.safetensors"
    assert segment(ws, "--train", ws / "train", "--predict", ws / "pred" / "p1.png", "--out", tmp_path / "o",
                   "--save-decoder", dec) == 0
    capsys.readouterr()
    code = main(["segment", "--encoder", str(ws / "other.safetensors"), "--decoder", str(dec), *FAST,
                 "--predict", str(ws / "pred" / "p1.png"), "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert code == 2 and "dec.safetensors: this decoder was trained on another encoder" in err


def test_option_errors(ws, tmp_path, capsys):
    assert segment(ws, "--predict", ws / "pred", "--out", tmp_path / "o") == 2
    assert "give --train DIR" in capsys.readouterr().err
    assert segment(ws, "--train", ws / "train", "--predict", ws / "pred", "--out", tmp_path / "o",
                   "--self-training-steps", -1) == 2
    assert "--self-training-steps: must be at least 0, got -1" in capsys.readouterr().err
    assert segment(ws, "--train", ws / "train", "--predict", ws / "pred" / "nope.png", "--out", tmp_path / "o") == 2
    assert "nope.png: no such file or folder" in capsys.readouterr().err
    twin = tmp_path / "twin"
    twin.mkdir()
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(twin / "p1.png")
    assert segment(ws, "--train", ws / "train", "--predict", ws / "pred" / "p1.png", twin / "p1.png",
                   "--out", tmp_path / "o") == 2
    assert "both would be written to" in capsys.readouterr().err


def test_help_states_the_self_training_default(capsys):
    from napari_nanowire_ssl.fewshot.segment import SELF_TRAINING_STEPS

    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    assert f"default {SELF_TRAINING_STEPS}, 0 = off" in " ".join(capsys.readouterr().out.split())
