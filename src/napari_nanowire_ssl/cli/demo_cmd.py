"""``nanowire-ssl demo``: the sample pipeline, in napari or headless.

With a display it opens napari with the plugin's widgets docked and the
synthetic network sample loaded. Headless (``--headless``, what ``make demo``
runs without a display) it runs the same steps on every sample and writes the
results to a folder: sample images and masks, pictures of the encoder's
features and ``metrics.csv`` with the morphology analysis of each mask.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import NanowireSSLError
from .options import add_encoder

PLUGIN = "napari-nanowire-ssl"
WORKFLOW = "Nanowire workflow"  # the dock with every step as a tab


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="open napari with the plugin and a sample, or run the sample pipeline headless",
        description="Open napari with the plugin's widgets docked and a sample loaded. "
        "With --headless (or no display) run the same pipeline without a window and "
        "write its outputs to --out.",
    )
    p.add_argument("--headless", action="store_true", help="no window: write outputs to --out")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (headless)")
    add_encoder(p, what="encoder for the feature pictures")
    p.add_argument("--screenshot", type=Path, metavar="PNG",
                   help="open the window, save a screenshot of it to PNG and close (needs a display)")
    p.set_defaults(func=run)


def run(args) -> int:
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if args.screenshot and not has_display:
        raise NanowireSSLError("--screenshot needs a display (run it under xvfb-run)")
    if args.headless or not has_display:
        return run_headless(args.out, encoder=args.encoder or "default")
    return run_gui(screenshot=args.screenshot)


def run_gui(screenshot: Path | None = None) -> int:
    """napari with the sample and the workflow dock; with ``screenshot``, save and close."""
    import napari

    viewer = napari.Viewer(title="napari-nanowire-ssl demo")
    viewer.open_sample(PLUGIN, "network")
    viewer.window.add_plugin_dock_widget(PLUGIN, WORKFLOW)
    if screenshot is None:
        napari.run()
        return 0
    viewer.window.resize(1500, 950)
    from qtpy.QtWidgets import QApplication

    for _ in range(20):  # let the dock lay itself out before the picture
        QApplication.processEvents()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(screenshot), canvas_only=False)
    viewer.close()
    print(f"saved {screenshot}")
    return 0


def run_headless(out: Path, *, encoder: str = "default") -> int:
    """Write every sample, its feature picture and its measurements to ``out``."""
    import numpy as np
    from PIL import Image

    from ..analysis.measure import measure_mask
    from ..models.default import resolve_encoder
    from ..models.feature_view import feature_pca_rgb
    from ..napari_plugin import samples

    out.mkdir(parents=True, exist_ok=True)
    encoder_name = encoder
    encoder = resolve_encoder(encoder)
    rows = []
    for name in ("singular", "dispersed", "network", "bundle", "silver_network"):
        layers = getattr(samples, name)()
        image, image_kwargs, _ = layers[0]
        gray = _to_uint8(image)
        Image.fromarray(gray).save(out / f"{name}.png")
        rgb = feature_pca_rgb(encoder, image)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(out / f"{name}_features.png")
        if len(layers) > 1:  # synthetic: exact mask to analyse
            mask = layers[1][0] > 0
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"{name}_mask.png")
            row = measure_mask(mask, link_distance=2)  # the paper's 2 px linking
            rows.append({"sample": name, **row})
            print(f"{name:>10}: density {row['pixel_density']:.3f}, percolates {row['percolates']}, "
                  f"call: {row['morphology']}")
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} analysed samples, 5 images and feature pictures to {out}/ "
          f"(encoder: {encoder_name}, {encoder.backbone})")
    return 0


def _to_uint8(image):
    from ..io import normalize

    return (normalize(image) * 255).round().astype("uint8")
