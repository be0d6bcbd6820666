"""Do suggested anchors beat random picks for one- and two-shot classification?

The user labels the images :func:`suggest_anchors` proposes and trains on them.
To get about n labelled images per class over four classes, 4n anchors are
suggested over a pool of unlabelled images (k-means with k = 4n); a class that
receives no anchor is a failure mode (the head cannot predict it; counted).
Compared with (b) 4n random images, not stratified (classes can be missing as
well) and (c) n random images per class (the paper's protocol, which assumes
the labels are known beforehand). Each repetition draws a new pool of 25
images per class from 40 generated per class (synthetic four-class set,
256 px); the head is tested on the rest of the pool.

    python benchmarks/bench_anchors.py [--repeats 20] [--encoder FILE]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from napari_nanowire_ssl.fewshot.anchors import suggest_anchors
from napari_nanowire_ssl.fewshot.classify import LinearHead
from napari_nanowire_ssl.fewshot.features import block_weights, feature_blocks, image_features
from napari_nanowire_ssl.models.default import default_encoder_path, resolve_encoder
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.synth import CLASSES, generate_dataset

POOL_PER_CLASS = 25


def score(feats, labels, train, encoder) -> tuple[float, int]:
    """(accuracy on the images not in ``train``, number of classes without a training image)."""
    present = sorted(set(labels[train]))
    test = np.setdiff1d(np.arange(len(labels)), train)
    if len(present) < 2:
        return float((labels[test] == present[0]).mean()), len(CLASSES) - len(present)
    head = LinearHead.for_encoder(encoder).fit(feats[train], labels[train], present)
    return float((head.predict(feats[test]) == labels[test]).mean()), len(CLASSES) - len(present)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    if args.encoder == "default" and not default_encoder_path().exists():
        print("NOTE: the default encoder is absent; using a random-init resnet18 instead")
        torch.manual_seed(0)
        encoder, enc_name = Encoder("resnet18").eval(), "random resnet18"
    else:
        encoder, enc_name = resolve_encoder(args.encoder), str(args.encoder)
    images, labels = [], []
    for _, sample in generate_dataset(40, size=256, seed=args.seed):
        images.append(sample.image)
        labels.append(sample.morphology)
    labels = np.array(labels)
    t0 = time.perf_counter()
    all_feats = image_features(encoder, images)
    t_feat = time.perf_counter() - t0
    weights = block_weights(feature_blocks(encoder))  # k-means distances weigh the blocks as the head does
    results: dict[tuple[str, int], list[tuple[float, int]]] = {}
    for rep in range(args.repeats):
        rng = np.random.default_rng(rep)
        pool = np.concatenate([rng.choice(np.flatnonzero(labels == c), POOL_PER_CLASS, replace=False)
                               for c in CLASSES])
        feats, y = all_feats[pool], labels[pool]
        for n in (1, 2):
            picks = {
                "(a) suggested anchors": suggest_anchors(feats, 4 * n, seed=rep, weights=weights),
                "(b) random, not stratified": rng.choice(len(y), 4 * n, replace=False),
                "(c) random, n per class": np.concatenate(
                    [rng.choice(np.flatnonzero(y == c), n, replace=False) for c in CLASSES]),
            }
            for name, train in picks.items():
                results.setdefault((name, n), []).append(score(feats, y, train, encoder))
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; encoder {enc_name}; features of {len(images)} images in {t_feat:.0f} s")
    print(f"{args.repeats} pools of {POOL_PER_CLASS} images per class (4 classes, 256 px, seed {args.seed})\n")
    print("| labelled images | 1-shot median acc | runs missing a class | 2-shot median acc | runs missing a class |")
    print("|---|---|---|---|---|")
    for name in ("(a) suggested anchors", "(b) random, not stratified", "(c) random, n per class"):
        cells = []
        for n in (1, 2):
            acc, missing = zip(*results[(name, n)])
            cells += [f"{np.median(acc):.3f} [{np.percentile(acc, 2.5):.2f}-{np.percentile(acc, 97.5):.2f}]",
                      f"{sum(m > 0 for m in missing)} / {len(missing)}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
