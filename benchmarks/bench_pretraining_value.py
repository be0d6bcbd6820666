"""The value of pretraining: few-shot linear-probe accuracy, random init vs pretrained.

Two data sets:
- synthetic: the generator's four morphologies, 30 images per class at 256 px
  (seed 1234, disjoint from the default encoder's training seeds);
- real chip-vs-mat: isolated nanowires on a chip (6 SEM images) versus dense
  fibre / wire mats (5 images: AgNW slice0001, both aramid, both cellulose; the
  AgNW slice0000 is a rescaled copy of slice0001 and is left out), banners cropped.

For 1, 2, 4, 8 labels per class (1, 2, 4 on the real set, which has 5-6 per
class) and 100 random splits (the protocol's default), the median accuracy of the plugin's head
(``LinearHead.for_encoder``: standardised, block-weighted logistic regression) on ``image_features``
(``fewshot.evaluation``). Group-aware real class sets beside the classical peer:
``bench_real_classification.py``.

    python benchmarks/bench_pretraining_value.py [--encoder FILE]
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import torch

from napari_nanowire_ssl.fewshot.classify import LinearHead
from napari_nanowire_ssl.fewshot.evaluation import fewshot_accuracy
from napari_nanowire_ssl.fewshot.features import image_features
from napari_nanowire_ssl.io import read_image
from napari_nanowire_ssl.models.default import default_encoder_path
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import load_encoder
from napari_nanowire_ssl.synth import generate_dataset

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
DUPLICATE = "agnw_network_sem/AgNWN_slice0000.tif"


def synthetic_set():
    images, labels = [], []
    for _, sample in generate_dataset(30, size=256, seed=1234):
        images.append(sample.image)
        labels.append(sample.morphology)
    return images, labels


def real_set():
    images, labels = [], []
    with open(REAL / "manifest.csv") as f:
        for row in csv.DictReader(f):
            if row["file"] == DUPLICATE:
                continue
            data = read_image(REAL / row["file"]).data
            crop = int(row["crop_bottom_px"] or 0)
            images.append(data[:-crop] if crop else data)
            labels.append(row["suggested_morphology"])
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", type=Path, default=default_encoder_path())
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.manual_seed(0)
    pretrained = load_encoder(args.encoder)
    encoders = {"random init": Encoder(pretrained.backbone).eval(), f"pretrained ({args.encoder.name})": pretrained}
    sets = {"synthetic 4-class": (synthetic_set(), (1, 2, 4, 8)), "real chip-vs-mat": (real_set(), (1, 2, 4))}
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; backbone {pretrained.backbone}; {args.repeats} splits")
    print("| data | encoder | " + " | ".join(f"{n} / class" for n in (1, 2, 4, 8)) + " | features (s) |")
    print("|---|---|---|---|---|---|---|")
    for set_name, ((images, labels), shots) in sets.items():
        for enc_name, encoder in encoders.items():
            t0 = time.perf_counter()
            feats = image_features(encoder, images)
            elapsed = time.perf_counter() - t0
            results = fewshot_accuracy(feats, labels, shots, repeats=args.repeats, seed=0,
                                       make_head=lambda: LinearHead.for_encoder(encoder))
            cells = [f"{r.median:.3f} [{r.interval[0]:.2f}-{r.interval[1]:.2f}]" for r in results]
            cells += ["-"] * (4 - len(cells))
            print(f"| {set_name} | {enc_name} | " + " | ".join(cells) + f" | {elapsed:.1f} |")


if __name__ == "__main__":
    main()
