"""Reading microscope files and normalising them for the networks (Qt- and torch-free)."""

from .banner import AUTO as BANNER_AUTO, banner_crop, detect_banner, with_banner_rows, without_banner
from .normalize import check_network_input, normalize
from .reader import IMAGE_SUFFIXES, TEMImage, list_images, read_image

__all__ = ["BANNER_AUTO", "IMAGE_SUFFIXES", "TEMImage", "banner_crop", "check_network_input", "detect_banner", "list_images", "normalize", "read_image", "with_banner_rows", "without_banner"]
