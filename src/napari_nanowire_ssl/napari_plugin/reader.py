"""napari reader contribution for Gatan DM3/DM4 files (napari reads TIFF/PNG itself)."""

from __future__ import annotations

from pathlib import Path

from ..io.reader import DM_SUFFIXES, read_image


def get_dm_reader(path):
    """Return a reader for a single ``.dm3`` / ``.dm4`` path, else None."""
    if isinstance(path, list) or Path(str(path)).suffix.lower() not in DM_SUFFIXES:
        return None
    return read_dm_layers


def read_dm_layers(path):
    """One image layer whose ``scale`` is the calibrated pixel size in nm."""
    image = read_image(path)
    kwargs = {"name": Path(path).stem, "metadata": {"source": str(path), **image.metadata}}
    if image.pixel_size_nm is not None:
        spatial = (image.pixel_size_nm, image.pixel_size_nm)
        kwargs["scale"] = (1.0, *spatial) if image.is_stack else spatial
        kwargs["units"] = ("pixel", "nm", "nm") if image.is_stack else ("nm", "nm")
        kwargs["metadata"]["pixel_size_nm"] = image.pixel_size_nm
    return [(image.data, kwargs, "image")]
