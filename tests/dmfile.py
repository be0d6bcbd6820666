"""Test support: write small but valid Gatan DigitalMicrograph DM3 / DM4 files.

No sample DM files ship with the project, so the tests build their own. The
layout follows the community descriptions of the format (Boothroyd's "Digital
Micrograph file format" pages) and what ``rsciio.digitalmicrograph`` parses:

* header, big-endian: version (4 bytes), size (DM3: 4 bytes = file length - 16;
  DM4: 8 bytes = file length - 24), byte order of the tag data (1 = little);
* root tag group: sorted flag, open flag, tag count (4 bytes, DM4 8 bytes);
* each tag: kind (20 = group, 21 = data), name length (2 bytes), name; DM4
  then gives the byte size of the rest of the tag (8 bytes);
* a group continues as the root; a data tag with ``%%%%``, the length of its
  type description, the description (each entry 4 bytes, DM4 8 bytes) and the
  value in the tag-data byte order (little-endian here);
* the file ends with 8 zero bytes.

What is written: ``ImageList`` with an RGBA thumbnail as image 0 (listed in the
root ``Thumbnails`` group, as Digital Micrograph does, so readers skip it) and
the image as image 1, with ``ImageData`` (``Calibrations`` with ``Brightness``
and one ``Dimension`` entry per axis, ``Data``, ``DataType``, ``Dimensions``
x first, ``PixelDepth``), ``ImageTags`` and ``Name``. Strings are arrays of
UTF-16 code units, as Digital Micrograph writes them. Pixel types: uint8,
int16, uint16, float32 (the usual camera and processed types), complex64 and
RGB(A) uint8 (so tests can check they are refused).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Type codes of tag values.
SHORT, LONG, USHORT, ULONG, FLOAT, DOUBLE, BOOL, OCTET = 2, 3, 4, 5, 6, 7, 8, 10
ARRAY = 20
_PACK = {SHORT: "h", LONG: "i", USHORT: "H", ULONG: "I", FLOAT: "f", DOUBLE: "d", BOOL: "B"}

# numpy dtype -> (DM image DataType, type code of the elements of the Data array).
# The Data array only has to span the right number of bytes, one element per pixel.
_IMAGE_TYPES = {
    np.dtype(np.int16): (1, SHORT),
    np.dtype(np.float32): (2, FLOAT),
    np.dtype(np.complex64): (3, DOUBLE),  # 8 bytes per pixel
    np.dtype(np.uint8): (6, OCTET),
    np.dtype(np.uint16): (10, USHORT),
}
RGBA_DATATYPE = 23  # 4 bytes per pixel: B, G, R, A


@dataclass(frozen=True)
class Tag:
    """A data tag: its type description and its value as little-endian bytes."""

    info: tuple[int, ...]
    payload: bytes


def scalar(code: int, value) -> Tag:
    return Tag((code,), struct.pack("<" + _PACK[code], value))


def text(value: str) -> Tag:
    raw = value.encode("utf-16-le")
    return Tag((ARRAY, USHORT, len(raw) // 2), raw)


def tag_tree(value):
    """Python values -> tags: dict = named group, str = text, bool, int = long, float = double."""
    if isinstance(value, dict):
        return {k: tag_tree(v) for k, v in value.items()}
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bool):
        return scalar(BOOL, value)
    if isinstance(value, int):
        return scalar(LONG, value)
    return scalar(DOUBLE, value)


def write_dm(
    path,
    data: np.ndarray | None,
    *,
    version: int = 3,
    scale: tuple[float, float] = (1.0, 1.0),
    units: str = "nm",
    name: str = "test image",
    image_tags: dict | None = None,
    rgb: bool = False,
    mark_thumbnail: bool = True,
) -> Path:
    """Write ``data`` ((H, W), a stack (N, H, W), or (H, W, 3|4) uint8 with ``rgb``).

    ``scale`` is the (y, x) pixel size in ``units``; a stack's first axis is
    uncalibrated. ``image_tags`` (nested dict, see :func:`tag_tree`) become the
    image's ``ImageTags``, e.g. ``{"Microscope Info": {"Voltage": 200000.0}}``.
    ``data=None`` writes a file whose ``ImageList`` is empty. With
    ``mark_thumbnail=False`` the thumbnail is not listed in ``Thumbnails``, so
    readers see it as a second image.
    """
    if version not in (3, 4):
        raise ValueError(f"DM version must be 3 or 4, got {version}")
    root: dict = {"ImageList": []}
    if data is not None:
        thumb = _thumbnail(data, rgb)
        root["ImageList"] = [_image(thumb, (1.0, 1.0), "", "thumbnail", {}, rgb=True),
                             _image(data, scale, units, name, image_tags or {}, rgb=rgb)]
        if mark_thumbnail:
            root["Thumbnails"] = [{"ImageIndex": scalar(ULONG, 0)}]
    body = _group(root, version)
    header_len = 12 if version == 3 else 16
    total = header_len + len(body) + 8
    size_field = struct.pack(">I", total - 16) if version == 3 else struct.pack(">Q", total - 24)
    raw = struct.pack(">I", version) + size_field + struct.pack(">I", 1) + body + bytes(8)
    path = Path(path)
    path.write_bytes(raw)
    return path


def _image(data: np.ndarray, scale, units: str, name: str, image_tags: dict, *, rgb: bool) -> dict:
    """One ``ImageList`` entry."""
    if rgb:
        if data.dtype != np.uint8 or data.ndim != 3 or data.shape[-1] not in (3, 4):
            raise ValueError(f"RGB data must be (H, W, 3|4) uint8, got {data.shape} {data.dtype}")
        alpha = data[..., 3] if data.shape[-1] == 4 else np.full(data.shape[:2], 255, np.uint8)
        bgra = np.stack([data[..., 2], data[..., 1], data[..., 0], alpha], axis=-1)
        shape, data_type, depth = data.shape[:2], RGBA_DATATYPE, 4
        payload, element, count = bgra.tobytes(), ULONG, bgra.shape[0] * bgra.shape[1]
    else:
        if data.dtype not in _IMAGE_TYPES or data.ndim not in (2, 3):
            raise ValueError(f"unsupported image {data.shape} {data.dtype}")
        shape, (data_type, element), depth = data.shape, _IMAGE_TYPES[data.dtype], data.dtype.itemsize
        payload, count = data.astype(data.dtype.newbyteorder("<")).tobytes(), data.size
    sy, sx = scale
    calibrated = [(sx, units), (sy, units)] + [(1.0, "")] * (len(shape) - 2)  # x, y, then stack
    return {
        "ImageData": {
            "Calibrations": {
                "Brightness": {"Origin": scalar(FLOAT, 0.0), "Scale": scalar(FLOAT, 1.0), "Units": text("")},
                "Dimension": [
                    {"Origin": scalar(FLOAT, 0.0), "Scale": scalar(FLOAT, s), "Units": text(u)} for s, u in calibrated
                ],
                "DisplayCalibratedUnits": scalar(BOOL, 1),
            },
            "Data": Tag((ARRAY, element, count), payload),
            "DataType": scalar(LONG, data_type),
            "Dimensions": list(_longs(shape[::-1])),
            "PixelDepth": scalar(LONG, depth),
        },
        "ImageTags": tag_tree(image_tags),
        "Name": text(name),
    }


def _longs(values) -> list[Tag]:
    return [scalar(LONG, int(v)) for v in values]


def _thumbnail(data: np.ndarray, rgb: bool) -> np.ndarray:
    """A small 8-bit RGBA view of the (first) image, as Digital Micrograph stores."""
    plane = data[..., :3].mean(axis=-1) if rgb else (data[0] if data.ndim == 3 else data)
    plane = np.abs(plane[:: max(1, plane.shape[0] // 16), :: max(1, plane.shape[1] // 16)]).astype(np.float64)
    span = np.ptp(plane) or 1.0
    gray = ((plane - plane.min()) * (255 / span)).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def _group(entries, version: int) -> bytes:
    """A tag group's content: flags, tag count, tags. A list holds unnamed tags."""
    items = entries.items() if isinstance(entries, dict) else (("", e) for e in entries)
    tags = [_tag(name, value, version) for name, value in items]
    return struct.pack(">BB", 1, 0) + _count(len(tags), version) + b"".join(tags)


def _tag(name: str, value, version: int) -> bytes:
    raw_name = name.encode("latin-1")
    if isinstance(value, Tag):
        kind = 21
        body = b"%%%%" + _count(len(value.info), version) + b"".join(_count(i, version) for i in value.info)
        body += value.payload
    else:
        kind, body = 20, _group(value, version)
    head = struct.pack(">bh", kind, len(raw_name)) + raw_name
    if version == 4:
        head += struct.pack(">Q", len(body))
    return head + body


def _count(n: int, version: int) -> bytes:
    return struct.pack(">I" if version == 3 else ">Q", n)
