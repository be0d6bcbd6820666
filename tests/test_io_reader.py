"""Reading TIFF / PNG / JPEG files: real microscope files and constructed bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nanowire_ssl.errors import ImageReadError, NanowireSSLError
from napari_nanowire_ssl.io import check_network_input, list_images, normalize, read_image


def test_every_real_file_reads_as_grayscale_with_manifest_shape(real_data):
    with open(real_data / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    for row in rows:
        img = read_image(real_data / row["file"])
        assert img.data.dtype == np.float32
        assert img.data.shape == (int(row["h"]), int(row["w"])), row["file"]
        assert np.isfinite(img.data).all()
        assert img.data.std() > 0
        # None of these files carries a physical calibration: the 96/256 dpi
        # resolution tags are print resolutions and must not become pixel sizes.
        assert img.pixel_size_nm is None, row["file"]
        normalized = normalize(img.data, name=row["file"])
        assert normalized.min() == 0.0 and normalized.max() == 1.0


def test_16bit_tiff_keeps_full_dynamic_range(real_data):
    img = read_image(real_data / "agnw_network_sem" / "AgNWN_slice0001.tif")
    raw = tifffile.imread(real_data / "agnw_network_sem" / "AgNWN_slice0001.tif")
    assert raw.dtype == np.uint16 and raw.max() > 255
    np.testing.assert_array_equal(img.data, raw.astype(np.float32))


def test_rgba_with_coloured_scale_bar_becomes_gray(real_data):
    path = real_data / "aramid_nanofiber" / "ANF_example_slice0000.tiff"
    rgba = np.asarray(Image.open(path))
    img = read_image(path)
    assert img.metadata["dropped"] == "alpha"
    assert 0 < img.metadata["colour_pixel_fraction"] < 0.01
    np.testing.assert_allclose(img.data, rgba[..., :3].mean(-1), atol=1e-4)


def test_isbi_png_and_jpeg(real_data):
    png = read_image(real_data / "isbi2012_em" / "images" / "00.png")
    assert png.data.shape == (512, 512)
    jpg = read_image(real_data / "bacterial_cellulose_sem" / "K1.jpg")
    assert jpg.metadata["format"] == "JPEG" and jpg.data.shape == (960, 1280)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_bit_depths_round_trip(tmp_path, dtype):
    data = (np.arange(64 * 48).reshape(64, 48) % 251).astype(dtype)
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, data)
    np.testing.assert_array_equal(read_image(path).data, data.astype(np.float32))


def test_multipage_tiff_is_a_stack(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    img = read_image(tmp_path / "s.tif")
    assert img.is_stack and img.data.shape == (3, 40, 50)
    np.testing.assert_array_equal(img.data[2], stack[2])


@pytest.mark.parametrize(
    ("kwargs", "expected_nm"),
    [
        ({"imagej": True, "resolution": (1 / 2.5, 1 / 2.5), "metadata": {"unit": "nm"}}, 2.5),
        ({"imagej": True, "resolution": (10.0, 10.0), "metadata": {"unit": "micron"}}, 100.0),
        ({"resolution": (1e6, 1e6), "resolutionunit": "CENTIMETER"}, 10.0),
        ({"resolution": (300, 300), "resolutionunit": "INCH"}, None),
    ],
)
def test_tiff_pixel_size(tmp_path, kwargs, expected_nm):
    path = tmp_path / "cal.tif"
    tifffile.imwrite(path, np.zeros((40, 40), np.uint8) + 3, **kwargs)
    got = read_image(path).pixel_size_nm
    assert got == pytest.approx(expected_nm) if expected_nm else got is None


def test_rgb_with_differing_channels_is_refused(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 255, (40, 40, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "colour.png")
    with pytest.raises(ImageReadError, match=r"colour\.png: RGBA colour image whose channels differ"):
        read_image(tmp_path / "colour.png")


def test_empty_truncated_missing_and_unknown_files(tmp_path, real_data):
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.tif: the image file is empty"):
        read_image(tmp_path / "empty.tif")
    good = (real_data / "sparse_nanowires_sem" / "4.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(good[: len(good) // 3])
    with pytest.raises(ImageReadError, match=r"cut\.tif: cannot be read as TIFF"):
        read_image(tmp_path / "cut.tif")
    jpg = (real_data / "bacterial_cellulose_sem" / "K1.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpg[:2000])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: cannot be read"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "noise.png").write_bytes(b"not a png at all" * 10)
    with pytest.raises(ImageReadError, match=r"noise\.png: not a readable PNG"):
        read_image(tmp_path / "noise.png")
    with pytest.raises(ImageReadError, match=r"nope\.tif: no such image file"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.txt: unsupported file type '\.txt'"):
        read_image(tmp_path / "notes.txt")


def test_error_messages_are_one_line(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\xff" * 50)
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path / "bad.tif")
    assert "\n" not in str(info.value)


def test_normalize_percentiles_nan_and_constant():
    img = np.linspace(0, 100, 1001, dtype=np.float32).reshape(1, -1).repeat(40, 0)
    out = normalize(img, low=10, high=90)
    # 10th percentile = 10, 90th = 90: 50 maps to 0.5, the tails clip.
    assert out[0, 500] == pytest.approx(0.5)
    assert out.dtype == np.float32 and normalize(img.astype(np.uint16)).dtype == np.float32
    assert out[0, 0] == 0.0 and out[0, -1] == 1.0
    img[0, :5] = np.nan
    img[1, :5] = np.inf
    out = normalize(img, low=10, high=90)
    assert np.isfinite(out).all() and (out[:2, :5] == 0).all()
    with pytest.raises(NanowireSSLError, match="flat: the image is constant"):
        normalize(np.full((40, 40), 7.0), name="flat")
    with pytest.raises(NanowireSSLError, match="no finite pixel values"):
        normalize(np.full((40, 40), np.nan))
    # A mostly constant image with a few wire pixels still scales by min/max.
    sparse = np.zeros((40, 40), np.float32)
    sparse[3, 3] = 5
    assert normalize(sparse)[3, 3] == 1.0


def test_network_size_check_and_folder_listing(tmp_path):
    with pytest.raises(NanowireSSLError, match=r"tiny: is 20x64 px; the encoder needs at least 32x32"):
        check_network_input(np.zeros((20, 64)), name="tiny")
    check_network_input(np.zeros((32, 32)))
    for name in ("b.png", "a.tif", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path])] == ["a.tif", "b.png"]
    (tmp_path / "sub").mkdir()
    with pytest.raises(ImageReadError, match=r"sub: folder holds no image files"):
        list_images([tmp_path / "sub"])


def test_folder_trees_are_listed_recursively_without_mask_folders(tmp_path):
    """The layout `nanowire-ssl synth` writes (and class sub-folders) lists its images only."""
    for rel in ("network/b.png", "network/a.tif", "dispersed/deep/c.jpg", "images/d.png",
                "masks/d.png", "network/labels/a.tif", "overlays/a.png", ".hidden/e.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    said = []
    files = list_images([tmp_path], report=said.append)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "dispersed/deep/c.jpg", "images/d.png", "network/a.tif", "network/b.png"]
    assert said == [f"{tmp_path}: found 4 image files in 3 folders"]
    # A mask folder named on the command line is read: only sub-folders are skipped.
    assert [p.name for p in list_images([tmp_path / "masks"], what="mask")] == ["d.png"]
    empty = tmp_path / "empty" / "masks"
    empty.mkdir(parents=True)
    (empty / "m.png").write_bytes(b"x")
    with pytest.raises(ImageReadError, match=r"empty: folder holds no image files .*sub-folders included"):
        list_images([tmp_path / "empty"])


def test_tiff_pages_and_samples_follow_the_files_own_layout(tmp_path):
    """Gray stacks of 3-5 images, however written, read as stacks; colour stays colour."""
    import tifffile

    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (5, 40, 50), dtype=np.uint8)
    for n in (3, 4, 5):
        # What tifffile.imwrite writes for (3|4, H, W) without options: one page of separate sample planes.
        layout = {"photometric": "rgb", "planarconfig": "separate"} if n < 5 else {}
        tifffile.imwrite(tmp_path / f"shaped{n}.tif", stack[:n], **layout)
        with tifffile.TiffWriter(tmp_path / f"pages{n}.tif") as tif:  # one series per page
            for page in stack[:n]:
                tif.write(page)
        for name in (f"shaped{n}.tif", f"pages{n}.tif"):
            np.testing.assert_array_equal(read_image(tmp_path / name).data, stack[:n], err_msg=name)
    # Contiguous (chunky) RGB whose channels differ is a colour picture: refused.
    tifffile.imwrite(tmp_path / "colour.tif", stack[:3].transpose(1, 2, 0), photometric="rgb")
    with pytest.raises(ImageReadError, match=r"colour.tif: RGB colour image whose channels differ in 100%"):
        read_image(tmp_path / "colour.tif")
    # Separate planes that are equal are a gray image saved as RGB.
    tifffile.imwrite(tmp_path / "gray.tif", np.stack([stack[0]] * 3), photometric="rgb", planarconfig="separate")
    image = read_image(tmp_path / "gray.tif")
    assert image.data.shape == (40, 50)
    np.testing.assert_array_equal(image.data, stack[0])
