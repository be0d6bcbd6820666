"""Segmentation on the real image sets with expert masks, beside the classical peers.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_real_segmentation.py \
        [--sets isbi2012_em emps_particles deepsem_nanomembranes] [--shots 1 2 4 8 scribbles corrected] \
        [--seeds 0 1 2] [--methods ours random rf otsu] [--model auto]

For every set (:mod:`real_sets`: ISBI 2012 membranes, EMPS particles,
DeepSEM nanomembranes at half size) and seed, one split: the test images are
the same for every method and every number of labelled images. Training on 1,
2, 4, 8 fully labelled images (``N`` = shots; more than a set has left are
skipped), and on ``scribbles``: simulated strokes (``synth.strokes.scribbles``,
stroke counts scaled to the image area, < 5 % of the pixels) on the 4 images
of the 4-shot split; ``corrected``: those strokes, then one round of corrections as a user
makes them after looking at the prediction of the training images
(``synth.strokes.correction_strokes``: the 3 largest wrong regions of each), and
Train again on all the strokes (the widget's workflow on the same image: ours and the
forest train afresh; Otsu has nothing to correct and keeps the strokes' polarity). Methods:

- ``ours``: the plugin's pipeline with its defaults (``fewshot.segment.make_trainer``,
  ``--model``, the CLI's 200 steps + self-training on scribbles) and the shipped encoder;
- ``random``: the same with a random-weight encoder of the same backbone;
- ``rf``: random forest on multiscale filters (``peers.rf_masks``);
- ``otsu``: Otsu's threshold, polarity from the training labels.

Prints, per set, the median Dice over all test images of all seeds, the
pooled Dice (all of them taken together: steadier where a set has few test
images or one with an empty mask), the kinds the pipeline chose, then the
target rows: ours >= RF + 0.05 at 4 images and from scribbles. Progress goes
to stderr.

``--agnw`` instead runs the acceptance case of the shipped AgNW sample and the
speed checks (:func:`agnw_acceptance`, :func:`speed`).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import otsu_masks, otsu_polarity, rf_features, rf_masks
from real_sets import REAL, SETS, load_set, splits

from napari_nanowire_ssl.fewshot.metrics import dice
from napari_nanowire_ssl.fewshot.policy import DEFAULT_TILE, training_crop
from napari_nanowire_ssl.fewshot.segment import (
    SELF_TRAINING_STEPS,
    labelled_fraction,
    make_trainer,
)
from napari_nanowire_ssl.labels import labels_from_mask
from napari_nanowire_ssl.fewshot.averaged import KIND as AVERAGED_KIND
from napari_nanowire_ssl.fewshot.averaged import AveragedModel
from napari_nanowire_ssl.fewshot.tiling import predict_tiled
from napari_nanowire_ssl.models.default import load_default_encoder
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.synth.strokes import correction_strokes, scribbles

STEPS = 200  # the CLI's default (4 epochs x 50 steps)
SCRIBBLE_SHOTS = 4
STROKE_SHOTS = ("scribbles", "corrected")  # shots drawn as strokes on SCRIBBLE_SHOTS images


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def scribble_labels(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``synth.strokes.scribbles`` with its 256 px stroke counts scaled to the image area."""
    scale = max(1.0, mask.size / 256**2)
    return scribbles(mask, rng, n_wire=int(round(8 * scale)), n_open=int(round(6 * scale)),
                     n_edge=int(round(6 * scale)))


def ours(encoder, images, labels, tests, *, model: str, steps: int, seed: int):
    """The pipeline trained on ``labels``: its masks of ``tests``, the model, the seconds taken."""
    t0 = time.perf_counter()
    trainer = make_trainer(encoder, images, labels, model=model, seed=seed, device="cpu",
                           crop=training_crop(images))
    self_training = SELF_TRAINING_STEPS if trainer.has_unpainted else 0
    for _ in trainer.steps(steps, self_training=self_training):
        pass
    net = trainer.restore_best()
    secs = time.perf_counter() - t0
    masks = [predict_tiled(net, im) > 0.5 for im in tests]
    log(f"  {trainer.choice_line()}")
    return masks, net, secs


def corrected_labels(predicted, masks, labels):
    """``labels`` with one round of a user's corrections of the ``predicted`` training masks."""
    return [correction_strokes(p, m, lab) for p, m, lab in zip(predicted, masks, labels)]


AGNW_STROKES = {"n_wire": 10, "n_open": 5, "n_edge": 5}  # 10 wire and 10 background strokes


def agnw_strokes(image: np.ndarray, seed: int = 0):
    """The Otsu mask of a bright-wire image and ~20 strokes drawn from it (``synth.strokes.scribbles``)."""
    from skimage.filters import threshold_otsu

    from napari_nanowire_ssl.io import normalize

    x = normalize(image)
    otsu = x > threshold_otsu(x)
    return otsu, scribbles(otsu, np.random.default_rng(seed), **AGNW_STROKES)


def agnw_acceptance(encoder, seeds=(0, 1, 2)):
    """Shipped AgNW crop: ~20 strokes, default Train; percolation and median wire width vs Otsu's."""
    from importlib.resources import files

    from napari_nanowire_ssl.analysis.measure import analyse_mask
    from napari_nanowire_ssl.fewshot.tiling import segment_image
    from napari_nanowire_ssl.io import read_image

    image = read_image(str(files("napari_nanowire_ssl").joinpath("data", "agnw_network_sem_crop.tif"))).data
    rows = []
    for seed in seeds:
        otsu, labels = agnw_strokes(image, seed)
        ref = analyse_mask(otsu, link_distance=2.0).row
        t0 = time.perf_counter()
        trainer = make_trainer(encoder, [image], [labels], seed=seed)
        for _ in trainer.steps(STEPS, self_training=SELF_TRAINING_STEPS):
            pass
        _, mask = segment_image(trainer.restore_best(), image)
        secs = time.perf_counter() - t0
        row = analyse_mask(mask, link_distance=2.0).row
        ratio = row["median_width_px"] / ref["median_width_px"]
        rows.append([seed, f"{(labels != 0).mean():.1%}", trainer.choice_line().split(" (")[0][7:],
                     row["percolates"], f"{row['median_width_px']:.2f}", f"{ref['median_width_px']:.2f}",
                     f"{ratio:.2f}", f"{row['pixel_density']:.2f} / {ref['pixel_density']:.2f}", f"{secs:.0f}",
                     "met" if row["percolates"] and 1 / 1.5 <= ratio <= 1.5 else "not met"])
        log(f"agnw seed {seed}: {rows[-1]}")
    return ("**Shipped AgNW sample (512 px crop): ~20 strokes drawn from its Otsu mask, default Train**\n\n"
            + table(["seed", "labelled pixels", "model", "percolates", "median width (px)", "Otsu median width (px)",
                     "ratio", "density ours / Otsu", "seconds", "target (percolates, width within 1.5x)"], rows))


