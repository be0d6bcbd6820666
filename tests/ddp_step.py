"""Run by tests/test_ssl_pretrain.py under torchrun: one DDP pretraining step per rank.

Each rank writes the hash of its encoder weights before and after the step and
how many images its shard holds, so the test can check that DDP kept the
replicas identical while each rank trained on its own data.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from napari_nanowire_ssl.ssl.pretrain import Pretrainer, PretrainConfig


def weights_hash(module: torch.nn.Module) -> str:
    """Hash of the trainable parameters. BatchNorm running statistics are
    buffers updated from each rank's local batch (rank 0's are the ones written)."""
    h = hashlib.sha256()
    for key, value in sorted(module.named_parameters()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(out: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.random((96, 96)).astype(np.float32) for _ in range(6)]
    config = PretrainConfig(backbone="resnet18", image_size=32, epochs=1, batch_size=4,
                            projector_dims=(64, 64, 64))
    trainer = Pretrainer(images, config, device="cpu")
    before = weights_hash(trainer.encoder)
    trainer.train_step()
    after = weights_hash(trainer.encoder)
    record = {"before": before, "after": after, "shard": len(trainer.pool.images),
              "world": trainer.world_size}
    (out / f"rank{trainer.rank}.json").write_text(json.dumps(record))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
