"""Throughput of a pretraining step versus a bare forward+backward of the backbone.

The ratio (bare time / full step time, i.e. full images/s over bare images/s)
measures what augmentation, projector and loss cost on top of the backbone;
the target is at least 0.8. Both are timed in the same run, interleaved, on the
same batch size (2 x B views per step), and the medians are reported.

    python benchmarks/bench_pretrain_throughput.py --backbone resnet18 --image-size 128 --batch-size 32
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from napari_nanowire_ssl.models.device import autocast_context
from napari_nanowire_ssl.ssl.pretrain import Pretrainer, PretrainConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--method", default="barlow")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [rng.random((1024, 1024)).astype(np.float32) for _ in range(4)]
    config = PretrainConfig(method=args.method, backbone=args.backbone, image_size=args.image_size,
                            batch_size=args.batch_size, epochs=1000)
    trainer = Pretrainer(images, config, device=args.device)
    device = trainer.device
    encoder = trainer.encoder
    bare_opt = torch.optim.AdamW(encoder.parameters(), lr=1e-9)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    x = torch.rand(2 * args.batch_size, 1, args.image_size, args.image_size, device=device).contiguous(
        memory_format=fmt)

    def bare_step():
        with autocast_context(device):
            out = encoder.embed(x)
        out.float().mean().backward()
        bare_opt.step()
        bare_opt.zero_grad(set_to_none=True)

    full, bare = [], []
    trainer.train_step()  # warm-up (allocations, cuDNN autotuning)
    bare_step()
    for _ in range(args.steps):
        for fn, times in ((trainer.train_step, full), (bare_step, bare)):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
    n = 2 * args.batch_size
    full_s, bare_s = statistics.median(full), statistics.median(bare)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    print(f"device: {device} ({name}), threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{args.method} {args.backbone} {args.image_size}px, {n} views/step, median of {args.steps}")
    print(f"pretraining step: {n / full_s:.1f} images/s ({full_s * 1000:.0f} ms)")
    print(f"bare forward+backward: {n / bare_s:.1f} images/s ({bare_s * 1000:.0f} ms)")
    print(f"ratio (pretraining / bare throughput): {bare_s / full_s:.2f}")


if __name__ == "__main__":
    main()
