"""What an encoder is worth on real images: linear-probe accuracy and decoder Dice, beside random weights
and classical filter features, before and after adaptation to each set's own images.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_encoder_value.py \
        [--encoders default random FILE ...] [--adapt default] [--adapt-steps 60] [--adapt-override FIELD=VALUE ...] \
        [--class-sets materials emps-dispersion] [--seg-sets isbi2012_em emps_particles deepsem_nanomembranes] \
        [--json results.json]

Classification (:mod:`real_classes`): at most ``--per-class`` images per class
(spread evenly over the class), ``--shots`` labelled images per class drawn by
``real_classes.group_splits`` (a micrograph's crops, or a paper's figures, are
all training or all test), ``--repeats`` splits, median balanced accuracy of a
standardised logistic regression (``fewshot.classify.LinearHead`` without block
weights) on the encoder block of the plugin's image features
(``fewshot.features.image_features``, ``feature_blocks``): what the encoder
itself is worth. The classical peer is the same probe on the texture block of
the same features (multiscale filter statistics and LBP histograms,
``fewshot.texture``).

Segmentation (:mod:`real_sets`, split ``--split-seed``, default 0): ``--seg-train`` fully labelled
training images, a U-Net decoder on the frozen encoder
(``fewshot.segment.SegmentationTrainer`` defaults, ``--seg-steps`` steps, best
state), median Dice over the test images; the classical peer is the random
forest on multiscale filters (``peers.rf_dice``), same images.

Adaptation (``--adapt NAME``): the encoder NAME continued for ``--adapt-steps``
self-supervised steps (``ssl.pretrain.adaptation_config``, what the Encoder
tab's *Adapt to open images* and ``pretrain --init`` do) on all images of the
set, without their labels (the user's own unlabelled images, test images
included), then measured again; one adaptation per set. ``--save-adapted DIR``
keeps the adapted encoders (``<encoder>_<set>.safetensors``) and
``--encoders`` takes such files back.

Everything runs on one CPU thread. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import rf_dice  # noqa: E402
from real_classes import balanced_accuracy, group_splits, load_class_set  # noqa: E402
from real_sets import load_set, splits  # noqa: E402

from napari_nanowire_ssl.fewshot.classify import LinearHead  # noqa: E402
from napari_nanowire_ssl.fewshot.features import feature_blocks, image_features  # noqa: E402
from napari_nanowire_ssl.fewshot.metrics import dice  # noqa: E402
from napari_nanowire_ssl.fewshot.segment import SegmentationTrainer  # noqa: E402
from napari_nanowire_ssl.labels import labels_from_mask  # noqa: E402
from napari_nanowire_ssl.fewshot.tiling import predict_tiled  # noqa: E402
from napari_nanowire_ssl.io import normalize  # noqa: E402
from napari_nanowire_ssl.models.default import load_default_encoder  # noqa: E402
from napari_nanowire_ssl.models.encoder import Encoder  # noqa: E402
from napari_nanowire_ssl.models.modelfile import load_encoder, save_encoder  # noqa: E402
from napari_nanowire_ssl.ssl.pretrain import Pretrainer, adaptation_config  # noqa: E402

FILTERS = "filter features"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_encoders(specs: list[str]) -> dict[str, Encoder]:
    out = {}
    for spec in specs:
        if spec == "default":
            out["default"] = load_default_encoder()
        elif spec == "random":
            torch.manual_seed(0)
            out["random"] = Encoder("resnet18").eval()
        else:
            out[Path(spec).stem] = load_encoder(spec)
    return out


def adapt(encoder: Encoder, images: list[np.ndarray], steps: int, seed: int = 0,
          overrides: dict | None = None) -> tuple[Encoder, float]:
    """``encoder`` continued on ``images`` (no labels) for ``steps`` steps; (adapted copy, seconds)."""
    t0 = time.perf_counter()
    config = adaptation_config(encoder, steps=steps, seed=seed, **(overrides or {}))
    trainer = Pretrainer(images, config, device="cpu", init=encoder, init_source="benchmark")
    for event in trainer.steps():
        if event.step % 20 == 0:
            log(f"  adapt step {event.step + 1}/{steps}: loss {event.loss:.4g}, {event.images_per_s:.0f} img/s")
    return trainer.encoder.eval(), time.perf_counter() - t0


def encoder_and_texture(encoder, images) -> tuple[np.ndarray, np.ndarray]:
    """The encoder block and the texture block of the plugin's image features."""
    features, blocks = image_features(encoder, images), feature_blocks(encoder)
    return features[:, blocks["encoder"]], features[:, blocks["texture"]]


def probe(features: np.ndarray, labels, groups, shots: int, repeats: int) -> float:
    """Median balanced accuracy of the linear probe over the group splits."""
    scores = []
    for train, test in group_splits(labels, groups, shots, repeats, seed=0):
        head = LinearHead().fit(features[train], labels[train])
        scores.append(balanced_accuracy(labels[test], head.predict(features[test])))
    return float(np.median(scores))


def keep(encoder: Encoder, folder: Path | None, name: str) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        save_encoder(encoder, folder / f"{name}.safetensors")


def subsample(labels, per_class: int) -> np.ndarray:
    keep = []
    for cls in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == cls)
        keep.extend(idx[np.unique(np.linspace(0, idx.size - 1, min(per_class, idx.size)).round().astype(int))])
    return np.array(sorted(keep))


