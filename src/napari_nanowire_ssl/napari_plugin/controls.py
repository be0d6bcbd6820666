"""Controls several dock widgets share, bound to the session (one definition each)."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, SpinBox

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


def image_crop_box(picker: ComboBox) -> SpinBox:
    """A :func:`crop_box` bound to an image picker (Segment, Classify): it shows the chosen image's
    banner rows and keeps the value typed for that image."""
    from .layers import banner_rows, set_banner_rows

    def typed(rows: int) -> None:
        if picker.value is not None:
            set_banner_rows(picker.value, rows)

    def chosen(layer) -> None:
        if layer is not None:
            show_crop(box, banner_rows(layer))

    box = crop_box(typed)
    picker.changed.connect(chosen)
    chosen(picker.value)
    return box


class FolderRun(Container):
    """The fields of a run over a folder of image files: input and output folders and the bottom
    crop, "auto" (each file's detected banner, the default) or, with auto off, the same number of
    rows for every file."""

    def __init__(self):
        self.input_folder = FileEdit(label="input folder", mode="d")
        self.output_folder = FileEdit(label="output folder", mode="d")
        self.auto_crop = CheckBox(text="crop each file's banner (detected)", value=True,
                                  tooltip="Leave out the instrument banner each file shows, if any")
        self.crop_rows = SpinBox(label="crop bottom (rows)", value=0, min=0, max=1_000_000, enabled=False,
                                 tooltip="With the detection off: leave out this many bottom rows of every file")
        super().__init__(widgets=[self.input_folder, self.output_folder, self.auto_crop, self.crop_rows])
        self.auto_crop.changed.connect(lambda auto: setattr(self.crop_rows, "enabled", not auto))

    @property
    def crop_setting(self) -> int | str:
        """What the batch loop takes as ``crop_bottom``: ``"auto"`` or a number of rows."""
        return BANNER_AUTO if self.auto_crop.value else self.crop_rows.value

    def job(self) -> tuple[list, Path]:
        """``(image files, output folder)``, or a one-line error a user understands."""
        from ..batch import folder_job

        return folder_job(self.input_folder.value, self.output_folder.value)
