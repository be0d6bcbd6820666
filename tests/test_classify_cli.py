"""``nanowire-ssl classify`` and ``nanowire-ssl fewshot`` end to end on small synthetic data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_nanowire_ssl.cli import main
from napari_nanowire_ssl.cli.classify_cmd import merge_parts, part_path, write_predictions
from napari_nanowire_ssl.fewshot.classify import UNCERTAIN_BELOW, label_next
from napari_nanowire_ssl.models.default import default_encoder_path
from napari_nanowire_ssl.models.encoder import Encoder
from napari_nanowire_ssl.models.modelfile import save_encoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A random resnet18 model file, a second one, and a 4-class synthetic set (4 per class, 96 px)."""
    root = tmp_path_factory.mktemp("classify")
    torch.manual_seed(0)
    save_encoder(Encoder("resnet18"), root / "enc.safetensors")
    torch.manual_seed(1)
    save_encoder(Encoder("resnet18"), root / "other.safetensors")
    assert main(["synth", str(root / "data"), "--per-class", "4", "--size", "96"]) == 0
    return root


def test_fewshot_writes_tables_and_plot(workspace, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["fewshot", str(workspace / "data"), "--encoder", str(workspace / "enc.safetensors"),
                 "--shots", "1,2,4", "--repeats", "3", "--out", str(out), "--cache-dir", str(tmp_path / "c")])
    assert code == 0
    printed = capsys.readouterr()
    assert "data/masks is not taken as a class" in printed.err
    assert "skipping 4 shots: class 'bundle' has only 4 images" in printed.out
    per_split = rows(out / "fewshot.csv")
    assert per_split[0] == ["shots", "repeat", "accuracy"] and len(per_split) == 1 + 2 * 3
    assert all(0 <= float(r[2]) <= 1 for r in per_split[1:])
    summary = rows(out / "summary.csv")
    assert summary[0] == ["shots", "median", "ci_low", "ci_high", "n_test"]
    assert [(r[0], r[4]) for r in summary[1:]] == [("1", "12"), ("2", "8")]  # 16 images - shots x 4 classes
    assert (out / "fewshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(out / "fewshot.png").size[0] > 100
    assert len(list((tmp_path / "c").glob("*.npy"))) == 16


def test_fewshot_refuses_impossible_shots_and_bad_lists(workspace, tmp_path, capsys):
    args = ["fewshot", str(workspace / "data"), "--encoder", str(workspace / "enc.safetensors"), "--out", str(tmp_path)]
    assert main(args + ["--shots", "4,8"]) == 2
    assert "class 'bundle' has only 4 images; no shot count in 4,8 leaves test images" in capsys.readouterr().err
    assert main(args + ["--shots", "1,x"]) == 2
    assert "--shots: expected comma-separated positive integers, got '1,x'" in capsys.readouterr().err


def test_classify_trains_saves_and_reloads_the_head(workspace, tmp_path):
    data, enc = workspace / "data", str(workspace / "enc.safetensors")
    out, head = tmp_path / "preds.csv", tmp_path / "head.safetensors"
    targets = [str(data / "network"), str(data / "singular" / "singular_0000.png")]
    assert main(["classify", "--train", str(data), "--predict", *targets, "--out", str(out),
                 "--encoder", enc, "--save-head", str(head), "--device", "cpu"]) == 0
    table = rows(out)
    classes = ["bundle", "dispersed", "network", "singular"]
    assert table[0] == ["path", "label"] + [f"prob_{c}" for c in classes] + ["uncertain", "label_next"]
    assert [Path(r[0]).name for r in table[1:]] == [f"network_000{i}.png" for i in range(4)] + ["singular_0000.png"]
    for r in table[1:]:
        probs = np.array(r[2:6], dtype=float)
        assert abs(probs.sum() - 1) < 1e-4 and r[1] == classes[int(probs.argmax())]
        assert r[6] == ("yes" if probs.max() < UNCERTAIN_BELOW else "")
    # label_next: the rank of each image in label_next's order of all the classified images.
    probs = np.array([r[2:6] for r in table[1:]], dtype=float)
    assert [int(table[1 + i][7]) for i in label_next(probs)] == [1, 2, 3, 4, 5]
    # The training images themselves are separable by a linear head on 512-d features.
    assert [r[1] for r in table[1:]] == ["network"] * 4 + ["singular"]
    again = tmp_path / "again.csv"
    assert main(["classify", "--head", str(head), "--predict", *targets, "--out", str(again), "--encoder", enc]) == 0
    assert rows(again) == table


def test_classify_errors(workspace, tmp_path, capsys):
    data, enc = workspace / "data", str(workspace / "enc.safetensors")
    head = tmp_path / "head.safetensors"
    base = ["--predict", str(data / "network"), "--out", str(tmp_path / "p.csv")]
    assert main(["classify", "--train", str(data), *base, "--encoder", enc, "--save-head", str(head)]) == 0
    capsys.readouterr()
    assert main(["classify", "--head", str(head), *base, "--encoder", str(workspace / "other.safetensors")]) == 2
    assert f"error: {head}: was trained on encoder " in capsys.readouterr().err

    bad = tmp_path / "bad"
    for name in ("a", "b", "empty"):
        (bad / name).mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(bad / name / "x.png")
    assert main(["classify", "--train", str(bad), *base, "--encoder", enc]) == 2
    assert f"error: {bad / 'empty'}: class folder holds no image files" in capsys.readouterr().err
    (bad / "empty").rmdir()
    (bad / "b" / "broken.png").write_bytes(b"not a png at all")
    assert main(["classify", "--train", str(bad), *base, "--encoder", enc]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad / 'b' / 'broken.png'}: ")
    assert main(["classify", "--head", str(head), *base, "--encoder", enc, "--save-head", str(head)]) == 2
    assert "--save-head: needs --train" in capsys.readouterr().err


def test_classify_skips_an_unreadable_image_and_keeps_the_truth_in_line(workspace, tmp_path, capsys):
    data, enc = workspace / "data", str(workspace / "enc.safetensors")
    pred = tmp_path / "pred"
    for cls in ("network", "singular"):
        (pred / cls).mkdir(parents=True)
        for f in sorted((data / cls).glob("*.png"))[:2]:
            (pred / cls / f.name).write_bytes(f.read_bytes())
    (pred / "network" / "a_broken.png").write_bytes(b"not a png at all")  # sorts first in its class
    out = tmp_path / "p.csv"
    train = ["classify", "--train", str(data), "--encoder", enc, "--truth-from-folders", "--out", str(out)]
    assert main([*train, "--predict", str(pred)]) == 0
    captured = capsys.readouterr()
    assert "classified 4 of 5 images into 4 classes" in captured.out and "(1 failed)" in captured.out
    assert [line for line in captured.err.splitlines() if line.startswith("warning:")] == [
        line for line in captured.err.splitlines() if line.startswith(f"warning: {pred / 'network' / 'a_broken.png'}: ")]
    table = rows(out)
    assert [Path(r[0]).parent.name for r in table[1:]] == [r[-1] for r in table[1:]] == ["network"] * 2 + ["singular"] * 2
    before = out.read_bytes()
    assert main([*train, "--predict", str(pred / "network" / "a_broken.png")]) == 2
    assert f"error: {pred / 'network' / 'a_broken.png'}: " in capsys.readouterr().err and out.read_bytes() == before


def test_merge_restores_the_original_order(tmp_path):
    files = [f"img{i}.png" for i in range(7)]
    probs = np.eye(2)[np.arange(7) % 2]
    out = tmp_path / "preds.csv"
    parts = [part_path(out, r) for r in range(3)]
    for r in range(3):  # rank r classified files r, r + 3, ...; rank 1 could not read img4.png
        kept = [k for k in range(r, 7, 3) if k != 4]
        write_predictions(parts[r], [files[k] for k in kept], probs[kept], ["even", "odd"])
    merge_parts(out, parts, files)
    table = rows(out)
    assert [r[0] for r in table[1:]] == files[:4] + files[5:]
    assert [r[1] for r in table[1:]] == ["even", "odd", "even", "odd", "odd", "even"]
    assert not any(p.exists() for p in parts)


def test_classify_folder_trees_with_truth_from_folders(workspace, tmp_path, capsys):
    data, enc = workspace / "data", str(workspace / "enc.safetensors")
    tree = tmp_path / "tree"  # class folders with images in nested sub-folders too
    for cls in ("network", "singular"):
        for i, f in enumerate(sorted((data / cls).glob("*.png"))):
            target = tree / cls / ("deep" if i % 2 else "") / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes())
    out = tmp_path / "preds.v1.csv"  # a dotted name: the matrix goes to preds.v1_confusion.csv
    assert main(["classify", "--train", str(tree), "--predict", str(tree), "--truth-from-folders",
                 "--out", str(out), "--encoder", enc]) == 0
    printed = capsys.readouterr().out
    assert "temperature" in printed and "not calibrated" not in printed  # 4 images per class
    table = rows(out)
    assert table[0][-3:] == ["uncertain", "label_next", "truth"] and len(table) == 1 + 8
    assert {Path(r[0]).parent.name for r in table[1:]} == {"network", "singular", "deep"}
    truth = [r[-1] for r in table[1:]]
    assert truth == ["network"] * 4 + ["singular"] * 4
    accuracy = np.mean([r[1] == r[-1] for r in table[1:]])
    assert f"accuracy {accuracy:.3f} against the folder names" in printed
    confusion = rows(tmp_path / "preds.v1_confusion.csv")
    assert confusion[0] == ["truth \\ predicted", "network", "singular"]
    counts = np.array([[int(v) for v in r[1:]] for r in confusion[1:]])
    assert counts.sum() == 8 and counts.trace() == round(accuracy * 8) and list(counts.sum(1)) == [4, 4]
    assert (tmp_path / "preds.v1_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "loose.png").write_bytes((data / "network" / "network_0000.png").read_bytes())
    assert main(["classify", "--train", str(tree), "--predict", str(tmp_path / "loose.png"), "--truth-from-folders",
                 "--out", str(out), "--encoder", enc]) == 2
    assert "loose.png: --truth-from-folders needs every image in a class sub-folder" in capsys.readouterr().err
    single = tmp_path / "single"  # one image per class: the summary says the probabilities are raw
    for cls in ("network", "singular"):
        (single / cls).mkdir(parents=True)
        (single / cls / "a.png").write_bytes((data / cls / f"{cls}_0000.png").read_bytes())
    assert main(["classify", "--train", str(single), "--predict", str(tmp_path / "loose.png"),
                 "--out", str(tmp_path / "single.csv"), "--encoder", enc]) == 0
    assert ("temperature 1.00; probabilities not calibrated (that takes at least 2 labelled images per "
            "class)") in capsys.readouterr().out
    # The few-shot evaluation takes the same tree.
    assert main(["fewshot", str(tree), "--encoder", enc, "--shots", "1,2", "--repeats", "2",
                 "--out", str(tmp_path / "eval")]) == 0
    assert "8 images in 2 classes (network 4, singular 4)" in capsys.readouterr().out


@pytest.mark.skipif(not default_encoder_path().exists(), reason="the default encoder is not built yet")
def test_classify_with_the_default_encoder(workspace, tmp_path):
    out = tmp_path / "p.csv"
    data = workspace / "data"
    assert main(["classify", "--train", str(data), "--predict", str(data / "bundle"), "--out", str(out)]) == 0
    assert len(rows(out)) == 1 + 4


@pytest.mark.slow
def test_classify_under_torchrun_matches_one_process(workspace, tmp_path):
    import os
    import subprocess
    import sys

    data, enc = workspace / "data", str(workspace / "enc.safetensors")
    args = ["classify", "--train", str(data), "--predict", str(data / "network"), str(data / "bundle"),
            "--encoder", enc, "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "single.csv")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "napari_nanowire_ssl.cli", *args, "--out", str(tmp_path / "ddp.csv")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert rows(tmp_path / "ddp.csv") == rows(tmp_path / "single.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.csv", "single.csv"]  # parts removed
