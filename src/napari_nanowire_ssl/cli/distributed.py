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


def load_encoder_for_rank(spec: str, device: str, local_rank: int):
    """The encoder of ``--encoder`` on the chosen device (under torchrun: this process's GPU)."""
    import torch

    from ..models.default import resolve_encoder
    from ..models.device import select_device

    dev = select_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return resolve_encoder(spec, device=dev)


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
