"""The default encoder shipped inside the package, and resolving ``--encoder`` values.

``default_encoder.safetensors`` (in ``napari_nanowire_ssl/data``) was pretrained
by this project's own code (see ``docs/default-encoder.md``); it loads offline.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ..errors import ModelFileError
from .encoder import Encoder

DEFAULT_ENCODER_FILE = "default_encoder.safetensors"


def default_encoder_path() -> Path:
    return Path(str(files("napari_nanowire_ssl").joinpath("data", DEFAULT_ENCODER_FILE)))


def load_default_encoder(*, device="cpu") -> Encoder:
    """The shipped encoder; a clear error if the installation lacks it."""
    from .modelfile import load_encoder

    path = default_encoder_path()
    if not path.exists():
        raise ModelFileError(f"{path}: the default encoder is missing from this installation; reinstall the plugin")
    return load_encoder(path, device=device)


def resolve_encoder(spec: str | Path | None = "default", *, device="cpu") -> Encoder:
    """``None`` or ``"default"``: the shipped encoder; otherwise a model file or a
    torchvision / CEM500K checkpoint (see :func:`.importers.import_checkpoint`)."""
    if spec is None or str(spec) == "default":
        return load_default_encoder(device=device)
    from .importers import import_checkpoint

    return import_checkpoint(Path(spec)).to(device).eval()
