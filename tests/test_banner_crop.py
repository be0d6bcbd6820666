"""The instrument banner left out wherever pixels are read: the core, the commands, folder runs
and the Segment, Classify and batch tabs (proposed from the image, the user's value kept)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from conftest import choose, read_csv, type_into
from napari_nanowire_ssl.batch import process_files
from napari_nanowire_ssl.bundle import Bundle
from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.fewshot import features as features_module
from napari_nanowire_ssl.fewshot.tiling import segment_image
from napari_nanowire_ssl.io.banner import AUTO, banner_crop, with_banner_rows, without_banner
from napari_nanowire_ssl.models.decoder import SegmentationModel, UNetDecoder
from napari_nanowire_ssl.models.modelfile import save_encoder
from napari_nanowire_ssl.napari_plugin import layers as L
from napari_nanowire_ssl.session import session_for

H, W, BANNER = 200, 160, 30


@pytest.fixture
def decoder(random_resnet18):
    torch.manual_seed(0)
    model = SegmentationModel(random_resnet18, UNetDecoder(random_resnet18.feature_channels, width=8)).eval()
    torch.nn.init.constant_(model.decoder.head.bias, 20.0)  # wire everywhere: zeros can only be the crop's
    return model


def test_banner_crop_resolves_auto_and_checks_rows(banner_micrograph):
    picture = banner_micrograph()
    assert banner_crop(picture) == banner_crop(picture, AUTO) == BANNER
    assert banner_crop(picture[:-BANNER]) == 0  # no banner, nothing cut
    assert banner_crop(picture, 12) == 12  # the user's value wins
    for bad in (-1, H, 2.5, True, "ten"):
        with pytest.raises(NanowireSSLError, match=r"^film.tif: the bottom crop must be 'auto' or a whole number "
                                                   rf"of rows in 0..{H - 1}, got "):
            banner_crop(picture, bad, name="film.tif")
    assert without_banner(picture, BANNER).shape == (H - BANNER, W) and without_banner(picture, 0) is picture
    padded = with_banner_rows(np.ones((H - BANNER, W), np.float32), BANNER)
    assert padded.shape == (H, W) and padded.dtype == np.float32
    assert padded[:-BANNER].all() and not padded[-BANNER:].any()


def test_segment_image_predicts_above_the_banner_and_fills_it_with_background(banner_micrograph, decoder):
    picture = banner_micrograph().astype(np.float32)
    prob, mask = segment_image(decoder, picture, tile=128, crop_bottom=BANNER)
    above_prob, above_mask = segment_image(decoder, picture[:-BANNER], tile=128)
    assert prob.shape == mask.shape == (H, W)
    np.testing.assert_array_equal(prob[:-BANNER], above_prob)
    np.testing.assert_array_equal(mask[:-BANNER], above_mask)
    assert not prob[-BANNER:].any() and not mask[-BANNER:].any() and mask[:-BANNER].all()


def test_folder_runs_crop_each_files_banner_and_say_so(banner_micrograph, decoder, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "banner.tif", banner_micrograph())
    tifffile.imwrite(src / "plain.tif", banner_micrograph()[:-BANNER])
    bundle = Bundle(decoder.encoder, "test", decoder=decoder)
    rows = [event.row for event in process_files(bundle, sorted(src.iterdir()), tmp_path / "auto")]
    assert [(r["path"].rsplit("/", 1)[-1], r["crop_bottom"]) for r in rows] == [("banner.tif", BANNER),
                                                                                ("plain.tif", 0)]
    mask = tifffile.imread(tmp_path / "auto" / "masks" / "banner.tif")
    assert mask.shape == (H, W) and not mask[-BANNER:].any() and mask[:-BANNER].all()
    fixed = [event.row for event in process_files(bundle, [src / "banner.tif"], tmp_path / "fixed", crop_bottom=5)]
    assert fixed[0]["crop_bottom"] == 5 and read_csv(tmp_path / "fixed" / "results.csv")[0]["crop_bottom"] == "5"
    bad = [event.row for event in process_files(bundle, [src / "plain.tif"], tmp_path / "bad", crop_bottom=H)]
    assert bad[0]["error"].startswith(f"{src / 'plain.tif'}: the bottom crop must be 'auto' or a whole number")


@pytest.fixture
def seen_shapes(monkeypatch):
    """Shapes of the images the classifier's features are computed from."""
    shapes: list[tuple[int, ...]] = []
    real = features_module.image_features

    def recording(encoder, images, **kwargs):
        images = list(images)
        shapes.extend(np.shape(image) for image in images)
        return real(encoder, images, **kwargs)

    from napari_nanowire_ssl.napari_plugin import classify_widget

    monkeypatch.setattr(features_module, "image_features", recording)
    monkeypatch.setattr(classify_widget, "image_features", recording)
    return shapes


