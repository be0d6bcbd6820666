"""Read microscope images into float32 arrays with their pixel size.

One entry point, :func:`read_image`, for TIFF (8/16/32-bit, float, RGB/RGBA
with equal channels, multi-page stacks), PNG/JPEG/BMP and Gatan DM3/DM4. The
data keep their raw intensities (converted to float32); scaling for the
networks is :func:`napari_nanowire_ssl.io.normalize.normalize`'s job.

Pixel sizes are only reported when the file states a physical calibration:
DM calibrations, FEI / Zeiss SEM metadata, ImageJ ``unit`` with a length unit,
or TIFF resolution tags in centimetres. Resolution tags in inches are print
DPI (72, 96, 300...) written by imaging software, not a calibration, and are
ignored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, check_file

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DM_SUFFIXES = (".dm3", ".dm4")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES + DM_SUFFIXES

# A colour image counts as grayscale when at most this fraction of its pixels
# have differing R, G, B values: burnt-in coloured scale bars and annotations.
MAX_COLOUR_FRACTION = 0.01

# Length units found in microscope metadata, in nanometres.
_UNIT_NM = {
    "pm": 1e-3, "a": 0.1, "å": 0.1, "angstrom": 0.1, "nm": 1.0, "nanometer": 1.0,
    "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3, "microns": 1e3,
    "micrometer": 1e3, "mm": 1e6, "cm": 1e7, "m": 1e9,
}


@dataclass(frozen=True)
class TEMImage:
    """A micrograph as read from disk.

    ``data`` is float32, (H, W) for an image or (N, H, W) for a stack, with
    the file's raw intensities. ``pixel_size_nm`` is None when the file holds
    no physical calibration.
    """

    data: np.ndarray
    pixel_size_nm: float | None
    path: Path
    metadata: dict = field(default_factory=dict)

    @property
    def is_stack(self) -> bool:
        return self.data.ndim == 3


def unit_to_nm(unit: str) -> float | None:
    """Nanometres per ``unit`` (e.g. 'µm' -> 1000.0), None for non-length units."""
    return _UNIT_NM.get(unit.strip().lower())


def read_image(path: str | Path) -> TEMImage:
    """Read one image file; raise :class:`ImageReadError` naming the file on bad input."""
    path = check_file(path, ImageReadError, "image file")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        data, pixel_size, meta = _read_tiff(path)
    elif suffix in PIL_SUFFIXES:
        data, pixel_size, meta = _read_pil(path)
    elif suffix in DM_SUFFIXES:
        from .dm import read_dm

        data, pixel_size, meta = read_dm(path)
    else:
        raise ImageReadError(
            f"{path}: unsupported file type '{suffix}' "
            f"(supported: {', '.join(IMAGE_SUFFIXES)})"
        )
    if data.ndim not in (2, 3) or min(data.shape[-2:]) == 0:
        raise ImageReadError(f"{path}: expected a 2D image or a stack, got shape {data.shape}")
    return TEMImage(np.ascontiguousarray(data, dtype=np.float32), pixel_size, path, meta)


# Sub-folders that hold masks, labels or results rather than micrographs: a folder
# tree is searched for images without them (a path given by name is always read).
NON_IMAGE_FOLDERS = frozenset({"masks", "labels", "overlays"})


def list_images(paths, *, what: str = "image", suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
                report=None) -> list[Path]:
    """Expand files and folder trees into files with one of ``suffixes``.

    Folders are searched recursively in sorted order, skipping hidden folders
    and :data:`NON_IMAGE_FOLDERS`; a folder without any such file is an error.
    ``report`` (e.g. ``print``) is told how many files each folder gave.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = _files_under(p, suffixes)
            if not found:
                raise ImageReadError(f"{p}: folder holds no {what} files ({', '.join(suffixes)}), "
                                     f"sub-folders included")
            if report is not None:
                folders = len({f.parent for f in found})
                where = f" in {folders} folders" if folders > 1 else ""
                report(f"{p}: found {len(found)} {what} files{where}")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise ImageReadError(f"{p}: no such file or folder")
    return files


