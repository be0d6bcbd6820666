"""The label and mask conventions, in one module: values, the scribble test, reading files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nanowire_ssl.errors import ImageReadError
from napari_nanowire_ssl.labels import (BACKGROUND, NANOWIRE, UNLABELLED, is_scribbles, read_mask,
                                        read_mask_values, read_training_labels, training_labels, wire_pixels)


def test_the_scribble_test():
    assert (UNLABELLED, BACKGROUND, NANOWIRE) == (0, 1, 2)
    assert is_scribbles(np.array([[0, 1], [2, 2]], np.uint8))
    assert is_scribbles(np.array([[1.0, 2.0]]))  # a float layer holding whole numbers
    assert not is_scribbles(np.array([[0, 1], [1, 0]]))  # a mask: only 1
    assert not is_scribbles(np.array([[0, 2], [2, 0]]))  # only wire painted: a mask of value 2
    assert not is_scribbles(np.array([[0, 1], [2, 3]]))  # instance numbers
    assert not is_scribbles(np.array([[0.5, 1.0, 2.0]]))


def test_wire_pixels_and_training_labels():
    scribbles = np.array([[0, 1, 2]], np.uint8)
    np.testing.assert_array_equal(wire_pixels(scribbles), [[False, False, True]])
    instances = np.array([[0, 1, 2, 3]])
    np.testing.assert_array_equal(wire_pixels(instances), [[False, True, True, True]])
    labels, were = training_labels(scribbles)
    assert were and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, scribbles)
    labels, were = training_labels(np.array([[0, 255, 255]], np.uint8))
    assert not were
    np.testing.assert_array_equal(labels, [[BACKGROUND, NANOWIRE, NANOWIRE]])


def test_mask_files_read_back_in_every_format(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:9] = 255
    tifffile.imwrite(tmp_path / "m.tif", mask)
    Image.fromarray(mask).save(tmp_path / "m.png")
    colour = np.zeros((20, 30, 4), np.uint8)
    colour[5:9, :, 1] = 200  # green wires, alpha ignored
    colour[..., 3] = 255
    Image.fromarray(colour).save(tmp_path / "c.png")
    for name in ("m.tif", "m.png", "c.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), mask > 0, err_msg=name)
    # Scribble files keep their values; a mask file is never read as scribbles by read_mask.
    scribbles = np.zeros((20, 30), np.uint8)
    scribbles[0, :] = 1
    scribbles[6, :] = 2
    tifffile.imwrite(tmp_path / "s.tif", scribbles)
    np.testing.assert_array_equal(read_mask_values(tmp_path / "s.tif"), scribbles)
    labels, were = read_training_labels(tmp_path / "s.tif")
    assert were and (labels == scribbles).all()
    assert read_mask(tmp_path / "s.tif").sum() == 60


def test_bad_mask_files_are_named(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty.png: the mask file is empty"):
        read_mask(tmp_path / "empty.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match=r"junk.png: cannot be read as a mask image"):
        read_mask(tmp_path / "junk.png")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 8, 8, 5), np.uint8))
    with pytest.raises(ImageReadError, match=r"stack.tif: expected a 2D mask, got shape"):
        read_mask(tmp_path / "stack.tif")


def _network_mask(size: int = 128) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for k in range(4, size, 12):  # a grid of 3 px wires: many edges for a compression's ringing
        mask[k:k + 3] = 255
        mask[:, k:k + 3] = 255
    return mask


def test_a_jpeg_mask_reads_as_its_two_levels_not_its_compression_noise(tmp_path):
    mask = _network_mask()
    Image.fromarray(mask).save(tmp_path / "m.jpg", quality=50)
    noisy = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert (noisy > 0).mean() > (mask > 0).mean() + 0.05  # nonzero would widen every wire
    np.testing.assert_array_equal(read_mask(tmp_path / "m.jpg"), mask > 0)


def test_an_instance_mask_keeps_its_numbers(tmp_path):
    instances = np.zeros((64, 64), np.uint16)
    for k in range(30):  # 30 wires, numbered 1..30: flat regions, many values
        instances[2 * k, 4:60] = k + 1
    tifffile.imwrite(tmp_path / "i.tif", instances)
    np.testing.assert_array_equal(read_mask_values(tmp_path / "i.tif"), instances)


@pytest.mark.parametrize("kind, message", [
    ("micrograph", r"micrograph.tif: looks like an image, not a mask: its values spread between"),
    ("colour", r"colour.png: looks like an image, not a mask"),
    ("probability", r"probability.tif: holds values such as 0.\d+, as an image or a probability map does"),
    ("solid", r"solid.png: no pixel is 0 \(background\), so every pixel would be nanowire"),
])
def test_an_image_given_for_a_mask_is_refused(tmp_path, kind, message):
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(size=(64, 64)), axis=1)  # noise with some structure, no exact zeros
    gray = np.round(255 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint8)
    if kind == "micrograph":
        tifffile.imwrite(tmp_path / "micrograph.tif", gray.astype(np.uint16) * 200)
    elif kind == "colour":
        Image.fromarray(np.stack([gray, gray // 2, 255 - gray], -1)).save(tmp_path / "colour.png")
    elif kind == "probability":
        tifffile.imwrite(tmp_path / "probability.tif", (gray / 255).astype(np.float32))
    else:
        Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "solid.png")
    with pytest.raises(ImageReadError, match=message):
        read_mask(next(tmp_path.iterdir()))
