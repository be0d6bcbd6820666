"""Few-shot morphology classification on class sets that are not our generator, beside the classical peer.

Sets (``benchmarks/real_classes.py``): ``materials`` and ``emps-dispersion``
(real micrographs), ``synth-thin``, ``synth-sem`` and ``synth-film``
(generator styles other than the one the old features were chosen on; which
sets chose the present features: :data:`CHOSEN_ON`). Crops or figures of one source image (or
paper) are one group: training and test samples always come from different
groups (``group_splits``).

For 1, 2, 4 and 8 labels per class and ``--repeats`` splits (the paper's
protocol; 100 by default), the median balanced accuracy (mean over classes)
of (a) the classical peer: a standardised logistic regression (C = 1) on the
42 pooled multiscale filter + LBP values (``fewshot.texture``), and (b) the
plugin's head (``LinearHead.for_encoder``) on ``image_features``, on the same
splits. Then, for the plugin's head: calibration (expected calibration error,
share of wrong and of right calls flagged uncertain) at 2 and 8 labels;
"label next" (start from 1 label per class, add one image per class chosen by
``label_next`` among the unlabelled images of the training groups, or at
random from them; accuracy on the test groups after); and speed (images/s of ``image_features``,
of one encoder forward pass of the same image, and their ratio).

    python benchmarks/bench_real_classification.py [--sets materials,synth-sem] [--repeats 100]
        [--encoder default|random|FILE] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_classes import KIND, SETS, balanced_accuracy, group_splits, load_class_set  # noqa: E402

from napari_nanowire_ssl.fewshot.classify import LinearHead, is_uncertain, label_next  # noqa: E402
from napari_nanowire_ssl.fewshot.features import FeatureCache, image_features  # noqa: E402
from napari_nanowire_ssl.fewshot.texture import peer_features  # noqa: E402
from napari_nanowire_ssl.io import normalize  # noqa: E402
from napari_nanowire_ssl.models.default import resolve_encoder  # noqa: E402
from napari_nanowire_ssl.models.encoder import Encoder, encode_images  # noqa: E402

SHOTS = (1, 2, 4, 8)
CHOSEN_ON = ("materials", "synth-sem", "synth-film")  # the feature recipe and head defaults were chosen on these


def peer_proba(x_train, y_train, x_test, names):
    """The classical peer: standardised logistic regression (C = 1), columns in ``names`` order."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(x_train), y_train)
    p = model.predict_proba(scaler.transform(x_test))
    return p[:, [list(model.classes_).index(n) for n in names]]


