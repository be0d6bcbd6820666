"""The plugin's model-file format: safetensors with self-describing metadata.

One format for encoders and for the heads and decoders built on them. A file
is a plain `safetensors <https://github.com/huggingface/safetensors>`_ file:
tensors plus a str -> str metadata header. Loading never unpickles anything,
so opening a model file from a colleague cannot run code.

Metadata entries (non-string values are JSON-encoded; the entry ``json_keys``
lists which, so :func:`read_metadata` returns them decoded):

- ``format`` = ``"napari-nanowire-ssl"``, ``format_version`` = ``"1"``
- ``kind``: ``"encoder"``, ``"linear_head"``, ``"decoder"`` or ``"bundle"``
- ``package_version``: the plugin version that wrote the file
- ``content_hash``: :func:`tensor_hash` of the tensors, checked on load
- encoders: ``backbone``, ``input_size``, ``in_channels``, ``norm_mean``,
  ``norm_std``, ``training`` (method, data, epochs, or ``imported from ...``)
- files that depend on an encoder: ``encoder_hash``, the encoder's content hash

Files are written to a temporary file and renamed into place, so a crash or a
full disk never leaves a half-written model under the final name.
"""

from __future__ import annotations

import hashlib
import weakref
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import safetensors
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import __version__
from ..errors import ModelFileError, NanowireSSLError, check_file
from .device import select_device
from .encoder import BACKBONES, Encoder

FORMAT = "napari-nanowire-ssl"
FORMAT_VERSION = "1"
KINDS = ("encoder", "linear_head", "decoder", "bundle", "pairvae")
_RESERVED = ("format", "format_version", "package_version", "content_hash", "json_keys")


_IDENTITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encoder_identity(encoder) -> str:
    """:func:`tensor_hash` of an encoder's weights: the ``encoder_hash`` that heads, decoders, bundles and
    adapted encoders record, the one way it is computed.

    Computed once per encoder object (hashing a ResNet50 takes a while):
    weights are assumed frozen once anything has been trained on them.
    """
    if encoder not in _IDENTITIES:
        _IDENTITIES[encoder] = tensor_hash(encoder.state_dict())
    return _IDENTITIES[encoder]


