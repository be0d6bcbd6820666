"""Reading microscope files and normalising them for the networks (Qt- and torch-free)."""

from .banner import detect_banner
from .normalize import check_network_input, normalize
from .reader import IMAGE_SUFFIXES, TEMImage, list_images, read_image

__all__ = ["IMAGE_SUFFIXES", "TEMImage", "check_network_input", "detect_banner", "list_images", "normalize", "read_image"]
