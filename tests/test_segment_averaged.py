"""``auto`` with full masks: the kept pixel classifier averaged with a U-Net decoder (fewshot.averaged)."""

import conftest
import numpy as np
import pytest
import torch

from napari_nanowire_ssl.errors import ModelFileError
from napari_nanowire_ssl.fewshot import averaged
from napari_nanowire_ssl.fewshot.averaged import AveragedModel, AveragedTrainer
from napari_nanowire_ssl.fewshot.pixel_classifier import PixelClassifier, PixelTrainer
from napari_nanowire_ssl.fewshot.segment import decoder_state, load_decoder, make_trainer, save_decoder
from napari_nanowire_ssl.fewshot.tiling import predict_tiled
from napari_nanowire_ssl.labels import labels_from_mask
from napari_nanowire_ssl.models.decoder import SegmentationModel, UNetDecoder
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import read_metadata, save_tensors, tensor_hash

DECODER_STEPS = 6


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return Encoder("resnet18").eval()


@pytest.fixture
def few_decoder_steps(monkeypatch):
    monkeypatch.setattr(averaged, "DECODER_STEPS", DECODER_STEPS)


def lines(n=2, size=96, seed=0):
    return conftest.lines(n, size=size, seed=seed, count=3)


def members(encoder, use_encoder=False):
    torch.manual_seed(1)
    pixels = PixelClassifier(encoder, use_encoder=use_encoder)
    torch.nn.init.normal_(pixels.first.weight, std=0.5)
    for level in range(len(encoder.feature_channels) if use_encoder else 0):
        torch.nn.init.normal_(getattr(pixels, f"pca{level}"))  # a PCA of zeros would hide the encoder's share
        torch.nn.init.normal_(pixels.levels[level].weight, std=0.5)
    decoder = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8))
    return pixels.eval(), decoder.eval()


@pytest.mark.parametrize("use_encoder", [False, True])
def test_the_averaged_model_predicts_the_mean_of_its_members_probabilities(encoder, use_encoder, monkeypatch):
    pixels, decoder = members(encoder, use_encoder)
    model = AveragedModel(pixels, decoder).eval()
    image = lines(1)[0][0]
    p, q = (predict_tiled(m, image) for m in (pixels, decoder))
    calls = []
    forward_features = encoder.forward_features
    monkeypatch.setattr(encoder, "forward_features", lambda x: calls.append(x.shape) or forward_features(x))
    both = predict_tiled(model, image)
    assert np.abs(p - q).max() > 0.05  # the members differ, so the mean is a real test
    np.testing.assert_allclose(both, (p + q) / 2, atol=1e-5)
    assert len(calls) == 1  # one tile; the members share the encoder's maps of it
    assert model.min_tile == pixels.min_tile  # tiles as large as the pixel classifier wants
    assert model.description == f"{pixels.kind} averaged with the U-Net decoder"


def test_auto_averages_with_a_decoder_for_full_masks_only(encoder, few_decoder_steps):
    pairs = lines(1)  # one image: the choice is between learnt models (Otsu competes from two images on)
    images, masks = [p[0] for p in pairs], [labels_from_mask(p[1]) for p in pairs]
    trainer = make_trainer(encoder, images, masks, seed=0, crop=64, context=False)
    assert isinstance(trainer, AveragedTrainer) and trainer.context_steps == DECODER_STEPS
    assert "the U-Net decoder trains next" in trainer.choice_line()
    events = list(trainer.steps(8))
    assert [e.stage for e in events] == [""] * 8 + ["decoder"] * DECODER_STEPS
    assert [e.step for e in events] == list(range(8 + DECODER_STEPS))
    assert {e.n_steps for e in events} == {8 + DECODER_STEPS}
    model = trainer.restore_best()
    assert isinstance(model, AveragedModel) and model.pixels.kind == trainer.chosen
    assert trainer.choice_line().endswith("; averaged with the U-Net decoder (full masks)")
    assert len(trainer.losses) == 8 + DECODER_STEPS
    # Strokes (some pixels unlabelled), or a model asked for by name: no decoder.
    strokes = [m.copy() for m in masks]
    strokes[0][:10] = 0
    assert isinstance(make_trainer(encoder, images, strokes, seed=0), PixelTrainer)
    assert isinstance(make_trainer(encoder, images, masks, model="filters", seed=0), PixelTrainer)


