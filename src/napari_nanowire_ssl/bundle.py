"""A model bundle: everything a session trained, in one safe model file.

A bundle holds the encoder (a reference to the shipped default encoder, by
hash, or its float32 weights), the linear head with its class names, the
segmentation decoder and the options the results depend on (inference tile,
analysis options). It is one ``kind = "bundle"`` file of the plugin's
model-file format (:mod:`.models.modelfile`): the parts' tensors under the
prefixes ``encoder.``, ``head.`` and ``decoder.``, the parts' own metadata
under the entries ``encoder``, ``head`` and ``decoder``. Loading unpickles
nothing and checks that the head and decoder fit the encoder it brings.

The napari session saves and loads bundles; the CLI takes them with
``--bundle FILE`` (``classify``, ``segment``, ``analyze``), and
:mod:`.batch` runs one over a folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelFileError, NanowireSSLError
from .analysis.percolation import ANALYSIS_DEFAULTS
from .fewshot.policy import DEFAULT_TILE, WIRE_THRESHOLD, check_tile

PARTS = ("encoder", "head", "decoder")
DEFAULT_OPTIONS = {"tile": DEFAULT_TILE, "threshold": WIRE_THRESHOLD, **ANALYSIS_DEFAULTS}


@dataclass
class Bundle:
    """An encoder with what was trained on it, and the options to use them with."""

    encoder: object  # models.encoder.Encoder
    encoder_source: str = "default"
    head: object | None = None  # fewshot.classify.LinearHead
    decoder: object | None = None  # models.decoder.SegmentationModel on ``encoder``
    options: dict = field(default_factory=lambda: dict(DEFAULT_OPTIONS))

    def describe(self) -> str:
        """One line: what the bundle can do."""
        parts = [f"{self.encoder.backbone} encoder ({self.encoder_source})"]
        if self.head is not None:
            parts.append(f"classifier of {len(self.head.class_names)} classes ({', '.join(self.head.class_names)})")
        if self.decoder is not None:
            parts.append("segmentation decoder")
        return ", ".join(parts)


def check_options(options: dict, source: str = "bundle") -> dict:
    """The bundle options completed with defaults; one-line error for an unknown or unusable one."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise NanowireSSLError(f"{source}: unknown option(s) {', '.join(unknown)}")
    merged = {**DEFAULT_OPTIONS, **options}
    check_tile(merged["tile"], f"{source}: option tile")
    if not 0 < float(merged["threshold"]) < 1:
        raise NanowireSSLError(f"{source}: option threshold must lie between 0 and 1, got {merged['threshold']!r}")
    if merged["connectivity"] not in (4, 8):
        raise NanowireSSLError(f"{source}: option connectivity must be 4 or 8, got {merged['connectivity']!r}")
    if float(merged["link_distance"]) < 0:
        raise NanowireSSLError(f"{source}: option link_distance must be >= 0, got {merged['link_distance']!r}")
    if merged["criterion"] not in ("both", "any", "lr", "tb"):
        raise NanowireSSLError(f"{source}: option criterion must be both, any, lr or tb, got {merged['criterion']!r}")
    return merged


def _is_default(encoder) -> bool:
    from .models.modelfile import encoder_identity
    from .models.default import default_encoder_path, load_default_encoder

    return default_encoder_path().exists() and encoder_identity(encoder) == encoder_identity(load_default_encoder())


def save_bundle(path: str | os.PathLike, bundle: Bundle) -> str:
    """Write ``bundle`` atomically; return the file's content hash.

    The shipped default encoder is stored as a reference (its hash), any
    other encoder as float32 weights, so heads and decoders still match it
    bit for bit when loaded. A bundle without a head or a decoder is refused:
    it would hold nothing trained.
    """
    from .models.modelfile import encoder_identity
    from .fewshot.segment import decoder_state
    from .models.modelfile import encoder_state, save_tensors

    if bundle.head is None and bundle.decoder is None:
        raise NanowireSSLError("nothing trained to save: train a classifier or a segmentation decoder first")
    identity = encoder_identity(bundle.encoder)
    tensors, metadata = {}, {"kind": "bundle", "options": check_options(bundle.options),
                             "encoder_source": bundle.encoder_source}
    parts = {}
    if _is_default(bundle.encoder):
        metadata["encoder"] = {"reference": "default", "encoder_hash": identity}
    else:
        parts["encoder"] = encoder_state(bundle.encoder)
    if bundle.head is not None:
        if bundle.head.encoder_hash not in (None, identity):
            raise NanowireSSLError("the classifier was trained on another encoder than the bundle's: train it again")
        parts["head"] = bundle.head.state()
    if bundle.decoder is not None:
        if bundle.decoder.encoder is not bundle.encoder:
            raise NanowireSSLError("the decoder sits on another encoder than the bundle's: train it again")
        parts["decoder"] = decoder_state(bundle.decoder, encoder_hash=identity)
    for name, (part_tensors, part_meta) in parts.items():
        tensors.update({f"{name}.{k}": v for k, v in part_tensors.items()})
        metadata[name] = {**part_meta, "encoder_hash": identity}
    return save_tensors(path, tensors, metadata)


def load_bundle(path: str | os.PathLike, *, device="cpu") -> Bundle:
    """Read a bundle written by :func:`save_bundle`, its encoder on ``device``.

    One-line errors name the file: another kind of model file, a default
    encoder that is not the one installed, a part that does not fit.
    """
    from .fewshot.classify import LinearHead
    from .models.modelfile import encoder_identity
    from .fewshot.segment import decoder_from_state
    from .models.default import load_default_encoder
    from .models.modelfile import encoder_from_state, load_tensors

    path = Path(path)
    tensors, meta = load_tensors(path, kind="bundle")
    split = {name: {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(f"{name}.")} for name in PARTS}
    encoder_meta = meta.get("encoder")
    if not isinstance(encoder_meta, dict):
        raise ModelFileError(f"{path}: bundle has no encoder entry: file corrupt or edited")
    if encoder_meta.get("reference") == "default":
        encoder = load_default_encoder(device=device)
        if encoder_identity(encoder) != encoder_meta.get("encoder_hash"):
            raise ModelFileError(f"{path}: was made with another version of the default encoder than the one "
                                 "installed; train again with this version")
    else:
        encoder = encoder_from_state(split["encoder"], encoder_meta, source=str(path), device=device)
    bundle = Bundle(encoder, str(meta.get("encoder_source", path.name)),
                    options=check_options(dict(meta.get("options", {})), source=str(path)))
    if isinstance(meta.get("head"), dict):
        bundle.head = LinearHead.from_state(split["head"], meta["head"], source=str(path), encoder=encoder)
    if isinstance(meta.get("decoder"), dict):
        bundle.decoder = decoder_from_state(split["decoder"], meta["decoder"], encoder, source=str(path))
    if bundle.head is None and bundle.decoder is None:
        raise ModelFileError(f"{path}: bundle holds neither a classifier nor a decoder: file corrupt or edited")
    return bundle