def ece(p: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |accuracy - confidence| averaged over confidence bins."""
    conf, right = p.max(1), p.argmax(1) == truth
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(right[m].mean() - conf[m].mean())
    return float(total)


def speed(encoder, images) -> tuple[float, float]:
    """(images/s of image_features without cache, images/s of one plain forward pass), medians over images."""
    feats, passes = [], []
    for image in images:
        t0 = time.perf_counter()
        image_features(encoder, [image])
        feats.append(time.perf_counter() - t0)
        x = normalize(image)
        t0 = time.perf_counter()
        encode_images(encoder, [x])
        passes.append(time.perf_counter() - t0)
    return 1 / float(np.median(feats)), 1 / float(np.median(passes))


def label_next_gain(feats, labels, groups, head_for, repeats: int, seed: int = 0):
    """Accuracy after adding one image per class to 1 labelled per class: chosen by label_next, and at random."""
    names = sorted(set(labels.tolist()))
    rng = np.random.default_rng(seed + 1)
    suggested, random_ = [], []
    for train, test in group_splits(labels, groups, 2, repeats, seed=seed):
        pool = np.setdiff1d(np.arange(len(labels)), test)  # the images of the training groups
        start = np.array([rng.choice(train[labels[train] == c]) for c in names])
        rest = np.setdiff1d(pool, start)
        head = head_for().fit(feats[start], labels[start], names)
        picks = {"suggested": rest[label_next(head.predict_proba(feats[rest]))[:len(names)]],
                 "random": rng.choice(rest, len(names), replace=False)}
        for name, add in picks.items():
            chosen = np.concatenate([start, add])
            present = sorted(set(labels[chosen].tolist()))
            head = head_for().fit(feats[chosen], labels[chosen], present)
            acc = balanced_accuracy(labels[test], head.predict(feats[test]))
            (suggested if name == "suggested" else random_).append(acc)
    return np.array(suggested), np.array(random_)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--encoder", default="default", help="model file, 'default', or 'random' (resnet18, seed 0)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep image features here between runs")
    parser.add_argument("--speed-images", type=int, default=8, help="images per set timed without cache")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.encoder == "random":  # random weights: what the encoder block is worth without pretraining
        torch.manual_seed(0)
        encoder = Encoder("resnet18").eval()
    else:
        encoder = resolve_encoder(args.encoder)
    cache = FeatureCache(args.cache_dir)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, 1 torch thread, torch {torch.__version__}; "
          f"encoder {args.encoder} ({encoder.backbone}); {args.repeats} splits; balanced accuracy, median "
          "[2.5-97.5 percentiles]; features chosen on: " + ", ".join(CHOSEN_ON))
    accuracy, calibration, nexts, speeds = [], [], [], []
    for name in args.sets.split(","):
        images, labels, groups, names = load_class_set(name)
        texture = np.stack([peer_features(im) for im in images])
        t0 = time.perf_counter()
        feats = image_features(encoder, images, cache=cache)
        t_feats = time.perf_counter() - t0
        head_for = lambda: LinearHead.for_encoder(encoder)  # noqa: E731
        role = "chosen on" if name in CHOSEN_ON else "report"
        rows = {"classical peer (texture LR)": [], "plugin head": []}
        for n in SHOTS:
            peer_acc, our_acc, cal = [], [], {"ece": [], "peer_ece": [], "wrong_flagged": [], "right_flagged": []}
            for train, test in group_splits(labels, groups, n, args.repeats, seed=0):
                truth = np.array([names.index(v) for v in labels[test]])
                p_peer = peer_proba(texture[train], labels[train], texture[test], names)
                p_ours = head_for().fit(feats[train], labels[train], names).predict_proba(feats[test])
                peer_acc.append(balanced_accuracy(truth, p_peer.argmax(1)))
                our_acc.append(balanced_accuracy(truth, p_ours.argmax(1)))
                wrong, flags = p_ours.argmax(1) != truth, is_uncertain(p_ours)
                cal["ece"].append(ece(p_ours, truth))
                cal["peer_ece"].append(ece(p_peer, truth))
                cal["wrong_flagged"].append(flags[wrong].mean() if wrong.any() else np.nan)
                cal["right_flagged"].append(flags[~wrong].mean() if (~wrong).any() else np.nan)
            rows["classical peer (texture LR)"].append(np.array(peer_acc))
            rows["plugin head"].append(np.array(our_acc))
            if n in (2, 8):
                calibration.append((name, n, {k: float(np.nanmedian(v)) for k, v in cal.items()}))
        accuracy.append((name, role, len(images), len(names), rows))
        nexts.append((name, *label_next_gain(feats, labels, groups, head_for, max(args.repeats // 2, 1))))
        fps, pps = speed(encoder, images[:args.speed_images])
        speeds.append((name, images[0].shape, fps, pps, t_feats))
        print(f"done {name}: features of {len(images)} images in {t_feats:.0f} s", file=sys.stderr, flush=True)

    print("\n| set | kind | role | images / classes | method | " + " | ".join(f"{n} / class" for n in SHOTS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(SHOTS))
    for name, role, n_images, n_classes, rows in accuracy:
        for method, results in rows.items():
            cells = [f"{np.median(a):.3f} [{np.percentile(a, 2.5):.2f}-{np.percentile(a, 97.5):.2f}]" for a in results]
            print(f"| {name} | {KIND[name]} | {role} | {n_images} / {n_classes} | {method} | " + " | ".join(cells) + " |")
    print("\n| set | labels / class | ECE plugin head | ECE peer | wrong calls flagged | right calls flagged |")
    print("|---|---|---|---|---|---|")
    for name, n, c in calibration:
        print(f"| {name} | {n} | {c['ece']:.3f} | {c['peer_ece']:.3f} | {c['wrong_flagged']:.2f} | "
              f"{c['right_flagged']:.2f} |")
    print("\n| set | 1 / class + 1 suggested / class | + 1 random / class | mean paired gain | suggested better / worse |")
    print("|---|---|---|---|---|")
    for name, suggested, random_ in nexts:
        gain = suggested - random_
        print(f"| {name} | {np.median(suggested):.3f} | {np.median(random_):.3f} | {gain.mean():+.3f} | "
              f"{(gain > 0).sum()} / {(gain < 0).sum()} of {len(gain)} |")
    print("\n| set | image size | image_features images/s | one forward pass images/s | ratio (passes) | "
          "all features (s) |")
    print("|---|---|---|---|---|---|")
    for name, shape, fps, pps, total in speeds:
        print(f"| {name} | {shape[0]}x{shape[1]} | {fps:.2f} | {pps:.2f} | {pps / fps:.1f} | {total:.0f} |")
    # A 512 px image, the size of the speed target.
    image = np.random.default_rng(0).random((512, 512)).astype(np.float32)
    fps, pps = speed(encoder, [image] * 3)
    print(f"| 512 px (random pixels) | 512x512 | {fps:.2f} | {pps:.2f} | {pps / fps:.1f} | - |")


if __name__ == "__main__":
    main()
