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
