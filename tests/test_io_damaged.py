"""Damaged files: every one reads, or ends in the reader's one-line error naming it, and
nothing else reaches the terminal (no library log lines before our error)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.errors import ImageReadError
from napari_nanowire_ssl.io import read_image


def _originals(folder):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 65535, (96, 80), dtype=np.uint16)
    tifffile.imwrite(folder / "gray16.tif", image, resolution=(1e5, 1e5), resolutionunit="CENTIMETER")
    tifffile.imwrite(folder / "stack.tif", (image[None] // 256).astype(np.uint8).repeat(5, 0))
    Image.fromarray((image // 256).astype(np.uint8)).save(folder / "gray.png")
    Image.fromarray((image // 256).astype(np.uint8)).save(folder / "gray.jpg", quality=90)
    return sorted(folder.iterdir())


def _damaged(data: bytes, rng) -> bytes:
    """One of the damages files suffer: a truncation, flipped bytes, or a broken header."""
    kind = rng.integers(3)
    if kind == 0:
        return data[: rng.integers(1, len(data))]
    out = bytearray(data)
    if kind == 1:
        for at in rng.integers(0, len(out), rng.integers(1, 20)):
            out[at] ^= 1 << rng.integers(8)
    else:
        start = rng.integers(0, 16)
        out[start:start + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
    return bytes(out)


def test_damaged_files_give_one_line_errors_and_no_library_noise(tmp_path, capfd):
    originals = _originals(tmp_path)
    rng = np.random.default_rng(7)
    outcomes = {"read": 0, "refused": 0}
    for k in range(160):
        source = originals[k % len(originals)]
        broken = tmp_path / f"broken{k}{source.suffix}"
        broken.write_bytes(_damaged(source.read_bytes(), rng))
        try:
            image = read_image(broken)
        except ImageReadError as exc:
            message = str(exc)
            assert message.startswith(f"{broken}: ") and "\n" not in message, message
            outcomes["refused"] += 1
        else:
            assert image.data.dtype == np.float32 and image.data.ndim in (2, 3)
            outcomes["read"] += 1
    out, err = capfd.readouterr()
    assert (out, err) == ("", ""), "a library printed while reading damaged files"
    assert outcomes["refused"] > 20 and outcomes["read"] > 0, outcomes


def test_cli_error_on_a_damaged_tiff_is_one_line(tmp_path, capfd):
    path = tmp_path / "header.tif"
    _originals(tmp_path)
    good = (tmp_path / "gray16.tif").read_bytes()
    path.write_bytes(good[:4] + b"\xff\xff\xff\x7f" + good[8:])  # offset of the first page beyond the file
    assert main(["info", str(path)]) == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert err.splitlines() == [f"error: {path}: cannot be read as TIFF, truncated or corrupt "
                                "(invalid offset to first page 2147483647)"]


def test_reader_warnings_of_a_readable_file_are_kept_in_its_metadata(tmp_path, capfd):
    import logging

    _originals(tmp_path)
    path = tmp_path / "gray16.tif"
    logger = logging.getLogger("tifffile")
    original = tifffile.TiffFile.__init__

    def noisy_init(self, *args, **kwargs):
        logger.warning("<tifffile.TiffTag 270 @8> coercing invalid ASCII to bytes")
        original(self, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(tifffile.TiffFile, "__init__", noisy_init)
    try:
        image = read_image(path)
    finally:
        mp.undo()
    assert image.metadata["reader_warnings"] == ["coercing invalid ASCII to bytes"]
    assert capfd.readouterr().err == ""
