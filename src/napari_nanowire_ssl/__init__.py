"""napari-nanowire-ssl: label-efficient analysis of nanowire TEM images.

Importing this package is cheap: it pulls in neither Qt nor torch. The heavy
modules (``models``, ``napari_plugin``) are imported by the widget or command
that needs them.
"""

__version__ = "0.1.0"
