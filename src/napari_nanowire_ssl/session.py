"""State shared by the plugin's dock widgets (Qt-free, observable).

Each napari viewer gets one :class:`Session`: the active encoder, the linear
head and the segmentation decoder trained on it, the options the results
depend on, and the user's persistent :class:`~.settings.Settings`. The
widgets read these instead of keeping their own copies and connect to the
signals to update when another widget changes them: a new encoder drops the
head and decoder trained on the old one, a loaded bundle fills everything.
The CLI does not need a session: a command loads what it is given.
"""

from __future__ import annotations

import weakref

from psygnal import Signal

from .bundle import DEFAULT_OPTIONS, Bundle, check_options
from .settings import Settings, load_settings, save_settings

# Bundle options that the session takes from the persistent settings instead of keeping its own.
SETTINGS_OPTIONS = frozenset({"tile"})


class Session:
    """Active encoder, trained head and decoder, options and settings of one viewer."""

    encoder_changed = Signal(object, str)  # (encoder, source description)
    head_changed = Signal(object)  # LinearHead or None
    decoder_changed = Signal(object)  # SegmentationModel or None
    options_changed = Signal(dict)  # options the results depend on (tile, threshold, analysis)
    settings_changed = Signal(object)  # Settings

    def __init__(self, settings: Settings | None = None) -> None:
        self.encoder = None
        self.encoder_source = ""
        self.head = None
        self.decoder = None
        self.options = {k: v for k, v in DEFAULT_OPTIONS.items() if k not in SETTINGS_OPTIONS}
        self.settings_problem = None
        if settings is None:
            settings, self.settings_problem = load_settings()
        self.settings = settings

    # --- encoder, head, decoder -------------------------------------------------------------

    def set_encoder(self, encoder, source: str) -> None:
        """Make ``encoder`` active; drop a head or decoder trained on another one."""
        from .models.modelfile import encoder_identity

        self.encoder, self.encoder_source = encoder, source
        if self.head is not None and self.head.encoder_hash not in (None, encoder_identity(encoder)):
            self.set_head(None)
        if self.decoder is not None and self.decoder.encoder is not encoder:
            self.set_decoder(None)
        self.encoder_changed.emit(encoder, source)

    def active_encoder(self):
        """The active encoder, on :meth:`device`; when there is none yet, the one the settings name
        (default: the shipped one). Every widget runs it from here, so all run where the user chose."""
        if self.encoder is None:
            from .models.default import resolve_encoder

            spec = self.settings.encoder
            self.set_encoder(resolve_encoder(spec), "default" if spec == "default" else spec)
        device = self.device()
        if next(self.encoder.parameters()).device != device:
            self.encoder.to(device)
        return self.encoder

    def device(self):
        """The torch device the settings choose (auto: CUDA, then MPS, then CPU)."""
        from .models.device import select_device

        return select_device(self.settings.device)

    def set_head(self, head) -> None:
        self.head = head
        self.head_changed.emit(head)

    def set_decoder(self, model) -> None:
        self.decoder = model
        self.decoder_changed.emit(model)

    # --- bundles ----------------------------------------------------------------------------

    def bundle(self) -> Bundle:
        """What the session has trained, as a :class:`~.bundle.Bundle` (nothing trained: an error)."""
        from .errors import NanowireSSLError

        if self.head is None and self.decoder is None:
            raise NanowireSSLError("Nothing trained yet: train a classifier or a segmentation decoder first")
        return Bundle(self.active_encoder(), self.encoder_source, self.head, self.decoder, self.result_options())

    def result_options(self) -> dict:
        """The options results are made with: the analysis options and the tile size of the settings."""
        return {**self.options, "tile": self.settings.tile}

    def set_options(self, **changes) -> None:
        """Change result options (see :data:`~.bundle.DEFAULT_OPTIONS`), validated; the tile is a
        setting and goes there."""
        if "tile" in changes:
            self.update_settings(tile=changes.pop("tile"))
        checked = check_options({**self.options, **changes}, source="options")
        self.options = {k: v for k, v in checked.items() if k not in SETTINGS_OPTIONS}
        self.options_changed.emit(dict(self.options))

    def apply_bundle(self, bundle: Bundle, source: str) -> None:
        """Make a loaded bundle's encoder, head, decoder and options the session's (its tile stays
        the bundle's record: inference uses the user's tile setting)."""
        self.set_options(**{k: v for k, v in bundle.options.items() if k not in SETTINGS_OPTIONS})
        self.set_encoder(bundle.encoder, f"{bundle.encoder_source}, from {source}")
        self.set_head(bundle.head)
        self.set_decoder(bundle.decoder)

    # --- settings ---------------------------------------------------------------------------

    def update_settings(self, **changes) -> None:
        """Change settings (validated), save them for the next session, tell the widgets."""
        from dataclasses import replace

        settings = replace(self.settings, **changes).validated()
        if settings != self.settings:
            save_settings(settings)
            self.settings = settings
            self.settings_changed.emit(settings)


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def session_for(viewer) -> Session:
    """The session of ``viewer`` (created on first use, dropped with the viewer)."""
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]
