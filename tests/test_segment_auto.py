"""The ``auto`` model for full masks: pixel classifiers and the U-Net decoder, chosen on held-out blocks."""

import numpy as np
import pytest
import torch

from conftest import NoiseEncoder, PhaseEncoder, checkerboards, lines
from napari_nanowire_ssl.fewshot import auto
from napari_nanowire_ssl.fewshot.auto import AutoTrainer, held_out_dice
from napari_nanowire_ssl.fewshot.pixel_classifier import PixelTrainer
from napari_nanowire_ssl.fewshot.policy import tries_decoder
from napari_nanowire_ssl.fewshot.segment import (
    SegmentationTrainer,
    load_decoder,
    make_trainer,
    model_description,
    save_decoder,
)
from napari_nanowire_ssl.fewshot.tiling import predict_tiled
from napari_nanowire_ssl.labels import labels_from_mask
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import read_metadata, tensor_hash


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return Encoder("resnet18").eval()


def masks_of(pairs):
    return [p[0] for p in pairs], [labels_from_mask(p[1]) for p in pairs]


def train(encoder, pairs, steps):
    images, labels = masks_of(pairs)
    trainer = make_trainer(encoder, images, labels, seed=0, crop=128)
    for _ in trainer.steps(steps):
        pass
    return trainer


def test_full_masks_make_the_decoder_a_candidate_and_strokes_do_not(encoder):
    images, masks = masks_of(lines())
    strokes = [np.where(np.arange(lab.size).reshape(lab.shape) % 10 == 0, lab, 0) for lab in masks]  # 10 %
    half = [lab.copy() for lab in masks]
    half[0][:64] = 0  # 75 % of all pixels labelled
    assert tries_decoder(masks) and tries_decoder(half) and not tries_decoder(strokes)
    assert isinstance(make_trainer(encoder, images, masks, crop=128), AutoTrainer)
    assert isinstance(make_trainer(encoder, images, strokes, crop=128), PixelTrainer)
    asked = make_trainer(encoder, images, masks, model="filters")
    assert isinstance(asked, PixelTrainer) and asked.choice_line() == "model: filters (as asked, not validated)"
    assert isinstance(make_trainer(encoder, images, masks, model="decoder", crop=128), SegmentationTrainer)


def test_held_out_dice_counts_only_the_held_out_pixels():
    class Half(torch.nn.Module):  # says "wire" on the left half of every image
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            logits = torch.full_like(x, -10.0)
            logits[..., : x.shape[-1] // 2] = 10.0
            return logits + 0 * self.p

    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    labels = np.ones((64, 64), np.uint8)
    labels[:, :16] = 2  # wires: the left quarter
    held = np.zeros((64, 64), bool)
    held[:8] = True  # 8 rows: 128 true wire pixels, 256 predicted, 128 hits
    assert held_out_dice(Half(), [image], [labels], [held]) == pytest.approx(2 * 128 / (256 + 128))
    assert held_out_dice(Half(), [image], [labels], [held], should_stop=lambda: True) is None


@pytest.mark.slow
def test_auto_keeps_the_filters_where_the_encoder_sees_noise():
    trainer = train(NoiseEncoder("resnet18").eval(), lines(), steps=60)
    assert set(trainer.validation) == {"filters", "filters+encoder", "decoder+filters"}
    assert trainer.chosen == "filters", trainer.validation
    assert trainer.validation["filters"] > 0.8 > trainer.validation["decoder+filters"] + 0.1
    assert trainer.decoder is None and trainer.model.kind == "filters"
    assert "model: filters (validation Dice on held-out labelled blocks: filters 0." in trainer.choice_line()
    assert "decoder+filters 0." in trainer.choice_line()
    image, mask = lines(1, seed=5)[0]
    assert np.mean((predict_tiled(trainer.restore_best(), image) > 0.5) == mask) > 0.98


@pytest.mark.slow
def test_auto_keeps_an_encoder_model_where_only_the_encoder_sees_the_classes():
    trainer = train(PhaseEncoder("resnet18").eval(), checkerboards(), steps=120)
    assert trainer.chosen in ("filters+encoder", "decoder+filters"), trainer.validation
    assert trainer.validation[trainer.chosen] > 0.9 > trainer.validation["filters"] + 0.2
    image, mask = checkerboards(1, seed=5)[0]
    assert np.mean((predict_tiled(trainer.restore_best(), image) > 0.5) == mask) > 0.9


def test_a_decoder_kept_by_auto_trains_on_all_labels_and_its_file_keeps_the_scores(encoder, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setattr(auto, "held_out_dice", lambda *a, **k: 1.0)  # the decoder validates best
    images, labels = masks_of(lines())
    trainer = make_trainer(encoder, images, labels, seed=0, crop=128)
    assert trainer.decoder.labels[0].min() == 0  # the held-out blocks are unlabelled for the decoder ...
    events = list(trainer.steps(4))
    assert [e.step for e in events] == [0, 1, 2, 3] and len(trainer.losses) == 4
    assert trainer.chosen == "decoder+filters" and trainer.pixels is None
    assert all((a == b).all() for a, b in zip(trainer.decoder.labels, labels))  # ... until the choice
    assert len(trainer.decoder.losses) == 4  # trained beside the pixel models, then alone
    assert trainer.choice_line().startswith("model: decoder+filters (validation Dice on held-out labelled blocks: filters 0.")
    model = trainer.restore_best()
    path = tmp_path / "auto.safetensors"
    save_decoder(model, path, encoder_hash=tensor_hash(encoder.state_dict()))
    assert read_metadata(path, kind="decoder")["validation"]["decoder+filters"] == 1.0
    loaded = load_decoder(path, encoder)
    assert model_description(loaded) == "decoder+filters (validation Dice 1.000)"
    image = lines(1, seed=3)[0][0]
    np.testing.assert_array_equal(predict_tiled(loaded, image), predict_tiled(model, image))


def test_stopping_while_the_decoder_is_scored_keeps_the_pixel_model_for_previews(encoder):
    images, labels = masks_of(lines())
    trainer = make_trainer(encoder, images, labels, seed=0, crop=128)
    stop = {"now": False}
    steps = []
    for event in trainer.steps(4, should_stop=lambda: stop["now"]):
        steps.append(event.step)
        stop["now"] = event.step == 1  # the choice comes before step 2
    assert steps == [0, 1] and trainer.chosen is None and not trainer.validation
    assert trainer.restore_best().kind == "filters"
    assert trainer.choice_line() == "model: choosing among filters, filters+encoder and decoder+filters (after half the steps)"


def test_nothing_held_out_means_no_choice_and_no_decoder(encoder):
    image = lines(1)[0][0]
    labels = np.ones((128, 128), np.uint8)
    labels[0, 0] = 2  # one wire pixel: no held-out block can hold both classes
    trainer = make_trainer(encoder, [image], [labels], seed=0, crop=128)
    assert isinstance(trainer, AutoTrainer) and trainer.decoder is None and trainer.chosen == "filters"
    assert next(iter(trainer.steps(2))).n_steps == 2
    assert "not validated" in trainer.choice_line()
