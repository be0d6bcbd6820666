"""Filter bank and pixel classifiers: responses, the choice on held-out labels, model files."""

import warnings

import numpy as np
import pytest
import torch

from conftest import lines
from napari_nanowire_ssl.errors import ModelFileError
from napari_nanowire_ssl.io import normalize
from napari_nanowire_ssl.models.filters import PER_SCALE, SIGMAS, FilterBank, smooth, standardisation
from napari_nanowire_ssl.fewshot.pixel_classifier import (
    AUTO_KINDS,
    CONTEXT_SIGMAS,
    CONTEXT_STEPS,
    KINDS,
    OTSU,
    OTSU_SIGMAS,
    SIGMAS as PIXEL_SIGMAS,
    PixelClassifier,
    ThresholdModel,
    otsu_mask,
    otsu_polarity,
    image_folds,
    pixel_features,
    validation_blocks,
)
from napari_nanowire_ssl.fewshot.segment import (
    MODELS,
    decoder_state,
    load_decoder,
    make_trainer,
    retrains_afresh,
    save_decoder,
)
from napari_nanowire_ssl.labels import labels_from_mask
from napari_nanowire_ssl.fewshot.averaged import AveragedModel, AveragedTrainer
from napari_nanowire_ssl.fewshot.tiling import predict_tiled
from napari_nanowire_ssl.models.decoder import SegmentationModel, UNetDecoder
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import (
    read_metadata,
    save_tensors,
    tensor_hash,
)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return Encoder("resnet18").eval()


class PhaseEncoder(Encoder):
    """Constructed encoder that sees what no filter of the bank sees: the phase of a checkerboard
    (+1 where pixel (y, x) is bright with y + x even, -1 where odd), pooled to each stride."""

    def forward_features(self, x):
        x = x if x.ndim == 4 else x.unsqueeze(1)
        h, w = x.shape[-2:]
        sign = (-1.0) ** (torch.arange(h)[:, None] + torch.arange(w)[None, :])
        phase = (x - 0.5) * 2 * sign
        return [torch.nn.functional.avg_pool2d(phase, s).expand(-1, c, -1, -1)
                for s, c in zip((2, 4, 8, 16, 32), self.feature_channels)]


