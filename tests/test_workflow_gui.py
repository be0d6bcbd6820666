"""The whole napari workflow driven as a person would: clicks, brush strokes, waiting for workers.

Open a sample, paint strokes, press Train, press Predict, analyse, export the
CSV, save the bundle and run it over a folder; then the bad inputs a user
meets, each with its message and nothing changed or lost; and closing the
viewer while a training runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from conftest import read_csv
from qtpy.QtCore import Qt

from napari_nanowire_ssl.models.modelfile import encoder_identity
from napari_nanowire_ssl.fewshot.pixel_classifier import CONTEXT_STEPS
from napari_nanowire_ssl.fewshot.segment import save_decoder
from napari_nanowire_ssl.models.decoder import SegmentationModel, UNetDecoder
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.napari_plugin.workflow_widget import STEPS, WorkflowWidget
from napari_nanowire_ssl.napari_plugin.workers import viewer_workers
from napari_nanowire_ssl.session import session_for
from napari_nanowire_ssl.settings import load_settings
from napari_nanowire_ssl.synth import generate
from napari_nanowire_ssl.synth.strokes import brush_clicks

pytestmark = pytest.mark.gui
WAIT_MS = 180_000
IMAGE = "synthetic network"


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def wait_for(qtbot, widget) -> None:
    """Wait until the widget's running worker has finished (its Stop button greys out)."""
    qtbot.waitUntil(lambda: not widget.stop_button.enabled, timeout=WAIT_MS)


def paint_strokes(layer, wire_mask: np.ndarray) -> None:
    """Brush clicks as a user paints them (see :func:`brush_clicks`), background also near wires."""
    layer.brush_size = 3
    for y, x, label in brush_clicks(wire_mask, n=40, background_gap=4):
        layer.paint((y, x), label, refresh=False)
    layer.refresh()


