"""The U-Net decoder and the segmentation model built on a frozen encoder."""

import pytest
import torch

from napari_nanowire_ssl.models.decoder import WIRE_PRIOR, SegmentationModel, UNetDecoder, pad_to_multiple
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import tensor_hash


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return Encoder("resnet18").eval()


def test_pad_to_multiple_reflects_and_reports_the_size():
    x = torch.arange(40 * 70, dtype=torch.float32).reshape(1, 1, 40, 70)
    padded, size = pad_to_multiple(x, 32)
    assert padded.shape == (1, 1, 64, 96) and size == (40, 70)
    assert torch.equal(padded[..., :40, :70], x)
    assert torch.equal(padded[..., 40, :70], x[..., 38, :])  # reflection about the last row
    same, _ = pad_to_multiple(torch.zeros(2, 64, 32))
    assert same.shape == (2, 64, 32)


@pytest.mark.parametrize("size", [(64, 96), (45, 70)])
def test_logits_have_the_input_size(encoder, size):
    model = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8))
    x = torch.rand(2, 1, *size)
    assert model(x).shape == (2, 1, *size)
    prob = model.predict_proba(x[:, 0])
    assert prob.shape == (2, 1, *size) and 0 <= prob.min() and prob.max() <= 1


def test_stage_widths_double_and_are_capped(encoder):
    decoder = UNetDecoder(encoder.feature_channels, width=16, max_width=32)
    assert [stage.convs[-1][0].out_channels for stage in decoder.stages] == [32, 32, 32, 16]  # strides 16..2


def test_without_evidence_the_model_says_background(encoder):
    """All last-stage features off (a region unlike any training pixel): the head's bias gives the prior."""
    decoder = UNetDecoder(encoder.feature_channels, width=8)
    assert torch.sigmoid(decoder.head(torch.zeros(1, 8, 4, 4))).flatten().tolist() == pytest.approx([WIRE_PRIOR] * 16)
    assert WIRE_PRIOR < 0.5


def test_encoder_is_frozen_and_stays_in_eval(encoder):
    model = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8)).train()
    assert model.encoder is encoder
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    assert not model.encoder.training and model.decoder.training
    model(torch.rand(2, 1, 64, 64)).sum().backward()
    assert all(p.grad is None for p in encoder.parameters())


def test_unfrozen_last_stage_trains_a_private_copy(encoder):
    before = tensor_hash(encoder.state_dict())
    model = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels, width=8), unfreeze_last_stage=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.layer4.") for n in trainable)
    assert all(n.startswith(("encoder.layer4.", "decoder.")) for n in trainable)
    assert model.train().encoder.layer4.training and not model.encoder.layer3.training
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.rand(2, 1, 64, 64)).mean().backward()
    opt.step()
    assert tensor_hash(encoder.state_dict()) == before
    assert not torch.equal(model.encoder.layer4[0].conv1.weight, encoder.layer4[0].conv1.weight)
    # Decoding cached maps without layer4 gives the same logits as the full forward pass.
    model.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        maps = model.encoder.forward_features(x)
        assert torch.allclose(model.decode(maps[:4], (64, 64)), model(x), atol=1e-5)


def test_decoder_must_match_the_encoder(encoder):
    with pytest.raises(ValueError, match="encoder channels"):
        SegmentationModel(encoder, UNetDecoder([64, 256, 512, 1024, 2048]))
