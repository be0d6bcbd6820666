"""The arguments several subcommands share, declared once, and the one way a command loads
its encoder: the same flag has the same name, default and help in every command."""

from __future__ import annotations

import argparse

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps (default auto: CUDA, then MPS, then CPU)"


def add_device(parser, *, when: str = "") -> None:
    """``--device`` (default auto); ``when`` says when it matters, e.g. 'with --bundle'."""
    parser.add_argument("--device", default="auto", help=f"{when}: {DEVICE_HELP}" if when else DEVICE_HELP)


def add_encoder(parser, *, what: str = "encoder model file or checkpoint") -> None:
    """``--encoder FILE|default`` (not given: the encoder shipped with the plugin, or a bundle's own)."""
    parser.add_argument("--encoder", metavar="FILE|default",
                        help=f"{what} (default: the shipped default encoder; a --bundle brings its own)")


def add_seed(parser, *, of: str = "the run") -> None:
    """``--seed K`` (default 0): the same seed gives the same result on the CPU."""
    parser.add_argument("--seed", type=int, default=0, metavar="K", help=f"seed of {of} (default 0)")


def load_encoder(args, local_rank: int = 0):
    """The encoder ``--encoder`` names, on ``--device`` (under torchrun: this process's GPU), in eval mode."""
    from ..models.default import resolve_encoder
    from .distributed import rank_device

    return resolve_encoder(args.encoder or "default", device=rank_device(args.device, local_rank))


def crop_bottom_setting(text: str) -> int | str:
    """``--crop-bottom`` value: ``auto`` (the detected instrument banner) or a number of rows."""
    from ..io.banner import AUTO

    if text == AUTO:
        return AUTO
    try:
        rows = int(text)
    except ValueError:
        rows = -1
    if rows < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of rows >= 0, got {text!r}")
    return rows


def add_crop_bottom(parser, *, default: str | None = "auto", what: str = "the images") -> None:
    """``--crop-bottom auto|ROWS``: the instrument banner left out of every image."""
    parser.add_argument("--crop-bottom", type=crop_bottom_setting, default=default, metavar="auto|ROWS",
                        help=f"leave out this many bottom rows of {what} (an instrument banner); auto: the "
                        "banner each image shows, if any (default " + (default or "auto") + ")")