@pytest.mark.slow
# napari silences this skimage notice itself (its random label colours) inside warnings.catch_warnings,
# which is not thread-safe: while a worker thread also changes the filters, it can slip through.
@pytest.mark.filterwarnings("ignore:Conversion from CIE-LAB, via XYZ to sRGB:UserWarning")
@pytest.mark.filterwarnings("error")  # a normal session warns of nothing else (napari's and ours alike)
def test_sample_to_percolation_csv_and_a_batch_run(make_napari_viewer, qtbot, notices, tmp_path):
    viewer = make_napari_viewer()
    flow = WorkflowWidget(viewer)
    viewer.window.add_dock_widget(flow, name="Nanowire workflow")
    assert [flow.tabText(i) for i in range(flow.count())] == list(STEPS)
    viewer.open_sample("napari-nanowire-ssl", "network")
    truth = viewer.layers[f"{IMAGE} true mask"].data.astype(bool)

    # 1 Encoder: the shipped default.
    click(qtbot, flow.encoder.default_button)
    assert flow.encoder.status.value.startswith("resnet18 (default)")

    # 3 Segment: a scribble layer, strokes, Train, Predict.
    flow.setCurrentIndex(2)
    seg = flow.segment
    seg.image.value = viewer.layers[IMAGE]
    click(qtbot, seg.new_scribbles_button)
    scribbles = viewer.layers[f"{IMAGE} scribbles"]
    paint_strokes(scribbles, truth)
    painted = scribbles.data.copy()
    assert set(np.unique(painted)) == {0, 1, 2} and (painted > 0).mean() < 0.05
    seg.n_steps.value, seg.self_training.value, seg.preview_every.value, seg.batch_size.value = 60, 0, 0, 2
    click(qtbot, seg.train_button)
    wait_for(qtbot, seg)
    # 60 steps on the strokes, then the context stage (a pixel model is chosen on this sample).
    assert seg.status.value.startswith(f"trained {60 + CONTEXT_STEPS} steps"), seg.status.value
    click(qtbot, seg.predict_button)
    wait_for(qtbot, seg)
    mask_layer = viewer.layers[f"{IMAGE} nanowires"]
    np.testing.assert_array_equal(scribbles.data, painted)  # the strokes are untouched
    dice = 2 * (mask_layer.data.astype(bool) & truth).sum() / (mask_layer.data.astype(bool).sum() + truth.sum())
    print(f"Dice after 60 steps from 80 brush clicks: {dice:.3f}")
    assert dice > 0.6, dice  # a rough but real segmentation

    # 4 Analyse: the predicted mask, then the CSV.
    flow.setCurrentIndex(3)
    ana = flow.analyse
    ana.layer.value = mask_layer
    click(qtbot, ana.analyse_button)
    qtbot.waitUntil(lambda: "nanowire_ssl_metrics" in mask_layer.metadata, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: ana.analyse_button.enabled, timeout=WAIT_MS)
    ana.csv_file.value = tmp_path / "percolation.csv"
    click(qtbot, ana.export_button)
    qtbot.waitUntil(lambda: (tmp_path / "percolation.csv").exists(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: ana.export_button.enabled, timeout=WAIT_MS)
    rows = {row["layer"]: row for row in read_csv(tmp_path / "percolation.csv")}
    row = rows[f"{IMAGE} nanowires"]
    assert float(row["pixel_density"]) == pytest.approx(mask_layer.data.astype(bool).mean())
    assert row["percolates"] == "True"  # a network sample, segmented, still spans the image

    # 5 Bundle + batch: save what was trained, run it over a folder.
    flow.setCurrentIndex(4)
    bat = flow.batch
    assert "decoder: trained" in bat.contents.value
    bat.bundle_file.value = tmp_path / "my_setup.safetensors"
    click(qtbot, bat.save_button)
    assert (tmp_path / "my_setup.safetensors").exists()
    folder = tmp_path / "new images"
    folder.mkdir()
    for seed in (11, 12):
        tifffile.imwrite(folder / f"network_{seed}.tif", generate("network", size=256, seed=seed).image)
    bat.folder.input_folder.value, bat.folder.output_folder.value = folder, tmp_path / "results"
    click(qtbot, bat.run_button)
    wait_for(qtbot, bat)
    batch_rows = read_csv(tmp_path / "results" / "results.csv")
    assert [r["error"] for r in batch_rows] == ["", ""]
    assert sorted(p.name for p in (tmp_path / "results" / "masks").iterdir()) == ["network_11.tif", "network_12.tif"]
    assert bat.status.value.startswith("Wrote 2 result(s)")
    assert [n for n in notices if n[0] == "show_error"] == []

    # Loading the bundle in a fresh viewer restores the decoder for the Segment step.
    other = make_napari_viewer()
    fresh = WorkflowWidget(other)
    fresh.batch.bundle_file.value = tmp_path / "my_setup.safetensors"
    click(qtbot, fresh.batch.load_button)
    assert session_for(other).decoder is not None and fresh.segment.model is session_for(other).decoder


def test_settings_persist_and_reach_every_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    flow = WorkflowWidget(viewer)
    flow.batch.tile.value = 256
    flow.segment.device.value = "cpu"
    assert load_settings()[0].tile == 256 and load_settings()[0].device == "cpu"
    assert flow.encoder.device.value == flow.batch.device.value == flow.pretrain.device.value == "cpu"
    again = WorkflowWidget(make_napari_viewer())  # the next session starts from them
    assert again.batch.tile.value == 256 and again.segment.device.value == "cpu"


def test_loading_a_decoder_of_another_backbone_says_so(make_napari_viewer, notices, tmp_path):
    viewer = make_napari_viewer()
    flow = WorkflowWidget(viewer)
    torch.manual_seed(0)
    resnet34 = Encoder("resnet34").eval()
    model = SegmentationModel(resnet34, UNetDecoder(resnet34.feature_channels, width=8))
    save_decoder(model, tmp_path / "r34_decoder.safetensors", encoder_hash=encoder_identity(resnet34))
    session_for(viewer).set_encoder(Encoder("resnet18").eval(), "test")
    flow.segment.decoder_file.value = tmp_path / "r34_decoder.safetensors"
    flow.segment.load()
    assert notices == [("show_error", f"{tmp_path / 'r34_decoder.safetensors'}: this decoder was trained on a "
                        "resnet34 encoder but the active encoder is a resnet18; load the encoder it was trained "
                        "with")]
    assert session_for(viewer).decoder is None


def test_out_of_gpu_memory_falls_back_and_tells_the_user(make_napari_viewer, qtbot, notices):
    from test_segment_memory import Greedy

    viewer = make_napari_viewer()
    flow = WorkflowWidget(viewer)
    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    session = session_for(viewer)
    session.set_encoder(encoder, "test")
    session.set_decoder(Greedy(SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8)).eval(),
                               max_pixels=128 * 128))
    viewer.add_image(generate("network", size=256, seed=0).image, name="wires")
    flow.segment.image.value = viewer.layers["wires"]
    click(qtbot, flow.segment.predict_button)
    wait_for(qtbot, flow.segment)
    assert ("show_warning", "Out of CPU memory: continuing with 128 px tiles") in notices
    assert viewer.layers["wires nanowires"].data.shape == (256, 256)


def test_closing_the_viewer_during_training_ends_the_worker(make_napari_viewer, qtbot, notices):
    viewer = make_napari_viewer()
    flow = WorkflowWidget(viewer)
    session_for(viewer).set_encoder(Encoder("resnet18").eval(), "test")
    sample = generate("network", size=128, seed=1)
    viewer.add_image(sample.image, name="wires")
    labels = np.where(sample.mask, 2, 1).astype(np.uint8)
    labels[::2] = 0
    viewer.add_labels(labels, name="strokes")
    seg = flow.segment
    seg.image.value, seg.scribbles.value = viewer.layers["wires"], viewer.layers["strokes"]
    seg.n_steps.value, seg.batch_size.value = 100_000, 1
    steps = []
    click(qtbot, seg.train_button)
    seg.worker.yielded.connect(steps.append)
    worker = seg.worker
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=WAIT_MS)
    viewer.close()
    assert not worker.is_running and len(steps) < 100_000
    assert viewer_workers(viewer).running == {}
    assert [n for n in notices if n[0] == "show_error"] == []
