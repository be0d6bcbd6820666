"""Training the decoder from strokes or masks: loss, augmentation, caching, model files, errors."""

import numpy as np
import pytest
import torch

from napari_nanowire_ssl.errors import ModelFileError, NanowireSSLError
from napari_nanowire_ssl.fewshot.metrics import dice
from napari_nanowire_ssl.fewshot.segment import (
    SegmentationTrainer,
    load_decoder,
    masked_loss,
    save_decoder,
)
from napari_nanowire_ssl.fewshot.symmetry import dihedral
from napari_nanowire_ssl.labels import labels_from_mask
from napari_nanowire_ssl.fewshot.tiling import predict_tiled
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import read_metadata, tensor_hash
from napari_nanowire_ssl.synth import generate


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return Encoder("resnet18").eval()


@pytest.fixture(scope="module")
def samples():
    return [generate(m, size=128, seed=s) for s, m in enumerate(["network", "dispersed", "network"])]


def make_trainer(encoder, samples, **kw):
    kw = {"width": 8, "crop": 64, "crops_per_image": 4, **kw}
    return SegmentationTrainer(encoder, [s.image for s in samples], [labels_from_mask(s.mask) for s in samples], **kw)


@pytest.fixture(scope="module")
def trained(encoder, samples):
    trainer = make_trainer(encoder, samples[:2], width=16, crop=128, lr=3e-3)
    events = list(trainer.steps(60))
    return trainer, events


def test_labels_from_mask():
    assert labels_from_mask(np.array([[0, 3], [255, 0]])).tolist() == [[1, 2], [2, 1]]


def test_loss_ignores_unlabelled_pixels_and_balances_the_classes():
    labels = torch.tensor([[2, 1, 0, 0]])
    logits = torch.tensor([[1.0, -1.0, 5.0, -5.0]])
    other = torch.tensor([[1.0, -1.0, -9.0, 9.0]])  # differs on unlabelled pixels only
    assert masked_loss(logits, labels) == masked_loss(other, labels)
    assert masked_loss(logits, labels) != masked_loss(torch.tensor([[0.0, -1.0, 5.0, -5.0]]), labels)
    # A wrong wire pixel weighs as much against one as against nine well-predicted background pixels
    # (p = sigmoid(-30) adds nothing to the Dice term); unbalanced, nine would dilute it.
    one = masked_loss(torch.tensor([[-2.0, -30.0]]), torch.tensor([[2, 1]]))
    nine = masked_loss(torch.tensor([[-2.0] + [-30.0] * 9]), torch.tensor([[2] + [1] * 9]))
    assert nine == pytest.approx(one.item(), rel=1e-6)
    assert torch.isfinite(masked_loss(torch.tensor([[3.0, 2.0]]), torch.tensor([[2, 2]])))  # one class only


def test_dihedral_gives_eight_distinct_exact_transforms():
    a = np.arange(12).reshape(3, 4)
    variants = [dihedral(a, t) for t in range(8)]
    assert len({v.tobytes() + bytes(v.shape) for v in variants}) == 8
    assert np.array_equal(dihedral(a, 1), np.rot90(a)) and np.array_equal(dihedral(a, 4), a[:, ::-1])


@pytest.mark.slow
def test_crops_contain_labels_and_features_are_cached_exactly(encoder, samples):
    labels = np.zeros((128, 128), np.uint8)
    labels[100:110, 100:104], labels[120:124, 90:120] = 2, 1  # strokes in one corner only
    trainer = SegmentationTrainer(encoder, [samples[0].image], [labels], width=8, crop=64, crops_per_image=3)
    for i, origin in trainer.bank:
        assert trainer._crop(i, origin)[1].any()
    calls = []
    original = trainer.model.encoder.forward_features
    trainer.model.encoder.forward_features = lambda x: calls.append(len(x)) or original(x)
    try:
        list(trainer.steps(20))
    finally:
        del trainer.model.encoder.forward_features
    assert sum(calls) <= len(trainer.bank) * 8 < 20 * trainer.batch_size  # every variant encoded at most once
    (i, origin, t), maps = next(iter(trainer.cache.items()))
    crop = torch.from_numpy(dihedral(trainer._crop(i, origin)[0], t))[None, None]
    with torch.no_grad():
        direct = encoder.forward_features(crop)
    assert all(torch.allclose(m, d[0], atol=1e-5) for m, d in zip(maps, direct))


