"""The ``nanowire-ssl`` command line: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser
and sets ``func`` (called with the parsed arguments, returns an exit status).
Heavy imports (torch, napari) happen inside ``func``, so ``--help`` is instant.
User errors (:class:`~napari_nanowire_ssl.errors.NanowireSSLError`) become a
one-line ``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import NanowireSSLError

# Subcommand modules, in the order of the workflow.
SUBCOMMANDS = ("synth", "info", "pretrain", "classify", "fewshot", "segment", "analyze", "pairvae", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanowire-ssl",
        description="Label-efficient analysis of nanowire TEM images "
        "(Lu, Montz, Emrick & Jayaraman, Digital Discovery 2022).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}_cmd").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NanowireSSLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
