"""Shared fixtures: the real microscope images beside the project, tmp files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("NANOWIRE_SSL_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder of real microscope images (../shared/data/real), skipped where absent."""
    if not (REAL_DATA / "manifest.csv").exists():
        pytest.skip(f"real images not found at {REAL_DATA} (set NANOWIRE_SSL_REAL_DATA)")
    return REAL_DATA


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread for every test: small CPU inferences on a busy 2-core machine run
    many times faster without thread contention (and results do not depend on the count)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_finish(session):
    """Leave the objects alive after collection (torch, napari, numba: millions of them) out of
    the garbage collector's scans: napari runs a full ``gc.collect()`` each time a layer is
    removed, which otherwise costs most of a GUI test's time."""
    import gc

    gc.collect()
    gc.freeze()


@pytest.fixture
def random_resnet18():
    """A ResNet18 encoder with random weights (seed 0), in eval mode: fast to make, and
    features are features for code that does not judge their quality."""
    import torch

    from napari_nanowire_ssl.models.encoder import Encoder

    torch.manual_seed(0)
    return Encoder("resnet18").eval()


@pytest.fixture
def notices(monkeypatch):
    """What the plugin's widgets told the user, as (kind, message), in order.

    Every widget module imports show_error / show_warning / show_info by name;
    each of those names is replaced in every module of the napari layer.
    """
    import importlib
    import pkgutil

    import napari_nanowire_ssl.napari_plugin as plugin

    said: list[tuple[str, str]] = []
    for info in pkgutil.iter_modules(plugin.__path__):
        module = importlib.import_module(f"{plugin.__name__}.{info.name}")
        for kind in ("show_error", "show_warning", "show_info"):
            if hasattr(module, kind):
                monkeypatch.setattr(module, kind, lambda message, kind=kind: said.append((kind, str(message))))
    return said


class ErrorMessages(list):
    """The error messages among ``notices``, as a live list (compares, indexes, iterates, clears)."""

    def __init__(self, notices):
        super().__init__()
        self.notices = notices

    def _errors(self):
        return [message for kind, message in self.notices if kind == "show_error"]

    def __iter__(self):
        return iter(self._errors())

    def __len__(self):
        return len(self._errors())

    def __getitem__(self, i):
        return self._errors()[i]

    def __eq__(self, other):
        return self._errors() == list(other)

    def clear(self):
        self.notices.clear()


@pytest.fixture
def errors(notices):
    """The error messages the widgets showed, in order."""
    return ErrorMessages(notices)


def read_csv(path) -> list[dict[str, str]]:
    """The rows of a CSV file written by the plugin, as dictionaries keyed by its header."""
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory, monkeypatch):
    """Every test reads and writes its own settings file, never the user's."""
    monkeypatch.setenv("NANOWIRE_SSL_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))


def micrograph_with_banner(shape=(200, 160), banner=30):
    """Noise above (no two rows alike), a black data bar with white "text" blocks at the bottom."""
    import numpy as np

    picture = np.random.default_rng(1).integers(20, 230, shape).astype(np.uint8)
    picture[-banner:] = 0
    picture[-banner + 8: -banner + 16, 10:60] = 255
    picture[-banner + 8: -banner + 16, 100:150] = 255
    return picture


@pytest.fixture
def banner_micrograph():
    """:func:`micrograph_with_banner`: ``banner_micrograph(shape=(h, w), banner=rows)``."""
    return micrograph_with_banner


def choose(combo, layer) -> None:
    """Pick ``layer`` in a layer picker (a magicgui ComboBox) as a user does: its entry in the box."""
    native = combo.native
    native.setCurrentIndex(native.findText(layer.name))
    assert combo.value is layer


def type_into(qtbot, box, text: str) -> None:
    """Type a value into a spin box and press Enter."""
    from qtpy.QtCore import Qt

    edit = box.native.lineEdit()
    edit.selectAll()
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def lines(n=2, size=128, seed=0, ramp=0.0, count=4):
    """``n`` (image, mask) pairs: ``count`` bright 3 px lines on a noisy dark background (brightening by
    ``ramp`` from left to right): the filters' Hessian finds them; with a ramp, no threshold of the image does."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        image = (rng.normal(0.2, 0.05, (size, size)) + np.linspace(0, ramp, size)[None]).astype(np.float32)
        mask = np.zeros((size, size), bool)
        for r in rng.choice(np.arange(8, size - 8), count, replace=False):
            mask[r - 1:r + 2] = True
        image[mask] += 0.6
        out.append((image, mask))
    return out