@pytest.mark.slow
def test_training_learns_to_segment_held_out_images(trained, samples):
    trainer, events = trained
    assert [e.step for e in events] == list(range(60)) and all(e.n_steps == 60 for e in events)
    assert np.mean([e.loss for e in events[-10:]]) < 0.7 * np.mean([e.loss for e in events[:10]])
    prob = predict_tiled(trainer.restore_best(), samples[2].image, tile=128)
    assert dice(prob, samples[2].mask) > 0.75


def test_best_state_is_the_lowest_running_loss(encoder, samples):
    trainer = make_trainer(encoder, samples[:1], lr=0.05)  # a high rate: the loss jumps about
    running, states = [], []
    for _ in trainer.steps(12):
        running.append(trainer.running_loss)
        states.append({k: v.clone() for k, v in trainer.model.trainable_state().items()})
    best = int(np.argmin(running))
    assert trainer.best_loss == running[best]
    assert all(torch.equal(v, states[best][k]) for k, v in trainer.best_state().items())
    model = trainer.restore_best()
    assert all(torch.equal(v, states[best][k]) for k, v in model.trainable_state().items())


@pytest.mark.slow
def test_stopping_early_and_continuing(trained, encoder, samples):
    trainer = make_trainer(encoder, samples[:1])
    for event in trainer.steps(100):
        if event.step == 2:
            break
    assert len(trainer.losses) == 3
    list(trainer.steps(2))
    assert len(trainer.losses) == 5
    decoder = trained[0].model.decoder
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    again = make_trainer(encoder, samples[:1], decoder=decoder, width=32)
    assert again.model.decoder is decoder and decoder.width == 16
    list(again.steps(2))
    assert not torch.equal(decoder.head.weight, before["head.weight"])


@pytest.mark.slow
def test_decoder_file_round_trip_and_encoder_check(trained, encoder, samples, tmp_path):
    trainer, _ = trained
    path = tmp_path / "decoder.safetensors"
    save_decoder(trainer.model, path, encoder_hash=trainer.encoder_hash, training={"steps": 60})
    meta = read_metadata(path, kind="decoder")
    assert meta["width"] == 16 and meta["encoder_hash"] == tensor_hash(encoder.state_dict())
    assert meta["training"] == {"steps": 60}
    loaded = load_decoder(path, encoder)
    x = torch.from_numpy(samples[2].image)[None, None]
    assert torch.allclose(loaded.predict_proba(x), trainer.model.predict_proba(x), atol=1e-6)
    torch.manual_seed(1)
    with pytest.raises(ModelFileError, match="trained on another encoder") as info:
        load_decoder(path, Encoder("resnet18"))
    assert "\n" not in str(info.value)


def test_unfrozen_layer4_is_saved_with_the_decoder(encoder, samples, tmp_path):
    trainer = make_trainer(encoder, samples[:1], unfreeze_last_stage=True)
    list(trainer.steps(2))
    assert trainer.encoder_hash == tensor_hash(encoder.state_dict())
    path = tmp_path / "decoder.safetensors"
    save_decoder(trainer.model, path, encoder_hash=trainer.encoder_hash, training={})
    loaded = load_decoder(path, encoder)
    assert loaded.unfreeze_last_stage
    assert torch.equal(loaded.encoder.layer4[1].conv2.weight, trainer.model.encoder.layer4[1].conv2.weight)
    assert not torch.equal(loaded.encoder.layer4[1].conv2.weight, encoder.layer4[1].conv2.weight)


