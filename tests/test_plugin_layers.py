"""The layer rules every widget shares: gray-in-RGB micrographs, masks opened as images,
banners and pixel sizes kept per layer, the picked layer shown."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.napari_plugin import layers as L


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def gray(seed=0, shape=(120, 160)):
    return np.random.default_rng(seed).integers(0, 255, shape).astype(np.uint8)


def test_gray_in_rgb_layers_are_micrographs_and_colour_ones_are_refused_by_name(viewer):
    picture = gray()
    plain = viewer.add_image(picture, name="plain")
    rgb = viewer.add_image(np.stack([picture] * 3, -1), name="jpeg", rgb=True)
    rgba = viewer.add_image(np.dstack([picture] * 3 + [np.full_like(picture, 255)]), name="rgba", rgb=True)
    colour = viewer.add_image(np.stack([picture, gray(1), gray(2)], -1), name="photo", rgb=True)
    stack = viewer.add_image(np.stack([picture] * 4), name="stack")
    assert L.image_layers(viewer) == [plain, rgb, rgba]
    assert L.image_layers(viewer, stacks=True) == [plain, rgb, rgba, stack]
    for layer in (rgb, rgba):
        assert L.image_problem(layer) is None
        np.testing.assert_array_equal(L.image_pixels(layer), picture)
    assert L.is_colour_layer(rgb) and not L.is_colour_layer(plain)
    assert L.image_problem(colour).startswith("Layer 'photo': RGB colour image whose channels differ in")
    with pytest.raises(NanowireSSLError, match="Layer 'photo': RGB colour image"):
        L.image_pixels(colour)
    assert L.image_problem(stack).startswith("Layer 'stack' is a stack (4x120x160)")
    assert L.image_problem(None).startswith("No image layer")


def test_masks_opened_as_images_are_offered_and_read_as_integers(viewer):
    picture = viewer.add_image(gray(), name="micrograph")
    mask = np.zeros((120, 160), np.uint8)
    mask[40:60] = 255
    as_image = viewer.add_image(mask, name="mask.png")
    as_float = viewer.add_image(np.where(mask > 0, 1.0, 0.0).astype(np.float32), name="mask float")
    thirds = viewer.add_image((np.arange(160) // 54 / 2.0)[None].repeat(120, 0), name="scribbles float")
    labels = viewer.add_labels(mask // 255, name="labels")
    assert L.mask_layers(viewer) == [as_image, as_float, thirds, labels]
    np.testing.assert_array_equal(L.mask_pixels(as_image), mask)
    np.testing.assert_array_equal(L.mask_pixels(as_float), mask // 255)
    assert sorted(np.unique(L.mask_pixels(thirds))) == [0, 1, 2]  # 0.0 / 0.5 / 1.0
    assert L.mask_pixels(labels) is not None
    with pytest.raises(NanowireSSLError, match=r"Layer 'micrograph' is an image with more than 8 distinct values"):
        L.mask_pixels(picture)


def test_banner_is_detected_once_and_the_users_value_is_kept(viewer):
    picture = gray(shape=(200, 160)).astype(np.float32)
    picture[-30:] = 0
    picture[-20:-10, 20:40] = 255
    layer = viewer.add_image(picture, name="sem")
    assert L.banner_rows(layer) == 30
    assert layer.metadata[L.BANNER_KEY] == 30
    L.set_banner_rows(layer, 12)
    assert L.banner_rows(layer) == 12  # the user's crop wins from now on


def test_pixel_size_from_scale_or_typed_once(viewer):
    layer = viewer.add_image(gray(), name="sem")
    assert L.pixel_size_nm(layer) is None
    L.set_pixel_size_nm(layer, 32.3)
    assert L.pixel_size_nm(layer) == pytest.approx(32.3)
    assert tuple(layer.scale) == pytest.approx((32.3, 32.3))
    assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
    derived = viewer.add_labels(np.zeros((120, 160), np.uint8), **L.placement(layer))
    assert tuple(derived.scale) == pytest.approx((32.3, 32.3)) and derived.units == layer.units
    calibrated = viewer.add_image(gray(), name="dm", scale=(2.5, 2.5))
    assert L.pixel_size_nm(calibrated) == 2.5
    with pytest.raises(NanowireSSLError, match="Layer 'sem': the pixel size must be positive"):
        L.set_pixel_size_nm(layer, 0)


def test_the_picked_image_is_shown_and_selected(viewer):
    a = viewer.add_image(gray(0), name="a")
    b = viewer.add_image(gray(1), name="b")
    wires = viewer.add_labels(np.zeros((120, 160), np.uint8), name="b wires")
    L.show_layer(viewer, a)
    assert a.visible and not b.visible and wires.visible
    assert viewer.layers.selection.active is a


def test_a_masks_micrograph_gives_its_banner_and_pixel_size_and_truth_is_named(viewer):
    picture = gray(shape=(200, 160)).astype(np.float32)
    picture[-30:] = 0
    picture[-20:-10, 20:40] = 255
    film = viewer.add_image(picture, name="film")
    viewer.add_image(gray(2, shape=(200, 160)), name="film nano")  # a longer name the mask also starts with
    viewer.add_image(gray(3, shape=(100, 80)), name="f")  # another size: not its image
    mask = np.zeros((200, 160), np.uint8)
    mask[:, 50:55] = 1
    nanowires = viewer.add_labels(mask, name="film nanowires")
    alone = viewer.add_labels(mask, name="other")
    assert L.image_of(viewer, nanowires) is viewer.layers["film nano"]
    assert L.image_of(viewer, alone) is None
    viewer.layers.remove("film nano")
    assert L.image_of(viewer, nanowires) is film
    assert L.mask_banner_rows(viewer, nanowires) == 30 and L.mask_banner_rows(viewer, alone) == 0
    L.set_banner_rows(nanowires, 5)
    assert L.mask_banner_rows(viewer, nanowires) == 5  # its own value wins; the mask's rows are never searched
    assert L.mask_pixel_size_nm(viewer, nanowires) is None
    L.set_pixel_size_nm(film, 20.0)
    assert L.mask_pixel_size_nm(viewer, nanowires) == 20.0 and L.mask_pixel_size_nm(viewer, alone) is None
    L.set_pixel_size_nm(nanowires, 10.0)
    assert L.mask_pixel_size_nm(viewer, nanowires) == 10.0
    truth = viewer.add_labels(mask, name="film True Mask")
    marked = viewer.add_labels(mask, name="reference", metadata={L.TRUTH_KEY: True})
    assert L.is_truth_layer(truth) and L.is_truth_layer(marked) and not L.is_truth_layer(nanowires)
