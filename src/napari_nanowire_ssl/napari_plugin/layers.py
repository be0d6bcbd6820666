"""Choosing and reading napari layers: the one place every widget asks.

- which layers are micrographs: grayscale Image layers, and RGB(A) ones whose
  channels are equal (napari opens many JPEG and RGBA-TIFF micrographs as
  RGB), converted by the same rule as the file reader;
- which layers are masks: Labels layers, and Image layers with a few distinct
  values (a mask file napari opened as an image);
- the pixels of either, at full resolution;
- the instrument banner at the bottom of an image (proposed once, the user's
  value kept) and the pixel size (the file's calibration, else the user's);
- showing the layer a picker chose.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels

from ..errors import NanowireSSLError
from ..io import detect_banner, without_banner
from ..io.reader import grayscale
from ..labels import TRUTH_KEY

# An Image layer with at most this many distinct values can be used as a mask.
MAX_MASK_VALUES = 8
# Layer metadata keys the plugin reads and writes.
BANNER_KEY = "banner_rows"  # rows of instrument banner at the bottom (the user's value once set)
PIXEL_SIZE_KEY = "pixel_size_nm"


def layer_name(layer) -> str:
    return f"Layer '{layer.name}'"


def full_resolution(layer) -> np.ndarray:
    """The data of a layer at full resolution (level 0 of a multiscale one), as an array."""
    return np.asarray(layer.data[0] if layer.multiscale else layer.data)


def image_problem(layer) -> str | None:
    """Why ``layer`` is no 2D grayscale micrograph (in words a user understands), or None when it is."""
    if layer is None:
        return "No image layer: open an image first (File > Open, or File > Open Sample)"
    if not isinstance(layer, Image):
        return f"{layer_name(layer)} is not an image layer"
    if layer.rgb:
        try:
            grayscale(full_resolution(layer), layer_name(layer))
        except NanowireSSLError as exc:
            return str(exc)
        return None
    if layer.ndim != 2:
        shape = "x".join(str(n) for n in layer.data.shape)
        return (f"{layer_name(layer)} is a stack ({shape}), but a single 2D image is needed here: "
                "split the stack (right-click the layer > Split Stack) and choose one image")
    return None


def image_pixels(layer) -> np.ndarray:
    """The pixels of an image layer as one gray channel (equal RGB channels collapsed), full resolution.

    Raises :class:`NanowireSSLError` naming the layer for a genuinely colour image.
    """
    data = full_resolution(layer)
    return grayscale(data, layer_name(layer)) if getattr(layer, "rgb", False) else data


def is_colour_layer(layer) -> bool:
    """An RGB(A) layer: its pixels are converted to gray when used (say so to the user once)."""
    return isinstance(layer, Image) and layer.rgb


def image_layers(viewer, *, stacks: bool = False) -> list:
    """The layers a picker of micrographs offers: gray 2D images (and stacks when ``stacks``),
    and RGB ones whose channels are equal."""
    out = []
    for layer in viewer.layers:
        if not isinstance(layer, Image):
            continue
        if layer.rgb:
            if image_problem(layer) is None:
                out.append(layer)
        elif layer.ndim == 2 or (stacks and layer.ndim == 3):
            out.append(layer)
    return out


def open_images(viewer) -> tuple[list[np.ndarray], int]:
    """The 2D images of every open micrograph layer (a stack gives its slices) and the layer count,
    for training on what is open (pretraining, adaptation)."""
    layers = image_layers(viewer, stacks=True)
    if not layers:
        raise NanowireSSLError("No grayscale image layer open: open images or choose a folder")
    images = []
    for layer in layers:
        data = image_pixels(layer)
        images.extend(list(data) if data.ndim == 3 else [data])
    return images, len(layers)


def is_mask_like(layer) -> bool:
    """A Labels layer, or a 2D gray Image layer with at most :data:`MAX_MASK_VALUES` distinct values."""
    if isinstance(layer, Labels):
        return True
    if not isinstance(layer, Image) or layer.rgb or layer.ndim != 2:
        return False
    data = full_resolution(layer)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        return False
    return np.unique(data).size <= MAX_MASK_VALUES


def mask_layers(viewer) -> list:
    """The layers a picker of masks offers: Labels layers and mask-like Image layers."""
    return [layer for layer in viewer.layers if is_mask_like(layer)]


def mask_pixels(layer) -> np.ndarray:
    """The values of a mask layer as integers (an Image layer's few values kept as they are)."""
    data = full_resolution(layer)
    if isinstance(layer, Labels):
        return data
    if not is_mask_like(layer):
        raise NanowireSSLError(f"{layer_name(layer)} is an image with more than {MAX_MASK_VALUES} distinct values, "
                               "not a mask")
    if data.dtype.kind == "f":
        if not np.array_equal(data, np.round(data)):
            values = np.unique(data)
            return np.searchsorted(values, data).astype(np.uint8)  # 0.0/0.5/1.0 -> 0/1/2
        data = data.astype(np.int64)
    return data


def banner_rows(layer, pixels: np.ndarray | None = None) -> int:
    """Rows of instrument banner at the bottom of an image layer: the user's value once set,
    else the detected one (kept in the layer's metadata, so it is detected once); ``pixels``:
    the layer's :func:`image_pixels` when the caller has them."""
    if BANNER_KEY not in layer.metadata:
        try:
            pixels = image_pixels(layer) if pixels is None else pixels
        except NanowireSSLError:
            return 0
        layer.metadata[BANNER_KEY] = detect_banner(pixels) if pixels.ndim == 2 else 0
    return int(layer.metadata[BANNER_KEY])


def micrograph_pixels(layer) -> tuple[np.ndarray, int]:
    """``(pixels above the banner, banner rows)`` of an image layer: what the models see, with the
    crop that puts their results back in place (:func:`..io.banner.with_banner_rows`)."""
    pixels = image_pixels(layer)
    rows = banner_rows(layer, pixels)
    if rows >= pixels.shape[0]:
        raise NanowireSSLError(f"{layer_name(layer)}: crop bottom ({rows} rows) must be less than the image's "
                               f"height ({pixels.shape[0]} rows)")
    return without_banner(pixels, rows), rows


def set_banner_rows(layer, rows: int) -> None:
    """The user's bottom crop for ``layer``: kept in its metadata, so every tab uses it."""
    layer.metadata[BANNER_KEY] = int(rows)


def pixel_size_nm(layer) -> float | None:
    """nm per pixel of a layer: the value the user typed for it, else its scale (converted when
    its units are lengths, taken as nm when they are pixels and the scale is not 1); None when unknown."""
    if layer.metadata.get(PIXEL_SIZE_KEY):
        return float(layer.metadata[PIXEL_SIZE_KEY])
    sy, sx = (float(s) for s in layer.scale[-2:])
    unit = layer.units[-1]
    if sy != sx or sx <= 0:
        return None
    if str(unit.dimensionality) == "[length]":
        return float((sx * unit).to("nm").magnitude)
    return sx if sx != 1 else None


def set_pixel_size_nm(layer, nm: float) -> None:
    """Store the pixel size once per image: in the metadata and as the layer's scale, in nm."""
    if not nm > 0:
        raise NanowireSSLError(f"{layer_name(layer)}: the pixel size must be positive, got {nm}")
    layer.metadata[PIXEL_SIZE_KEY] = float(nm)
    layer.scale = (*layer.scale[:-2], float(nm), float(nm))
    layer.units = (*layer.units[:-2], "nm", "nm")


def placement(source) -> dict:
    """Where a layer made from ``source`` goes: its scale, translation and units (2D), as keyword
    arguments for ``viewer.add_*``. Every derived layer uses them, so napari sees one coordinate system
    (mixed units make it drop the units and warn)."""
    return {"scale": tuple(source.scale[-2:]), "translate": tuple(source.translate[-2:]),
            "units": tuple(source.units[-2:])}


def place_like(layer, source) -> None:
    """Move an existing derived ``layer`` to ``source``'s placement (after its scale changed)."""
    for key, value in placement(source).items():
        setattr(layer, key, value)


def show_layer(viewer, layer) -> None:
    """Make the layer a picker chose the visible, selected one (others of its kind hidden)."""
    if layer is None or layer not in viewer.layers:
        return
    kind = Labels if isinstance(layer, Labels) else Image
    for other in viewer.layers:
        if isinstance(other, kind) and other is not layer and type(other) is type(layer):
            other.visible = False
    layer.visible = True
    viewer.layers.selection.active = layer




def is_truth_layer(layer) -> bool:
    """A reference mask (name ending in "true mask", or marked in its metadata): compared with,
    not measured in bulk."""
    return bool(layer.metadata.get(TRUTH_KEY)) or layer.name.lower().endswith("true mask")


def image_of(viewer, mask):
    """The micrograph a mask layer belongs to: the Image layer (not mask-like) of the same 2D
    shape whose name the mask's name starts with (the longest such name), else None."""
    shape = full_resolution(mask).shape[-2:]
    found = [layer for layer in image_layers(viewer)
             if layer is not mask and mask.name.startswith(layer.name) and not is_mask_like(layer)
             and full_resolution(layer).shape[:2] == shape]
    return max(found, key=lambda layer: len(layer.name), default=None)


def mask_banner_rows(viewer, mask) -> int:
    """Bottom crop of a mask layer: its own value once set, else its micrograph's banner (0 without one):
    a mask's own rows are never searched for a banner."""
    if BANNER_KEY in mask.metadata:
        return int(mask.metadata[BANNER_KEY])
    image = image_of(viewer, mask)
    return 0 if image is None else banner_rows(image)


def mask_pixel_size_nm(viewer, mask) -> float | None:
    """nm per pixel of a mask layer: its own (:func:`pixel_size_nm`), else its micrograph's."""
    own = pixel_size_nm(mask)
    if own is not None:
        return own
    image = image_of(viewer, mask)
    return None if image is None else pixel_size_nm(image)
