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
