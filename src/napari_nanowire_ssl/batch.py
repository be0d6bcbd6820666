"""Running a trained bundle over many image files: masks, overlays and one CSV.

:func:`process_files` is the one loop behind ``nanowire-ssl analyze --bundle``
and the GUI's batch button: a generator that yields one :class:`BatchEvent`
per file and stops between files (and between tiles) when ``should_stop``
says so. For every input it writes, under ``out_dir``:

- ``masks/<stem>.tif``: uint8, 1 = nanowire (when the bundle has a decoder);
- ``overlays/<stem>.png``: the image in gray, wires in cyan, the percolating
  cluster in magenta (when the bundle has a decoder);
- one row of ``results.csv``: ``path``, ``error``, ``crop_bottom`` (the rows
  of instrument banner left out), then ``label`` and
  ``prob_<class>`` (when the bundle has a classifier), then the
  :data:`~.analysis.measure.COLUMNS` of the mask (when it has a decoder).

Rows are written and flushed as files finish, so a cancelled or crashed run
keeps every finished row. A file that cannot be read gets its one-line
reason in ``error`` and the run goes on.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .errors import NanowireSSLError, naming
from .io.banner import AUTO as BANNER_AUTO, banner_crop, with_banner_rows, without_banner

RESULTS_CSV = "results.csv"
WIRE_COLOUR = np.array([0, 220, 255], np.float32)
PERCOLATING_COLOUR = np.array([255, 40, 230], np.float32)


@dataclass(frozen=True)
class BatchEvent:
    """One file done (or failed): its CSV row."""

    index: int  # 0-based
    total: int
    path: Path
    row: dict

    @property
    def fraction(self) -> float:
        return (self.index + 1) / self.total


def result_columns(bundle: Bundle) -> list[str]:
    """The CSV header for ``bundle``."""
    from .analysis.measure import COLUMNS

    columns = ["path", "error", "crop_bottom"]
    if bundle.head is not None:
        columns += ["label", *(f"prob_{c}" for c in bundle.head.class_names)]
    if bundle.decoder is not None:
        columns += list(COLUMNS)
    return columns


def overlay_rgb(image: np.ndarray, mask: np.ndarray, percolating: np.ndarray) -> np.ndarray:
    """uint8 RGB: the normalised image in gray, wires tinted cyan, the percolating cluster magenta."""
    from .io.normalize import normalize

    gray = normalize(image)[..., None] * 255.0
    rgb = np.repeat(gray, 3, axis=-1)
    for where, colour in ((mask.astype(bool) & ~percolating.astype(bool), WIRE_COLOUR),
                          (percolating.astype(bool), PERCOLATING_COLOUR)):
        rgb[where] = 0.4 * gray[where] + 0.6 * colour
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def analyse_image(bundle: Bundle, image: np.ndarray, *, pixel_size_nm: float | None = None,
                  crop_bottom: int | str = BANNER_AUTO, name: str = "image",
                  should_stop: Callable[[], bool] | None = None,
                  on_fallback: Callable[[str], None] | None = None) -> dict | None:
    """Classify and/or segment + measure one 2D image with ``bundle``.

    ``on_fallback`` hears of smaller tiles or the CPU after running out of
    GPU memory (see :func:`~.fewshot.tiling.segment_image`).

    ``crop_bottom``: rows of instrument banner left out of everything (``"auto"``: the
    detected banner; see :func:`~.io.banner.banner_crop`); the mask has them as background.

    Returns ``{"row": ..., "mask": ..., "percolating": ...}`` (mask entries
    only with a decoder), or None when stopped.
    """
    from .analysis.measure import analyse_mask
    from .fewshot.features import image_features
    from .fewshot.tiling import segment_image

    if image.ndim != 2:
        raise NanowireSSLError(f"needs a 2D image, got a stack of shape {image.shape}")
    rows = banner_crop(image, crop_bottom, name=name)
    result: dict = {"row": {"crop_bottom": rows}}
    if bundle.head is not None:
        micrograph = without_banner(image, rows)
        probs = bundle.head.predict_proba(image_features(bundle.encoder, [micrograph], **bundle.head.tiling))[0]
        result["row"]["label"] = bundle.head.class_names[int(probs.argmax())]
        result["row"].update({f"prob_{c}": round(float(p), 6) for c, p in zip(bundle.head.class_names, probs)})
    if bundle.decoder is not None:
        options = bundle.options
        tile = options["tile"]
        out = segment_image(bundle.decoder, image, tile=tile, crop_bottom=rows, threshold=options["threshold"],
                            should_stop=should_stop, on_fallback=on_fallback, name=name)
        if out is None:
            return None
        mask = out[1]
        analysis = analyse_mask(mask, pixel_size_nm=pixel_size_nm, crop_bottom=rows,
                                connectivity=options["connectivity"],
                                link_distance=options["link_distance"], criterion=options["criterion"])
        result["row"].update(analysis.row)
        result.update(mask=mask, percolating=with_banner_rows(analysis.percolation.spanning_mask, rows))
    return result


def output_stems(files: list[Path]) -> None:
    """Refuse two inputs with the same stem (their masks and overlays would collide)."""
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise NanowireSSLError(f"{f}: same file name stem as {seen[f.stem]}; their masks would overwrite "
                                   "each other")
        seen[f.stem] = f


def process_files(bundle: Bundle, files: list[Path], out_dir: Path, *, csv_name: str = RESULTS_CSV,
                  pixel_size_nm: float | None = None, crop_bottom: int | str = BANNER_AUTO,
                  should_stop: Callable[[], bool] | None = None,
                  on_fallback: Callable[[str], None] | None = None) -> Iterator[BatchEvent]:
    """Generator over ``files``: see the module docstring. Returns when done or stopped.

    ``pixel_size_nm`` overrides every file's own calibration (None: each file's, if any);
    ``crop_bottom`` is every file's bottom crop (``"auto"``: each file's detected banner).
    """
    import tifffile
    from PIL import Image

    from .io import read_image

    files = [Path(f) for f in files]
    output_stems(files)
    out_dir = Path(out_dir)
    masks_dir, overlays_dir = out_dir / "masks", out_dir / "overlays"
    for folder in (out_dir, *((masks_dir, overlays_dir) if bundle.decoder is not None else ())):
        folder.mkdir(parents=True, exist_ok=True)
    columns = result_columns(bundle)
    stop = should_stop or (lambda: False)
    with open(out_dir / csv_name, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for i, path in enumerate(files):
            if stop():
                return
            row = {"path": str(path), "error": ""}
            try:
                image = read_image(path)
                result = analyse_image(bundle, image.data, pixel_size_nm=pixel_size_nm or image.pixel_size_nm,
                                       crop_bottom=crop_bottom, name=str(path), should_stop=stop,
                                       on_fallback=on_fallback)
                if result is None:
                    return
                row.update(result["row"])
                if "mask" in result:
                    tifffile.imwrite(masks_dir / f"{path.stem}.tif", result["mask"], photometric="minisblack",
                                     compression="zlib")
                    Image.fromarray(overlay_rgb(image.data, result["mask"], result["percolating"])).save(
                        overlays_dir / f"{path.stem}.png")
            except NanowireSSLError as exc:
                row["error"] = naming(path, exc)
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
            fh.flush()
            yield BatchEvent(i, len(files), path, row)


def folder_job(input_value, output_value) -> tuple[list[Path], Path]:
    """``(image files, output folder)`` of the folder fields, or a one-line error a user understands."""
    from .io import list_images

    src, dst = Path(input_value), Path(output_value)
    if not str(input_value) or str(src) == "." or not src.is_dir():
        raise NanowireSSLError(f"Input folder '{src}': choose an existing folder of images")
    if not str(output_value) or str(dst) == ".":
        raise NanowireSSLError("Choose an output folder (it is created when missing)")
    if dst.resolve() == src.resolve():
        raise NanowireSSLError("The output folder must differ from the input folder")
    return list_images([src]), dst
