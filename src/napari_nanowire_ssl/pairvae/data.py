"""Paired SAXS / SEM data on disk: the folder layout, detector formats, and synthetic pairs.

Layout: ``PAIRS_DIR/saxs/<stem>.*`` and ``PAIRS_DIR/sem/<stem>.*``, matched by
file stem. An optional ``PAIRS_DIR/labels.csv`` (columns ``stem,morphology``,
more allowed) groups the metrics by morphology; ``nanowire-ssl pairvae synth``
writes one.

SAXS files: TIFF, PNG/JPEG (through the project's reader), ESRF EDF
(:func:`read_edf`) or HDF5 (``.h5``/``.hdf5``/``.nxs``, with h5py). Their
values become [0, 1] network inputs by :func:`saxs_to_unit`: 8-bit images are
taken as precomputed (already log-scaled) pictures and divided by 255; float
images already within [0, 1] are kept; anything else is detector counts and is
log-scaled (:func:`.scattering.log_scale`; negative values, which detectors
use for masked pixels, count as 0).

SEM files: any image the project reader takes, binarised by :func:`binarize`
(Otsu's threshold: block A = the bright phase).

Both are centre-cropped to a square and resized to the model's image size.
The beam centre must be the image centre and all patterns of a data set must
share one q range (detector distance, wavelength, pixel size); likewise the
SEM images must share one magnification, since the period in pixels is what
links the two.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, NanowireSSLError, check_file
from ..io.reader import IMAGE_SUFFIXES, first_line, read_image

EDF_SUFFIXES = (".edf",)
HDF5_SUFFIXES = (".h5", ".hdf5", ".nxs")
SAXS_SUFFIXES = IMAGE_SUFFIXES + EDF_SUFFIXES + HDF5_SUFFIXES
LABELS_FILE = "labels.csv"

# EDF DataType names (case-insensitive) -> numpy type, as written by ESRF, SPEC and FabIO.
_EDF_TYPES = {
    "unsignedbyte": "u1", "unsignedchar": "u1", "signedbyte": "i1", "signedchar": "i1",
    "unsignedshort": "u2", "unsignedshortinteger": "u2", "signedshort": "i2", "signedshortinteger": "i2",
    "unsignedinteger": "u4", "unsignedint": "u4", "unsignedlong": "u4",
    "signedinteger": "i4", "signedint": "i4", "signedlong": "i4",
    "unsigned64": "u8", "signed64": "i8",
    "floatvalue": "f4", "float": "f4", "real": "f4", "doublevalue": "f8", "double": "f8",
}


def read_edf(path: str | Path) -> np.ndarray:
    """The first frame of an ESRF EDF file as a 2D float32 array.

    EDF: an ASCII header ``{ key = value ; ... }`` padded to a multiple of 512
    bytes, then the raw pixels: ``Dim_1`` (fast axis, width) x ``Dim_2``
    (height) values of ``DataType`` in ``ByteOrder`` (``LowByteFirst`` or
    ``HighByteFirst``). Compressed EDF is refused.
    """
    path = check_file(path, ImageReadError, "EDF file")
    raw = path.read_bytes()
    if not raw.lstrip()[:1] == b"{":
        raise ImageReadError(f"{path}: not an EDF file (no '{{' header)")
    end = raw.find(b"}")
    if end < 0:
        raise ImageReadError(f"{path}: EDF header never closes ('}}' missing): truncated or corrupt")
    header = {}
    for entry in raw[raw.find(b"{") + 1:end].decode("latin-1").split(";"):
        key, sep, value = entry.partition("=")
        if sep:
            header[key.strip().lower()] = value.strip()
    newline = b"\r\n" if raw[end + 1:end + 3] == b"\r\n" else b"\n" if raw[end + 1:end + 2] == b"\n" else b""
    start = end + 1 + len(newline)  # the header ends with "}\n"
    if "dim_1" not in header:
        raise ImageReadError(f"{path}: EDF header has no Dim_1 (image width)")
    if header.get("datatype", "").lower() not in _EDF_TYPES:
        raise ImageReadError(f"{path}: EDF DataType {header.get('datatype')!r} is not supported")
    try:
        width, height = int(header["dim_1"]), int(header.get("dim_2", 1))
    except ValueError:
        raise ImageReadError(f"{path}: EDF header has non-integer dimensions") from None
    dtype = np.dtype(_EDF_TYPES[header["datatype"].lower()])
    if header.get("compression", "none").lower() not in ("none", ""):
        raise ImageReadError(f"{path}: compressed EDF ({header['compression']}) is not supported")
    dtype = dtype.newbyteorder(">" if header.get("byteorder", "lowbytefirst").lower() == "highbytefirst" else "<")
    n_bytes = width * height * dtype.itemsize
    data = raw[start:start + n_bytes]
    if len(data) < n_bytes:
        raise ImageReadError(f"{path}: EDF data truncated ({len(data)} of {n_bytes} bytes)")
    return np.frombuffer(data, dtype=dtype, count=width * height).reshape(height, width).astype(np.float32)


def read_hdf5(path: str | Path) -> np.ndarray:
    """The first 2D frame of the first numeric dataset (of 2 or more dimensions) in an HDF5 file."""
    path = check_file(path, ImageReadError, "HDF5 file")
    try:
        import h5py
    except ImportError:
        raise ImageReadError(f"{path}: reading HDF5 needs h5py, which is not installed (pip install h5py)") from None
    found = []

    def visit(name, obj):
        if not found and isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and obj.dtype.kind in "uif":
            found.append(obj[(0,) * (obj.ndim - 2)])

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as e:
        raise ImageReadError(f"{path}: cannot be read as HDF5 ({first_line(e)})") from None
    if not found:
        raise ImageReadError(f"{path}: holds no numeric dataset of 2 or more dimensions")
    return np.asarray(found[0], dtype=np.float32)


def read_saxs_raw(path: str | Path) -> np.ndarray:
    """A SAXS file's 2D values as stored (dtype kept for TIFF/PNG, for :func:`saxs_to_unit`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in EDF_SUFFIXES:
        return read_edf(path)
    if suffix in HDF5_SUFFIXES:
        return read_hdf5(path)
    if suffix not in IMAGE_SUFFIXES:
        raise ImageReadError(f"{path}: unsupported SAXS file type '{suffix}' (supported: {', '.join(SAXS_SUFFIXES)})")
    image = read_image(path)
    if image.data.ndim != 2:
        raise ImageReadError(f"{path}: expected one 2D SAXS pattern, got a stack of shape {image.data.shape}")
    if image.metadata.get("dtype") == "uint8":
        return image.data.astype(np.uint8)
    return image.data


