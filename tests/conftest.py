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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module: small CPU inferences on a busy 2-core
    machine run many times faster without thread contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory, monkeypatch):
    """Every test reads and writes its own settings file, never the user's."""
    monkeypatch.setenv("NANOWIRE_SSL_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
