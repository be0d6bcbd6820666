"""The safetensors model-file format: round trips, hashes, atomic writes, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import napari_nanowire_ssl
from napari_nanowire_ssl.errors import ModelFileError, NanowireSSLError
from napari_nanowire_ssl.models import (
    Encoder,
    encode_images,
    load_encoder,
    load_tensors,
    read_metadata,
    save_encoder,
    save_tensors,
    tensor_hash,
)
from napari_nanowire_ssl.models import modelfile


@pytest.fixture(scope="module")
def encoder18() -> Encoder:
    torch.manual_seed(0)
    encoder = Encoder("resnet18", mean=0.45, std=0.2, input_size=128)
    for module in encoder.modules():  # non-trivial running statistics, so buffers must round-trip
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return encoder.eval()


@pytest.fixture(scope="module")
def saved(encoder18, tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("models") / "encoder.safetensors"
    digest = save_encoder(encoder18, path, training={"method": "simclr", "data": "synthetic", "epochs": 3})
    return path, digest


def test_encoder_round_trip_gives_identical_embeddings_and_hash(encoder18, saved):
    path, digest = saved
    loaded = load_encoder(path)
    assert not loaded.training
    assert loaded.config == encoder18.config
    assert loaded.training_info == {"method": "simclr", "data": "synthetic", "epochs": 3}
    images = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(encode_images(loaded, images), encode_images(encoder18, images))
    assert digest == tensor_hash(loaded.state_dict()) == tensor_hash(encoder18.state_dict())
    assert len(digest) == 64


def test_metadata_is_complete_and_typed(saved):
    path, digest = saved
    meta = read_metadata(path)
    assert meta == {
        "format": "napari-nanowire-ssl",
        "format_version": "1",
        "kind": "encoder",
        "backbone": "resnet18",
        "input_size": 128,
        "in_channels": 1,
        "norm_mean": 0.45,
        "norm_std": 0.2,
        "training": {"method": "simclr", "data": "synthetic", "epochs": 3},
        "weights_dtype": "float32",
        "package_version": napari_nanowire_ssl.__version__,
        "content_hash": digest,
    }
    with safe_open(path, framework="pt") as f:  # what other tools see: plain strings
        raw = f.metadata()
    assert raw["kind"] == "encoder" and json.loads(raw["training"])["epochs"] == 3


def test_generic_tensors_round_trip_with_nested_metadata(tmp_path):
    tensors = {
        "weight": torch.randn(3, 4, dtype=torch.float16),
        "bias": torch.arange(3, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
    }
    meta = {"kind": "linear_head", "classes": ["wire", "particle"], "encoder_hash": "ab" * 32, "code": "1"}
    digest = save_tensors(tmp_path / "head.safetensors", tensors, meta)
    loaded, got = load_tensors(tmp_path / "head.safetensors", kind="linear_head")
    assert loaded.keys() == tensors.keys()
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value)
    assert got["classes"] == ["wire", "particle"] and got["code"] == "1" and got["encoder_hash"] == "ab" * 32
    assert got["content_hash"] == digest == tensor_hash(tensors)


def test_tensor_hash_covers_names_dtypes_shapes_and_values():
    base = {"a": torch.zeros(2, 3), "b": torch.ones(4)}
    digest = tensor_hash(base)
    assert tensor_hash({"b": torch.ones(4), "a": torch.zeros(2, 3)}) == digest  # order-free
    nhwc = torch.zeros(1, 2, 3, 3).contiguous(memory_format=torch.channels_last)
    assert tensor_hash({"x": nhwc}) == tensor_hash({"x": torch.zeros(1, 2, 3, 3)})  # layout-free
    changed = [
        {"a": torch.zeros(2, 3), "c": torch.ones(4)},
        {"a": torch.zeros(2, 3, dtype=torch.int32), "b": torch.ones(4)},  # same bytes, other dtype
        {"a": torch.zeros(3, 2), "b": torch.ones(4)},
        {"a": torch.zeros(2, 3), "b": torch.tensor([1.0, 1.0, 1.0, 1.0 + 1e-6])},
    ]
    assert len({digest, *(tensor_hash(t) for t in changed)}) == 5


def test_write_is_atomic(encoder18, saved, tmp_path, monkeypatch):
    path = tmp_path / "encoder.safetensors"
    path.write_bytes(Path(saved[0]).read_bytes())
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(modelfile, "save_file", crash)
    with pytest.raises(ModelFileError, match="cannot write the model file.*No space left"):
        save_encoder(encoder18, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["encoder.safetensors"]


def test_overwrite_and_missing_folder(encoder18, tmp_path):
    path = tmp_path / "e.safetensors"
    save_tensors(path, {"x": torch.ones(2)}, {"kind": "decoder"})
    digest = save_encoder(encoder18, path)
    assert read_metadata(path)["content_hash"] == digest
    assert read_metadata(path)["training"] == {"method": "random init"}
    assert os.listdir(tmp_path) == ["e.safetensors"]
    with pytest.raises(ModelFileError, match="folder .*nowhere does not exist"):
        save_encoder(encoder18, tmp_path / "nowhere" / "e.safetensors")


def _edit_one_tensor(src: Path, dst: Path) -> None:
    with safe_open(src, framework="pt") as f:
        raw = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["layer1.0.conv1.weight"][0, 0, 0, 0] += 0.01
    save_file(tensors, dst, metadata=raw)


def _bad_files(saved_path: Path, tmp: Path) -> list[tuple[str, Path, str]]:
    data = saved_path.read_bytes()
    cases = []

    def case(name, pattern, write):
        path = tmp / f"{name}.safetensors"
        write(path)
        cases.append((name, path, pattern))

    case("missing", "no such model file", lambda p: None)
    case("empty", r"the model file is empty \(0 bytes\)", lambda p: p.write_bytes(b""))
    case("truncated", "truncated or not a safetensors model file", lambda p: p.write_bytes(data[: len(data) // 2]))
    case("random", "truncated or not a safetensors model file", lambda p: p.write_bytes(os.urandom(4096)))
    case(
        "foreign",
        r"safetensors file from another program \(no 'format' entry\)",
        lambda p: save_file({"w": torch.ones(2)}, p),
    )
    case(
        "other_format",
        r"another program \(format 'diffusers'\)",
        lambda p: save_file({"w": torch.ones(2)}, p, metadata={"format": "diffusers"}),
    )
    case(
        "newer",
        "uses model format version 2, newer than",
        lambda p: save_file({"w": torch.ones(2)}, p, metadata={"format": "napari-nanowire-ssl", "format_version": "2"}),
    )
    case(
        "decoder",
        "is a decoder file, expected an encoder",
        lambda p: save_tensors(p, {"w": torch.ones(2)}, {"kind": "decoder"}),
    )
    r18 = Encoder("resnet18").state_dict()
    r50_meta = {"kind": "encoder", "backbone": "resnet50", "input_size": 224, "norm_mean": 0.5, "norm_std": 0.25}
    case(
        "other_backbone",
        r"does not match a resnet50 encoder: 198 missing keys \(layer1\.0\.conv3\.weight, .*\); "
        r"is it a resnet18 file\?",
        lambda p: save_tensors(p, r18, r50_meta),
    )
    case("edited", "content hash mismatch: file corrupt or edited", lambda p: _edit_one_tensor(saved_path, p))
    return cases


def test_bad_model_files_give_one_line_errors_naming_the_file(saved, tmp_path):
    cases = _bad_files(saved[0], tmp_path)
    assert len(cases) == 10
    for name, path, pattern in cases:
        with pytest.raises(ModelFileError, match=pattern) as info:
            load_encoder(path)
        message = str(info.value)
        assert message.startswith(str(path)) and "\n" not in message, name


def test_read_metadata_checks_kind_without_loading_tensors(saved, tmp_path):
    path = tmp_path / "head.safetensors"
    save_tensors(path, {"w": torch.ones(2)}, {"kind": "linear_head"})
    assert read_metadata(path, kind="linear_head")["kind"] == "linear_head"
    with pytest.raises(ModelFileError, match="is a linear_head file, expected an encoder"):
        read_metadata(path, kind="encoder")
    with pytest.raises(ModelFileError, match="is an encoder file, expected a decoder"):
        load_tensors(saved[0], kind="decoder")


def test_half_precision_file_is_half_the_size_and_loads_as_float32(tmp_path):
    torch.manual_seed(0)
    encoder = Encoder("resnet18").eval()
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_encoder(encoder, full)
    save_encoder(encoder, half, dtype="float16")
    assert half.stat().st_size < 0.51 * full.stat().st_size
    assert read_metadata(half)["weights_dtype"] == "float16"
    loaded = load_encoder(half)
    assert loaded.conv1.weight.dtype == torch.float32
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(x), encoder.embed(x), rtol=2e-2, atol=2e-3)
    with pytest.raises(NanowireSSLError, match="float32 or float16 weights, not 'int8'"):
        save_encoder(encoder, tmp_path / "x.safetensors", dtype="int8")