def saxs_to_unit(values: np.ndarray) -> np.ndarray:
    """[0, 1] float32 network input from stored SAXS values (rules in the module docstring)."""
    if values.dtype == np.uint8:
        return values.astype(np.float32) / 255
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    if values.dtype.kind == "f" and finite.any() and values[finite].min() >= 0 and values[finite].max() <= 1:
        return np.where(finite, values, 0).astype(np.float32)
    from .scattering import log_scale

    return log_scale(values)


def binarize(image: np.ndarray) -> np.ndarray:
    """Otsu's threshold: float32 1 = bright phase (block A), 0 = dark; a constant image is refused."""
    from skimage.filters import threshold_otsu

    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all() or image.max() == image.min():
        raise NanowireSSLError("SEM image is constant or has non-finite pixels: nothing to binarise")
    return (image > threshold_otsu(image)).astype(np.float32)


def fit_size(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize (anti-aliased) to ``size`` x ``size`` px; float32."""
    from skimage.transform import resize

    h, w = image.shape
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    square = np.asarray(image[y0:y0 + side, x0:x0 + side], dtype=np.float32)
    if side == size:
        return square
    return resize(square, (size, size), order=1, anti_aliasing=side > size, preserve_range=True).astype(np.float32)


def load_saxs(path: str | Path, size: int) -> np.ndarray:
    """A SAXS file as a (size, size) [0, 1] float32 network input."""
    return fit_size(saxs_to_unit(read_saxs_raw(path)), size)


def load_sem(path: str | Path, size: int) -> np.ndarray:
    """An SEM file as a (size, size) binary float32 image (1 = block A)."""
    image = read_image(path).data
    if image.ndim != 2:
        raise ImageReadError(f"{path}: expected one 2D SEM image, got a stack of shape {image.shape}")
    try:
        return binarize(fit_size(image, size))
    except NanowireSSLError as e:
        raise ImageReadError(f"{path}: {e}") from None


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in suffixes:
            if f.stem in found:
                raise NanowireSSLError(f"{f}: another file in {folder.name}/ has the stem '{f.stem}' "
                                       f"({found[f.stem].name})")
            found[f.stem] = f
    return found


def pair_files(root: str | Path) -> list[tuple[str, Path, Path]]:
    """``(stem, saxs file, sem file)`` of a pairs folder, sorted by stem; one-line errors naming the file."""
    root = Path(root)
    if not root.is_dir():
        raise NanowireSSLError(f"{root}: no such folder")
    for sub in ("saxs", "sem"):
        if not (root / sub).is_dir():
            raise NanowireSSLError(f"{root}: expected sub-folders saxs/ and sem/ (files matched by stem); "
                                   f"{sub}/ is missing")
    saxs, sem = _by_stem(root / "saxs", SAXS_SUFFIXES), _by_stem(root / "sem", IMAGE_SUFFIXES)
    for stem, f in saxs.items():
        if stem not in sem:
            raise NanowireSSLError(f"{f}: has no SEM partner (expected {root / 'sem' / stem}.<ext>)")
    for stem, f in sem.items():
        if stem not in saxs:
            raise NanowireSSLError(f"{f}: has no SAXS partner (expected {root / 'saxs' / stem}.<ext>)")
    if not saxs:
        raise NanowireSSLError(f"{root}: saxs/ and sem/ hold no pairs")
    return [(s, saxs[s], sem[s]) for s in sorted(saxs)]


@dataclass(frozen=True)
class PairSet:
    """Pairs as network inputs: SAXS (N, S, S) in [0, 1], SEM (N, S, S) binary, their stems and groups."""

    saxs: np.ndarray
    sem: np.ndarray
    stems: list[str]
    groups: list[str]  # morphology per pair from labels.csv, else "all"

    def subset(self, index) -> PairSet:
        index = list(index)
        return PairSet(self.saxs[index], self.sem[index], [self.stems[i] for i in index],
                       [self.groups[i] for i in index])

    def __len__(self) -> int:
        return len(self.stems)


def read_groups(root: Path, stems: list[str]) -> list[str]:
    """Morphology per stem from ``root/labels.csv`` when present, else "all" for every stem."""
    path = root / LABELS_FILE
    if not path.exists():
        return ["all"] * len(stems)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"stem", "morphology"} <= set(reader.fieldnames):
            raise NanowireSSLError(f"{path}: needs the columns stem and morphology")
        table = {row["stem"]: row["morphology"] for row in reader}
    missing = [s for s in stems if s not in table]
    if missing:
        raise NanowireSSLError(f"{path}: has no row for the pair '{missing[0]}'")
    return [table[s] for s in stems]


def load_pairs(root: str | Path, size: int) -> PairSet:
    """Read and match a pairs folder (see the module docstring) as network inputs of ``size`` px."""
    root = Path(root)
    files = pair_files(root)
    saxs = np.stack([load_saxs(f, size) for _, f, _ in files])
    sem = np.stack([load_sem(f, size) for _, _, f in files])
    stems = [s for s, _, _ in files]
    return PairSet(saxs, sem, stems, read_groups(root, stems))


def write_synthetic_pairs(root: str | Path, n_per_morphology: int, *, size: int = 64, seed: int = 0,
                          morphologies=None) -> list[dict]:
    """Write ``n`` synthetic pairs per morphology into ``root`` in the pairs layout; return the label rows.

    ``saxs/<stem>.tif``: float32 detector counts; ``sem/<stem>.png``: 8-bit
    SEM rendering; ``labels.csv``: stem, morphology, period_px,
    volume_fraction. Stems are ``<morphology>_<index>``; the same seed gives
    the same files.
    """
    import tifffile
    from PIL import Image

    from .morphologies import MORPHOLOGIES, generate_morphology, sem_image
    from .scattering import detector_counts

    if n_per_morphology < 1:
        raise NanowireSSLError(f"number of pairs per morphology must be at least 1, got {n_per_morphology}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NanowireSSLError(f"{root}: exists and is not a folder")
    for sub in ("saxs", "sem"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for k, kind in enumerate(morphologies or MORPHOLOGIES):
        for i in range(n_per_morphology):
            rng = np.random.default_rng([seed, k, i])
            m = generate_morphology(kind, size, seed=rng)
            stem = f"{kind}_{i:04d}"
            tifffile.imwrite(root / "saxs" / f"{stem}.tif", detector_counts(m.density, rng=rng))
            sem = np.round(sem_image(m.density, rng) * 255).astype(np.uint8)
            Image.fromarray(sem).save(root / "sem" / f"{stem}.png")
            rows.append({"stem": stem, "morphology": kind, "period_px": round(m.period_px, 3),
                         "volume_fraction": round(m.volume_fraction, 4)})
    with open(root / LABELS_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows

