"""Few-label segmentation with the shipped default encoder: accuracy and speed on the CPU.

    .venv/bin/python benchmarks/bench_segmentation.py [--steps 150] [--threads 2]
    .venv/bin/python benchmarks/bench_segmentation.py --big 8192 [--threads 1]

Prints markdown tables (progress goes to stderr):

a. median Dice versus the number of fully labelled training images (1, 2, 4, 8)
   of synthetic dispersed + network images (256 px), tested on 8 held-out
   images of the same classes;
b. median Dice from scribbles (strokes along wire centre lines = 2, strokes
   across open background and beside wires = 1; ``synth.strokes.scribbles``)
   covering < 5 % of the pixels of 4 images, for 3 seeds of strokes and training;
   the strokes alone, then after self-training (``--self-training-steps``
   more steps on confident predictions, the CLI's and widget's default), then
   after one round of corrections as in the widget: strokes on the 3 largest
   errors of each training image's prediction
   (``synth.strokes.correction_strokes``), training on from that decoder;
c. median Dice versus resolution (train and test at 128, 256, 512 px, 4 images);
d. the ISBI 2012 EM set (membranes = label 0 = the "wire" class; train on
   images 00-03, test on 04-11, 512 px) and the synthetic set with 4 images:
   the decoder against a random forest on multiscale filter features and Otsu
   thresholding (dark = wire);
e. speed: start of training to the first prediction of a 1024 x 1024 image
   after 20 steps, seconds per training step, inference time of a 1024 x 1024
   image (median of 3) and megapixels per second.

``--big N`` only predicts an N x N uint8 image (a synthetic 1024 px network
tiled) with the CLI's tiling and prints the time and the process's peak
resident memory.

Every training run uses the CLI's choices (SegmentationTrainer defaults,
crop = min(256, image side), best running-loss state) and a fixed number of
steps; the seed is fixed, the timings are wall clock on a possibly shared machine.
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

from peers import otsu_dice, rf_dice
from real_sets import REAL, load_set

from napari_nanowire_ssl.fewshot.metrics import dice
from napari_nanowire_ssl.fewshot.policy import training_crop
from napari_nanowire_ssl.fewshot.segment import (
    SELF_TRAINING_STEPS,
    SegmentationTrainer,
)
from napari_nanowire_ssl.labels import labels_from_mask
from napari_nanowire_ssl.fewshot.tiling import predict_tiled
from napari_nanowire_ssl.models.default import resolve_encoder
from napari_nanowire_ssl.synth import generate
from napari_nanowire_ssl.synth.strokes import correction_strokes, scribbles

MORPHS = ("network", "dispersed")
SCRIBBLE_SEEDS = 3


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def synth_set(n: int, size: int, offset: int):
    """n images alternating network / dispersed, seeds offset + i."""
    return [generate(MORPHS[i % 2], size=size, seed=offset + i) for i in range(n)]


def train(encoder, images, labels, steps: int, seed: int = 0, decoder=None, self_training: int = 0):
    """Train ``steps`` (+ ``self_training``) steps, continuing ``decoder`` if given; the best model,
    seconds, seconds per step."""
    t0 = time.perf_counter()
    trainer = SegmentationTrainer(encoder, images, labels, crop=training_crop(images), seed=seed, device="cpu",
                                  decoder=decoder)
    events = list(trainer.steps(steps, self_training=self_training))
    model = trainer.restore_best()
    return model, time.perf_counter() - t0, [e.seconds for e in events]


def decoder_dice(model, images, truths) -> list[float]:
    return [dice(predict_tiled(model, im) > 0.5, t) for im, t in zip(images, truths)]


def coverage(labels, masks) -> tuple[float, float]:
    """Fraction of all pixels painted, and of the wire pixels painted as wire."""
    painted = sum(int((lab != 0).sum()) for lab in labels) / sum(lab.size for lab in labels)
    wire = sum(int((lab == 2).sum()) for lab in labels) / sum(int(m.sum()) for m in masks)
    return painted, wire


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def med(values) -> str:
    return f"{np.median(values):.3f}"


def big_inference(encoder, side: int) -> None:
    """Time and peak resident memory of predicting a ``side`` x ``side`` uint8 image (fresh decoder)."""
    import resource

    from napari_nanowire_ssl.fewshot.tiling import segment_image
    from napari_nanowire_ssl.models.decoder import SegmentationModel, UNetDecoder

    model = SegmentationModel(encoder, UNetDecoder(encoder.feature_channels)).eval()
    tile = (generate("network", size=1024, seed=7).image * 255).astype(np.uint8)
    image = np.tile(tile, (-(-side // 1024),) * 2)[:side, :side]

    def peak_gib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux

    before = peak_gib()
    t0 = time.perf_counter()
    segment_image(model, image)
    print(f"{side} x {side} uint8, 512 px tiles, {torch.get_num_threads()} torch threads: "
          f"{time.perf_counter() - t0:.0f} s, peak RSS {peak_gib():.2f} GiB ({before:.2f} GiB before predicting)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--correction-steps", type=int, default=100, help="training steps after the corrections (b)")
    ap.add_argument("--self-training-steps", type=int, default=SELF_TRAINING_STEPS,
                    help="self-training steps after the strokes and after the corrections (b)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--big", type=int, metavar="N", help="only time an N x N prediction and its peak memory")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    encoder = resolve_encoder("default")
    if args.big:
        big_inference(encoder, args.big)
        return 0
    steps = args.steps
    tables = []

    # a. Dice versus number of fully labelled images (256 px).
    test = synth_set(8, 256, offset=0)
    pool = synth_set(8, 256, offset=1000)
    rows, step_seconds, results_a = [], [], {}
    for n in (1, 2, 4, 8):
        model, secs, per_step = train(encoder, [s.image for s in pool[:n]],
                                      [labels_from_mask(s.mask) for s in pool[:n]], steps, args.seed)
        step_seconds += per_step
        d = decoder_dice(model, [s.image for s in test], [s.mask for s in test])
        results_a[n] = d
        rows.append([n, med(d), f"{min(d):.3f}", f"{secs:.0f}"])
        log(f"a: {n} images: median Dice {med(d)} ({secs:.0f} s)")
    tables.append("**a. Synthetic dispersed + network, 256 px, full masks "
                  f"({steps} steps, 8 test images)**\n\n"
                  + table(["training images", "median Dice", "min Dice", "training s"], rows))

    # b. Scribbles on 4 images: SCRIBBLE_SEEDS independent sets of strokes (and training seeds): the strokes
    # alone, then self-training (the CLI's and the widget's default), then one round of corrections on the
    # self-trained prediction of the training images, training on from that decoder (again with self-training).
    rows, d_scr, d_self, d_cor, first_covered, covered = [], [], [], [], 0.0, 0.0
    train_images, train_masks = [s.image for s in pool[:4]], [s.mask for s in pool[:4]]
    test_images, test_masks = [s.image for s in test], [s.mask for s in test]
    for k in range(SCRIBBLE_SEEDS):
        seed = args.seed + k
        rng = np.random.default_rng(seed)
        labs = [scribbles(m, rng) for m in train_masks]
        cov, wire_cov = coverage(labs, train_masks)
        trainer = SegmentationTrainer(encoder, train_images, labs, crop=training_crop(train_images), seed=seed,
                                      device="cpu")
        for _ in trainer.steps(steps):
            pass
        d = decoder_dice(trainer.restore_best(), test_images, test_masks)
        trainer.add_confident_labels()
        for _ in trainer.steps(args.self_training_steps):
            pass
        model = trainer.restore_best()
        ds = decoder_dice(model, test_images, test_masks)
        labs = [correction_strokes(predict_tiled(model, im) > 0.5, m, lab)
                for im, m, lab in zip(train_images, train_masks, labs)]
        cov_corrected, _ = coverage(labs, train_masks)
        model, _, _ = train(encoder, train_images, labs, args.correction_steps, seed, decoder=model.decoder,
                            self_training=args.self_training_steps)
        dc = decoder_dice(model, test_images, test_masks)
        d_scr, d_self, d_cor = d_scr + d, d_self + ds, d_cor + dc
        first_covered, covered = max(first_covered, cov), max(covered, cov_corrected)
        rows.append([seed, f"{cov:.1%}", f"{wire_cov:.1%}", med(d), med(ds), f"{min(ds):.3f}", f"{cov_corrected:.1%}",
                     med(dc), f"{min(dc):.3f}"])
        log(f"b: scribbles seed {seed}, {cov:.2%} of the pixels: median Dice {med(d)}, self-trained {med(ds)}; "
            f"corrected, {cov_corrected:.2%}: {med(dc)}")
    rows.append(["all", f"at most {first_covered:.1%}", "", med(d_scr), med(d_self), f"{min(d_self):.3f}", f"at most {covered:.1%}", med(d_cor),
                 f"{min(d_cor):.3f}"])
    tables.append(f"**b. Scribbles on 4 synthetic images (256 px): {steps} steps on the strokes, then "
                  f"{args.self_training_steps} self-training steps; then one round of corrections "
                  f"({args.correction_steps} + {args.self_training_steps} steps; full masks, a: {med(results_a[4])})**"
                  "\n\n" + table(["seed", "labelled pixels", "of the wire pixels", "median Dice, strokes only",
                                   "median Dice, self-trained", "min Dice, self-trained",
                                   "labelled pixels with corrections", "median Dice, corrected",
                                   "min Dice, corrected"], rows))

    # c. Dice versus resolution, 4 images.
    rows = []
    for size in (128, 256, 512):
        if size == 256:
            d, secs = results_a[4], float("nan")
        else:
            tr, te = synth_set(4, size, offset=1000), synth_set(8, size, offset=0)
            model, secs, _ = train(encoder, [s.image for s in tr], [labels_from_mask(s.mask) for s in tr],
                                   steps, args.seed)
            d = decoder_dice(model, [s.image for s in te], [s.mask for s in te])
        rows.append([size, med(d), f"{min(d):.3f}"])
        log(f"c: {size} px: median Dice {med(d)}")
    tables.append(f"**c. Resolution (4 training images, {steps} steps, 8 test images)**\n\n"
                  + table(["image side (px)", "median Dice", "min Dice"], rows))

    # d. Baselines: ISBI 2012 membranes and the synthetic set with 4 images.
    rows = []
    if (REAL / "isbi2012_em" / "images").is_dir():
        ims, truths, _ = load_set("isbi2012_em")  # membrane (label 0) = the "wire" class
        ims, truths = ims[:12], truths[:12]
        tr_labels = [labels_from_mask(t) for t in truths[:4]]
        model, secs, _ = train(encoder, ims[:4], tr_labels, steps, args.seed)
        dd = decoder_dice(model, ims[4:], truths[4:])
        dr = rf_dice(ims[:4], tr_labels, ims[4:], truths[4:])
        do = otsu_dice(ims[4:], truths[4:])
        rows.append(["ISBI 2012 EM membranes (512 px, train 00-03, test 04-11)", med(dd), med(dr), med(do)])
        log(f"d: ISBI decoder {med(dd)} RF {med(dr)} Otsu {med(do)}")
    else:
        log(f"d: {REAL / 'isbi2012_em'} not found; ISBI row skipped")
    tr = pool[:4]
    dr = rf_dice([s.image for s in tr], [labels_from_mask(s.mask) for s in tr], [s.image for s in test],
                 [s.mask for s in test])
    do = otsu_dice([s.image for s in test], [s.mask for s in test])
    rows.append(["synthetic dispersed + network (256 px, 4 train, 8 test)", med(results_a[4]), med(dr), med(do)])
    tables.append("**d. Against baselines (median Dice; same training pixels, same test images)**\n\n"
                  + table(["data", f"decoder, default encoder ({steps} steps)",
                           "random forest (50 trees, multiscale features)", "Otsu (dark = wire)"], rows))

    # e. Speed.
    big = generate("network", size=1024, seed=7).image
    t0 = time.perf_counter()
    trainer = SegmentationTrainer(encoder, [s.image for s in pool[:4]], [labels_from_mask(s.mask) for s in pool[:4]],
                                  crop=256, seed=args.seed, device="cpu")
    t_setup = time.perf_counter() - t0
    for _ in trainer.steps(20):
        pass
    model = trainer.restore_best()
    t_steps = time.perf_counter() - t0 - t_setup
    predict_tiled(model, big)
    first_preview = time.perf_counter() - t0
    infer = {}
    for tile in (512, 1024):
        times = []
        for _ in range(3):
            t1 = time.perf_counter()
            predict_tiled(model, big, tile=tile)
            times.append(time.perf_counter() - t1)
        infer[tile] = float(np.median(times))
    per_step = float(np.median(step_seconds))
    rows = [
        ["first preview: training start -> 20 steps -> 1024x1024 prediction", f"{first_preview:.1f} s (set-up {t_setup:.1f} s, 20 steps {t_steps:.1f} s, "
         f"prediction {first_preview - t_setup - t_steps:.1f} s)"],
        ["training step (batch 4 x 256 px crops, median over all runs of a)", f"{per_step:.3f} s"],
        ["training step, mean incl. encoder warm-up (runs of a)", f"{np.mean(step_seconds):.3f} s"],
        ["inference 1024x1024, 512 px tiles (CLI default), median of 3",
         f"{infer[512]:.2f} s ({1.048576 / infer[512]:.2f} MP/s)"],
        ["inference 1024x1024, one 1024 px window, median of 3",
         f"{infer[1024]:.2f} s ({1.048576 / infer[1024]:.2f} MP/s)"],
    ]
    tables.append("**e. Speed (CPU)**\n\n" + table(["measure", "value"], rows))

    targets = [
        ["median Dice >= 0.90, 4 fully labelled synthetic images", med(results_a[4]),
         "met" if np.median(results_a[4]) >= 0.90 else "not met"],
        [f"median Dice >= 0.85 from first scribbles, strokes only ({SCRIBBLE_SEEDS} seeds x 8 test images)",
         med(d_scr), "met" if np.median(d_scr) >= 0.85 else "not met"],
        [f"median Dice >= 0.85 from first scribbles on < 5 % of pixels (at most {first_covered:.1%}) with "
         "self-training (the default)", med(d_self),
         "met" if np.median(d_self) >= 0.85 and first_covered < 0.05 else "not met"],
        [f"median Dice >= 0.85 from scribbles + one round of corrections on < 5 % of pixels (at most "
         f"{covered:.1%})", med(d_cor), "met" if np.median(d_cor) >= 0.85 and covered < 0.05 else "not met"],
        ["1024x1024 inference < 3 s on CPU (CLI default tiles)", f"{infer[512]:.2f} s",
         "met" if infer[512] < 3 else "not met"],
        ["first preview within 10 s", f"{first_preview:.1f} s", "met" if first_preview <= 10 else "not met"],
    ]
    tables.append("**Targets**\n\n" + table(["target", "measured", "verdict"], targets))
    machine = (f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, torch "
               f"{torch.__version__}, {torch.get_num_threads()} torch threads, {torch.get_num_interop_threads()} "
               f"interop threads; CPU only; default encoder (ResNet18); total benchmark time "
               f"{time.perf_counter() - t_start:.0f} s")
    print("\n\n".join(tables))
    print()
    print(machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
