"""The package installs as a napari plugin napari really finds, and imports cheaply."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from importlib.resources import files

import pytest

from conftest import ROOT

PLUGIN = "napari-nanowire-ssl"
WIDGETS = {"Nanowire workflow", "Encoder", "Pretrain encoder", "Classify morphology", "Segment nanowires",
           "Analyse morphology", "Bundle and batch", "Cross-reconstruct"}
SAMPLES = {"singular", "dispersed", "network", "bundle", "silver_network", "pairvae_pair"}


def test_installed_manifest_is_the_top_level_file():
    installed = files("napari_nanowire_ssl").joinpath("napari.yaml").read_text()
    assert installed == (ROOT / "napari.yaml").read_text()


def test_npe2_validate_passes():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", PLUGIN],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout.lower()


def test_npe2_discovers_widgets_samples_and_reader():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest(PLUGIN)
    assert {w.display_name for w in manifest.contributions.widgets} == WIDGETS
    assert {s.key for s in manifest.contributions.sample_data} == SAMPLES
    readers = list(pm.iter_compatible_readers(["image.dm4"]))
    assert [r.command for r in readers if r.command.startswith(PLUGIN)] == [f"{PLUGIN}.get_dm_reader"]
    for command in manifest.contributions.commands:  # every python_name resolves
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.id


def test_import_does_not_load_qt_or_torch():
    code = (
        "import sys, napari_nanowire_ssl, napari_nanowire_ssl.io, napari_nanowire_ssl.cli;"
        "napari_nanowire_ssl.cli.build_parser();"
        "heavy = [m for m in ('torch', 'qtpy', 'PyQt6', 'napari') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_built_wheel_carries_the_manifest(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("napari_nanowire_ssl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        manifest = zf.read("napari_nanowire_ssl/napari.yaml").decode()
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        entry_text = zf.read(entry_points).decode()
    assert manifest == (ROOT / "napari.yaml").read_text()
    assert "napari_nanowire_ssl/data/agnw_network_sem_crop.tif" in names
    assert f"{PLUGIN} = napari_nanowire_ssl:napari.yaml" in entry_text


def test_a_warning_from_the_plugins_code_fails_the_test():
    """pyproject's filterwarnings turns warnings raised in napari_nanowire_ssl modules into errors."""
    import warnings

    code = compile('import warnings; warnings.warn("drifted")', "plugin_module.py", "exec")
    with pytest.raises(UserWarning, match="drifted"):
        exec(code, {"__name__": "napari_nanowire_ssl.some_module"})
    with warnings.catch_warnings(record=True) as caught:  # elsewhere it stays a warning
        exec(code, {"__name__": "some_library"})
    assert [str(w.message) for w in caught] == ["drifted"]