def tensor_hash(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes, in sorted name order.

    Independent of device and memory layout, so an encoder's state dict on
    the GPU hashes the same as the file it was saved to.
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping) -> str:
    """Write ``tensors`` with ``metadata`` (must include ``kind``) atomically; return the content hash.

    ``format``, ``format_version``, ``package_version`` and ``content_hash``
    are filled in here and override any given values.
    """
    path = Path(path)
    if metadata.get("kind") not in KINDS:
        raise ValueError(f"metadata 'kind' must be one of {KINDS}, got {metadata.get('kind')!r}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    digest = tensor_hash(tensors)
    values = {k: v for k, v in metadata.items() if k not in _RESERVED}
    values.update(format=FORMAT, format_version=FORMAT_VERSION, package_version=__version__, content_hash=digest)
    header = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in values.items()}
    header["json_keys"] = json.dumps(sorted(k for k, v in values.items() if not isinstance(v, str)))
    # A unique name beside the target (same file system, so the rename is atomic);
    # created by save_file itself so the file gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    if not path.parent.is_dir():
        raise ModelFileError(f"{path}: cannot write the model file: folder {path.parent} does not exist")
    try:
        save_file(tensors, tmp, metadata=header)
        os.replace(tmp, path)
    except (OSError, safetensors.SafetensorError) as e:
        raise ModelFileError(f"{path}: cannot write the model file ({str(e).splitlines()[0]})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return digest


def check_model_path(path: Path) -> None:
    """Refuse a missing path, a folder or an empty file, naming it."""
    check_file(path, ModelFileError, "model file")


def _parse_header(path: Path, raw: Mapping[str, str] | None, kind: str | None) -> dict:
    """Decode and validate a raw safetensors header (format, version, kind)."""
    raw = raw or {}
    if raw.get("format") != FORMAT:
        found = f"format {raw['format']!r}" if "format" in raw else "no 'format' entry"
        raise ModelFileError(
            f"{path}: is a safetensors file from another program ({found}), not a {FORMAT} model file"
        )
    version = raw.get("format_version", "")
    if not version.isdigit():
        raise ModelFileError(f"{path}: bad format_version {version!r}: file corrupt or edited")
    if int(version) > int(FORMAT_VERSION):
        raise ModelFileError(
            f"{path}: uses model format version {version}, newer than this napari-nanowire-ssl "
            f"{__version__} reads (up to {FORMAT_VERSION}); update the plugin"
        )
    meta: dict = dict(raw)
    try:
        for key in json.loads(raw.get("json_keys", "[]")):
            meta[key] = json.loads(raw[key])
    except (ValueError, KeyError, TypeError):
        raise ModelFileError(f"{path}: unreadable metadata: file corrupt or edited") from None
    meta.pop("json_keys", None)
    if kind is not None and meta.get("kind") != kind:
        found = meta.get("kind")
        what = f"is {_article(found)} file" if isinstance(found, str) and found else "has no 'kind' entry"
        raise ModelFileError(f"{path}: {what}, expected {_article(kind)}")
    return meta


def _open(path: Path):
    try:
        return safe_open(path, framework="pt", device="cpu")
    except (safetensors.SafetensorError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{path}: truncated or not a safetensors model file ({reason})") from None


def read_metadata(path: str | os.PathLike, *, kind: str | None = None) -> dict:
    """The file's metadata, JSON values decoded; reads the header only (cheap).

    Checks the format, its version and, when given, the ``kind``.
    """
    path = Path(path)
    check_model_path(path)
    with _open(path) as f:
        return _parse_header(path, f.metadata(), kind)


def load_tensors(path: str | os.PathLike, *, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``(tensors on the CPU, metadata)``, verifying format, ``kind`` and the content hash."""
    path = Path(path)
    check_model_path(path)
    with _open(path) as f:
        meta = _parse_header(path, f.metadata(), kind)
        try:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (safetensors.SafetensorError, OSError) as e:
            raise ModelFileError(f"{path}: cannot read tensors ({str(e).splitlines()[0]})") from None
    if tensor_hash(tensors) != meta.get("content_hash"):
        raise ModelFileError(f"{path}: content hash mismatch: file corrupt or edited")
    return tensors, meta


def encoder_state(encoder: Encoder, *, training: dict | None = None, dtype: str = "float32") -> tuple[dict, dict]:
    """``(tensors, metadata)`` of an ``encoder`` model file (also embedded in bundles)."""
    if dtype not in ("float32", "float16"):
        raise NanowireSSLError(f"model files store float32 or float16 weights, not {dtype!r}")
    state = {
        k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v for k, v in encoder.state_dict().items()
    }
    metadata = {
        "kind": "encoder",
        "backbone": encoder.backbone,
        "input_size": encoder.input_size,
        "in_channels": 1,
        "norm_mean": encoder.mean,
        "norm_std": encoder.std,
        "training": encoder.training_info if training is None else training,
        "weights_dtype": dtype,
    }
    return state, metadata


def save_encoder(
    encoder: Encoder, path: str | os.PathLike, *, training: dict | None = None, dtype: str = "float32"
) -> str:
    """Save ``encoder`` as an ``encoder`` model file; return its content hash.

    ``training`` describes how the weights were obtained (method, data,
    epochs ...); by default ``encoder.training_info``. ``dtype="float16"``
    halves the file (used for the shipped default encoder); loading always
    gives float32 weights.
    """
    return save_tensors(path, *encoder_state(encoder, training=training, dtype=dtype))


def encoder_from_state(tensors: dict, meta: dict, *, source: str, device: str | torch.device = "cpu") -> Encoder:
    """Rebuild the encoder of :func:`encoder_state` output read back from ``source`` (a file), in eval mode."""
    missing = [k for k in ("backbone", "norm_mean", "norm_std", "input_size") if k not in meta]
    if missing:
        raise ModelFileError(f"{source}: metadata lacks {', '.join(missing)}: file corrupt or edited")
    if meta["backbone"] not in BACKBONES:
        raise ModelFileError(
            f"{source}: backbone {meta['backbone']!r} is not supported (supported: {', '.join(BACKBONES)})"
        )
    if meta.get("in_channels", 1) != 1:
        raise ModelFileError(f"{source}: has {meta['in_channels']} input channels; encoders here take 1 (grayscale)")
    encoder = Encoder(meta["backbone"], mean=meta["norm_mean"], std=meta["norm_std"], input_size=meta["input_size"])
    encoder.load_checked_state_dict(tensors, source=str(source))
    encoder.training_info = meta.get("training", {})
    return encoder.to(select_device(device)).eval()


def load_encoder(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Encoder:
    """Load an encoder model file onto ``device`` (see :func:`select_device`), in eval mode."""
    tensors, meta = load_tensors(path, kind="encoder")
    return encoder_from_state(tensors, meta, source=str(path), device=device)
