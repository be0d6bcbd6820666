"""The "Pretrain encoder" widget and the Encoder tab's adaptation: train in a worker, stop cleanly, share the encoder."""

from __future__ import annotations

import pytest

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


@pytest.mark.slow
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


def test_no_images_is_reported_and_nothing_starts(make_napari_viewer, notices, tmp_path):
    errors = notices
    viewer = make_napari_viewer()
    widget = small_widget(viewer, tmp_path, epochs=1)
    widget.start()
    assert errors == [("show_error", "No grayscale image layer open: open images or choose a folder")]
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


def adapting_widget(viewer, tmp_path, monkeypatch, steps):
    """An Encoder widget whose adaptation runs tiny (32 px views, batch 4) and saves under ``tmp_path``."""
    from napari_nanowire_ssl.napari_plugin import encoder_widget
    from napari_nanowire_ssl.ssl import pretrain

    real = pretrain.adaptation_config
    monkeypatch.setattr(pretrain, "adaptation_config",
                        lambda init, steps: real(init, steps=steps, batch_size=4, image_size=32,
                                                 projector_dims=(32, 32, 32)))
    monkeypatch.setattr(encoder_widget, "ADAPTED_DIR", tmp_path / "adapted")
    widget = EncoderWidget(viewer)
    widget.device.value = "cpu"
    widget.adapt_steps.value = steps
    widget.new_encoder()
    return widget


def test_adapt_to_open_images_makes_and_saves_a_new_active_encoder(make_napari_viewer, qtbot, tmp_path,
                                                                     monkeypatch):
    from napari_nanowire_ssl.models.modelfile import tensor_hash

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "network")
    widget = adapting_widget(viewer, tmp_path, monkeypatch, steps=4)
    init = widget.encoder
    init_hash = tensor_hash(init.state_dict())
    changes, progress = [], []
    widget.session.encoder_changed.connect(lambda encoder, source: changes.append(source))
    widget.adapt()
    assert not widget.adapt_button.enabled and widget.adapt_stop_button.enabled
    widget.adapt_worker.yielded.connect(lambda _: progress.append(widget.adapt_status.value))
    with qtbot.waitSignal(widget.adapt_worker.finished, timeout=120_000):
        pass
    saved = list((tmp_path / "adapted").glob("adapted_encoder_*.safetensors"))
    assert len(saved) == 1
    meta = read_metadata(saved[0])
    assert meta["training"]["adapted_from"]["encoder_hash"] == init_hash
    assert meta["training"]["adapted_from"]["source"] == "random weights"
    assert meta["training"]["steps"] == 4 and meta["training"]["data"] == "1 napari layers"
    assert progress[0].startswith("step 1/4, loss ") and progress[-1].startswith("step 4/4, loss ")
    assert changes == [f"adapted, {saved[0].name}"]
    assert widget.encoder is not init and tensor_hash(widget.encoder.state_dict()) != init_hash
    assert tensor_hash(init.state_dict()) == init_hash  # the encoder it started from is unchanged
    assert widget.session.settings.encoder == str(saved[0])
    assert widget.adapt_status.value == f"saved {saved[0]}"
    assert widget.adapt_button.enabled and not widget.adapt_stop_button.enabled


def test_stopping_an_adaptation_keeps_a_usable_encoder(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    import numpy as np

    from napari_nanowire_ssl.models.encoder import encode_images
    from napari_nanowire_ssl.models.modelfile import load_encoder

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "dispersed")
    widget = adapting_widget(viewer, tmp_path, monkeypatch, steps=500)
    init = widget.encoder
    widget.adapt()
    widget.adapt_worker.yielded.connect(lambda _: widget.adapt_stop_button.changed.emit(True))
    with qtbot.waitSignal(widget.adapt_worker.finished, timeout=120_000):
        pass
    (saved,) = (tmp_path / "adapted").glob("*.safetensors")
    assert read_metadata(saved)["training"]["steps"] <= 2
    assert widget.encoder is not init and widget.session.encoder_source == f"adapted, {saved.name}"
    feats = encode_images(load_encoder(saved), np.random.default_rng(0).random((1, 64, 64)).astype(np.float32))
    assert np.isfinite(feats).all()


def test_adapt_without_images_is_reported(make_napari_viewer, monkeypatch, notices, tmp_path):
    from napari_nanowire_ssl.napari_plugin import encoder_widget

    monkeypatch.setattr(encoder_widget, "ADAPTED_DIR", tmp_path / "adapted")
    widget = EncoderWidget(make_napari_viewer())
    widget.adapt()
    assert notices == [("show_error", "No grayscale image layer open: open images or choose a folder")]
    assert widget.adapt_worker is None and widget.adapt_button.enabled and not (tmp_path / "adapted").exists()
