"""The "Cross-reconstruct" widget: generates counterparts as named layers, trains in a worker with Stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import read_metadata
from napari_nanowire_ssl.napari_plugin import pairvae_widget as module
from napari_nanowire_ssl.napari_plugin.pairvae_widget import SEM, PairVAEWidget
from napari_nanowire_ssl.pairvae.data import write_synthetic_pairs
from napari_nanowire_ssl.pairvae.model import PairVAE, PairVAEConfig, feature_dim, save_pairvae

PLUGIN = "napari-nanowire-ssl"


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return Encoder("resnet18").eval()


def widget_with_model(viewer, encoder, tmp_path):
    vae = PairVAE(feature_dim(encoder), PairVAEConfig(latent_size=4, image_size=64, hidden=16, width=4))
    save_pairvae(vae, tmp_path / "pv.safetensors", encoder=encoder, encoder_source="test")
    widget = PairVAEWidget(viewer)
    widget.session.set_encoder(encoder, "test")
    widget.model.value = tmp_path / "pv.safetensors"
    return widget


def test_generate_adds_the_counterpart_layer_and_updates_it_in_place(make_napari_viewer, encoder, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "pairvae_pair")
    assert [layer.name for layer in viewer.layers] == ["synthetic SAXS", "synthetic SEM"]
    widget = widget_with_model(viewer, encoder, tmp_path)
    widget.layer.value = viewer.layers["synthetic SAXS"]
    widget.generate()
    sem = viewer.layers["synthetic SAXS -> SEM"]
    assert sem.data.shape == (64, 64) and sem.data.dtype == np.uint8
    assert sem.metadata[module.OUTPUT_OF] == "synthetic SAXS"
    widget.layer.value = viewer.layers["synthetic SEM"]
    widget.source.value = SEM
    widget.generate()
    saxs = viewer.layers["synthetic SEM -> SAXS"]
    assert saxs.data.dtype == np.float32 and 0 <= saxs.data.min() and saxs.data.max() <= 1
    widget.generate()  # a re-run updates the layer instead of adding one
    assert len(viewer.layers) == 4
    assert saxs not in widget.layer.choices and viewer.layers["synthetic SEM"] in widget.layer.choices


def test_wrong_encoder_and_missing_model_are_reported(make_napari_viewer, encoder, notices, tmp_path):
    errors = notices
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="pattern")
    widget = widget_with_model(viewer, encoder, tmp_path)
    torch.manual_seed(5)
    widget.session.set_encoder(Encoder("resnet18").eval(), "other")
    widget.generate()
    assert "pv.safetensors: this PairVAE was trained on another encoder" in errors[-1][1]
    widget.model.value = tmp_path / "missing.safetensors"
    widget.generate()
    assert errors[-1][0] == "show_error" and errors[-1][1].endswith("missing.safetensors: no such model file")
    assert len(viewer.layers) == 1


def test_training_runs_in_a_worker_stops_and_becomes_the_model(make_napari_viewer, qtbot, encoder, tmp_path):
    write_synthetic_pairs(tmp_path / "pairs", 1, size=64, seed=0)
    viewer = make_napari_viewer()
    widget = PairVAEWidget(viewer)
    widget.session.set_encoder(encoder, "test")
    widget.pairs.value = tmp_path / "pairs"
    widget.out.value = tmp_path / "trained.safetensors"
    widget.vae_epochs.value, widget.epochs.value = 100, 100
    widget.train()
    assert not widget.train_button.enabled and widget.stop_button.enabled
    seen = []
    widget.worker.yielded.connect(lambda event: (seen.append(event.stage), seen[-1] != "features" and widget.stop()))
    with qtbot.waitSignal(widget.worker.finished, timeout=120_000):
        pass
    meta = read_metadata(tmp_path / "trained.safetensors", kind="pairvae")
    # Stop is seen before the step after the one whose event it answered (the worker may be one ahead).
    assert "saxs" in seen and 1 <= meta["training"]["steps"] <= 2 and meta["training"]["pairs"] == 5
    assert widget.model.value == tmp_path / "trained.safetensors"
    assert widget.train_button.enabled and not widget.stop_button.enabled