def decoder_dice(encoder, train_images, train_masks, tests, truths, steps: int) -> float:
    trainer = SegmentationTrainer(encoder, train_images, [labels_from_mask(m) for m in train_masks],
                                  device="cpu", seed=0)
    for _ in trainer.steps(steps):
        pass
    net = trainer.restore_best()
    return float(np.median([dice(predict_tiled(net, normalize(im)) > 0.5, t) for im, t in zip(tests, truths)]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoders", nargs="+", default=["random", "default"])
    p.add_argument("--adapt", nargs="*", default=[], help="encoders (names as in the table) to adapt per set")
    p.add_argument("--adapt-steps", type=int, default=60)
    p.add_argument("--adapt-override", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="PretrainConfig fields to set instead of adaptation_config's (JSON values), "
                        "e.g. frozen_encoder_steps=0 lr=0")
    p.add_argument("--class-sets", nargs="*", default=["materials", "emps-dispersion"])
    p.add_argument("--seg-sets", nargs="*", default=["isbi2012_em", "emps_particles", "deepsem_nanomembranes"])
    p.add_argument("--per-class", type=int, default=15)
    p.add_argument("--shots", type=int, default=4)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--seg-train", type=int, default=2)
    p.add_argument("--split-seed", type=int, default=0, help="which real_sets split of the Dice sets")
    p.add_argument("--seg-steps", type=int, default=100)
    p.add_argument("--no-filters", action="store_true", help="skip the classical peers")
    p.add_argument("--save-adapted", type=Path, default=None, metavar="DIR")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.adapt_override)}
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    encoders = make_encoders(args.encoders)
    results: dict[str, dict[str, float]] = {}  # set -> method -> figure
    seconds: dict[str, float] = {}

    for name in args.class_sets:
        images, labels, groups, _ = load_class_set(name)
        kept = subsample(labels, args.per_class)
        images, labels, groups = [images[i] for i in kept], labels[kept], groups[kept]
        log(f"{name}: {len(images)} images, {len(set(labels.tolist()))} classes")
        row = results.setdefault(f"{name} (accuracy)", {})
        for enc_name, encoder in encoders.items():
            t0 = time.perf_counter()
            encoded, texture = encoder_and_texture(encoder, images)
            row[enc_name] = probe(encoded, labels, groups, args.shots, args.repeats)
            if not args.no_filters and FILTERS not in row:
                row[FILTERS] = probe(texture, labels, groups, args.shots, args.repeats)
            log(f"  {enc_name}: {row[enc_name]:.3f} ({time.perf_counter() - t0:.0f} s)")
            if enc_name in args.adapt:
                adapted, secs = adapt(encoder, images, args.adapt_steps, overrides=overrides)
                seconds[f"{name} adapt {enc_name}"] = secs
                keep(adapted, args.save_adapted, f"{enc_name}_{name}")
                row[f"{enc_name} adapted"] = probe(encoder_and_texture(adapted, images)[0], labels, groups,
                                                   args.shots, args.repeats)
                log(f"  {enc_name} adapted: {row[f'{enc_name} adapted']:.3f} (adaptation {secs:.0f} s)")

    for name in args.seg_sets:
        images, masks, _ = load_set(name)
        train, test = splits(name, args.seg_train, args.split_seed)
        tr_images, tr_masks = [images[i] for i in train], [masks[i] for i in train]
        tests, truths = [images[i] for i in test], [masks[i] for i in test]
        log(f"{name}: {len(train)} training, {len(test)} test images")
        row = results.setdefault(f"{name} (Dice)", {})
        if not args.no_filters:
            row[FILTERS] = float(np.median(rf_dice(tr_images, [labels_from_mask(m) for m in tr_masks], tests,
                                                   truths)))
            log(f"  random forest: {row[FILTERS]:.3f}")
        for enc_name, encoder in encoders.items():
            t0 = time.perf_counter()
            row[enc_name] = decoder_dice(encoder, tr_images, tr_masks, tests, truths, args.seg_steps)
            log(f"  {enc_name}: {row[enc_name]:.3f} ({time.perf_counter() - t0:.0f} s)")
            if enc_name in args.adapt:
                adapted, secs = adapt(encoder, images, args.adapt_steps, overrides=overrides)
                seconds[f"{name} adapt {enc_name}"] = secs
                keep(adapted, args.save_adapted, f"{enc_name}_{name}")
                row[f"{enc_name} adapted"] = decoder_dice(adapted, tr_images, tr_masks, tests, truths, args.seg_steps)
                log(f"  {enc_name} adapted: {row[f'{enc_name} adapted']:.3f} (adaptation {secs:.0f} s)")

    methods = list(dict.fromkeys(m for row in results.values() for m in row))
    print("| set (figure) | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for set_name, row in results.items():
        print(f"| {set_name} | " + " | ".join(f"{row[m]:.3f}" if m in row else "" for m in methods) + " |")
    for key, secs in seconds.items():
        print(f"{key}: {secs:.0f} s for {args.adapt_steps} steps")
    print(f"\nMachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, CPU; "
          f"{args.shots} shots x {args.repeats} splits, <= {args.per_class} images per class; segmentation "
          f"{args.seg_train} training images, {args.seg_steps} steps; total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "adapt_seconds": seconds, "args": vars(args)},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
