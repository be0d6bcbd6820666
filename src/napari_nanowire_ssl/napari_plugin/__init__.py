"""The thin napari layer: reader, sample data and dock widgets.

Everything here only builds UI, starts workers and puts results on layers; the
work itself is done by the Qt-free core (``io``, ``synth``, ``models``,
``analysis``), which the CLI and the tests call too.
"""