def test_filter_crops_turn_with_the_image_and_the_filters_decoder_round_trips(encoder, samples, tmp_path):
    trainer = make_trainer(encoder, samples[:2], filters=True)
    bank = trainer.model.decoder.filters
    assert set(trainer.filter_crops) == set(trainer.bank)  # one per crop of the bank, for the statistics
    crops = np.stack(list(trainer.filter_crops.values()))
    assert crops.shape[1:] == (bank.out_channels, 64, 64)
    standardised = trainer.model.decoder.standardise(torch.from_numpy(crops))
    assert abs(float(standardised.mean())) < 0.05 and abs(float(standardised.std(dim=(0, 2, 3)).mean()) - 1) < 0.05
    # A crop's responses, computed with the image around it, equal the whole image's responses there;
    # transformed, they equal the responses of the transformed crop away from its borders.
    i, (y, x) = trainer.bank[0]
    whole = bank(torch.from_numpy(trainer.images[i])[None, None])[0].numpy()
    np.testing.assert_allclose(trainer._filter_crop(i, (y, x))[:13], whole[:13, y:y + 64, x:x + 64], atol=1e-4)
    direct = bank(torch.from_numpy(dihedral(trainer.images[i][y:y + 64, x:x + 64], 5).copy())[None, None])[0]
    np.testing.assert_allclose(dihedral(trainer._filter_crop(i, (y, x)), 5)[:3, 8:-8, 8:-8],
                               direct[:3, 8:-8, 8:-8].numpy(), atol=1e-4)  # intensity and the sigma-1 maps
    list(trainer.steps(2))
    path = tmp_path / "filters.safetensors"
    save_decoder(trainer.model, path, encoder_hash=trainer.encoder_hash, training={})
    assert read_metadata(path, kind="decoder")["filters"] is True
    loaded = load_decoder(path, encoder)
    assert loaded.kind == "decoder+filters" and torch.equal(loaded.decoder.filter_std, trainer.model.decoder.filter_std)
    image = samples[2].image
    np.testing.assert_array_equal(predict_tiled(loaded, image), predict_tiled(trainer.restore_best(), image))


def test_user_errors(encoder, samples):
    image = samples[0].image
    wire_only = np.where(samples[0].mask, 2, 0)
    cases = [
        ([image], [np.zeros(image.shape, np.uint8)], {}, "no strokes: paint nanowire"),
        ([image], [wire_only], {}, r"only nanowire pixels \(label 2\) are painted"),
        ([image], [np.ones((128, 64), np.uint8)], {}, r"\(128, 64\) but the image has shape \(128, 128\)"),
        ([image[:20]], [labels_from_mask(samples[0].mask[:20])], {}, "20x128 px"),
        ([image], [labels_from_mask(samples[0].mask) * 2], {}, "found \\[4\\]"),
        ([image], [labels_from_mask(samples[0].mask)], {"crop": 100}, "multiple of 32"),
    ]
    for images, labels, kw, message in cases:
        with pytest.raises(NanowireSSLError, match=message) as info:
            SegmentationTrainer(encoder, images, labels, **kw)
        assert "\n" not in str(info.value)


def test_small_images_are_padded_with_unlabelled_pixels(encoder):
    sample = generate("network", size=64, seed=3)
    image, mask = sample.image[:48, :40], sample.mask[:48, :40]
    trainer = SegmentationTrainer(encoder, [image], [labels_from_mask(mask)], width=8, crop=64)
    crop, labels = trainer._crop(*trainer.bank[0])
    assert crop.shape == labels.shape == (64, 64)
    assert (labels[48:] == 0).all() and (labels[:, 40:] == 0).all() and (labels[:48, :40] > 0).all()
    assert np.isfinite(next(trainer.steps(1)).loss)


def test_feature_cache_is_bounded(encoder, samples):
    trainer = make_trainer(encoder, samples[:2], cache_mb=0.01)  # room for less than one batch
    losses = [e.loss for e in trainer.steps(4)]
    assert len(trainer.cache) == trainer.batch_size and all(np.isfinite(losses))