def test_cli_segment_and_classify_leave_the_banner_out(banner_micrograph, random_resnet18, tmp_path, capsys,
                                                      seen_shapes):
    from PIL import Image

    encoder = tmp_path / "enc.safetensors"
    save_encoder(random_resnet18, encoder)
    picture = banner_micrograph()
    picture[:-BANNER, 70:76] = 255  # a bright wire where the mask has it, so training finds it
    for part in ("images", "masks"):
        (tmp_path / "train" / part).mkdir(parents=True)
    Image.fromarray(picture).save(tmp_path / "train" / "images" / "a.png")
    truth = np.zeros((H, W), np.uint8)
    truth[:, 70:76] = 255
    Image.fromarray(truth).save(tmp_path / "train" / "masks" / "a.png")
    tifffile.imwrite(tmp_path / "film.tif", picture)
    common = ["--encoder", str(encoder), "--device", "cpu"]
    assert main(["segment", "--train", str(tmp_path / "train"), "--predict", str(tmp_path / "film.tif"),
                 "--out", str(tmp_path / "masks"), "--epochs", "1", "--steps-per-epoch", "100", "--model", "filters",
                 *common]) == 0
    mask = tifffile.imread(tmp_path / "masks" / "film.tif")
    assert mask.shape == (H, W) and not mask[-BANNER:].any() and mask[:-BANNER].any()

    for name in ("network", "dispersed"):
        (tmp_path / "classes" / name).mkdir(parents=True)
        tifffile.imwrite(tmp_path / "classes" / name / f"{name}.tif", picture)
    assert main(["classify", "--train", str(tmp_path / "classes"), "--predict", str(tmp_path / "film.tif"),
                 "--out", str(tmp_path / "p.csv"), *common]) == 0
    assert seen_shapes == [(H - BANNER, W)] * 3
    seen_shapes.clear()
    assert main(["classify", "--train", str(tmp_path / "classes"), "--predict", str(tmp_path / "film.tif"),
                 "--out", str(tmp_path / "p.csv"), "--crop-bottom", "0", *common]) == 0
    assert seen_shapes == [(H, W)] * 3
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["classify", "--train", str(tmp_path / "classes"), "--predict", str(tmp_path / "film.tif"),
              "--out", str(tmp_path / "p.csv"), "--crop-bottom", "-3", *common])
    assert "--crop-bottom: expected 'auto' or a number of rows >= 0, got '-3'" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "masks" / "film.tif"), "--out", str(tmp_path / "m.csv"),
                 "--crop-bottom", "auto"]) == 2
    assert "--crop-bottom auto: banners are found in images (with --bundle); give masks a number of rows" \
        in capsys.readouterr().err


# --- the tabs, driven through their controls ---------------------------------------------------------------


