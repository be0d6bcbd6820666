"""PairVAE model, losses, staged training loop, model files and the ``nanowire-ssl pairvae`` command."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.errors import ModelFileError, NanowireSSLError
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import read_metadata, save_encoder
from napari_nanowire_ssl.pairvae.model import (
    LossWeights,
    PairVAEConfig,
    friedel_symmetrise,
    generate,
    load_pairvae,
    save_pairvae,
)
from napari_nanowire_ssl.pairvae.morphologies import MORPHOLOGIES, generate_morphology
from napari_nanowire_ssl.pairvae.scattering import detector_counts, log_scale
from napari_nanowire_ssl.pairvae.train import PairVAETrainer, TrainConfig, sem_loss

SIZE = 32
TINY = PairVAEConfig(latent_size=4, image_size=SIZE, hidden=32, width=8)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return Encoder("resnet18").eval()


@pytest.fixture(scope="module")
def pairs():
    """Two pairs of each morphology at 32 px: (saxs [0, 1], sem {0, 1})."""
    morphs = [generate_morphology(k, SIZE, seed=i) for k in MORPHOLOGIES for i in range(2)]
    saxs = np.stack([log_scale(detector_counts(m.density, rng=0)) for m in morphs])
    return saxs, np.stack([m.density for m in morphs]).astype(np.float32)


@pytest.fixture(scope="module")
def trained(encoder, pairs):
    trainer = PairVAETrainer(encoder, *pairs, TINY, TrainConfig(vae_epochs=15, joint_epochs=3, batch_size=5,
                                                               lr=3e-3, augment=False))
    return trainer, list(trainer.steps())


def test_sem_loss_is_the_bce_at_the_best_shift():
    target = (torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    logits = 4 * (2 * target - 1)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    shifted = torch.roll(target, (3, -5), dims=(1, 2))
    assert sem_loss(logits, shifted).item() == pytest.approx(plain.item(), rel=1e-4)
    assert sem_loss(logits, shifted) < torch.nn.functional.binary_cross_entropy_with_logits(logits, shifted)


def test_saxs_decoder_output_obeys_friedel_symmetry():
    x = torch.randn(2, 8, 8)
    sym = friedel_symmetrise(x)
    for q in [(1, 2), (3, 7), (0, 5)]:  # I(q) = I(-q) about pixel (4, 4)
        assert sym[:, 4 + q[0] - 4, q[1]].tolist() == pytest.approx(sym[:, (8 - q[0]) % 8, (8 - q[1]) % 8].tolist())


def test_stages_run_in_order_and_training_lowers_the_losses(trained):
    trainer, events = trained
    stages = [e.stage for e in events]
    assert stages == sorted(stages, key=("features", "saxs", "sem", "joint").index)
    assert stages.count("features") == 2 and stages.count("joint") == 3 * 2
    assert [e.done for e in events] == list(range(1, len(events) + 1)) and events[-1].fraction == 1
    saxs = [e.losses["saxs_saxs"] for e in events if e.stage == "saxs"]
    sem = [e.losses["sem_sem"] for e in events if e.stage == "sem"]
    assert np.mean(saxs[-5:]) < 0.7 * saxs[0]
    assert np.mean(sem[-5:]) < sem[0]
    assert set(events[-1].losses) == {"saxs_saxs", "saxs_sem", "sem_sem", "sem_saxs", "kl_saxs", "kl_sem",
                                      "similarity", "total"}


def test_stop_flag_ends_training_after_the_current_step(encoder, pairs):
    trainer = PairVAETrainer(encoder, *pairs, TINY, TrainConfig(vae_epochs=50, batch_size=4, augment=False))
    events = []
    for event in trainer.steps(should_stop=lambda: len(events) >= 4):
        events.append(event)
    assert len(events) == 4 and events[-1].stage == "saxs" and trainer.steps_done == 2


def test_augmented_features_cover_the_eight_transforms(encoder, pairs):
    trainer = PairVAETrainer(encoder, *pairs, TINY, TrainConfig(vae_epochs=0, joint_epochs=1, batch_size=4))
    list(trainer.steps())
    assert trainer.features["saxs"].shape == (10, 8, 2 * (256 + 512))


def test_model_file_round_trip_and_wrong_encoder_refused(trained, encoder, pairs, tmp_path):
    trainer, _ = trained
    path = tmp_path / "pv.safetensors"
    save_pairvae(trainer.vae, path, encoder=encoder, encoder_source="test", training=trainer.training_info("mem"))
    meta = read_metadata(path, kind="pairvae")
    assert meta["latent_size"] == 4 and meta["image_size"] == SIZE and meta["weights"] == vars(LossWeights())
    assert meta["training"]["pairs"] == 10 and meta["encoder_source"] == "test"
    loaded = load_pairvae(path, encoder)
    saxs, sem = pairs
    for source, images in (("saxs", saxs), ("sem", sem)):
        assert np.array_equal(generate(loaded, encoder, images, source), generate(trainer.vae, encoder, images, source))
    out = generate(loaded, encoder, saxs, "saxs")
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    assert generate(loaded, encoder, sem, "sem").dtype == np.float32
    torch.manual_seed(1)
    with pytest.raises(ModelFileError, match=r"pv\.safetensors: this PairVAE was trained on another encoder "
                                             r"\(resnet18, hash \w{12}, from test\)"):
        load_pairvae(path, Encoder("resnet18"))


def test_bad_settings_are_one_line_errors(encoder, pairs):
    with pytest.raises(NanowireSSLError, match="image size must be a multiple of 16 px"):
        PairVAEConfig(image_size=40).validate()
    with pytest.raises(NanowireSSLError, match="loss weight 'beta=1': write NAME=VALUE with NAME one of"):
        LossWeights.parse("beta=1")
    assert LossWeights.parse("kl=0.5, similarity=0").similarity == 0
    with pytest.raises(NanowireSSLError, match=r"need \(N, 64, 64\) SAXS and SEM arrays"):
        PairVAETrainer(encoder, *pairs)


def test_cli_synth_train_generate(encoder, tmp_path, capsys):
    save_encoder(encoder, tmp_path / "enc.safetensors")
    assert main(["pairvae", "synth", str(tmp_path / "pairs"), "--n", "2", "--size", "48"]) == 0
    model = tmp_path / "pv.safetensors"
    assert main(["pairvae", "train", str(tmp_path / "pairs"), "--out", str(model), "--encoder",
                 str(tmp_path / "enc.safetensors"), "--image-size", str(SIZE), "--epochs", "1", "--vae-epochs", "1",
                 "--batch-size", "4", "--latent", "4", "--no-augment", "--device", "cpu", "--holdout", "0.2",
                 "--weights", "kl=0.01"]) == 0
    out = capsys.readouterr().out
    assert "trained on 8 pairs" in out and "held-out errors (2 pairs)" in out and "| all | 2 |" in out
    assert read_metadata(model)["weights"]["kl"] == 0.01
    common = ["--model", str(model), "--encoder", str(tmp_path / "enc.safetensors"), "--device", "cpu"]
    assert main(["pairvae", "generate", *common, "--from", "saxs", str(tmp_path / "pairs" / "saxs"),
                 "--out", str(tmp_path / "sem_out")]) == 0
    written = sorted((tmp_path / "sem_out").iterdir())
    assert len(written) == 10 and written[0].name == "cylinders_end_on_0000.tif"
    sem = tifffile.imread(written[0])
    assert sem.shape == (SIZE, SIZE) and sem.dtype == np.uint8
    assert main(["pairvae", "generate", *common, "--from", "sem", str(tmp_path / "pairs" / "sem" / "spheres_0001.png"),
                 "--out", str(tmp_path / "saxs_out")]) == 0
    saxs = tifffile.imread(tmp_path / "saxs_out" / "spheres_0001.tif")
    assert saxs.dtype == np.float32 and 0 <= saxs.min() and saxs.max() <= 1
    capsys.readouterr()
    assert main(["pairvae", "generate", "--model", str(model), "--from", "saxs", "--device", "cpu",
                 str(tmp_path / "pairs" / "saxs"), "--out", str(tmp_path / "x")]) == 2
    assert "this PairVAE was trained on another encoder" in capsys.readouterr().err
