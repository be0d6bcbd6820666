"""``nanowire-ssl info PATH``: what a file is (image or model file)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import NanowireSSLError

MODEL_SUFFIXES = (".safetensors",)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="describe an image file (shape, dtype, pixel size) or a model file (metadata)",
        description="Print what a file is: for an image its shape, dtype and pixel size; "
        "for a model file its metadata (backbone, normalisation, training, hash).",
    )
    p.add_argument("path", type=Path, metavar="PATH")
    p.set_defaults(func=run)


def run(args) -> int:
    path: Path = args.path
    if path.suffix.lower() in MODEL_SUFFIXES:
        from ..models.modelfile import read_metadata

        meta = read_metadata(path)
        print(f"{path}: model file ({meta.get('kind', '?')})")
        for key, value in meta.items():
            text = value if isinstance(value, str) else json.dumps(value)
            print(f"  {key}: {text}")
        return 0
    from ..io import read_image

    if not path.exists():
        raise NanowireSSLError(f"{path}: no such file")
    image = read_image(path)
    meta = image.metadata
    kind = f"stack of {image.data.shape[0]} images" if image.is_stack else "image"
    h, w = image.data.shape[-2:]
    size = f"{image.pixel_size_nm:.4g} nm" if image.pixel_size_nm else "not calibrated"
    print(f"{path}: {meta.get('format', '?')} {kind}")
    print(f"  shape: {h} x {w} px" + (f" x {image.data.shape[0]}" if image.is_stack else ""))
    print(f"  dtype: {meta.get('dtype', '?')}")
    print(f"  pixel size: {size}")
    print(f"  intensity range: {float(image.data.min()):g} .. {float(image.data.max()):g}")
    return 0
