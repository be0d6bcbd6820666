"""``python -m napari_nanowire_ssl.cli`` (and ``torchrun -m napari_nanowire_ssl.cli``)."""

from . import main

raise SystemExit(main())
