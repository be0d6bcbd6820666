"""The napari layer under Xvfb: sample data, the DM reader and the Encoder widget."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire_ssl.napari_plugin.encoder_widget import EncoderWidget

PLUGIN = "napari-nanowire-ssl"


@pytest.mark.parametrize("morphology", ["singular", "dispersed", "network", "bundle"])
def test_synthetic_samples_open_with_their_masks(make_napari_viewer, morphology):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, morphology)
    image, mask = viewer.layers
    assert image.data.shape == mask.data.shape == (512, 512)
    assert set(np.unique(mask.data)) <= {0, 1} and mask.data.any()
    assert image.metadata["morphology"] == morphology
    # The layer metadata is the generator's ground truth for this very mask.
    assert image.metadata["density"] == pytest.approx(mask.data.mean())
    if morphology == "network":
        assert image.metadata["spans_lr"] and image.metadata["spans_tb"]


def test_real_sample_carries_pixel_size_and_attribution(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "silver_network")
    (layer,) = viewer.layers
    assert layer.data.shape == (512, 512)
    np.testing.assert_allclose(layer.scale, [32.3, 32.3], rtol=1e-6)
    assert "StructuralGT" in layer.metadata["source"]


def test_widgets_dock(make_napari_viewer):
    """Every widget of the manifest docks under its display name as the class the manifest names,
    and all of them share the viewer's one session."""
    import importlib
    from pathlib import Path

    from npe2 import PluginManifest

    from napari_nanowire_ssl.session import session_for

    manifest = PluginManifest.from_file(Path(__file__).resolve().parents[1] / "napari.yaml")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    widgets = manifest.contributions.widgets
    assert len(widgets) == 8
    viewer = make_napari_viewer()
    for entry in widgets:
        module, _, cls = commands[entry.command].partition(":")
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, entry.display_name)
        assert type(widget) is getattr(importlib.import_module(module), cls), entry
        assert entry.display_name in dock.windowTitle()
        assert getattr(widget, "session", session_for(viewer)) is session_for(viewer), entry
    assert len(viewer.window.dock_widgets) == len(widgets)


def test_encoder_widget_shows_features_in_a_worker(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "network")
    widget = EncoderWidget(viewer)
    widget.new_encoder()
    assert widget.status.value.startswith("resnet18")
    widget.image.value = viewer.layers["synthetic network"]
    widget.show_features()
    with qtbot.waitSignal(widget.features_job.worker.finished, timeout=60_000):
        pass
    layer = viewer.layers["synthetic network encoder features"]
    assert layer.rgb and layer.data.shape == (512, 512, 3)
    first = layer.data.copy()
    # Re-running updates the same layer instead of adding another.
    widget.show_features()
    with qtbot.waitSignal(widget.features_job.worker.finished, timeout=60_000):
        pass
    assert len(viewer.layers) == 3
    np.testing.assert_allclose(viewer.layers["synthetic network encoder features"].data, first, atol=1e-5)


def test_encoder_widget_refuses_bad_layers_without_touching_them(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    widget = EncoderWidget(viewer)
    widget.show_features()
    assert errors == ["No image layer: open an image first (File > Open, or File > Open Sample)"]
    # A colour picture is not offered; a gray image saved as RGB is.
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    photo = viewer.add_image(rgb, name="photo", rgb=True)
    gray = viewer.add_image(np.stack([rgb[..., 0]] * 3, -1), name="gray jpeg", rgb=True)
    assert photo not in widget.image.choices and gray in widget.image.choices
    assert len(viewer.layers) == 2 and (viewer.layers["photo"].data == rgb).all()


def test_encoder_tab_names_the_encoder_it_will_use_before_any_is_loaded(make_napari_viewer):
    widget = EncoderWidget(make_napari_viewer())
    assert widget.encoder is None
    assert widget.status.value == "the shipped default encoder (loaded when first used)"


def test_encoder_widget_reports_a_bad_model_file(make_napari_viewer, errors, tmp_path):
    viewer = make_napari_viewer()
    widget = EncoderWidget(viewer)
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 10)
    widget.model_file.value = bad
    widget.load_encoder()
    assert len(errors) == 1 and "broken.safetensors" in errors[0]
    assert widget.encoder is None


@pytest.mark.parametrize("version", [3, 4])
def test_dm_files_open_in_napari_with_calibrated_scale(make_napari_viewer, tmp_path, version):
    from dmfile import write_dm

    data = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    path = tmp_path / f"grid.dm{version}"
    write_dm(path, data, version=version, scale=(0.25, 0.25), units="µm")
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    (layer,) = viewer.layers
    np.testing.assert_array_equal(layer.data, data)
    np.testing.assert_allclose(layer.scale, [250.0, 250.0])
    assert layer.metadata["pixel_size_nm"] == pytest.approx(250.0)


@pytest.mark.slow
def test_torch_loads_after_the_gl_context_exists():
    """Regression: torchvision (via triton's LLVM) used to crash after Mesa GL was up."""
    import subprocess
    import sys

    code = (
        "import napari; viewer = napari.Viewer(show=False); viewer.add_image(__import__('numpy').zeros((8, 8)));"
        "from napari_nanowire_ssl.napari_plugin.encoder_widget import EncoderWidget;"
        "w = EncoderWidget(viewer); w.new_encoder(); print(w.encoder.embedding_dim)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("512")
