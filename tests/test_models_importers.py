"""Importing torchvision and CEM500K / CEM1.5M checkpoints, checked against torchvision itself."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from napari_nanowire_ssl.errors import ModelFileError
from napari_nanowire_ssl.models import (
    encode_images,
    import_cem500k,
    import_checkpoint,
    import_torchvision_state_dict,
    load_encoder,
    read_metadata,
    save_encoder,
    tensor_hash,
)
from napari_nanowire_ssl.models.encoder import infer_backbone


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN parameters and running statistics, so mishandled buffers show."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)


def _layer4(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision ResNet up to layer4 (the reference computation)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


@pytest.fixture(scope="module")
def torchvision18(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    _randomise_batchnorm(model)
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model.eval(), path


@pytest.fixture(scope="module")
def cem500k(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A file in the published CEM500K MoCoV2 layout, from a random 1-channel resnet50."""
    torch.manual_seed(1)
    model = torchvision.models.resnet50(weights=None)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    _randomise_batchnorm(model)
    state = {f"module.encoder_q.{k}": v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    mlp = {"fc.0.weight": (2048, 2048), "fc.0.bias": (2048,), "fc.2.weight": (128, 2048), "fc.2.bias": (128,)}
    state.update({f"module.encoder_q.{k}": torch.randn(shape) for k, shape in mlp.items()})
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    checkpoint = {"epoch": 200, "arch": "resnet50", "state_dict": state, "norms": [0.57287007, 0.12740536]}
    path = tmp_path_factory.mktemp("cem") / "cem500k_mocov2_resnet50_200ep.pth.tar"
    torch.save(checkpoint, path)
    return model.eval(), path


def test_torchvision_import_matches_torchvision_on_replicated_gray(torchvision18):
    model, path = torchvision18
    encoder = import_torchvision_state_dict(path)
    assert encoder.backbone == "resnet18" and not encoder.training
    assert (encoder.mean, encoder.std) == (0.449, 0.226)
    assert encoder.conv1.weight.shape == (64, 1, 7, 7)
    assert encoder.training_info == {"method": "imported from resnet18.pth", "layout": "torchvision"}
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        features = encoder.forward_features(x)
        rgb = ((x - 0.449) / 0.226).repeat(1, 3, 1, 1)
        expected = _layer4(model, rgb)
        expected_stem = model.relu(model.bn1(model.conv1(rgb)))
    torch.testing.assert_close(features[0], expected_stem, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(features[-1], expected, atol=1e-4, rtol=1e-4)
    assert expected.abs().max() > 0.1  # a meaningful comparison, not of zeros


def test_imported_encoder_survives_save_and_load(torchvision18, tmp_path):
    encoder = import_torchvision_state_dict(torchvision18[1], backbone="resnet18")
    digest = save_encoder(encoder, tmp_path / "imagenet18.safetensors")
    assert read_metadata(tmp_path / "imagenet18.safetensors")["training"]["method"] == "imported from resnet18.pth"
    loaded = load_encoder(tmp_path / "imagenet18.safetensors")
    images = np.random.default_rng(0).random((2, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(encode_images(loaded, images), encode_images(encoder, images))
    assert tensor_hash(loaded.state_dict()) == digest
    assert (loaded.mean, loaded.std) == (0.449, 0.226)


def test_cem500k_import_matches_reference_and_round_trips(cem500k, tmp_path):
    model, path = cem500k
    encoder = import_cem500k(path)
    assert encoder.backbone == "resnet50"
    assert encoder.mean == pytest.approx(0.57287007) and encoder.std == pytest.approx(0.12740536)
    assert encoder.training_info["layout"] == "moco"
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        expected = _layer4(model, (x - encoder.mean) / encoder.std)
        got = encoder.forward_features(x)[-1]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

    digest = save_encoder(encoder, tmp_path / "cem500k.safetensors")
    loaded = load_encoder(tmp_path / "cem500k.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(x), encoder.embed(x), atol=0, rtol=0)
    assert tensor_hash(loaded.state_dict()) == digest == read_metadata(tmp_path / "cem500k.safetensors")["content_hash"]


def _gray_resnet18_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}


def test_swav_layout_without_norms_uses_cem_statistics(tmp_path):
    weights = _gray_resnet18_state(2)
    state = {f"encoder.{k}": v for k, v in weights.items()}
    state["encoder.projection_head.0.weight"] = torch.randn(8, 512)
    state["encoder.prototypes.weight"] = torch.randn(4, 8)
    path = tmp_path / "cem1.5m_swav.pth.tar"
    torch.save({"state_dict": state}, path)
    encoder = import_cem500k(path)
    assert (encoder.backbone, encoder.mean, encoder.std) == ("resnet18", 0.5729, 0.1274)
    assert encoder.training_info["layout"] == "swav"
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_import_checkpoint_detects_the_layout(torchvision18, cem500k, tmp_path):
    assert import_checkpoint(torchvision18[1]).training_info["layout"] == "torchvision"
    assert import_checkpoint(cem500k[1]).training_info["layout"] == "moco"
    encoder = import_torchvision_state_dict(torchvision18[1])
    save_encoder(encoder, tmp_path / "e.safetensors")
    loaded = import_checkpoint(tmp_path / "e.safetensors")
    assert tensor_hash(loaded.state_dict()) == tensor_hash(encoder.state_dict())
    # Random bytes that start as neither a zip (torch.save) nor a pickle (0x80): os.urandom did 1 time in 256.
    (tmp_path / "noise.bin").write_bytes(b"\x00" + np.random.default_rng(0).bytes(999))
    with pytest.raises(ModelFileError, match="noise.bin: truncated or not a safetensors model file"):
        import_checkpoint(tmp_path / "noise.bin")


@pytest.mark.parametrize(
    ("backbone", "constructor"),
    [
        ("resnet18", torchvision.models.resnet18),
        ("resnet34", torchvision.models.resnet34),
        ("resnet50", torchvision.models.resnet50),
    ],
)
def test_backbone_inferred_from_keys(backbone, constructor):
    assert infer_backbone(constructor(weights=None).state_dict()) == backbone


def test_infer_backbone_unknown_layout():
    assert infer_backbone({"conv1.weight": torch.zeros(1)}) is None


class _Evil:
    """Unpickling this would create a file: the loader must refuse before that."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_checkpoints_with_pickled_objects_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": _Evil(marker)}, path)
    with pytest.raises(ModelFileError, match="contains pickled Python objects; only plain tensor checkpoints") as info:
        import_checkpoint(path)
    assert not marker.exists()
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, tmp_path / "args.pth.tar")
    with pytest.raises(ModelFileError, match="args.pth.tar: contains pickled Python objects"):
        import_cem500k(tmp_path / "args.pth.tar")


def test_bad_checkpoints_give_one_line_errors(torchvision18, tmp_path):
    data = torchvision18[1].read_bytes()
    (tmp_path / "half.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pth")
    torch.save({"state_dict": {"model.backbone.conv1.weight": torch.zeros(64, 1, 7, 7)}}, tmp_path / "nested.pth.tar")
    conv1_rgba = {k: v for k, v in _gray_resnet18_state(3).items()}
    conv1_rgba["conv1.weight"] = torch.zeros(64, 4, 7, 7)
    torch.save(conv1_rgba, tmp_path / "rgba.pth")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "stem.pth")
    cases = [
        (import_torchvision_state_dict, "missing.pth", "no such model file", {}),
        (import_torchvision_state_dict, "empty.pth", r"is empty \(0 bytes\)", {}),
        (import_torchvision_state_dict, "half.pth", "truncated or not a PyTorch checkpoint", {}),
        (import_torchvision_state_dict, "other.pth", r"not a recognised ResNet checkpoint \(no 'conv1.weight'", {}),
        (import_cem500k, "other.pth", "has no 'state_dict' entry; not a CEM500K / MoCo / SwAV checkpoint", {}),
        (import_cem500k, "nested.pth.tar", "not a recognised ResNet checkpoint", {}),
        (import_torchvision_state_dict, "rgba.pth", r"conv1.weight has shape \(64, 4, 7, 7\)", {}),
        (import_torchvision_state_dict, "stem.pth", "cannot tell the ResNet backbone from its layers", {}),
        (
            import_torchvision_state_dict,
            "stem.pth",
            r"resnet18 encoder: \d+ missing keys \(bn1.weight, .*\); its layers match no supported ResNet",
            {"backbone": "resnet18"},
        ),
        (
            import_torchvision_state_dict,
            torchvision18[1],
            r"does not match a resnet34 encoder: \d+ missing keys \(layer1\.2\..*; is it a resnet18 file\?",
            {"backbone": "resnet34"},
        ),
    ]
    for importer, name, pattern, kwargs in cases:
        path = tmp_path / name
        with pytest.raises(ModelFileError, match=pattern) as info:
            importer(path, **kwargs)
        assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
