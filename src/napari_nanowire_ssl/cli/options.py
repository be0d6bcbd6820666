"""The arguments several subcommands share, declared once, and the one way a command loads
its encoder: the same flag has the same name, default and help in every command."""

from __future__ import annotations

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
