"""Neural-network core: the grayscale ResNet encoder, device choice, model files.

Importing this package imports torch; nothing else in ``napari_nanowire_ssl``
imports it at import time, so opening napari or the CLI stays fast until a
widget or command actually needs a network.

- :mod:`.device`: pick CUDA / MPS / CPU and the matching autocast context.
- :mod:`.encoder`: :class:`~.encoder.Encoder`, a one-channel ResNet18/34/50
  returning multi-scale feature maps and pooled embeddings, and
  :func:`~.encoder.encode_images` for batched inference on numpy images.
- :mod:`.modelfile`: the safetensors model-file format (no unpickling).
- :mod:`.importers`: torchvision and CEM500K / CEM1.5M checkpoints to encoders.
"""

from .device import autocast_context, select_device
from .encoder import BACKBONES, Encoder, encode_images
from .importers import import_cem500k, import_checkpoint, import_torchvision_state_dict
from .modelfile import load_encoder, load_tensors, read_metadata, save_encoder, save_tensors, tensor_hash

__all__ = [
    "BACKBONES",
    "Encoder",
    "autocast_context",
    "encode_images",
    "import_cem500k",
    "import_checkpoint",
    "import_torchvision_state_dict",
    "load_encoder",
    "load_tensors",
    "read_metadata",
    "save_encoder",
    "save_tensors",
    "select_device",
    "tensor_hash",
]
