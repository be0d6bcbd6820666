"""Read Gatan DigitalMicrograph DM3 / DM4 images with their calibration.

Parsing is rosettasciio's (:func:`rsciio.digitalmicrograph.file_reader`);
this module picks the image, converts the calibration to nanometres and turns
every failure into a one-line :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, check_file
from .reader import first_line, unit_to_nm

# Header: version (4 bytes), size field (DM3: 4 bytes, DM4: 8), byte order (4).
# The size field is the file length minus 16 (DM3) or 24 (DM4).
_HEADER = {3: (">I", 12, 16), 4: (">Q", 16, 24)}


def read_dm(path: str | Path) -> tuple[np.ndarray, float | None, dict]:
    """Return (data, pixel size in nm or None, metadata) of a DM3 / DM4 file.

    ``data`` keeps the file's dtype: (H, W), or (N, H, W) for a stack. The
    pixel size is None when the image is uncalibrated or its units are not a
    length (reciprocal units of a diffraction pattern, for instance); the
    units and (y, x) scale are always in the metadata.
    """
    path = check_file(path, ImageReadError, "DM file")
    size = path.stat().st_size
    version, expected_size = _read_header(path, size)

    from rsciio.digitalmicrograph import file_reader

    try:
        images = file_reader(str(path))
    except Exception as exc:  # rsciio raises struct.error, OSError, KeyError... on bad files
        if size < expected_size:
            raise ImageReadError(
                f"{path}: the DM{version} file is truncated ({size} of {expected_size} bytes)"
            ) from None
        raise ImageReadError(
            f"{path}: cannot be read as a DM{version} file, corrupt ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    if not images:
        raise ImageReadError(f"{path}: the DM{version} file holds no image (only a thumbnail or nothing)")
    # Digital Micrograph marks its RGBA thumbnail, which rsciio skips; should an
    # unmarked one remain, prefer the largest non-colour image.
    image = max(images, key=lambda im: (im["data"].dtype.names is None, im["data"].size))
    data = image["data"]
    _check_pixels(path, data)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]

    axes = image["axes"][-2:]  # y, x
    scale = tuple(float(a["scale"]) for a in axes)
    units = str(axes[-1]["units"]).strip()
    meta = {
        "format": f"DM{version}",
        "dtype": str(data.dtype),
        "units": units,
        "scale": scale,
        "title": image["metadata"]["General"].get("title", ""),
        "images_in_file": len(images),
        **_instrument(image["original_metadata"]),
    }
    return data, _pixel_size_nm(scale[-1], units), meta


def _read_header(path: Path, size: int) -> tuple[int, int]:
    """(DM version, file size the header announces); refuse files that are not DM3/DM4."""
    with open(path, "rb") as f:
        head = f.read(16)
    version = struct.unpack(">I", head[:4])[0] if len(head) >= 4 else None
    if version not in _HEADER:
        raise ImageReadError(f"{path}: not a DigitalMicrograph file (no DM3/DM4 header)")
    fmt, header_len, overhead = _HEADER[version]
    if len(head) < header_len:
        raise ImageReadError(f"{path}: the DM{version} file is truncated ({size} bytes, shorter than its header)")
    return version, struct.unpack(fmt, head[4 : 4 + struct.calcsize(fmt)])[0] + overhead


def _check_pixels(path: Path, data: np.ndarray) -> None:
    """Refuse colour, complex and non-image data: measurements need real intensities of an image."""
    if data.dtype.names is not None:
        raise ImageReadError(f"{path}: RGB colour DM image; TEM analysis needs a grayscale image")
    if np.iscomplexobj(data):
        raise ImageReadError(
            f"{path}: complex-valued DM image (an FFT or exit wave?); TEM analysis needs a real-space image"
        )
    if data.ndim not in (2, 3):
        raise ImageReadError(f"{path}: holds {data.ndim}D data of shape {data.shape}, not an image or a stack")


def _pixel_size_nm(scale: float, units: str) -> float | None:
    """Nanometres per pixel, None when ``units`` is no length or the scale is not positive."""
    per_unit = unit_to_nm(units)
    if per_unit is None or not np.isfinite(scale) or scale <= 0:
        return None
    return scale * per_unit


def _instrument(tags: dict) -> dict:
    """Microscope name, beam energy (kV) and magnification from the image tags, where present."""
    image_tags = tags.get("ImageList", {}).get("TagGroup0", {}).get("ImageTags", {})
    info = image_tags.get("Microscope Info", {})
    session = image_tags.get("Session Info", {})
    found = {
        "microscope": info.get("Microscope") or info.get("Name") or session.get("Microscope"),
        "voltage_kv": info["Voltage"] / 1e3 if isinstance(info.get("Voltage"), (int, float)) else None,
        "magnification": info.get("Indicated Magnification"),
    }
    return {k: v for k, v in found.items() if v not in (None, "", [])}
