"""Adaptation: continuing self-supervised training from an existing encoder (library and CLI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import (
    load_encoder,
    read_metadata,
    save_encoder,
    tensor_hash,
)
from napari_nanowire_ssl.ssl.augment import AugmentConfig
from napari_nanowire_ssl.ssl.pretrain import (
    ADAPT_FROZEN_STEPS,
    ADAPT_LR,
    PretrainConfig,
    Pretrainer,
    adaptation_config,
)


def tiny_config(**overrides) -> PretrainConfig:
    settings = dict(backbone="resnet18", image_size=32, epochs=1, batch_size=4, projector_dims=(32, 32, 32))
    settings.update(overrides)
    return PretrainConfig(**settings)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(4)
    return [rng.random((128, 128)).astype(np.float32) for _ in range(2)]


@pytest.fixture
def init():
    torch.manual_seed(11)
    encoder = Encoder("resnet18", mean=0.4, std=0.2, input_size=96).eval()
    encoder.training_info = {"method": "barlow", "data": "somewhere else"}
    return encoder


def test_training_starts_from_a_copy_of_the_init(images, init, tmp_path):
    init.requires_grad_(False)  # as a decoder trained on it leaves it; the copy must still learn
    before = {k: v.clone() for k, v in init.state_dict().items()}
    trainer = Pretrainer(images, tiny_config(), device="cpu", init=init, init_source="mine.safetensors",
                         checkpoint=tmp_path / "a.ckpt")
    for key, value in trainer.encoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert (trainer.encoder.mean, trainer.encoder.std, trainer.encoder.input_size) == (0.4, 0.2, 96)
    list(trainer.steps())
    assert not torch.equal(trainer.encoder.layer1[0].conv1.weight, before["layer1.0.conv1.weight"])
    for key, value in init.state_dict().items():  # the init itself is untouched
        assert torch.equal(value, before[key]), key
    meta = read_metadata(trainer.finish(tmp_path / "a.safetensors"))
    assert (meta["norm_mean"], meta["norm_std"], meta["input_size"]) == (0.4, 0.2, 96)
    assert meta["training"]["adapted_from"] == {"source": "mine.safetensors", "encoder_hash": tensor_hash(before),
                                                "content_hash": None, "method": "barlow"}


@pytest.mark.slow
def test_resume_keeps_the_normalisation_and_origin_without_the_init(images, init, tmp_path):
    first = Pretrainer(images, tiny_config(epochs=2), device="cpu", init=init, checkpoint=tmp_path / "b.ckpt")
    for event in first.steps():
        if event.step == 1:
            break  # stopped at the end of the first epoch
    first.save_checkpoint()
    second = Pretrainer(images, tiny_config(epochs=2), device="cpu", checkpoint=tmp_path / "b.ckpt")
    second.resume()
    assert (second.encoder.mean, second.encoder.std, second.encoder.input_size) == (0.4, 0.2, 96)
    assert second.adapted_from == first.adapted_from
    list(second.steps())
    meta = read_metadata(second.finish(tmp_path / "b.safetensors"))
    assert meta["norm_mean"] == 0.4 and meta["training"]["adapted_from"]["encoder_hash"] == tensor_hash(
        init.state_dict())


def test_backbone_must_match_the_init(images, init):
    with pytest.raises(Exception, match="the initial encoder is a resnet18, not a resnet34"):
        Pretrainer(images, tiny_config(backbone="resnet34"), device="cpu", init=init)


def test_adaptation_runs_exactly_the_steps_asked_for(init, images):
    config = adaptation_config(init, steps=3, batch_size=4, image_size=32, projector_dims=(32, 32, 32))
    assert (config.backbone, config.lr, config.epochs, config.warmup_epochs) == ("resnet18", ADAPT_LR, 1, 0.1)
    assert config.frozen_encoder_steps == 1  # at most half of the steps
    trainer = Pretrainer(images, config, device="cpu", init=init)  # 8 windows would make 2 steps per epoch
    events = list(trainer.steps())
    assert [e.step for e in events] == [0, 1, 2] and events[-1].fraction == 1.0
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0  # decayed to zero at the end
    with pytest.raises(Exception, match="adaptation needs at least 1 step, got 0"):
        adaptation_config(init, steps=0)


def test_adaptation_keeps_the_init_recipe_and_overrides_win(init):
    assert adaptation_config(init).filter_weight == PretrainConfig().filter_weight  # nothing recorded
    recipe = PretrainConfig(method="simclr", image_size=48, filter_weight=7.0, temperature=0.3, lr=0.5,
                            batch_size=256, epochs=40, augment=AugmentConfig(p_blur=0.9))
    init.training_info = {"method": "simclr", "config": recipe.to_dict()}
    config = adaptation_config(init, steps=100)
    assert (config.method, config.image_size, config.filter_weight, config.temperature) == ("simclr", 48, 7.0, 0.3)
    assert config.augment == AugmentConfig(p_blur=0.9)
    # the schedule is the adaptation's own
    assert (config.lr, config.batch_size, config.epochs, config.steps_per_epoch) == (ADAPT_LR, 32, 1, 100)
    assert config.frozen_encoder_steps == ADAPT_FROZEN_STEPS and config.keep_batchnorm_statistics
    assert adaptation_config(init, steps=100, filter_weight=0.0, image_size=64).filter_weight == 0.0


def test_kept_batchnorm_statistics_stay_while_the_weights_learn(images, init):
    trainer = Pretrainer(images, tiny_config(keep_batchnorm_statistics=True, steps_per_epoch=2), device="cpu",
                         init=init)
    before = {k: v.clone() for k, v in trainer.encoder.state_dict().items()}
    list(trainer.steps())
    after = trainer.encoder.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if "running" in k)
    assert not torch.equal(after["layer1.0.conv1.weight"], before["layer1.0.conv1.weight"])
    assert not torch.equal(after["bn1.weight"], before["bn1.weight"])  # the affine part still learns


def test_frozen_encoder_steps_train_the_projector_alone(images, init):
    trainer = Pretrainer(images, tiny_config(frozen_encoder_steps=2, steps_per_epoch=3), device="cpu", init=init)
    encoder_before = {k: v.clone() for k, v in trainer.encoder.state_dict().items()}
    projector_before = {k: v.clone() for k, v in trainer.model.projector.state_dict().items()}
    steps = trainer.steps()
    next(steps), next(steps)
    for key, value in trainer.encoder.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, encoder_before[key]), key
    assert not all(torch.equal(v, projector_before[k]) for k, v in trainer.model.projector.state_dict().items())
    next(steps)
    assert not torch.equal(trainer.encoder.layer1[0].conv1.weight, encoder_before["layer1.0.conv1.weight"])
    assert not torch.equal(trainer.encoder.bn1.running_mean, encoder_before["bn1.running_mean"])
    with pytest.raises(Exception, match="frozen-encoder steps must be at least 0, got -1"):
        tiny_config(frozen_encoder_steps=-1).validate()


def write_images(folder, n=2, size=128, seed=2):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.slow
def test_cli_init_file_round_trip(init, tmp_path, capsys):
    data = write_images(tmp_path / "images")
    init_file = tmp_path / "init.safetensors"
    content_hash = save_encoder(init, init_file)
    out = tmp_path / "adapted.safetensors"
    # lr 0: the encoder stays the init, BatchNorm statistics included (adaptation keeps them)
    args = ["pretrain", str(data), "--init", str(init_file), "--image-size", "32", "--batch-size", "4",
            "--steps-per-epoch", "2", "--lr", "0", "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    meta = read_metadata(out)
    assert (meta["backbone"], meta["norm_mean"], meta["norm_std"], meta["input_size"]) == ("resnet18", 0.4, 0.2, 96)
    assert meta["training"]["adapted_from"] == {"source": str(init_file.resolve()), "content_hash": content_hash,
                                                "encoder_hash": tensor_hash(init.state_dict()), "method": "barlow"}
    adapted, original = load_encoder(out).state_dict(), load_encoder(init_file).state_dict()
    assert any(k.endswith("running_mean") for k in original)
    assert all(torch.equal(adapted[k], original[k]) for k in original)
    assert main(args[:-4] + ["--batchnorm-statistics", "update", "--out", str(out), "--device", "cpu"]) == 0
    adapted = load_encoder(out).state_dict()
    assert not all(torch.equal(adapted[k], original[k]) for k in original if k.endswith("running_mean"))
    assert main(args[:-2] + ["--backbone", "resnet50", "--device", "cpu"]) == 2
    assert f"--init {init_file} is a resnet18; drop --backbone resnet50" in capsys.readouterr().err


def test_cli_init_default_records_the_shipped_file(tmp_path):
    from napari_nanowire_ssl.models.default import default_encoder_path

    data = write_images(tmp_path / "images", n=1)
    out = tmp_path / "adapted.safetensors"
    assert main(["pretrain", str(data), "--init", "default", "--image-size", "32", "--batch-size", "2",
                 "--steps-per-epoch", "2", "--warmup-epochs", "0.5", "--frozen-encoder-steps", "0",
                 "--out", str(out), "--device", "cpu"]) == 0
    training = read_metadata(out)["training"]
    shipped = read_metadata(default_encoder_path())
    assert training["adapted_from"]["source"] == "default"
    assert training["adapted_from"]["content_hash"] == shipped["content_hash"]
    # the adaptation settings, with the shipped encoder's recipe where the command line is silent
    assert (training["config"]["lr"], training["config"]["epochs"], training["steps"]) == (ADAPT_LR, 1, 2)
    assert (training["config"]["warmup_epochs"], training["config"]["frozen_encoder_steps"]) == (0.5, 0)
    assert training["config"]["filter_weight"] == shipped["training"]["config"]["filter_weight"] > 0
    assert training["config"]["image_size"] == 32


def test_cli_help_states_the_adaptation_defaults(capsys):
    from napari_nanowire_ssl.ssl.pretrain import ADAPT_BATCH, ADAPT_STEPS

    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ADAPT_LR == 2e-4  # the help writes it so
    for phrase in (f"with --init, {ADAPT_STEPS})", f"{ADAPT_BATCH} with --init", f"with --init, {ADAPT_FROZEN_STEPS},",
                   "2e-4 AdamW with --init"):
        assert phrase in text, phrase