class NoiseEncoder(Encoder):
    """Constructed encoder whose maps are noise: nothing to learn from them but spurious detail."""

    def forward_features(self, x):
        x = x if x.ndim == 4 else x.unsqueeze(1)
        g = torch.Generator().manual_seed(int(x.shape[-1]))
        return [torch.randn(x.shape[0], c, -(-x.shape[-2] // s), -(-x.shape[-1] // s), generator=g)
                for s, c in zip((2, 4, 8, 16, 32), self.feature_channels)]


def checkerboards(n=2, size=128, seed=0):
    """Images that are a checkerboard everywhere; inside a disc its phase is shifted by one pixel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    board = ((yy + xx) % 2).astype(np.float32)
    out = []
    for _ in range(n):
        cy, cx = rng.integers(32, size - 32, 2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 30**2
        out.append((np.where(mask, 1 - board, board), mask))
    return out


def test_filter_bank_channels_and_responses():
    bank = FilterBank()
    assert bank.out_channels == 1 + len(PER_SCALE) * len(SIGMAS) == len(bank.names)
    flat = bank(torch.full((1, 1, 40, 70), 0.3))
    assert flat.shape == (1, bank.out_channels, 40, 70)
    assert torch.allclose(flat[:, 1], torch.full_like(flat[:, 1], 0.3), atol=1e-5)  # Gaussian of a constant
    assert flat[:, 2:7].abs().max() < 1e-5  # no gradient, Hessian or structure
    x = torch.zeros(1, 1, 64, 64)
    x[..., 31:34] = 1.0  # a bright vertical ridge, 3 px wide
    r = bank(x)[0]
    hessian_min = r[bank.names.index("hessian_min_2")]
    assert hessian_min[32, 32] < -0.2 and abs(hessian_min[32, 5]) < 1e-3  # strongly curved on the ridge only


def test_smooth_is_the_banks_gaussian_and_takes_read_only_images():
    image = np.random.default_rng(0).random((30, 41)).astype(np.float32)
    image.setflags(write=False)  # as a memory-mapped file gives it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns of tensors on read-only arrays
        blurred = smooth(image, 2.0)
    bank = FilterBank((2.0,))
    expected = bank(torch.from_numpy(image.copy())[None, None])[0, bank.names.index("gaussian_2")].numpy()
    np.testing.assert_allclose(blurred, expected, atol=1e-6)
    assert smooth(image, 0.0) is image


def test_the_cpu_blur_matches_the_torch_convolutions_the_gpu_runs(monkeypatch):
    """The bank's CPU path (scipy.ndimage) and its torch path (the GPU's, or with gradients) agree, borders too."""
    from scipy import ndimage

    calls = []
    correlate1d = ndimage.correlate1d
    monkeypatch.setattr(ndimage, "correlate1d", lambda *a, **k: calls.append(1) or correlate1d(*a, **k))
    bank = FilterBank((0.7, 1.0, 4.0))
    x = torch.rand(2, 1, 45, 70, generator=torch.Generator().manual_seed(0))
    fast = bank(x)
    n_fast = len(calls)
    with torch.enable_grad():
        reference = bank(x.clone().requires_grad_(True))  # gradients wanted: torch's convolutions
    assert n_fast == 3 * 2 * 2 and len(calls) == n_fast  # two blurs of two passes per scale; none with gradients
    assert reference.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, reference.detach(), rtol=1e-5, atol=1e-5)


def test_standardisation_keeps_a_constant_channel_finite():
    mean, std = standardisation(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
    assert mean.tolist() == [2.0, 5.0] and std.tolist() == [pytest.approx(2**0.5), 1.0]


def test_encoder_features_of_sampled_pixels_match_the_full_forward(encoder):
    """Training samples the encoder maps exactly as inference upsamples them (bilinear, odd sizes)."""
    model = PixelClassifier(encoder, use_encoder=True)
    image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    ys, xs = np.array([0, 5, 69, 33]), np.array([0, 89, 44, 7])
    [(f, e)] = pixel_features(model, image, [(ys, xs)], "cpu")
    torch.nn.init.normal_(model.first.weight)
    for level in model.levels:
        torch.nn.init.normal_(level.weight)
    for level in range(5):
        getattr(model, f"pca{level}").copy_(torch.randn_like(getattr(model, f"pca{level}")))
    model.eval()
    full = model(torch.from_numpy(image)[None, None])[0, 0]
    with torch.no_grad():
        sampled = model.pixel_logits(f, model.project(e))
    np.testing.assert_allclose(sampled.numpy(), full[ys, xs].detach().numpy(), rtol=1e-4, atol=1e-4)


def test_the_context_stage_of_sampled_pixels_matches_the_full_forward(encoder):
    """The context stage trains on pixel vectors exactly as inference computes it on the whole image."""
    torch.manual_seed(1)
    model = PixelClassifier(encoder, use_encoder=False, context_sigmas=(1.0, 4.0))
    image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    ys, xs = np.array([0, 5, 69, 33]), np.array([0, 89, 44, 7])
    [(f, _)] = pixel_features(model, image, [(ys, xs)], "cpu")
    for layer in (model.first, model.context_first):
        torch.nn.init.normal_(layer.weight)
    model.context_mean.normal_()
    model.context_std.uniform_(0.5, 2.0)
    model.eval()
    x = torch.from_numpy(image)[None, None]
    with torch.no_grad():
        full = model(x)[0, 0]
        model.context_enabled = False
        first = model(x)
        model.context_enabled = True
        context = model.context_filters(torch.sigmoid(first))[0][:, ys, xs].T
        sampled = model.context_logits(f, context)
    assert model.context_filters.out_channels == 1 + 2 * len(PER_SCALE)
    np.testing.assert_allclose(sampled.numpy(), full[ys, xs].numpy(), rtol=1e-4, atol=1e-4)
    assert not np.allclose(first[0, 0, ys, xs].numpy(), full[ys, xs].numpy(), atol=1e-2)  # the stage changes it


def test_the_context_stage_is_off_until_its_last_step_and_a_stop_drops_it(encoder):
    pairs = lines(2)
    images, labels = [p[0] for p in pairs], [labels_from_mask(p[1]) for p in pairs]
    trainer = make_trainer(encoder, images, labels, model="filters", seed=0)
    assert trainer.context_steps == CONTEXT_STEPS
    seen = [(event.step, event.n_steps, trainer.model.has_context) for event in trainer.steps(10)]
    assert [s for s, _, _ in seen] == list(range(10 + CONTEXT_STEPS)) and seen[0][1] == 10 + CONTEXT_STEPS
    assert not any(on for _, _, on in seen[:-1]) and seen[-1][2]
    model = trainer.restore_best()
    assert model.description == "filters with context" and "model: filters with context (as asked" in \
        trainer.choice_line()
    assert any(k.startswith("context_") for k in model.trainable_state())
    # Stopped in the context stage: the model is the first stage alone, in its file too.
    stopped = make_trainer(encoder, images, labels, model="filters", seed=0)
    for event in stopped.steps(10):
        if event.step == 15:
            break
    cut = stopped.restore_best()
    assert not cut.has_context and cut.config["context_sigmas"] == []
    assert not any(k.startswith("context_") for k in cut.trainable_state())
    plain = make_trainer(encoder, images, labels, model="filters", seed=0, context=False)
    assert plain.context_steps == 0 and list(plain.steps(3))[-1].n_steps == 3 and not plain.model.has_context


def test_pixel_model_files_without_a_context_stage_still_load(encoder, tmp_path):
    model = PixelClassifier(encoder, use_encoder=False).eval()
    tensors, meta = decoder_state(model, encoder_hash=tensor_hash(encoder.state_dict()))
    old = {k: v for k, v in meta.items() if k != "context_sigmas"}  # files written before the context stage
    save_tensors(tmp_path / "old.safetensors", tensors, old)
    loaded = load_decoder(tmp_path / "old.safetensors", encoder)
    assert isinstance(loaded, PixelClassifier) and not loaded.has_context and loaded.description == "filters"
    image = lines(1, seed=3)[0][0]
    np.testing.assert_array_equal(predict_tiled(loaded, image), predict_tiled(model, image))


def test_pixel_model_files_keep_the_scales_they_were_trained_with(encoder, tmp_path):
    """A file written before the 0.7 px scale was added reads with its own scales, and predicts as before."""
    assert PIXEL_SIGMAS[0] < 1.0 <= CONTEXT_SIGMAS[0]  # the image's bank has the finer scale, the context bank not
    torch.manual_seed(2)
    model = PixelClassifier(encoder, use_encoder=False, sigmas=CONTEXT_SIGMAS).eval()
    torch.nn.init.normal_(model.first.weight)
    save_decoder(model, tmp_path / "before.safetensors", encoder_hash=tensor_hash(encoder.state_dict()))
    loaded = load_decoder(tmp_path / "before.safetensors", encoder)
    assert loaded.filters.sigmas == CONTEXT_SIGMAS and loaded.filters.out_channels == model.filters.out_channels
    image = lines(1, seed=4)[0][0]
    np.testing.assert_array_equal(predict_tiled(loaded, image), predict_tiled(model, image))
    assert PixelClassifier(encoder, use_encoder=False).filters.out_channels == \
        model.filters.out_channels + len(PER_SCALE)


def auto_choice(encoder, images, labels, **kwargs):
    """``auto``'s pixel trainer (the held-out choice) of full masks, without the decoder averaged with it."""
    trainer = make_trainer(encoder, images, labels, seed=0, **kwargs)
    assert isinstance(trainer, AveragedTrainer)
    return trainer.pixel_trainer


def train_auto(encoder, pairs, steps=120):
    trainer = auto_choice(encoder, [p[0] for p in pairs], [labels_from_mask(p[1]) for p in pairs])
    for _ in trainer.steps(steps):
        pass
    return trainer


@pytest.mark.slow
def test_the_encoder_wins_where_only_it_sees_the_classes():
    trainer = train_auto(PhaseEncoder("resnet18").eval(), checkerboards())
    assert trainer.chosen == "filters+encoder", trainer.validation
    assert trainer.validation["filters+encoder"] > 0.9 > max(trainer.validation["filters"],
                                                             trainer.validation[OTSU]) + 0.2
    assert "model: filters+encoder with context (validation Dice" in trainer.choice_line()
    image, mask = checkerboards(1, seed=5)[0]
    assert np.mean((predict_tiled(trainer.restore_best(), image) > 0.5) == mask) > 0.9


@pytest.mark.slow
def test_the_filters_win_where_they_suffice(encoder):
    trainer = train_auto(NoiseEncoder("resnet18").eval(), lines(ramp=1.0))
    assert trainer.chosen == "filters", trainer.validation
    assert trainer.validation["filters"] > trainer.validation[OTSU] + 0.2  # the ramp defeats a threshold
    images, labels = [p[0] for p in lines()], [labels_from_mask(p[1]) for p in lines()]
    asked = make_trainer(NoiseEncoder("resnet18").eval(), images, labels, model="filters")
    assert asked.choice_line() == "model: filters (as asked, not validated)"
    assert trainer.validation["filters"] > 0.95 and trainer.validation["filters"] >= trainer.validation[
        "filters+encoder"]
    image, mask = lines(1, seed=5, ramp=1.0)[0]
    assert np.mean((predict_tiled(trainer.restore_best(), image) > 0.5) == mask) > 0.98


def plates(backgrounds=(0.2, 0.5, 0.35), size=192, seed=0, noise=0.01):
    """Flat discs 0.2 brighter than a flat background whose level differs from image to image (pinned
    black and white patches keep the normalisation from undoing it): a model of the labelled
    intensities mistakes one image's background for another's discs; each image's threshold does not.
    ``noise``: the standard deviation of white noise added."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for b in backgrounds:
        mask = np.zeros((size, size), bool)
        for cy, cx in rng.integers(40, size - 40, (2, 2)):
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < 28**2
        image = np.where(mask, b + 0.2, b) + rng.normal(0, noise, (size, size))
        image[:16, :16], image[-16:, -16:] = 0.0, 1.0
        out.append((image.astype(np.float32), mask & ~np.pad(np.ones((16, 16), bool), ((0, size - 16),) * 2)))
    return out


@pytest.mark.slow
def test_otsu_is_kept_where_a_threshold_of_each_image_carries_and_learnt_models_do_not(encoder, tmp_path):
    pairs = plates(noise=0.05)  # noise a quarter of the contrast: a threshold of each pixel speckles, of a blur not
    trainer = make_trainer(NoiseEncoder("resnet18").eval(), [p[0] for p in pairs],
                           [labels_from_mask(p[1]) for p in pairs], seed=0)  # auto, with the decoder it may add
    assert list(trainer.steps(120)) == []
    assert trainer.chosen == OTSU and isinstance(trainer.model, ThresholdModel), trainer.validation
    assert trainer.validation[OTSU] > max(trainer.validation[k] for k in KINDS) + 0.05
    assert trainer.losses == [] and trainer.context_steps == 0  # nothing to train after the choice, no decoder
    model = trainer.restore_best()
    assert model.sigma in OTSU_SIGMAS[1:], model.sigma
    assert trainer.choice_line().startswith(f"model: otsu (bright target, Gaussian blur of {model.sigma:g} px "
                                            "first) (validation Dice on each of 3 labelled images held out in "
                                            "turn: filters ")
    [(image, mask)] = plates(backgrounds=(0.6,), seed=5, noise=0.05)
    assert np.mean(otsu_mask(normalize(image), dark=False) != mask) > 0.03  # the image itself speckles
    assert np.mean((predict_tiled(model, image) > 0.5) != mask) < 0.01
    save_decoder(model, tmp_path / "otsu.safetensors", encoder_hash=tensor_hash(encoder.state_dict()))
    meta = read_metadata(tmp_path / "otsu.safetensors", kind="decoder")
    assert meta["dark"] is False and meta["sigma"] == model.sigma
    loaded = load_decoder(tmp_path / "otsu.safetensors", encoder)
    assert isinstance(loaded, ThresholdModel) and loaded.validation == model.validation
    assert loaded.sigma == model.sigma
    np.testing.assert_array_equal(predict_tiled(loaded, image), predict_tiled(model, image))
    # trained on, a threshold gives way to a fresh choice
    again = make_trainer(encoder, [image], [labels_from_mask(mask)], previous=loaded, seed=0)
    assert set(again.pixel_trainer.candidates) == set(KINDS)


def test_only_the_unblurred_threshold_competes_with_the_learnt_models(encoder):
    """A blur chosen among several is scored on the same held-out images it was chosen on: that best score
    must not compete, or a threshold would win on the choosing alone."""
    pairs = plates(noise=0.1)
    trainer = make_trainer(NoiseEncoder("resnet18").eval(), [p[0] for p in pairs],
                           [labels_from_mask(p[1]) for p in pairs], seed=0).pixel_trainer
    assert trainer.choose_by_images(60)
    learnt = max(trainer.validation[k] for k in KINDS)
    assert trainer.validation[OTSU] == trainer._otsu_score(0.0) < learnt < trainer._otsu_score(1.0)
    assert trainer.chosen in KINDS


def test_otsu_thresholds_the_whole_image_and_takes_its_polarity_from_the_labels(encoder):
    rng = np.random.default_rng(0)
    image = rng.random((40, 1100)).astype(np.float32)
    image[:, :550] *= 0.5  # a darker left half: a tile's threshold would differ from the image's
    model = ThresholdModel(encoder, dark=True)
    expected = otsu_mask(normalize(image), dark=True)
    assert np.array_equal(predict_tiled(model, image) > 0.5, expected)  # two tiles of at least 1024 px
    with torch.no_grad():
        direct = model(torch.from_numpy(normalize(image))[None, None])[0, 0].numpy() > 0
    assert np.array_equal(direct, expected)
    assert model.description == "otsu (dark target)" and ThresholdModel(encoder, dark=False).config == {
        "model": OTSU, "dark": False, "sigma": 0.0}
    blurred = ThresholdModel(encoder, dark=True, sigma=4)  # the threshold of the blurred whole image
    expected = otsu_mask(normalize(image), dark=True, sigma=4)
    assert np.array_equal(predict_tiled(blurred, image) > 0.5, expected)
    assert 0.01 < np.mean(expected != otsu_mask(normalize(image), dark=True)) < 0.5
    bright = [(np.where(m, 0.9, 0.1) + rng.normal(0, 0.02, m.shape)).astype(np.float32) for _, m in plates()]
    labels = [labels_from_mask(m) for _, m in plates()]
    assert otsu_polarity(bright, labels) is False and otsu_polarity([1 - b for b in bright], labels) is True


def test_validation_blocks_hold_out_both_classes_or_nothing():
    rng = np.random.default_rng(0)
    lab = labels_from_mask(np.arange(256 * 256).reshape(256, 256) % 256 < 128)
    held = validation_blocks([lab], rng)[0]
    assert 0.05 < held.mean() < 0.5 and set(np.unique(lab[held])) == {1, 2}
    strokes = np.zeros((256, 256), np.uint8)
    strokes[10, 10], strokes[200, 200] = 1, 2  # one pixel per class: nothing can be held out
    assert not validation_blocks([strokes], rng)[0].any()


def test_images_are_held_out_in_turn_only_when_the_others_keep_both_classes():
    both, wire, background, none = (np.array([[1, 2]]), np.array([[0, 2]]), np.array([[1, 0]]),
                                    np.zeros((1, 2), int))
    assert image_folds([both, both]) == [[0], [1]]
    assert image_folds([wire, background, both]) == [[0], [1], [2]]
    assert image_folds([both, none, both]) == [[0], [2]]  # an unpainted image validates nothing
    assert image_folds([wire, background]) == []  # each alone misses a class: held-out blocks instead
    assert image_folds([both, none]) == []  # one labelled image
    # only image 0 has wire: holding it out leaves none to train on, and the images that can be held
    # out have no wire to score: blocks
    assert image_folds([both, background, background]) == []
    # more labelled images than folds (a stack's slices): groups dealt round-robin
    assert image_folds([both] * 7, max_folds=3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert image_folds([wire, background, both, both], max_folds=2) == [[0, 2], [1, 3]]


def test_one_labelled_image_is_validated_on_blocks_several_by_images():
    pairs = lines(3)
    images, labels = [p[0] for p in pairs], [labels_from_mask(p[1]) for p in pairs]
    one = auto_choice(NoiseEncoder("resnet18").eval(), images[:1], labels[:1], context=False)
    assert one.folds == [] and one.val_set is not None and not one.otsu  # blocks: no threshold candidate
    several = auto_choice(NoiseEncoder("resnet18").eval(), images, labels, context=False)
    assert several.folds == [[0], [1], [2]] and several.val_set is None and several.otsu
    events = list(several.steps(8))
    assert set(several.validation) == set(AUTO_KINDS)
    assert len(events) == (0 if several.chosen == OTSU else 8)
    assert "validation Dice on each of 3 labelled images held out in turn" in several.choice_line()
    stack = auto_choice(NoiseEncoder("resnet18").eval(), images * 3, labels * 3, context=False)
    assert stack.folds == [[0, 5], [1, 6], [2, 7], [3, 8], [4]]
    list(stack.steps(4))
    assert "5 groups of the 9 labelled images held out in turn" in stack.choice_line()
    stopped = auto_choice(NoiseEncoder("resnet18").eval(), images, labels, context=False)
    assert list(stopped.steps(8, should_stop=lambda: True)) == [] and stopped.chosen is None


def test_pixel_model_file_round_trip_and_metadata(encoder, tmp_path):
    trainer = train_auto(encoder, lines(ramp=1.0), steps=60)
    model = trainer.restore_best()
    path = tmp_path / "pixels.safetensors"
    save_decoder(model, path, encoder_hash=tensor_hash(encoder.state_dict()))
    meta = read_metadata(path, kind="decoder")
    assert meta["model"] == "pixels" and meta["use_encoder"] == (trainer.chosen == "filters+encoder")
    assert set(meta["validation"]) == set(AUTO_KINDS)
    loaded = load_decoder(path, encoder)
    image = lines(1, seed=3)[0][0]
    np.testing.assert_array_equal(predict_tiled(loaded, image), predict_tiled(model, image))
    # Training on continues the loaded model, of the same kind.
    again = make_trainer(encoder, [image], [labels_from_mask(lines(1, seed=3)[0][1])], previous=loaded)
    assert loaded.has_context and loaded.config["context_sigmas"] == list(CONTEXT_SIGMAS)
    assert again.chosen == loaded.kind and next(iter(again.steps(1))).n_steps == 1 + CONTEXT_STEPS
    scores = ", ".join(f"{k} {v:.3f}" for k, v in model.validation.items())
    assert again.choice_line() == (f"model: {loaded.description} (trained on from the previous model, whose kind "
                                   f"was kept by validation Dice {scores})")
    loaded.validation = {}  # e.g. a kind asked for by name
    assert make_trainer(encoder, [image], [labels_from_mask(lines(1, seed=3)[0][1])], previous=loaded
                        ).choice_line() == f"model: {loaded.description} (trained on from the previous model)"


def test_old_decoder_files_still_load_and_unknown_models_are_refused(encoder, tmp_path):
    unet = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8)).eval()
    tensors, meta = decoder_state(unet, encoder_hash=tensor_hash(encoder.state_dict()))
    old = {k: v for k, v in meta.items() if k != "model"}  # files written before the pixel classifiers
    save_tensors(tmp_path / "old.safetensors", tensors, old)
    assert isinstance(load_decoder(tmp_path / "old.safetensors", encoder), SegmentationModel)
    otsu_tensors, otsu_meta = decoder_state(ThresholdModel(encoder, dark=True, sigma=2),
                                            encoder_hash=tensor_hash(encoder.state_dict()))
    del otsu_meta["sigma"]  # files written before the Otsu candidate could blur
    save_tensors(tmp_path / "otsu.safetensors", otsu_tensors, otsu_meta)
    assert load_decoder(tmp_path / "otsu.safetensors", encoder).config == {"model": OTSU, "dark": True, "sigma": 0.0}
    save_tensors(tmp_path / "new.safetensors", tensors, {**meta, "model": "transformer"})
    with pytest.raises(ModelFileError, match=r"new\.safetensors: holds a segmentation model of type 'transformer', "
                                             "unknown to this version"):
        load_decoder(tmp_path / "new.safetensors", encoder)


def test_the_cli_offers_the_library_models():
    from napari_nanowire_ssl.cli import segment_cmd

    assert segment_cmd.MODELS == MODELS and segment_cmd.DEFAULT_MODEL == "auto"


@pytest.mark.slow
def test_bundles_and_batch_runs_carry_the_pixel_model(encoder, tmp_path):
    from PIL import Image

    from napari_nanowire_ssl.batch import process_files
    from napari_nanowire_ssl.bundle import Bundle, load_bundle, save_bundle

    model = train_auto(encoder, lines(), steps=10).restore_best()
    save_bundle(tmp_path / "b.safetensors", Bundle(encoder, "test", decoder=model))
    bundle = load_bundle(tmp_path / "b.safetensors")
    assert bundle.decoder.kind == model.kind and bundle.decoder.validation == model.validation
    image = lines(1, seed=4)[0][0]
    np.testing.assert_allclose(predict_tiled(bundle.decoder, image), predict_tiled(model, image), atol=1e-6)
    Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    [event] = list(process_files(bundle, [tmp_path / "a.png"], tmp_path / "out"))
    assert event.row["error"] == "" and (tmp_path / "out" / "masks" / "a.tif").exists()


def test_pixel_models_retrain_afresh_and_decoders_go_on(encoder):
    """Train again on the same strokes: the pixel models (seconds) start afresh, the decoders (minutes) go on."""
    pixels = PixelClassifier(encoder, use_encoder=False)
    unet = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8))
    assert retrains_afresh(pixels) and retrains_afresh(ThresholdModel(encoder, dark=True))
    assert not retrains_afresh(unet) and not retrains_afresh(AveragedModel(pixels, unet))
