"""Reading Gatan DM3 / DM4 files: round trips through files written by tests/dmfile.py, and bad files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from dmfile import write_dm

from napari_nanowire_ssl.errors import ImageReadError
from napari_nanowire_ssl.io import read_image
from napari_nanowire_ssl.io.dm import read_dm

RNG = np.random.default_rng(7)


def _image(dtype, shape=(48, 64)) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.normal(100.0, 20.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_round_trip_keeps_pixels_dtype_and_pixel_size(tmp_path, version, dtype):
    data = _image(dtype)
    path = write_dm(tmp_path / f"img.dm{version}", data, version=version, scale=(0.5, 0.5), units="nm")
    read, pixel_size, meta = read_dm(path)
    assert read.dtype == data.dtype
    np.testing.assert_array_equal(read, data)
    assert pixel_size == 0.5
    assert meta["format"] == f"DM{version}"
    assert meta["units"] == "nm" and meta["scale"] == (0.5, 0.5)
    assert meta["title"] == "test image"
    assert meta["images_in_file"] == 1  # the thumbnail (image 0) is skipped


@pytest.mark.parametrize(
    ("scale", "units", "nm"),
    [(2.5, "µm", 2500.0), (2.5, "um", 2500.0), (0.25, "micron", 250.0), (1.5, "Å", 0.15), (1.5, "A", 0.15),
     (250.0, "pm", 0.25), (4e-9, "m", 4.0), (1.0, "nm", 1.0)],
)
def test_length_units_convert_to_nanometres(tmp_path, scale, units, nm):
    path = write_dm(tmp_path / "cal.dm4", _image(np.uint16), version=4, scale=(scale, scale), units=units)
    _, pixel_size, meta = read_dm(path)
    assert pixel_size == pytest.approx(nm, rel=1e-6)  # scales are float32 in the file
    assert meta["units"] == units


@pytest.mark.parametrize(("scale", "units"), [(0.02, "1/nm"), (1.0, ""), (1.0, "pixel"), (1.0, "eV")])
def test_reciprocal_and_missing_units_give_no_pixel_size(tmp_path, scale, units):
    """A diffraction pattern (1/nm) or an uncalibrated image has no length per pixel."""
    path = write_dm(tmp_path / "dp.dm3", _image(np.float32), scale=(scale, scale), units=units)
    data, pixel_size, meta = read_dm(path)
    assert pixel_size is None
    assert meta["units"] == units
    assert meta["scale"] == pytest.approx((scale, scale))
    assert data.shape == (48, 64)


def test_non_square_pixels_report_x_and_keep_both(tmp_path):
    path = write_dm(tmp_path / "rect.dm3", _image(np.uint8), scale=(0.5, 0.25))
    _, pixel_size, meta = read_dm(path)
    assert pixel_size == 0.25
    assert meta["scale"] == (0.5, 0.25)


@pytest.mark.parametrize("version", [3, 4])
def test_stack_reads_as_n_h_w_with_pixel_size(tmp_path, version):
    stack = _image(np.float32, (5, 40, 56))
    path = write_dm(tmp_path / f"stack.dm{version}", stack, version=version, scale=(0.8, 0.8), units="nm")
    data, pixel_size, _ = read_dm(path)
    assert data.shape == (5, 40, 56)
    np.testing.assert_array_equal(data, stack)
    assert pixel_size == pytest.approx(0.8)


def test_single_slice_stack_becomes_an_image(tmp_path):
    stack = _image(np.uint16, (1, 40, 56))
    data, _, _ = read_dm(write_dm(tmp_path / "one.dm4", stack, version=4))
    np.testing.assert_array_equal(data, stack[0])


def test_instrument_tags_reach_the_metadata(tmp_path):
    tags = {"Microscope Info": {"Microscope": "Titan 80-300", "Voltage": 300000.0, "Indicated Magnification": 97000.0}}
    path = write_dm(tmp_path / "tem.dm4", _image(np.int16), version=4, image_tags=tags, name="NW_012")
    _, _, meta = read_dm(path)
    assert meta["microscope"] == "Titan 80-300"
    assert meta["voltage_kv"] == 300.0
    assert meta["magnification"] == 97000.0
    assert meta["title"] == "NW_012"


def test_unmarked_thumbnail_is_passed_over_for_the_image(tmp_path):
    data = _image(np.uint16, (96, 128))
    path = write_dm(tmp_path / "two.dm3", data, mark_thumbnail=False)
    read, _, meta = read_dm(path)
    np.testing.assert_array_equal(read, data)
    assert meta["images_in_file"] == 2


def test_read_image_gives_float32_with_dm_calibration(tmp_path):
    data = _image(np.uint16)
    img = read_image(write_dm(tmp_path / "img.dm3", data, scale=(0.12, 0.12), units="nm"))
    assert img.data.dtype == np.float32
    np.testing.assert_array_equal(img.data, data.astype(np.float32))
    assert img.pixel_size_nm == pytest.approx(0.12)
    assert img.metadata["format"] == "DM3"


@pytest.mark.parametrize("version", [3, 4])
def test_writer_header_matches_the_format_description(tmp_path, version):
    raw = write_dm(tmp_path / f"h.dm{version}", _image(np.uint8), version=version).read_bytes()
    assert struct.unpack(">I", raw[:4])[0] == version
    size = struct.unpack(">I", raw[4:8])[0] + 16 if version == 3 else struct.unpack(">Q", raw[4:12])[0] + 24
    assert size == len(raw)
    assert raw.endswith(bytes(8))


# Bad input: one ImageReadError naming the file and the problem.


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.dm3: no such DM file"):
        read_dm(tmp_path / "nope.dm3")


def test_folder_is_not_a_file(tmp_path):
    folder = tmp_path / "series.dm3"
    folder.mkdir()
    with pytest.raises(ImageReadError, match=r"series\.dm3: is a folder"):
        read_dm(folder)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.dm4"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.dm4: the DM file is empty"):
        read_dm(path)


@pytest.mark.parametrize("version", [3, 4])
def test_file_cut_in_half_is_truncated(tmp_path, version):
    path = write_dm(tmp_path / f"cut.dm{version}", _image(np.uint16), version=version)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    message = rf"cut\.dm{version}: the DM{version} file is truncated \(\d+ of {len(raw)} bytes\)"
    with pytest.raises(ImageReadError, match=message):
        read_dm(path)


def test_file_shorter_than_its_header_is_truncated(tmp_path):
    path = tmp_path / "stub.dm4"
    path.write_bytes(struct.pack(">I", 4) + b"\0\0")
    with pytest.raises(ImageReadError, match=r"stub\.dm4: the DM4 file is truncated"):
        read_dm(path)


@pytest.mark.parametrize("content", [RNG.bytes(4096), b"II*\0" + bytes(100), b"ab"])
def test_not_a_dm_file(tmp_path, content):
    path = tmp_path / "random.dm3"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"random\.dm3: not a DigitalMicrograph file"):
        read_dm(path)


def test_corrupt_tags_are_reported_in_one_line(tmp_path):
    path = write_dm(tmp_path / "bad.dm3", _image(np.uint8))
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"%%%%")] = ord("#")  # first data tag loses its delimiter; length unchanged
    path.write_bytes(bytes(raw))
    with pytest.raises(ImageReadError, match=r"bad\.dm3: cannot be read as a DM3 file, corrupt") as info:
        read_dm(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("version", [3, 4])
def test_file_without_image(tmp_path, version):
    path = write_dm(tmp_path / f"none.dm{version}", None, version=version)
    with pytest.raises(ImageReadError, match=rf"none\.dm{version}: the DM{version} file holds no image"):
        read_dm(path)


def test_rgb_image_is_refused(tmp_path):
    rgb = RNG.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    path = write_dm(tmp_path / "colour.dm4", rgb, version=4, rgb=True)
    with pytest.raises(ImageReadError, match=r"colour\.dm4: RGB colour DM image"):
        read_dm(path)


def test_complex_image_is_refused(tmp_path):
    fft = np.fft.fft2(_image(np.float32)).astype(np.complex64)
    path = write_dm(tmp_path / "fft.dm3", fft, units="1/nm")
    with pytest.raises(ImageReadError, match=r"fft\.dm3: complex-valued DM image"):
        read_dm(path)
