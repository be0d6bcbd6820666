"""Sliding-window inference: exact blending, agreement with one whole-image pass, stacks, memory."""

import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.fewshot.policy import round_to_stride, training_crop
from napari_nanowire_ssl.fewshot.segment import SegmentationTrainer
from napari_nanowire_ssl.labels import labels_from_mask
from napari_nanowire_ssl.fewshot.tiling import blend_window, predict_tiled, segment_image, tile_starts, window_side
from napari_nanowire_ssl.io.normalize import normalize
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.synth import generate


class Echo(nn.Module):
    """Logits whose sigmoid is the input: tiling must give back the normalised image exactly."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.logit(x.clamp(1e-6, 1 - 1e-6))


@pytest.fixture(scope="module")
def model():
    """A briefly trained model: probabilities spread over [0, 1], as in real use (after 25 steps the
    head, which starts at the wire prior, still leaves 12 % of the pixels within 0.05 of 0.5)."""
    torch.manual_seed(0)
    sample = generate("network", size=128, seed=0)
    trainer = SegmentationTrainer(Encoder("resnet18").eval(), [sample.image], [labels_from_mask(sample.mask)],
                                  width=8, crop=64, crops_per_image=4, lr=3e-3)
    list(trainer.steps(60))
    return trainer.restore_best()


def test_tile_grid_and_window():
    assert tile_starts(320, 128, 32) == [0, 96, 192]
    assert tile_starts(300, 128, 32) == [0, 96, 172]  # the last tile ends at the edge
    assert tile_starts(100, 128, 32) == [0]
    w = blend_window(128, 32)
    assert w.min() > 0 and w[32:96].min() == 1 and np.allclose(w, w[::-1]) and w[0] < 0.02


def test_windows_are_as_short_as_their_count_allows():
    # 1024 px in 512 px tiles: three windows either way (starts 0, 448, 512 before); 384 px ones suffice.
    assert window_side(1024, 512, 64) == 384 and tile_starts(1024, 384, 64) == [0, 320, 640]
    # The default's 1280 px side: two windows of 672 px, not two of 1024 overlapping by 768 px.
    assert window_side(1280, 1024, 64) == 672 and tile_starts(1280, 672, 64) == [0, 608]
    assert window_side(513, 512, 64) == 320  # one pixel too many for one window: two short ones
    assert window_side(919, 1024, 64) == 919 and window_side(320, 128, 32) == 128  # one window, unpadded


def test_training_crops_and_windows_round_up_to_the_stride_alike():
    assert [round_to_stride(n) for n in (1, 32, 33, 919)] == [32, 32, 64, 928]
    assert training_crop([np.zeros((100, 70)), np.zeros((20, 40))]) == 128  # the largest side, rounded up
    assert training_crop([np.zeros((3, 300, 20))]) == 256  # never above the policy's crop


def test_a_pixel_classifier_sees_a_small_image_as_in_training():
    """An image that fits one window is predicted unpadded: a pixel classifier's map equals its forward on
    the whole normalised image (padding to a multiple of 32 shifted its coarse filter scales)."""
    from napari_nanowire_ssl.fewshot.pixel_classifier import PixelClassifier

    torch.manual_seed(0)
    pixels = PixelClassifier(Encoder("resnet18"), use_encoder=False, context_sigmas=(1.0, 16.0)).eval()
    torch.nn.init.normal_(pixels.first.weight, std=0.5)
    image = np.random.default_rng(3).random((100, 70), dtype=np.float32)
    with torch.no_grad():
        whole = torch.sigmoid(pixels(torch.from_numpy(normalize(image))[None, None]))[0, 0].numpy()
    np.testing.assert_allclose(predict_tiled(pixels, image), whole, atol=1e-6)


@pytest.mark.parametrize("shape,tile", [((256, 320), 128), ((300, 200), 128), ((50, 70), 128), ((520, 130), 256)])
def test_blending_reconstructs_exactly(shape, tile):
    image = np.random.default_rng(0).uniform(0, 1000, shape).astype(np.float32)
    out = predict_tiled(Echo(), image, tile=tile, overlap=32)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, np.clip(normalize(image), 1e-6, 1 - 1e-6), atol=1e-5)


@pytest.mark.slow
def test_tiled_matches_one_whole_image_pass(model):
    image = generate("network", size=(256, 320), seed=5).image
    tiled = predict_tiled(model, image, tile=128, overlap=32, batch_size=3)
    whole = model.predict_proba(torch.from_numpy(normalize(image))[None, None])[0, 0].numpy()
    assert whole.std() > 0.1  # a real, non-constant prediction
    diff = np.abs(tiled - whole)
    # Not exactly equal: near a tile border the network sees less context than in one pass
    # (its receptive field spans hundreds of px). Blending down-weights tile borders, so the
    # differences stay small (measured: max 0.038, mean 0.001) and flip few pixels (0.07 %).
    assert diff.max() < 0.05 and diff.mean() < 0.002
    assert np.mean((tiled > 0.5) != (whole > 0.5)) < 0.001
    # Without overlap the seams show: blending is what keeps the error small.
    seams = np.abs(predict_tiled(model, image, tile=128, overlap=0) - whole)
    assert seams.mean() > 1.5 * diff.mean()


def test_stacks_give_one_map_per_slice(model):
    stack = np.stack([generate("dispersed", size=96, seed=s).image * (s + 1) for s in range(3)])
    out = predict_tiled(model, stack, tile=64, overlap=16)
    assert out.shape == stack.shape
    np.testing.assert_allclose(out[2], predict_tiled(model, stack[2], tile=64, overlap=16), atol=1e-6)
    prob, mask = segment_image(model, stack[0], tile=64, overlap=16)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(mask, (prob > 0.5).astype(np.uint8))


def test_progress_and_stop():
    image = np.random.default_rng(1).random((200, 200), dtype=np.float32)
    seen = []
    predict_tiled(Echo(), image, tile=64, overlap=16, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 4) for i in range(1, 5)]  # 4 x 4 tiles in batches of 4
    asked = []
    stop = lambda: asked.append(1) or len(asked) > 2  # noqa: E731
    assert predict_tiled(Echo(), image, tile=64, overlap=16, batch_size=4, should_stop=stop) is None
    assert len(asked) == 3


def test_a_model_asking_for_a_wider_blend_gets_it():
    """A pixel classifier's filters reach 4 sigma of its largest scale: the overlap is at least that."""
    from napari_nanowire_ssl.fewshot.pixel_classifier import PixelClassifier

    assert PixelClassifier(Encoder("resnet18"), use_encoder=False, context_sigmas=(1.0, 32.0)).min_overlap == 128
    image = np.random.default_rng(1).random((200, 200), dtype=np.float32)
    totals = {}
    for min_overlap in (0, 32):
        echo = Echo()
        echo.min_overlap = min_overlap
        seen = []
        out = predict_tiled(echo, image, tile=64, batch_size=4, progress=lambda d, t: seen.append(t))
        np.testing.assert_allclose(out, np.clip(normalize(image), 1e-6, 1 - 1e-6), atol=1e-5)
        totals[min_overlap] = seen[-1]
    # 64 px tiles overlap by 16 px (the policy): 4 x 4 windows; by 32 px: 6 x 6, in batches of 4.
    assert totals == {0: 4, 32: 9}


def test_bad_options():
    image = np.zeros((64, 64), np.float32)
    image[0, 0] = 1
    for kw, message in [({"tile": 100}, "multiple of 32"), ({"overlap": 40, "tile": 64}, "half the tile"),
                        ({"batch_size": 0}, "at least 1")]:
        with pytest.raises(NanowireSSLError, match=message):
            predict_tiled(Echo(), image, **kw)
    with pytest.raises(NanowireSSLError, match="at least 32x32"):
        predict_tiled(Echo(), image[:20])


def test_memory_stays_near_the_output_size():
    """Only output-sized arrays: no per-tile results kept, no weight image.

    numpy allocations are traced (torch's are not; the Echo model has no
    activations worth counting). Allowed: what normalising the image takes,
    the output, and one more image's worth for a batch of tiles and
    temporaries; a weight image or the 25 tiles' results kept would each
    push the peak over that bound.
    """
    image = np.random.default_rng(2).random((2048, 2048), dtype=np.float32)

    def peak_of(f):
        tracemalloc.start()
        try:
            f()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    normalising = peak_of(lambda: normalize(image))
    predicting = peak_of(lambda: predict_tiled(Echo(), image, tile=512, overlap=64))
    assert predicting < normalising + 2 * image.nbytes
