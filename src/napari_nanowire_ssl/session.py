"""State shared by the plugin's dock widgets: the active encoder (Qt-free, observable).

Each napari viewer gets one :class:`Session`; the widgets read the active
encoder from it instead of loading their own copy, and connect to
:attr:`Session.encoder_changed` to update when another widget (Encoder,
Pretrain encoder) replaces it. The CLI does not need it: a command loads the
encoder it is given.
"""

from __future__ import annotations

import weakref

from psygnal import Signal


class Session:
    """The active encoder and where it came from."""

    encoder_changed = Signal(object, str)  # (encoder, source description)

    def __init__(self) -> None:
        self.encoder = None
        self.encoder_source = ""

    def set_encoder(self, encoder, source: str) -> None:
        self.encoder, self.encoder_source = encoder, source
        self.encoder_changed.emit(encoder, source)


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_for(viewer) -> Session:
    """The session of ``viewer`` (created on first use, dropped with the viewer)."""
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]
