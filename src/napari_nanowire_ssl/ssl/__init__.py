"""Self-supervised pretraining: augmentation, projection head, losses and the training loop.

The building blocks (:mod:`.augment`, :mod:`.projector`, :mod:`.losses`) are
plain torch and device-agnostic; :mod:`.pretrain` puts them together. The loop
is not imported here so that using the building blocks stays light.
"""

from .augment import AugmentConfig, augment_batch, two_views
from .losses import barlow_twins_loss, nt_xent_loss
from .projector import DEFAULT_WIDTHS, PAPER_WIDTHS, Projector

__all__ = [
    "DEFAULT_WIDTHS",
    "PAPER_WIDTHS",
    "AugmentConfig",
    "Projector",
    "augment_batch",
    "barlow_twins_loss",
    "nt_xent_loss",
    "two_views",
]
