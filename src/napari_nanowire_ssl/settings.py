"""Settings that persist between napari sessions: a small JSON file in the user's config folder.

The dock widgets start from these values (device, which encoder to load first,
inference tile size, training batch size) and write them back when the user
changes them, so a laptop user picks "cpu" or a tile size once. The file is
``<user config dir>/napari-nanowire-ssl/settings.json`` (``platformdirs``);
the environment variable ``NANOWIRE_SSL_CONFIG_DIR`` points elsewhere (tests,
shared installations). The command line does not read it: a command's result
depends only on its arguments.

A damaged or hand-edited file never stops the plugin: :func:`load_settings`
falls back to the defaults for what it cannot use and says why in one line.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .errors import NanowireSSLError
from .fewshot.policy import DEFAULT_TILE, check_tile

CONFIG_DIR_ENV = "NANOWIRE_SSL_CONFIG_DIR"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Settings:
    """What the widgets start from; see the module docstring."""

    device: str = "auto"  # auto = CUDA, then MPS, then CPU
    encoder: str = "default"  # "default" (the shipped encoder) or a model file
    tile: int = DEFAULT_TILE  # inference window in px (fewshot.policy)
    batch_size: int = 4  # training crops per step

    def validated(self) -> Settings:
        """``self`` when every value is usable; otherwise a one-line error naming the setting."""
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device):
            raise NanowireSSLError(f"setting 'device': {self.device!r} is not auto, cpu, mps, cuda or cuda:N")
        if not isinstance(self.encoder, str) or not self.encoder:
            raise NanowireSSLError(f"setting 'encoder': {self.encoder!r} is not 'default' or a file path")
        check_tile(self.tile, "setting 'tile'")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 256:
            raise NanowireSSLError(f"setting 'batch_size': {self.batch_size!r} is not a whole number from 1 to 256")
        return self


def settings_path() -> Path:
    """Where the settings live (``$NANOWIRE_SSL_CONFIG_DIR`` or the user's config folder)."""
    folder = os.environ.get(CONFIG_DIR_ENV)
    if not folder:
        import platformdirs

        folder = platformdirs.user_config_dir("napari-nanowire-ssl", appauthor=False)
    return Path(folder) / "settings.json"


def load_settings(path: Path | None = None) -> tuple[Settings, str | None]:
    """``(settings, problem)``: the saved settings, defaults where absent or unusable.

    ``problem`` is None, or one line naming the file and what was ignored.
    """
    path = settings_path() if path is None else Path(path)
    if not path.exists():
        return Settings(), None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return Settings(), f"{path}: settings unreadable ({exc}); using the defaults"
    settings, ignored = Settings(), []
    names = {f.name for f in fields(Settings)}
    for key, value in saved.items():
        if key not in names:
            ignored.append(f"unknown setting '{key}'")
            continue
        try:
            settings = replace(settings, **{key: value}).validated()
        except NanowireSSLError as exc:
            ignored.append(str(exc))
    problem = f"{path}: ignored {'; '.join(ignored)}" if ignored else None
    return settings, problem


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write ``settings`` (validated) atomically; return the file written."""
    settings.validated()
    path = settings_path() if path is None else Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(settings), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise NanowireSSLError(f"{path}: cannot save the settings ({exc.strerror or exc})") from None
    return path
