"""Errors meant for the user: one line, naming the file or layer and the problem.

The CLI prints them as ``error: <message>`` and exits with status 2; the napari
widgets show them with ``show_error``. Anything else escaping is a bug.
"""


class NanowireSSLError(ValueError):
    """Base class for problems with the user's input (files, layers, options)."""


class ImageReadError(NanowireSSLError):
    """An image file cannot be read or is unusable (empty, truncated, colour...)."""


class ModelFileError(NanowireSSLError):
    """A model file is corrupt, truncated, of another kind or does not match."""


def check_file(path, error: type[NanowireSSLError] = NanowireSSLError, what: str = "file"):
    """Refuse a missing path, a folder or an empty file with ``error`` naming it;
    return the path as a :class:`~pathlib.Path`."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such {what}")
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what}")
    if path.stat().st_size == 0:
        raise error(f"{path}: the {what} is empty (0 bytes)")
    return path


def naming(path, exc: Exception) -> str:
    """``exc``'s message, beginning with ``path`` unless it names the file already."""
    message = str(exc)
    return message if str(path) in message else f"{path}: {message}"
