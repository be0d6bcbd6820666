"""The default encoder shipped inside the package."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire_ssl.errors import ModelFileError
from napari_nanowire_ssl.models import default as default_module
from napari_nanowire_ssl.models.default import default_encoder_path, load_default_encoder, resolve_encoder
from napari_nanowire_ssl.models.modelfile import read_metadata


def test_shipped_file_is_small_documented_and_loads_offline():
    path = default_encoder_path()
    assert path.stat().st_size < 25e6
    meta = read_metadata(path)
    assert meta["kind"] == "encoder" and meta["weights_dtype"] == "float16"
    training = meta["training"]
    assert training["method"] == "barlow" and training["epochs_completed"] == training["config"]["epochs"]
    encoder = load_default_encoder()
    assert not encoder.training and encoder.backbone == meta["backbone"]
    from napari_nanowire_ssl.models.encoder import encode_images

    feats = encode_images(encoder, np.random.default_rng(0).random((2, 64, 64)).astype(np.float32))
    assert feats.shape == (2, encoder.embedding_dim) and np.isfinite(feats).all()


def test_default_means_the_shipped_file(tmp_path):
    a, b = resolve_encoder("default"), resolve_encoder(None)
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert np.array_equal(va.numpy(), vb.numpy()), key


def test_missing_default_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(default_module, "default_encoder_path", lambda: tmp_path / "gone.safetensors")
    with pytest.raises(ModelFileError, match="gone.safetensors: the default encoder is missing from this installation"):
        load_default_encoder()
