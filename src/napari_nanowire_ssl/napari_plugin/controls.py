"""Controls several dock widgets share, bound to the session (one definition each)."""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, SpinBox

from ..io.banner import AUTO as BANNER_AUTO

DEVICES = ("auto", "cpu", "cuda", "mps")


def device_choices(current: str) -> list[str]:
    """The device menu, with ``current`` (such as ``cuda:1`` from the settings) in it."""
    return list(dict.fromkeys([*DEVICES, current]))


def device_combo(session) -> ComboBox:
    """A device menu bound both ways to the session's persistent settings (the session runs its
    encoder on that device)."""
    combo = ComboBox(label="device", choices=device_choices(session.settings.device), value=session.settings.device,
                     tooltip="auto = CUDA GPU, then Apple MPS, then CPU; kept for the next session")
    combo.changed.connect(lambda value: session.update_settings(device=value))
    session.settings_changed.connect(lambda settings: setattr(combo, "value", settings.device))
    return combo


def crop_box(on_typed) -> SpinBox:
    """The "crop bottom" field of the tabs that read a layer's pixels (Segment, Classify, Analyse):
    it shows the chosen layer's banner rows (proposed from its micrograph) and calls
    ``on_typed(rows)`` when the user types a value, which the tab keeps for that layer."""
    box = SpinBox(label="crop bottom (rows)", value=0, min=0, max=1_000_000,
                  tooltip="Leave out this many bottom rows (the instrument banner): proposed from the image's "
                  "banner, your value kept for this layer and used by every tab")
    box.native.setKeyboardTracking(False)  # one change when the typing ends, not per digit
    box.changed.connect(on_typed)
    return box


def show_crop(box: SpinBox, rows: int) -> None:
    """Show a layer's bottom crop in ``box`` without it counting as typed."""
    with box.changed.blocked():
        box.value = rows


class FolderCrop(Container):
    """The bottom crop of folder runs: "auto" (each file's detected banner, the default) or, with
    auto off, the same number of rows for every file; :attr:`setting` is what the batch loop takes."""

    def __init__(self):
        self.auto = CheckBox(text="crop each file's banner (detected)", value=True,
                             tooltip="Leave out the instrument banner each file shows, if any")
        self.rows = SpinBox(label="crop bottom (rows)", value=0, min=0, max=1_000_000, enabled=False,
                            tooltip="With the detection off: leave out this many bottom rows of every file")
        super().__init__(widgets=[self.auto, self.rows], labels=True)
        self.auto.changed.connect(lambda auto: setattr(self.rows, "enabled", not auto))

    @property
    def setting(self) -> int | str:
        return BANNER_AUTO if self.auto.value else self.rows.value