def test_segment_tab_proposes_the_crop_keeps_the_users_and_predicts_above_it(make_napari_viewer, qtbot,
                                                                            banner_micrograph, decoder, errors):
    from napari_nanowire_ssl.napari_plugin.segment_widget import OUTPUT_KIND, SegmentWidget

    viewer = make_napari_viewer()
    film = viewer.add_image(banner_micrograph(), name="film")
    plain = viewer.add_image(banner_micrograph()[:-BANNER], name="plain")
    session_for(viewer).set_encoder(decoder.encoder, "test")
    session_for(viewer).set_decoder(decoder)
    widget = SegmentWidget(viewer)
    assert widget.image.value is film and widget.crop_bottom.value == BANNER
    choose(widget.image, plain)
    assert widget.crop_bottom.value == 0 and viewer.layers.selection.active is plain and not film.visible
    choose(widget.image, film)
    assert widget.crop_bottom.value == BANNER and viewer.layers.selection.active is film and not plain.visible
    type_into(qtbot, widget.crop_bottom, "40")
    assert L.banner_rows(film) == 40 and L.banner_rows(plain) == 0  # kept for this layer only
    choose(widget.image, plain)
    choose(widget.image, film)
    assert widget.crop_bottom.value == 40

    widget.predict_button.native.click()
    qtbot.waitUntil(lambda: not widget.job.busy, timeout=60_000)
    (mask,) = [layer for layer in viewer.layers if layer.metadata.get(OUTPUT_KIND) == "nanowires"]
    assert mask.data.shape == (H, W) and not mask.data[-40:].any() and mask.data[:-40].all()

    widget.new_scribbles_button.native.click()
    scribbles = viewer.layers["film scribbles"]
    assert scribbles.data.shape == (H, W)  # strokes cover the whole image; the banner rows are ignored
    scribbles.data[-20:, :] = 2  # wire strokes on the banner only: nothing to learn above the crop
    scribbles.data[:20, :] = 1
    widget.train_button.native.click()
    assert errors == ["Layer 'film scribbles' (above its 40-row bottom crop): only background pixels (label 1) are painted: "
                      "paint some nanowire (label 2) too"]


def test_classify_tab_encodes_each_image_above_its_crop(make_napari_viewer, qtbot, banner_micrograph,
                                                        random_resnet18, seen_shapes, errors):
    from napari_nanowire_ssl.napari_plugin.classify_widget import ClassifyWidget

    viewer = make_napari_viewer()
    film = viewer.add_image(banner_micrograph(), name="film")
    plain = viewer.add_image(banner_micrograph(banner=12)[:-12], name="plain")
    session_for(viewer).set_encoder(random_resnet18, "test")
    widget = ClassifyWidget(viewer)
    choose(widget.layer, film)
    assert widget.crop_bottom.value == BANNER
    type_into(qtbot, widget.crop_bottom, "50")
    for layer, name in ((film, "network"), (plain, "dispersed")):
        choose(widget.layer, layer)
        widget.tag_class.value = name
        widget.tag_button.native.click()
    widget.train_button.native.click()
    qtbot.waitUntil(lambda: not widget.job.busy, timeout=60_000)
    assert not errors
    assert sorted(seen_shapes) == sorted([(H - 50, W), (H - 12, W)])

    choose(widget.layer, plain)
    type_into(qtbot, widget.crop_bottom, str(H - 12))  # all of it
    widget.train_button.native.click()
    assert errors == [f"Layer 'plain': crop bottom ({H - 12} rows) must be less than the image's height "
                      f"({H - 12} rows)"]


def test_folder_runs_crop_banners_automatically_unless_told(make_napari_viewer, qtbot, banner_micrograph, decoder,
                                                            tmp_path):
    from napari_nanowire_ssl.napari_plugin.batch_widget import BatchWidget

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "film.tif", banner_micrograph())
    viewer = make_napari_viewer()
    session_for(viewer).set_encoder(decoder.encoder, "test")
    session_for(viewer).set_decoder(decoder)
    widget = BatchWidget(viewer)
    crop = widget.folder
    assert crop.auto_crop.value and not crop.crop_rows.enabled and crop.crop_setting == AUTO
    widget.folder.input_folder.value, widget.folder.output_folder.value = tmp_path / "in", tmp_path / "auto"
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.job.busy, timeout=60_000)
    assert read_csv(tmp_path / "auto" / "results.csv")[0]["crop_bottom"] == str(BANNER)
    crop.auto_crop.native.click()
    assert crop.crop_rows.enabled
    type_into(qtbot, crop.crop_rows, "7")
    assert crop.crop_setting == 7
    widget.folder.output_folder.value = tmp_path / "seven"
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.job.busy, timeout=60_000)
    assert read_csv(tmp_path / "seven" / "results.csv")[0]["crop_bottom"] == "7"
