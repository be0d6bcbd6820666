"""The nanowire-ssl command line: help everywhere, info, the headless demo, errors."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_nanowire_ssl.cli import SUBCOMMANDS, main


@pytest.mark.parametrize("command", [[], *[[name] for name in SUBCOMMANDS]])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: nanowire-ssl" in capsys.readouterr().out


def test_console_script_reports_bad_input_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-c", "from napari_nanowire_ssl.cli import main; raise SystemExit(main())",
                             "info", str(tmp_path / "nope.tif")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'nope.tif'}: no such file\n"


def test_info_on_an_image(tmp_path, capsys):
    path = tmp_path / "cal.tif"
    tifffile.imwrite(path, np.arange(40 * 60, dtype=np.uint16).reshape(40, 60), imagej=True,
                     resolution=(1 / 2.5, 1 / 2.5), metadata={"unit": "nm"})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "shape: 40 x 60 px" in out and "dtype: uint16" in out and "pixel size: 2.5 nm" in out


def test_info_on_a_model_file_and_a_broken_one(tmp_path, capsys):
    from napari_nanowire_ssl.models import Encoder, save_encoder

    path = tmp_path / "enc.safetensors"
    digest = save_encoder(Encoder("resnet18"), path, training={"method": "random init"})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "model file (encoder)" in out and "backbone: resnet18" in out and f"content_hash: {digest}" in out
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 3)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}") and err.count("\n") == 1


@pytest.mark.slow
def test_headless_demo_writes_samples_features_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--headless", "--out", str(out)]) == 0
    for name in ("singular", "dispersed", "network", "bundle", "silver_network"):
        assert (out / f"{name}.png").exists() and (out / f"{name}_features.png").exists()
    with open(out / "metrics.csv") as f:
        rows = {row["sample"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"singular", "dispersed", "network", "bundle"}
    assert rows["network"]["percolates"] == "True" and rows["network"]["morphology"] == "network"
    assert rows["dispersed"]["percolates"] == "False"
    from PIL import Image

    mask = np.asarray(Image.open(out / "network_mask.png")) > 0
    assert float(rows["network"]["pixel_density"]) == pytest.approx(mask.mean())
    assert "wrote 4 analysed samples" in capsys.readouterr().out


@pytest.mark.slow
def test_gui_demo_docks_the_widgets_and_saves_a_screenshot(tmp_path):
    from PIL import Image

    shot = tmp_path / "demo.png"
    result = subprocess.run([sys.executable, "-m", "napari_nanowire_ssl.cli", "demo", "--screenshot", str(shot)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    width, height = Image.open(shot).size
    assert width >= 1000 and height >= 600


def test_screenshot_without_a_display_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["demo", "--screenshot", str(tmp_path / "x.png")]) == 2
    assert "--screenshot needs a display" in capsys.readouterr().err
