"""Controls several dock widgets share, bound to the session (one definition each)."""

from __future__ import annotations

from magicgui.widgets import ComboBox

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