def test_a_stop_while_the_decoder_trains_keeps_the_pixel_model(encoder, few_decoder_steps):
    pairs = lines(1)
    images, masks = [p[0] for p in pairs], [labels_from_mask(p[1]) for p in pairs]
    trainer = make_trainer(encoder, images, masks, seed=0, crop=64, context=False)
    for event in trainer.steps(8):
        if event.stage == "decoder":
            break
    assert isinstance(trainer.restore_best(), PixelClassifier)
    assert "the U-Net decoder is training" in trainer.choice_line()
    asked = make_trainer(encoder, images, masks, seed=0, crop=64, context=False)
    # A Stop asked for while the pixel model trained (one image, no context stage: it never asks) is seen
    # before the decoder starts.
    assert len(list(asked.steps(8, should_stop=lambda: True))) == 8
    assert isinstance(asked.restore_best(), PixelClassifier) and asked.decoder_trainer is None


def test_averaged_model_files_round_trip_and_train_on(encoder, tmp_path, few_decoder_steps):
    model = AveragedModel(*members(encoder)).eval()
    model.validation = {"filters": 0.9, "filters+encoder": 0.8}
    path = tmp_path / "averaged.safetensors"
    save_decoder(model, path, encoder_hash=tensor_hash(encoder.state_dict()))
    meta = read_metadata(path, kind="decoder")
    assert meta["model"] == "averaged" and [m["model"] for m in meta["members"]] == ["pixels", "unet"]
    loaded = load_decoder(path, encoder)
    assert isinstance(loaded, AveragedModel) and loaded.validation == model.validation
    image = lines(1, seed=3)[0][0]
    np.testing.assert_allclose(predict_tiled(loaded, image), predict_tiled(model, image), atol=1e-6)
    # Trained on: both members go on from the file's weights.
    pairs = lines(2, seed=4)
    again = make_trainer(encoder, [p[0] for p in pairs], [labels_from_mask(p[1]) for p in pairs],
                         previous=loaded, crop=64)
    assert isinstance(again, AveragedTrainer) and again.chosen == "filters"
    assert again.pixel_trainer.model.first.weight.data_ptr() != loaded.pixels.first.weight.data_ptr()
    torch.testing.assert_close(again.pixel_trainer.model.first.weight, loaded.pixels.first.weight)
    list(again.steps(2))
    assert isinstance(again.model, AveragedModel)


def test_a_file_whose_members_are_not_a_pixel_model_and_a_decoder_is_refused(encoder, tmp_path):
    tensors, meta = decoder_state(AveragedModel(*members(encoder)), encoder_hash=tensor_hash(encoder.state_dict()))
    meta["members"] = [meta["members"][0], meta["members"][0]]
    save_tensors(tmp_path / "edited.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match=r"edited\.safetensors: an averaged model must hold a pixel "
                                             r"classifier and a U-Net decoder"):
        load_decoder(tmp_path / "edited.safetensors", encoder)


def test_bundles_and_batch_runs_carry_the_averaged_model(encoder, tmp_path):
    from PIL import Image

    from napari_nanowire_ssl.batch import process_files
    from napari_nanowire_ssl.bundle import Bundle, load_bundle, save_bundle

    model = AveragedModel(*members(encoder)).eval()
    save_bundle(tmp_path / "b.safetensors", Bundle(encoder, "test", decoder=model))
    bundle = load_bundle(tmp_path / "b.safetensors")
    assert isinstance(bundle.decoder, AveragedModel)
    image = lines(1, seed=4)[0][0]
    np.testing.assert_allclose(predict_tiled(bundle.decoder, image), predict_tiled(model, image), atol=1e-6)
    Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    [event] = list(process_files(bundle, [tmp_path / "a.png"], tmp_path / "out"))
    assert event.row["error"] == "" and (tmp_path / "out" / "masks" / "a.tif").exists()
