"""Running out of memory during tiled prediction: smaller batches, smaller tiles, then a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.fewshot.tiling import segment_image
from napari_nanowire_ssl.models.decoder import SegmentationModel, UNetDecoder
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.synth import generate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Greedy(nn.Module):
    """A model that runs out of memory when a batch holds more than ``max_pixels`` pixels."""

    def __init__(self, inner: nn.Module, max_pixels: int):
        super().__init__()
        self.inner, self.max_pixels, self.batches = inner, max_pixels, []

    def forward(self, x):
        self.batches.append(tuple(x.shape))
        if x.shape[0] * x.shape[-2] * x.shape[-1] > self.max_pixels:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.inner(x)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    return SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8)).eval()


def test_out_of_memory_halves_batch_then_tile_and_says_so(model):
    image = generate("network", size=256, seed=0).image
    greedy = Greedy(model, max_pixels=128 * 128)
    said = []
    prob, mask = segment_image(greedy, image, tile=256, batch_size=2, on_fallback=said.append)
    assert said == ["Out of CPU memory: continuing with 1 tile(s) per batch",
                    "Out of CPU memory: continuing with 128 px tiles"]
    assert greedy.batches[-1] == (1, 1, 128, 128)
    expected = segment_image(model, image, tile=128, batch_size=1)
    np.testing.assert_array_equal(prob, expected[0])
    np.testing.assert_array_equal(mask, expected[1])


def test_the_tile_fallback_goes_below_a_models_minimum_tile(model):
    """A pixel classifier asks for tiles of at least ``min_tile`` px; out of memory, smaller tiles are used
    all the same (and the message says their true size)."""
    image = generate("network", size=256, seed=0).image
    greedy = Greedy(model, max_pixels=128 * 128)
    greedy.min_tile = 256
    said = []
    prob, _ = segment_image(greedy, image, tile=64, batch_size=1, on_fallback=said.append)
    assert greedy.batches[0] == (1, 1, 256, 256)  # widened to the model's minimum first
    assert said == ["Out of CPU memory: continuing with 128 px tiles"] and greedy.batches[-1] == (1, 1, 128, 128)
    np.testing.assert_array_equal(prob, segment_image(model, image, tile=128, batch_size=1)[0])


def test_out_of_memory_with_the_smallest_tiles_is_a_one_line_error(model):
    image = generate("network", size=256, seed=0).image
    with pytest.raises(NanowireSSLError, match=r"^out of memory predicting a 256x256 image even with 128 px tiles"):
        segment_image(Greedy(model, max_pixels=64 * 64), image, tile=256, batch_size=1)