def speed(encoder):
    """Default Train on the full 1280 x 919 AgNW slice (strokes from its Otsu mask): first preview and
    total; inference of 1024 x 1024 per model kind; filter-bank cost."""
    from napari_nanowire_ssl.fewshot.pixel_classifier import SIGMAS
    from napari_nanowire_ssl.models.filters import FilterBank
    from napari_nanowire_ssl.io import read_image

    image = read_image(REAL / "agnw_network_sem" / "AgNWN_slice0001.tif").data
    _, labels = agnw_strokes(image)
    t0 = time.perf_counter()
    trainer = make_trainer(encoder, [image], [labels], seed=0)
    first = None
    for event in trainer.steps(STEPS, self_training=SELF_TRAINING_STEPS):
        if event.step + 1 == 20:  # the widget's first preview
            predict_tiled(trainer.model, image)
            first = time.perf_counter() - t0
    net = trainer.restore_best()
    predict_tiled(net, image)
    total = time.perf_counter() - t0
    rows = [[f"default Train on 1280 x 919 ({STEPS} steps + {SELF_TRAINING_STEPS} self-training + "
             f"{trainer.context_steps} context, ~20 strokes) to its prediction",
             f"{total:.1f} s ({trainer.choice_line().split(' (')[0]})"],
            ["first preview (20 steps + prediction of the image)", f"{first:.1f} s"]]
    big = np.random.default_rng(0).random((1024, 1024)).astype(np.float32)
    bank = FilterBank(SIGMAS)  # the pixel classifiers' bank
    times = []
    for _ in range(3):
        t1 = time.perf_counter()
        with torch.inference_mode():
            bank(torch.from_numpy(big)[None, None])
        times.append(time.perf_counter() - t1)
    rows.append([f"filter bank of the pixel classifiers, 1024 x 1024 ({bank.out_channels} channels), median of 3",
                 f"{np.median(times):.2f} s ({1.048576 / np.median(times):.1f} MP/s)"])
    trained = {}
    for kind in ("filters", "filters+encoder", "decoder", "decoder+filters", AVERAGED_KIND,
                 f"{AVERAGED_KIND} (filters+encoder)"):
        if kind.startswith(AVERAGED_KIND):  # what auto trains from full masks: a pixel kind and the decoder
            model = AveragedModel(trained["filters+encoder" if "encoder" in kind else "filters"], trained["decoder"])
        else:
            t = make_trainer(encoder, [image], [labels], model=kind, seed=0)
            for _ in t.steps(2):
                pass
            model = trained[kind] = t.restore_best()
        times = []
        for _ in range(3):
            t1 = time.perf_counter()
            predict_tiled(model, big)
            times.append(time.perf_counter() - t1)
        tiles = "PixelClassifier.min_tile" if kind.startswith(("filters", "pixels")) else f"{DEFAULT_TILE}"
        rows.append([f"inference 1024 x 1024, {kind} (tiles of {tiles} px), median of 3",
                     f"{np.median(times):.2f} s ({1.048576 / np.median(times):.2f} MP/s)"])
    return "**Speed (CPU)**\n\n" + table(["measure", "value"], rows)


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--shots", nargs="+", default=["1", "2", "4", "8", "scribbles"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=["ours", "random", "rf", "otsu"],
                   choices=["ours", "random", "rf", "otsu"])
    p.add_argument("--model", default="auto", help="the pipeline's model (fewshot.segment.MODELS)")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--agnw", action="store_true", help="only the AgNW acceptance case and the speed checks")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    encoders = {"ours": load_default_encoder().eval()}
    if args.agnw:
        print(agnw_acceptance(encoders["ours"], seeds=args.seeds) + "\n\n" + speed(encoders["ours"]))
        print(f"\nMachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s), CPU only; total {time.perf_counter() - t_start:.0f} s")
        return 0
    if "random" in args.methods:
        torch.manual_seed(0)
        encoders["random"] = Encoder(encoders["ours"].backbone).eval()
    rf_cache: dict[int, np.ndarray] = {}

    def cached_features(image):
        key = id(image)
        if key not in rf_cache:
            rf_cache[key] = rf_features(image).astype(np.float32)
        return rf_cache[key]

    out = []
    verdicts = []
    for name in args.sets:
        images, masks, _ = load_set(name)
        results = defaultdict(list)  # (shots, method) -> Dice of every test image of every seed
        # (shots, method) -> (predicted, true) pixels of all of them, flattened: the pooled Dice, steadier
        # than the median where a set has few test images or an empty mask (one false pixel gives it 0)
        pooled = defaultdict(lambda: ([], []))
        chosen, seconds, coverage, corrected_coverage = defaultdict(Counter), defaultdict(list), [], []
        for seed in args.seeds:
            rf_cache.clear()
            for shots in args.shots:
                n = SCRIBBLE_SHOTS if shots in STROKE_SHOTS else int(shots)
                try:
                    train, test = splits(name, n, seed)
                except ValueError as exc:
                    log(f"{name} seed {seed} {shots}: skipped ({exc})")
                    continue
                tr_images, tests = [images[i] for i in train], [images[i] for i in test]
                tr_masks = [masks[i] for i in train]
                truths = [masks[i].astype(bool) for i in test]
                if shots in STROKE_SHOTS:
                    rng = np.random.default_rng([seed, 7])
                    labels = [scribble_labels(m, rng) for m in tr_masks]
                    coverage.append(labelled_fraction(labels))
                else:
                    labels = [labels_from_mask(m) for m in tr_masks]
                for method in args.methods:
                    t0 = time.perf_counter()
                    fixed = labels
                    if method in encoders:
                        run = partial(ours, encoders[method], tr_images, model=args.model, steps=args.steps,
                                      seed=seed)
                        if shots == "corrected":
                            first, net, _ = run(labels, tr_images)
                            fixed = corrected_labels(first, tr_masks, labels)
                            predicted, net, _ = run(fixed, tests)  # afresh, as the widget on the same image
                        else:
                            predicted, net, _ = run(labels, tests)
                        chosen[(shots, method)][net.kind] += 1
                    elif method == "rf":
                        run = partial(rf_masks, tr_images, seed=seed, features=cached_features)
                        if shots == "corrected":
                            fixed = corrected_labels(run(labels, tr_images), tr_masks, labels)
                        predicted = run(fixed, tests)
                    else:
                        predicted = otsu_masks(tests, dark=otsu_polarity(tr_images, labels))
                    seconds[(shots, method)].append(time.perf_counter() - t0)
                    if shots == "corrected":
                        corrected_coverage.append(labelled_fraction(fixed))
                    d = [dice(m, t) for m, t in zip(predicted, truths)]
                    results[(shots, method)] += d
                    pooled[(shots, method)][0].extend(m.ravel() for m in predicted)
                    pooled[(shots, method)][1].extend(t.ravel() for t in truths)
                    log(f"{name} seed {seed} {shots}: {method} median Dice {np.median(d):.3f} "
                        f"({time.perf_counter() - t0:.0f} s) {dict(chosen[(shots, method)]) if method in encoders else ''}")
        rows = []
        for shots in args.shots:
            if not any((shots, m) in results for m in args.methods):
                continue
            row = [f"scribbles on 4 images ({max(coverage):.1%} of pixels at most)" if shots == "scribbles"
                   else f"scribbles + one round of corrections ({max(corrected_coverage):.1%} at most)"
                   if shots == "corrected" else shots]
            for m in args.methods:
                d = results.get((shots, m))
                row.append("" if not d else f"{np.median(d):.3f}")
            row.append(" / ".join(f"{dice(*map(np.concatenate, pooled[(shots, m)])):.3f}" for m in args.methods
                                  if (shots, m) in results))
            kinds = chosen.get((shots, "ours"))
            row.append(", ".join(f"{k} x{c}" for k, c in kinds.items()) if kinds else "")
            row.append(" / ".join(f"{np.median(seconds[(shots, m)]):.0f}" for m in args.methods
                                  if (shots, m) in seconds))
            rows.append(row)
            if shots in ("4", "scribbles") and {"ours", "rf"} <= set(args.methods):
                o, r = np.median(results[(shots, "ours")]), np.median(results[(shots, "rf")])
                verdicts.append([name, shots, f"{o:.3f}", f"{r:.3f}", f"{o - r:+.3f}",
                                 "met" if o >= r + 0.05 else "not met"])
        n_test = len(splits(name, 1, args.seeds[0])[1])
        out.append(f"**{name}** (median Dice over {n_test} test images x {len(args.seeds)} seeds "
                   f"{args.seeds})\n\n" + table(["labelled images", *args.methods,
                                                 "pooled Dice (" + " / ".join(args.methods) + ")",
                                                 "model chosen (ours)",
                                                 "seconds per run (" + " / ".join(args.methods) + ")"], rows))
    if verdicts:
        out.append("**Targets: ours >= random forest + 0.05**\n\n"
                   + table(["set", "labels", "ours", "random forest", "difference", "verdict"], verdicts))
    print("\n\n".join(out))
    print(f"\nMachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), CPU only; model {args.model}, {args.steps} steps; "
          f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
