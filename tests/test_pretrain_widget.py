"""The "Pretrain encoder" widget: trains in a worker, stops cleanly, shares its encoder."""

from __future__ import annotations

from napari_nanowire_ssl.models.modelfile import read_metadata
from napari_nanowire_ssl.napari_plugin import pretrain_widget as module
from napari_nanowire_ssl.napari_plugin.encoder_widget import EncoderWidget
from napari_nanowire_ssl.napari_plugin.pretrain_widget import PretrainWidget

PLUGIN = "napari-nanowire-ssl"


def small_widget(viewer, tmp_path, epochs):
    widget = PretrainWidget(viewer)
    widget.image_size.value = 32
    widget.batch_size.value = 4
    widget.epochs.value = epochs
    widget.device.value = "cpu"
    widget.out.value = tmp_path / "enc.safetensors"
    return widget


def test_training_runs_in_a_worker_and_becomes_the_active_encoder(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "network")
    encoder_widget = EncoderWidget(viewer)
    widget = small_widget(viewer, tmp_path, epochs=1)
    widget.start()
    assert not widget.start_button.enabled and widget.stop_button.enabled
    with qtbot.waitSignal(widget.worker.finished, timeout=120_000):
        pass
    meta = read_metadata(tmp_path / "enc.safetensors")
    assert meta["training"]["epochs_completed"] == 1 and meta["training"]["data"] == "1 napari layers"
    assert (tmp_path / "enc.safetensors.ckpt").exists()
    assert len(widget.plot.values) == meta["training"]["steps"] > 0
    assert widget.session.encoder_source == "enc.safetensors"
    # The Encoder widget of the same viewer follows the shared session.
    assert encoder_widget.status.value == "resnet18 (enc.safetensors)"
    assert widget.start_button.enabled and not widget.stop_button.enabled


def test_stop_ends_early_with_a_usable_encoder(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "dispersed")
    widget = small_widget(viewer, tmp_path, epochs=50)
    widget.start()
    widget.worker.yielded.connect(lambda _: widget.stop())
    with qtbot.waitSignal(widget.worker.finished, timeout=120_000):
        pass
    meta = read_metadata(tmp_path / "enc.safetensors")
    # Stop is seen after the step that was running when it was pressed.
    assert meta["training"]["steps"] <= 2
    assert meta["training"]["epochs_completed"] < 50
    assert widget.session.encoder is not None


def test_no_images_is_reported_and_nothing_starts(make_napari_viewer, monkeypatch, tmp_path):
    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = small_widget(viewer, tmp_path, epochs=1)
    widget.start()
    assert errors == ["No grayscale image layer open: open images or choose a folder"]
    assert widget.worker is None and widget.start_button.enabled
    assert not (tmp_path / "enc.safetensors").exists()


def test_folder_source_reads_the_folder(make_napari_viewer, qtbot, tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "micrographs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8)).save(folder / f"{i}.png")
    viewer = make_napari_viewer()
    widget = small_widget(viewer, tmp_path, epochs=1)
    assert not widget.folder.visible
    widget.source.value = module.FOLDER
    widget.folder.value = folder
    widget.start()
    with qtbot.waitSignal(widget.worker.finished, timeout=120_000):
        pass
    assert read_metadata(tmp_path / "enc.safetensors")["training"]["data"] == f"folder {folder}"
