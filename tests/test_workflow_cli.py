"""``--bundle`` on the command line: classify, segment and analyze with what a napari session trained."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from conftest import read_csv

from napari_nanowire_ssl.bundle import DEFAULT_OPTIONS, Bundle, save_bundle
from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.fewshot.classify import LinearHead
from napari_nanowire_ssl.fewshot.features import image_features
from napari_nanowire_ssl.models.modelfile import encoder_identity
from napari_nanowire_ssl.fewshot.tiling import segment_image
from napari_nanowire_ssl.models.decoder import SegmentationModel, UNetDecoder
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.synth import generate

CLASSES = ["dispersed", "network"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Images to process, a full bundle and a classifier-only bundle on a random resnet18."""
    root = tmp_path_factory.mktemp("bundle_cli")
    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    images = {f"{c}{s}": generate(c, size=64, seed=s).image for c in CLASSES for s in (0, 1)}
    tiling = {"tile": 64, "max_tiles": 1}
    head = LinearHead(encoder_hash=encoder_identity(encoder), tiling=tiling).fit(
        image_features(encoder, list(images.values()), **tiling), [k[:-1] for k in images], CLASSES)
    decoder = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8)).eval()
    (root / "images").mkdir()
    for name, image in images.items():
        tifffile.imwrite(root / "images" / f"{name}.tif", image)
    save_bundle(root / "full.safetensors",
                Bundle(encoder, "test", head, decoder, {**DEFAULT_OPTIONS, "link_distance": 0.0}))
    save_bundle(root / "head_only.safetensors", Bundle(encoder, "test", head=head))
    return root, encoder, head, decoder, images


def test_classify_with_a_bundle_matches_its_head(workspace, tmp_path):
    root, encoder, head, _, images = workspace
    out = tmp_path / "preds.csv"
    assert main(["classify", "--bundle", str(root / "head_only.safetensors"), "--predict", str(root / "images"),
                 "--out", str(out), "--device", "cpu"]) == 0
    rows = read_csv(out)
    assert [r["path"].split("/")[-1] for r in rows] == [f"{n}.tif" for n in sorted(images)]
    probs = head.predict_proba(image_features(encoder, [images[n] for n in sorted(images)], **head.tiling))
    np.testing.assert_allclose([[float(r["prob_dispersed"]), float(r["prob_network"])] for r in rows], probs,
                               atol=1e-6)


def test_segment_with_a_bundle_writes_its_decoders_masks(workspace, tmp_path):
    root, _, _, decoder, images = workspace
    assert main(["segment", "--bundle", str(root / "full.safetensors"), "--predict", str(root / "images"),
                 "--out", str(tmp_path), "--device", "cpu"]) == 0
    for name, image in images.items():
        np.testing.assert_array_equal(tifffile.imread(tmp_path / f"{name}.tif"), segment_image(decoder, image)[1])


def test_analyze_with_a_bundle_segments_classifies_and_measures(workspace, tmp_path, capsys):
    root, _, head, decoder, images = workspace
    out = tmp_path / "run" / "metrics.csv"
    assert main(["analyze", str(root / "images"), "--bundle", str(root / "full.safetensors"), "--out", str(out),
                 "--device", "cpu", "--criterion", "lr"]) == 0
    assert "4 image(s) processed with resnet18 encoder (test)" in capsys.readouterr().out
    rows = read_csv(out)
    assert len(rows) == 4 and all(r["error"] == "" and r["label"] in CLASSES for r in rows)
    for row in rows:
        name = row["path"].split("/")[-1][:-4]
        mask = tifffile.imread(tmp_path / "run" / "masks" / f"{name}.tif")
        np.testing.assert_array_equal(mask, segment_image(decoder, images[name])[1])
        assert float(row["pixel_density"]) == pytest.approx(mask.mean())
        spans = row["spans_lr"] == "True"
        assert row["percolates"] == str(spans)  # --criterion lr overrides the bundle's "both"
    assert sorted(p.name for p in (tmp_path / "run" / "overlays").iterdir()) == [f"{n}.png" for n in sorted(images)]


@pytest.mark.parametrize("argv, message", [
    (["segment", "--bundle", "{root}/head_only.safetensors", "--predict", "{root}/images", "--out", "{tmp}"],
     "head_only.safetensors: this bundle holds no segmentation decoder (resnet18 encoder (test), classifier of 2 classes"),
    (["classify", "--bundle", "{root}/full.safetensors", "--encoder", "default", "--predict", "{root}/images",
      "--out", "{tmp}/p.csv"], "--encoder: not with --bundle"),
])
def test_bundle_misuse_is_a_one_line_error(workspace, tmp_path, capsys, argv, message):
    root = workspace[0]
    argv = [a.format(root=root, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