def test_self_training_labels_confident_unpainted_pixels_and_keeps_the_strokes(encoder, samples, monkeypatch):
    import napari_nanowire_ssl.fewshot.tiling as tiling

    painted = np.zeros((128, 128), np.uint8)
    painted[10:14, 10:60], painted[100:104, 10:60] = 2, 1
    trainer = SegmentationTrainer(encoder, [samples[0].image], [painted], width=8, crop=64, crops_per_image=4)
    probability = np.full((128, 128), 0.5, np.float32)
    probability[:, :40] = 0.95  # confident wire (also over both strokes)
    probability[:, 80:] = 0.05  # confident background
    probability[:, 40:42] = 0.9  # not above the threshold: stays unlabelled
    calls = []
    monkeypatch.setattr(tiling, "predict_tiled", lambda model, image, should_stop: calls.append(image) or (
        None if should_stop and should_stop() else probability))
    list(trainer.steps(3))
    assert trainer.best_loss < float("inf")
    fraction = trainer.add_confident_labels()
    labels = trainer.labels[0]
    assert len(calls) == 1 and np.array_equal(calls[0], trainer.images[0])
    assert np.array_equal(labels[painted != 0], painted[painted != 0])  # strokes unchanged, even the wrong one
    unpainted = painted == 0
    assert (labels[:, :40][unpainted[:, :40]] == 2).all() and (labels[:, 80:][unpainted[:, 80:]] == 1).all()
    assert (labels[:, 40:80][unpainted[:, 40:80]] == 0).all()
    assert fraction == pytest.approx(((labels != 0).sum()) / labels.size) and fraction == pytest.approx(
        (40 * 128 + 48 * 128 + 2 * 4 * 20) / 128**2)  # + strokes in columns 40-59
    assert trainer.painted[0] is not labels and np.array_equal(trainer.painted[0], painted)
    assert trainer.best_loss == float("inf") and trainer.running_loss is None  # tracking restarts
    assert all(trainer._crop(i, origin)[1].any() for i, origin in trainer.bank)
    probability[:] = 0.5  # calling again starts from the strokes: nothing compounds
    assert trainer.add_confident_labels() == pytest.approx((painted != 0).mean())
    with pytest.raises(NanowireSSLError, match="0 <= background < wire <= 1, got 0.6, 0.4"):
        trainer.add_confident_labels(wire=0.4, background=0.6)
    # Stopped while predicting: nothing changes, and the training steps end there.
    before = trainer.labels[0]
    assert trainer.add_confident_labels(should_stop=lambda: True) is None and trainer.labels[0] is before
    assert len(list(trainer.steps(2, self_training=3, should_stop=lambda: True))) == 2


def test_steps_add_self_training_steps_only_when_pixels_are_unpainted(encoder, samples, monkeypatch):
    added = []
    monkeypatch.setattr(SegmentationTrainer, "add_confident_labels",
                        lambda self, should_stop: added.append(len(self.losses)) or 0.5)
    painted = np.zeros((128, 128), np.uint8)
    painted[10:14, 10:60], painted[100:104, 10:60] = 2, 1
    strokes = SegmentationTrainer(encoder, [samples[0].image], [painted], width=8, crop=64, crops_per_image=2)
    events = list(strokes.steps(3, self_training=2))
    assert [(e.step, e.n_steps) for e in events] == [(k, 5) for k in range(5)] and added == [3]
    full = make_trainer(encoder, samples[:1])  # every pixel labelled: nothing to add
    assert not full.has_unpainted and strokes.has_unpainted
    assert [e.n_steps for e in full.steps(2, self_training=5)] == [2, 2] and added == [3]
    with pytest.raises(NanowireSSLError, match="self-training steps must be at least 0, got -1"):
        next(full.steps(2, self_training=-1))


def test_finetuning_trains_a_private_copy_of_the_last_stage_and_the_file_keeps_it(encoder, samples, tmp_path):
    from napari_nanowire_ssl.fewshot.segment import FINETUNE_LR_FACTOR, make_trainer

    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    labels = [labels_from_mask(s.mask) for s in samples[:2]]
    trainer = make_trainer(encoder, [s.image for s in samples[:2]], labels, model="decoder+finetune", crop=64,
                           width=8, batch_size=2, lr=1e-2)
    list(trainer.steps(3))
    model = trainer.model
    assert model.unfreeze_last_stage and model.encoder is not encoder
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())  # the caller's encoder: untouched
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.startswith("layer4.") for k in changed)  # only the last stage trained
    decoder_group, stage_group = trainer.optimizer.param_groups
    assert stage_group["lr"] == pytest.approx(1e-2 * FINETUNE_LR_FACTOR) and decoder_group["lr"] == 1e-2

    save_decoder(model, tmp_path / "ft.safetensors", encoder_hash=trainer.encoder_hash)
    loaded = load_decoder(tmp_path / "ft.safetensors", encoder)
    assert loaded.unfreeze_last_stage
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in loaded.encoder.state_dict().items())
    image = samples[2].image
    np.testing.assert_allclose(predict_tiled(loaded, image, tile=128), predict_tiled(model.eval(), image, tile=128),
                               atol=1e-6)
    again = make_trainer(encoder, [s.image for s in samples[:2]], labels, model="auto", previous=loaded, crop=64)
    assert again.model.unfreeze_last_stage  # the file's kind wins, and its fine-tuned stage is where it goes on
    assert all(torch.equal(v, loaded.encoder.layer4.state_dict()[k])
               for k, v in again.model.encoder.layer4.state_dict().items())
