"""Running a subcommand under ``torchrun``: who am I, which files are mine, a process group.

``torchrun --nproc-per-node N`` starts N copies of the command with the
environment variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Without
them (a plain run) the process is rank 0 of a world of 1 and nothing here
talks to other processes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints and writes shared files."""
        return self.rank == 0

    def shard(self, items: list) -> list:
        """This process's share of ``items``: items r, r + N, r + 2N ..."""
        return list(items)[self.rank::self.world]


def ranks() -> Ranks:
    """This process's place under torchrun (rank 0 of 1 when not under torchrun)."""
    return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def rank_device(device: str, local_rank: int):
    """The torch device of ``--device`` for this process (under torchrun: its own GPU)."""
    import torch

    from ..models.device import select_device

    dev = select_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def bundle_parts(args, local_rank: int, part: str):
    """``(encoder, head or decoder)`` of ``--bundle`` on this process's device; ``--encoder`` is refused
    (a bundle's parts only fit its own encoder) and so is a bundle without the ``part`` needed."""
    from ..bundle import load_bundle
    from ..errors import NanowireSSLError

    if args.encoder is not None:
        raise NanowireSSLError("--encoder: not with --bundle (the bundle brings the encoder its parts were "
                               "trained on)")
    bundle = load_bundle(args.bundle, device=rank_device(args.device, local_rank))
    found = bundle.head if part == "head" else bundle.decoder
    if found is None:
        what = "classifier" if part == "head" else "segmentation decoder"
        raise NanowireSSLError(f"{args.bundle}: this bundle holds no {what} ({bundle.describe()})")
    return bundle.encoder, found


@contextlib.contextmanager
def process_group(world: int):
    """A gloo process group for the block when ``world > 1`` (reusing one already started);
    yields ``torch.distributed`` or None for a single process."""
    if world <= 1:
        yield None
        return
    import torch.distributed as dist

    started = not dist.is_initialized()
    if started:
        dist.init_process_group("gloo")
    try:
        yield dist
    finally:
        if started:
            dist.destroy_process_group()