def _files_under(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if not entry.name.startswith(".") and entry.name.lower() not in NON_IMAGE_FOLDERS:
                found.extend(_files_under(entry, suffixes))
        elif entry.suffix.lower() in suffixes and not entry.name.startswith("."):
            found.append(entry)
    return found


def _read_tiff(path: Path):
    import tifffile

    with _LibraryLog("tifffile") as log:
        try:
            with tifffile.TiffFile(path) as tif:
                data, axes, planar = _tiff_pixels(tif)
                pixel_size = _tiff_pixel_size(tif)
        except Exception as exc:  # tifffile raises many types for corrupt files
            reason = log.messages[0] if log.messages else first_line(exc)
            raise ImageReadError(f"{path}: cannot be read as TIFF, truncated or corrupt ({reason})") from None
    meta = {"format": "TIFF", "axes": axes, "dtype": str(data.dtype)}
    if log.messages:
        meta["reader_warnings"] = log.messages
    if "S" in axes and planar and not _equal_channels(np.moveaxis(data, axes.index("S"), -1)):
        # Separate planes that differ are how tifffile and others write a
        # gray stack of 3 or 4 images without ImageJ metadata: keep them as one.
        meta["axes"] = axes = axes.replace("S", "I")
        meta["planes"] = "separate samples read as a stack"
    if "S" in axes:
        if axes.index("S") != len(axes) - 1:
            data = np.moveaxis(data, axes.index("S"), -1)
        data = grayscale(data, path, meta)
    data = data.reshape((-1,) + data.shape[-2:]) if data.ndim > 2 else data
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    return data, pixel_size, meta


class _LibraryLog(logging.Handler):
    """Collects what a library logs while a file is read, instead of printing it.

    A damaged file then gives our one-line error with the library's reason in
    it, and nothing else on the terminal.
    """

    def __init__(self, name: str):
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = re.sub(r"^<[^>]*>\s*", "", record.getMessage().strip())  # '<tifffile.TiffPages @8> invalid...'
        self.messages.append(first_line(Exception(text)))

    def __enter__(self):
        self._propagate = self.logger.propagate
        self.logger.addHandler(self)
        self.logger.propagate = False
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.propagate = self._propagate
        return False


def _tiff_pixels(tif):
    """The pixels of a TIFF, its axes and whether its samples are separate planes.

    Pages written one by one with their own shape descriptions form one series
    each: when they all share shape and type they are the pages of one stack,
    never just the first page.
    """
    series = tif.series
    first = series[0]
    page = first.keyframe
    planar = page.samplesperpixel > 1 and page.planarconfig == 2
    if len(series) > 1 and first.ndim == 2 and all(
            s.shape == first.shape and s.dtype == first.dtype for s in series):
        return np.stack([s.asarray() for s in series]), "I" + first.axes, planar
    return first.asarray(), first.axes, planar


def _equal_channels(rgb: np.ndarray) -> bool:
    """Whether at most :data:`MAX_COLOUR_FRACTION` of pixels have differing R, G, B."""
    return _colour_fraction(rgb) <= MAX_COLOUR_FRACTION


def _colour_fraction(data: np.ndarray) -> float:
    rgb = data[..., :3]
    differs = (rgb[..., 0] != rgb[..., 1]) | (rgb[..., 0] != rgb[..., 2])
    return float(differs.mean())


def _tiff_pixel_size(tif) -> float | None:
    """Physical pixel size in nm from the metadata a TIFF may carry, else None."""
    if tif.is_fei:
        width_m = (tif.fei_metadata.get("Scan") or {}).get("PixelWidth")
        if width_m:
            return float(width_m) * 1e9
    if tif.is_sem:
        entry = tif.sem_metadata.get("ap_image_pixel_size")
        if entry and len(entry) == 3:
            scale = unit_to_nm(str(entry[2]))
            if scale:
                return float(entry[1]) * scale
    page = tif.pages[0]
    xres = page.tags.get("XResolution")
    if xres is None:
        return None
    num, den = xres.value
    if not num or not den:
        return None
    units_per_px = den / num
    if tif.is_imagej:
        scale = unit_to_nm(str(tif.imagej_metadata.get("unit", "")))
        if scale and scale <= 1e6:  # 'inch' and friends are not calibrations
            return units_per_px * scale
        return None
    resunit = page.tags.get("ResolutionUnit")
    if resunit is not None and int(resunit.value) == 3:  # centimetre
        return units_per_px * 1e7
    return None


def _read_pil(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            fmt = im.format
            if im.mode == "P":
                im = im.convert("RGBA")
            elif im.mode == "LA":
                im = im.getchannel("L")
            elif im.mode == "1":
                im = im.convert("L")
            data = np.asarray(im)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable {path.suffix.lstrip('.').upper()} image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot be read, truncated or corrupt ({first_line(exc)})") from None
    meta = {"format": fmt, "dtype": str(data.dtype)}
    if data.ndim == 3:
        data = grayscale(data, path, meta)
    return data, None, meta


def grayscale(data: np.ndarray, name, meta: dict | None = None) -> np.ndarray:
    """Collapse trailing colour samples to gray when the channels are equal.

    Alpha is dropped. Up to :data:`MAX_COLOUR_FRACTION` of pixels may carry
    colour (coloured scale bars); the gray value is then the channel mean.
    Genuinely colour images are refused with an error naming ``name`` (a
    file, or a layer as "Layer 'x'"): the encoders see one channel and
    silently mixing colours would give wrong measurements. What was done is
    noted in ``meta``. Files and napari layers share this one decision.
    """
    meta = {} if meta is None else meta
    samples = data.shape[-1]
    if samples not in (2, 3, 4):
        raise ImageReadError(f"{name}: unexpected {samples} samples per pixel")
    if samples == 2:  # gray + alpha
        meta["dropped"] = "alpha"
        return data[..., 0]
    rgb = data[..., :3]
    if samples == 4:
        meta["dropped"] = "alpha"
    fraction = _colour_fraction(rgb)
    if fraction > MAX_COLOUR_FRACTION:
        kind = "RGBA" if samples == 4 else "RGB"
        raise ImageReadError(
            f"{name}: {kind} colour image whose channels differ in {fraction:.0%} of pixels; "
            "TEM analysis needs a grayscale image (convert it first)"
        )
    meta["colour_pixel_fraction"] = fraction
    if fraction == 0:
        return rgb[..., 0]
    return rgb.astype(np.float32).mean(axis=-1)


def first_line(exc: Exception) -> str:
    """The first line of an exception message (at most 120 characters), for one-line errors."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:120]
