"""The Qt-free workflow layer: persistent settings, model bundles, the session, batch runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_nanowire_ssl.analysis.measure import analyse_mask
from napari_nanowire_ssl.batch import RESULTS_CSV, overlay_rgb, process_files
from napari_nanowire_ssl.bundle import DEFAULT_OPTIONS, Bundle, load_bundle, save_bundle
from napari_nanowire_ssl.errors import ModelFileError, NanowireSSLError
from napari_nanowire_ssl.fewshot.classify import LinearHead
from napari_nanowire_ssl.fewshot.features import image_features
from napari_nanowire_ssl.models.modelfile import encoder_identity
from napari_nanowire_ssl.fewshot.segment import save_decoder
from napari_nanowire_ssl.fewshot.tiling import segment_image
from napari_nanowire_ssl.models.decoder import SegmentationModel, UNetDecoder
from napari_nanowire_ssl.models.default import load_default_encoder
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import read_metadata
from napari_nanowire_ssl.session import Session
from napari_nanowire_ssl.settings import Settings, load_settings, save_settings, settings_path
from napari_nanowire_ssl.synth import generate

CLASSES = ["dispersed", "network"]


# --- settings ---------------------------------------------------------------------------------


def test_settings_default_round_trip_and_location(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOWIRE_SSL_CONFIG_DIR", str(tmp_path / "cfg"))
    assert settings_path() == tmp_path / "cfg" / "settings.json"
    assert load_settings() == (Settings(), None)  # no file yet: defaults, no complaint
    wanted = Settings(device="cpu", encoder="/data/my_encoder.safetensors", tile=256, batch_size=8)
    assert save_settings(wanted) == tmp_path / "cfg" / "settings.json"
    assert json.loads(settings_path().read_text()) == {"device": "cpu", "encoder": "/data/my_encoder.safetensors",
                                                       "tile": 256, "batch_size": 8}
    assert load_settings() == (wanted, None)


def test_damaged_settings_fall_back_to_defaults_naming_the_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    settings, problem = load_settings(path)
    assert settings == Settings() and problem.startswith(f"{path}: settings unreadable") and "\n" not in problem
    path.write_text(json.dumps({"device": "gpu7", "tile": 100, "batch_size": 2, "colour": "red"}))
    settings, problem = load_settings(path)
    assert settings == Settings(batch_size=2)  # the usable value is kept
    assert "setting 'device': 'gpu7'" in problem and "setting 'tile': 100" in problem
    assert "unknown setting 'colour'" in problem
    with pytest.raises(NanowireSSLError, match="setting 'batch_size': 0"):
        save_settings(Settings(batch_size=0), path)


# --- bundles ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """A random resnet18, a head fitted on its features of 4 synthetic images, a random decoder."""
    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    images = [generate(c, size=64, seed=s).image for c in CLASSES for s in (0, 1)]
    tiling = {"tile": 64, "max_tiles": 1}
    features = image_features(encoder, images, **tiling)
    head = LinearHead(encoder_hash=encoder_identity(encoder), tiling=tiling).fit(
        features, [c for c in CLASSES for _ in (0, 1)], CLASSES)
    decoder = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8)).eval()
    return encoder, head, decoder, images


def test_bundle_round_trip_predicts_identically(trained, tmp_path):
    encoder, head, decoder, images = trained
    options = {**DEFAULT_OPTIONS, "tile": 256, "link_distance": 0.0, "criterion": "lr"}
    save_bundle(tmp_path / "b.safetensors", Bundle(encoder, "mine.safetensors", head, decoder, options))
    meta = read_metadata(tmp_path / "b.safetensors", kind="bundle")
    assert meta["head"]["class_names"] == CLASSES and meta["options"] == options
    assert meta["encoder"]["backbone"] == "resnet18" and meta["decoder"]["encoder_hash"] == encoder_identity(encoder)

    loaded = load_bundle(tmp_path / "b.safetensors")
    assert encoder_identity(loaded.encoder) == encoder_identity(encoder)  # float32 weights, bit for bit
    assert loaded.options == options and loaded.encoder_source == "mine.safetensors"
    assert loaded.describe() == ("resnet18 encoder (mine.safetensors), classifier of 2 classes (dispersed, "
                                 "network), segmentation decoder")
    features = image_features(loaded.encoder, images, **loaded.head.tiling)
    np.testing.assert_array_equal(loaded.head.predict_proba(features),
                                  head.predict_proba(image_features(encoder, images, **head.tiling)))
    np.testing.assert_array_equal(segment_image(loaded.decoder, images[2])[0], segment_image(decoder, images[2])[0])


def test_bundle_refers_to_the_default_encoder_instead_of_copying_it(tmp_path):
    encoder = load_default_encoder()
    decoder = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8)).eval()
    path = tmp_path / "default.safetensors"
    save_bundle(path, Bundle(encoder, "default", decoder=decoder))
    meta = read_metadata(path, kind="bundle")
    assert meta["encoder"] == {"reference": "default", "encoder_hash": encoder_identity(encoder)}
    assert path.stat().st_size < 2_000_000  # the decoder only, not the 22 MB encoder
    loaded = load_bundle(path)
    assert loaded.head is None and encoder_identity(loaded.encoder) == encoder_identity(encoder)


def test_bundle_errors_are_one_line_and_name_the_file(trained, tmp_path):
    encoder, head, decoder, _ = trained
    with pytest.raises(NanowireSSLError, match="nothing trained to save"):
        save_bundle(tmp_path / "empty.safetensors", Bundle(encoder))
    torch.manual_seed(5)
    other = Encoder("resnet18").eval()
    with pytest.raises(NanowireSSLError, match="classifier was trained on another encoder"):
        save_bundle(tmp_path / "x.safetensors", Bundle(other, head=head))
    with pytest.raises(NanowireSSLError, match="decoder sits on another encoder"):
        save_bundle(tmp_path / "x.safetensors", Bundle(other, decoder=decoder))
    with pytest.raises(NanowireSSLError, match="unknown option"):
        save_bundle(tmp_path / "x.safetensors", Bundle(encoder, head=head, options={"tile": 512, "zoom": 2}))
    save_decoder(decoder, tmp_path / "decoder.safetensors", encoder_hash=encoder_identity(encoder))
    with pytest.raises(ModelFileError, match=r"decoder\.safetensors: is a decoder file, expected a bundle"):
        load_bundle(tmp_path / "decoder.safetensors")


# --- session ----------------------------------------------------------------------------------


def test_session_drops_parts_of_another_encoder_and_applies_bundles(trained):
    encoder, head, decoder, _ = trained
    session = Session(Settings())
    seen = []
    session.head_changed.connect(lambda h: seen.append(("head", h)))
    session.decoder_changed.connect(lambda d: seen.append(("decoder", d)))
    session.set_encoder(encoder, "test")
    session.set_head(head)
    session.set_decoder(decoder)
    session.set_encoder(encoder, "same again")  # the same weights keep what was trained on them
    assert session.head is head and session.decoder is decoder
    with pytest.raises(NanowireSSLError, match=r"setting 'tile': 100 is not a multiple of 32 px of at least 64"):
        session.set_options(tile=100)
    session.set_options(link_distance=0.0)
    bundle = session.bundle()
    assert bundle.options == {**DEFAULT_OPTIONS, "link_distance": 0.0, "tile": 512}
    torch.manual_seed(9)
    session.set_encoder(Encoder("resnet18").eval(), "another")
    assert session.head is None and session.decoder is None
    assert seen[-2:] == [("head", None), ("decoder", None)]
    with pytest.raises(NanowireSSLError, match="Nothing trained yet"):
        session.bundle()
    session.apply_bundle(bundle, "b.safetensors")
    assert session.encoder is encoder and session.head is head and session.decoder is decoder
    assert session.encoder_source == "same again, from b.safetensors" and session.options["link_distance"] == 0.0
    # The tile is the settings' alone: the session keeps no copy that could disagree with them.
    assert "tile" not in session.options and session.result_options()["tile"] == session.settings.tile
    session.set_options(tile=1024)
    assert session.settings.tile == 1024 and session.result_options()["tile"] == 1024


def test_session_settings_persist(tmp_path):
    session = Session()
    changes = []
    session.settings_changed.connect(changes.append)
    session.update_settings(device="cpu", tile=1024)
    assert load_settings()[0] == Settings(device="cpu", tile=1024) == session.settings and len(changes) == 1
    with pytest.raises(NanowireSSLError, match="setting 'tile'"):
        session.update_settings(tile=33)
    assert Session().settings.tile == 1024  # the next session starts from the saved values


def test_session_runs_the_active_encoder_on_its_device(monkeypatch, random_resnet18):
    import torch

    session = Session()
    session.update_settings(device="cpu")
    assert session.device() == torch.device("cpu")
    session.set_encoder(random_resnet18, "test")
    assert session.active_encoder() is random_resnet18
    # Wherever the settings point, the active encoder is moved there before any widget uses it.
    monkeypatch.setattr(Session, "device", lambda self: torch.device("meta"))
    assert next(session.active_encoder().parameters()).device == torch.device("meta")


# --- batch ------------------------------------------------------------------------------------


def test_overlay_colours_wires_and_the_percolating_cluster():
    image = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1))
    mask = np.zeros((8, 8), np.uint8)
    mask[2] = 1
    percolating = np.zeros((8, 8), bool)
    percolating[2, :4] = True
    rgb = overlay_rgb(image, mask, percolating)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 7]) == (255, 255, 255) and tuple(rgb[0, 0]) == (0, 0, 0)  # gray where no wire
    assert tuple(rgb[2, 7]) == (102 + 0, 102 + 132, 102 + 153)  # 0.4 * 255 + 0.6 * cyan
    assert tuple(rgb[2, 0]) == (153, 24, 138)  # 0.6 * magenta on black


def test_batch_writes_masks_overlays_and_one_csv_and_keeps_going_past_bad_files(trained, tmp_path):
    encoder, head, decoder, images = trained
    src = tmp_path / "in"
    src.mkdir()
    for name, image in zip(("a", "b"), images[1:3]):
        tifffile.imwrite(src / f"{name}.tif", image)
    (src / "c.tif").write_bytes(b"not a tiff")
    bundle = Bundle(encoder, "test", head, decoder, {**DEFAULT_OPTIONS, "link_distance": 0.0})
    files = sorted(src.iterdir())
    events = list(process_files(bundle, files, tmp_path / "out"))
    assert [e.index for e in events] == [0, 1, 2] and events[-1].fraction == 1.0
    with open(tmp_path / "out" / RESULTS_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:7] == ["path", "error", "crop_bottom", "label", "prob_dispersed", "prob_network",
                            "pixel_density"]
    assert rows[2]["path"].endswith("c.tif") and "c.tif" in rows[2]["error"] and rows[2]["pixel_density"] == ""
    for row, name, image in zip(rows, "ab", images[1:3]):
        assert row["error"] == ""
        mask = tifffile.imread(tmp_path / "out" / "masks" / f"{name}.tif")
        np.testing.assert_array_equal(mask, segment_image(decoder, image)[1])
        assert float(row["pixel_density"]) == pytest.approx(mask.mean())
        p = head.predict_proba(image_features(encoder, [image], **head.tiling))[0]
        assert float(row["prob_network"]) == pytest.approx(p[1], abs=1e-6)
        assert row["label"] == CLASSES[int(p.argmax())]
        overlay = np.asarray(Image.open(tmp_path / "out" / "overlays" / f"{name}.png"))
        spanning = analyse_mask(mask, link_distance=0.0).percolation.spanning_mask
        np.testing.assert_array_equal(overlay, overlay_rgb(image, mask, spanning))


def test_batch_stops_between_files_keeping_finished_rows(trained, tmp_path):
    encoder, head, _, images = trained
    for i in range(3):
        tifffile.imwrite(tmp_path / f"{i}.tif", images[i])
    stop = []
    run = process_files(Bundle(encoder, head=head), sorted(tmp_path.glob("*.tif")), tmp_path / "out",
                        should_stop=lambda: bool(stop))
    next(run)
    stop.append(True)
    assert list(run) == []
    with open(tmp_path / "out" / RESULTS_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["path"].endswith("0.tif") and "pixel_density" not in rows[0]
    assert not (tmp_path / "out" / "masks").exists()  # a classifier-only bundle writes no masks
