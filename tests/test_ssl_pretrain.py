"""The pretraining loop: events, checkpoints, resume, seeds, DDP and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.models.modelfile import load_encoder, read_metadata
from napari_nanowire_ssl.ssl.pretrain import (
    CropPool,
    PretrainConfig,
    Pretrainer,
    _warmup_cosine,
)


def tiny_config(**overrides) -> PretrainConfig:
    settings = dict(backbone="resnet18", image_size=32, epochs=2, batch_size=4, projector_dims=(32, 32, 32))
    settings.update(overrides)
    return PretrainConfig(**settings)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    # Two 64x64 windows fit in a 128x128 image four times: 8 windows -> 2 steps of 4.
    return [rng.random((128, 128)).astype(np.float32) for _ in range(2)]


def run_all(trainer):
    return list(trainer.steps())


@pytest.mark.slow
def test_events_checkpoint_and_encoder_file(images, tmp_path):
    trainer = Pretrainer(images, tiny_config(), device="cpu", checkpoint=tmp_path / "enc.ckpt")
    assert trainer.steps_per_epoch == 2
    events = run_all(trainer)
    assert [(e.epoch, e.step) for e in events] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert events[-1].fraction == 1.0
    assert all(np.isfinite(e.loss) and e.images_per_s > 0 for e in events)
    assert (tmp_path / "enc.ckpt").exists()
    out = trainer.finish(tmp_path / "enc.safetensors", data_description="two noise images")
    meta = read_metadata(out)
    assert meta["backbone"] == "resnet18" and meta["training"]["method"] == "barlow"
    assert meta["training"]["epochs_completed"] == 2 and meta["training"]["data"] == "two noise images"
    loaded = load_encoder(out)
    for key, value in trainer.encoder.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_learning_rate_warms_up_then_decays_to_zero():
    factors = [_warmup_cosine(s, 4, 20) for s in range(21)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == 1.0 and factors[12] == pytest.approx(0.5) and factors[20] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))


@pytest.mark.slow
def test_stop_and_resume_equals_an_uninterrupted_run(images, tmp_path):
    straight = Pretrainer(images, tiny_config(), device="cpu")
    run_all(straight)
    first = Pretrainer(images, tiny_config(), device="cpu", checkpoint=tmp_path / "c.ckpt")
    for event in first.steps():
        if event.epoch == 0 and event.step == 1:
            break  # the user pressed Stop after the first epoch's last step
    first.finish(tmp_path / "partial.safetensors")
    assert read_metadata(tmp_path / "partial.safetensors")["training"]["epochs_completed"] == 1
    second = Pretrainer(images, tiny_config(), device="cpu", checkpoint=tmp_path / "c.ckpt")
    second.resume()
    assert (second.epoch, second.step_in_epoch) == (0, 2)  # stopped at the end of epoch 0
    events = run_all(second)
    assert len(events) == 2 and events[0].epoch == 1
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[key], value, rtol=0, atol=0)


def test_filter_prediction_term_trains_heads_that_stay_out_of_the_encoder_file(images, tmp_path):
    config = tiny_config(epochs=1, filter_weight=50.0)
    trainer = Pretrainer(images, config, device="cpu", checkpoint=tmp_path / "f.ckpt")
    heads = trainer.model.filter_heads
    assert [h.in_channels for h in heads] == trainer.encoder.feature_channels
    assert {h.out_channels for h in heads} == {trainer.filter_bank.out_channels}
    before = [h.weight.detach().clone() for h in heads]
    plain = Pretrainer(images, tiny_config(epochs=1), device="cpu")
    losses, plain_losses = [e.loss for e in run_all(trainer)], [e.loss for e in run_all(plain)]
    assert plain.model.filter_heads is None
    assert all(not torch.equal(b, h.weight) for b, h in zip(before, heads))  # every stage's head learnt
    assert losses[0] > plain_losses[0]  # the same first batch and weights, plus the filter term
    out = trainer.finish(tmp_path / "f.safetensors")
    assert read_metadata(out)["training"]["config"]["filter_weight"] == 50.0
    assert set(load_encoder(out).state_dict()) == set(trainer.encoder.state_dict())
    resumed = Pretrainer(images, config, device="cpu", checkpoint=tmp_path / "f.ckpt")
    resumed.resume()
    for b, h in zip(resumed.model.filter_heads, heads):
        torch.testing.assert_close(b.weight, h.weight, rtol=0, atol=0)
    with pytest.raises(NanowireSSLError, match="filter-prediction weight must be at least 0, got -1"):
        Pretrainer(images, tiny_config(filter_weight=-1.0), device="cpu")


@pytest.mark.slow
def test_seeds_make_runs_reproducible(images):
    a, b, c = (Pretrainer(images, tiny_config(epochs=1, seed=s), device="cpu") for s in (3, 3, 4))
    losses = [[e.loss for e in run_all(t)] for t in (a, b, c)]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


@pytest.mark.parametrize("method,optimizer", [("simclr", "adamw"), ("barlow", "lars")])
def test_methods_and_optimizers_train(images, method, optimizer):
    trainer = Pretrainer(images, tiny_config(method=method, optimizer=optimizer, epochs=1), device="cpu")
    before = trainer.encoder.layer1[0].conv1.weight.clone()
    events = run_all(trainer)
    assert all(np.isfinite(e.loss) for e in events)
    assert not torch.equal(before, trainer.encoder.layer1[0].conv1.weight)


def test_crop_pool_samples_in_proportion_to_area():
    big, small = np.zeros((256, 256), np.float32), np.ones((64, 64), np.float32)
    big[0, 0] = 1  # not constant
    small[0, 0] = 0
    pool = CropPool([big, small], 64, torch.device("cpu"))
    assert pool.n_windows == 16 + 1
    crops = pool.sample(2000, torch.Generator().manual_seed(0))
    assert crops.shape == (2000, 1, 64, 64) and crops.dtype == torch.uint8
    from_small = (crops.float().mean(dim=(1, 2, 3)) > 128).float().mean().item()
    assert from_small == pytest.approx(1 / 17, abs=0.02)


def test_bad_settings_and_resume_mismatch(images, tmp_path):
    with pytest.raises(NanowireSSLError, match="unknown method 'byol'"):
        Pretrainer(images, tiny_config(method="byol"), device="cpu")
    with pytest.raises(NanowireSSLError, match="batch size must be at least 2"):
        Pretrainer(images, tiny_config(batch_size=1), device="cpu")
    with pytest.raises(NanowireSSLError, match="no images to pretrain on"):
        Pretrainer([], tiny_config(), device="cpu")
    trainer = Pretrainer(images, tiny_config(epochs=1), device="cpu", checkpoint=tmp_path / "x.ckpt")
    run_all(trainer)
    other = Pretrainer(images, tiny_config(method="simclr"), device="cpu", checkpoint=tmp_path / "x.ckpt")
    with pytest.raises(NanowireSSLError, match=r"x\.ckpt: was trained as barlow/resnet18/32px, not simclr"):
        other.resume()


@pytest.mark.slow
def test_two_processes_hold_identical_weights_after_a_step(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           str(ROOT / "tests" / "ddp_step.py"), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["shard"] == ranks[1]["shard"] == 3  # six images split between two ranks
    assert ranks[0]["before"] == ranks[1]["before"]
    assert ranks[0]["after"] == ranks[1]["after"] != ranks[0]["before"]


@pytest.mark.slow
def test_cli_pretrain_writes_encoder_and_resumes(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(2)
    data = tmp_path / "images"
    data.mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (128, 128), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "enc.safetensors"
    args = ["pretrain", str(data), "--backbone", "resnet18", "--image-size", "32", "--batch-size", "4",
            "--epochs", "1", "--out", str(out), "--device", "cpu", "--seed", "1"]
    assert main(args) == 0
    assert read_metadata(out)["training"]["epochs_completed"] == 1
    assert (tmp_path / "enc.safetensors.ckpt").exists()
    args[args.index("--epochs") + 1] = "2"
    assert main(args + ["--resume"]) == 0
    assert read_metadata(out)["training"]["epochs_completed"] == 2
    assert "2 of 2 epochs" in capsys.readouterr().out
    assert read_metadata(out)["training"]["config"]["filter_weight"] == 0.0
    assert main(args[:-2] + ["--seed", "2", "--filter-weight", "20", "--out", str(tmp_path / "f.safetensors")]) == 0
    assert read_metadata(tmp_path / "f.safetensors")["training"]["config"]["filter_weight"] == 20.0
    assert main(["pretrain", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "missing: no such file or folder" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_runs_unchanged_under_torchrun(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    data = tmp_path / "images"
    data.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "ddp.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29518",
           "-m", "napari_nanowire_ssl.cli", "pretrain", str(data), "--image-size", "32", "--batch-size", "2",
           "--epochs", "1", "--out", str(out), "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    meta = read_metadata(out)
    assert meta["training"]["epochs_completed"] == 1 and meta["training"]["data"] == "4 images from 4 files"


@pytest.mark.slow
def test_cli_steps_per_epoch_sets_the_epoch_length(tmp_path):
    from PIL import Image

    data = tmp_path / "images"
    data.mkdir()
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (64, 64), dtype=np.uint8)).save(data / "0.png")
    out = tmp_path / "enc.safetensors"
    assert main(["pretrain", str(data), "--image-size", "32", "--batch-size", "2", "--epochs", "2",
                 "--steps-per-epoch", "3", "--out", str(out), "--device", "cpu"]) == 0
    training = read_metadata(out)["training"]
    assert training["steps"] == 6 and training["config"]["steps_per_epoch"] == 3
    assert main(["pretrain", str(data), "--steps-per-epoch", "0", "--out", str(out), "--device", "cpu"]) == 2
