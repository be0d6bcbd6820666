"""Make the user guide's screenshots by driving the real napari widgets (run under Xvfb).

    make screenshots
    # = xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots.py docs/images/user-guide

Each step of docs/user-guide.md is performed here as a user would (open the
samples, tag, paint strokes, Train, Predict, Analyse, save the bundle, run a
folder) and the whole napari window is saved after it, so the pictures
always show the current widgets. Takes a few minutes on a laptop CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import napari_nanowire_ssl.napari_plugin  # noqa: F401  (marks triton absent before torch loads under Mesa)

WINDOW = (1560, 960)


def settle(seconds: float = 0.3) -> None:
    """Let Qt draw (and deliver worker signals) for a moment."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_until(condition, what: str, timeout: float = 900.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            sys.exit(f"screenshots: timed out waiting for {what}")
        QApplication.processEvents()
        time.sleep(0.05)
    settle()


def shoot(viewer, out: Path, name: str) -> None:
    """Save the whole window as a 256-colour PNG (a few hundred kB instead of megabytes)."""
    from PIL import Image

    settle(0.5)
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(pixels[..., :3]).quantize(colors=256).save(out / name, optimize=True)
    print(f"wrote {out / name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    import numpy as np
    import tifffile
    from PIL import Image

    from napari_nanowire_ssl.napari_plugin.classify_widget import TAG_KEY
    from napari_nanowire_ssl.napari_plugin.workflow_widget import WorkflowWidget
    from napari_nanowire_ssl.synth import CLASSES, generate
    from napari_nanowire_ssl.synth.strokes import brush_clicks

    work = Path(tempfile.mkdtemp(prefix="nanowire-guide-"))
    viewer = napari.Viewer(title="napari: nanowire workflow")
    viewer.window.resize(*WINDOW)
    flow = WorkflowWidget(viewer)
    viewer.window.add_dock_widget(flow, name="Nanowire workflow", area="right")

    # Step 1: open a sample, choose the default encoder, look at its features.
    viewer.open_sample("napari-nanowire-ssl", "network")
    image = viewer.layers["synthetic network"]
    truth = viewer.layers["synthetic network true mask"]
    truth.visible = False
    flow.encoder.default_button.native.click()
    flow.encoder.image.value = image
    flow.encoder.features_button.native.click()
    wait_until(lambda: "synthetic network encoder features" in viewer.layers, "encoder features")
    shoot(viewer, args.out, "1-encoder.png")
    viewer.layers.remove("synthetic network encoder features")

    # Step 2: a few images per class, one tagged per class, Train.
    flow.setCurrentIndex(1)
    for morphology in CLASSES:
        for seed in (1, 2):
            viewer.add_image(generate(morphology, size=256, seed=100 * seed + CLASSES.index(morphology)).image,
                             name=f"{morphology} {seed}", visible=False)
            if seed == 1:
                viewer.layers[f"{morphology} {seed}"].metadata[TAG_KEY] = morphology
    flow.classify._refresh()
    flow.classify.train_button.native.click()
    wait_until(lambda: flow.classify.train_button.enabled and flow.classify.head is not None, "classification")
    shoot(viewer, args.out, "2-classify.png")
    for morphology in CLASSES:
        for seed in (1, 2):
            viewer.layers.remove(f"{morphology} {seed}")

    # Step 3: a scribble layer, a few brush clicks, Train, Predict.
    flow.setCurrentIndex(2)
    seg = flow.segment
    seg.image.value = image
    seg.new_scribbles_button.native.click()
    scribbles = viewer.layers["synthetic network scribbles"]
    scribbles.brush_size = 5
    for y, x, label in brush_clicks(truth.data, n=60, background_gap=4):  # background close to wires too
        scribbles.paint((y, x), label, refresh=False)
    scribbles.refresh()
    shoot(viewer, args.out, "3-scribbles.png")
    seg.n_steps.value, seg.preview_every.value = 120, 40
    seg.train_button.native.click()
    wait_until(lambda: seg.train_button.enabled, "training")
    viewer.layers.selection.active = scribbles
    shoot(viewer, args.out, "4-segmented.png")

    # Step 4: analyse the predicted mask, export the CSV.
    flow.setCurrentIndex(3)
    mask = viewer.layers["synthetic network nanowires"]
    viewer.layers["synthetic network nanowire probability"].visible = False
    flow.analyse.layer.value = mask
    flow.analyse.analyse_button.native.click()
    wait_until(lambda: "nanowire_ssl_metrics" in mask.metadata and flow.analyse.analyse_button.enabled, "analysis")
    flow.analyse.csv_file.value = work / "percolation.csv"
    flow.analyse.export_button.native.click()
    wait_until(lambda: (work / "percolation.csv").exists() and flow.analyse.export_button.enabled, "CSV export")
    shoot(viewer, args.out, "5-analyse.png")

    # Step 5: save the bundle and run it over a folder of new images.
    flow.setCurrentIndex(4)
    folder = work / "new images"
    folder.mkdir()
    for seed, morphology in enumerate(("network", "dispersed", "network")):
        tifffile.imwrite(folder / f"{morphology}_{seed}.tif",
                         (generate(morphology, size=384, seed=500 + seed).image * 255).astype(np.uint8))
    flow.batch.bundle_file.value = work / "my_setup.safetensors"
    flow.batch.save_button.native.click()
    flow.batch.input_folder.value, flow.batch.output_folder.value = folder, work / "results"
    flow.batch.run_button.native.click()
    wait_until(lambda: flow.batch.run_button.enabled, "batch run")
    overlay = np.asarray(Image.open(work / "results" / "overlays" / "network_0.png"))
    for layer in viewer.layers:
        layer.visible = False
    viewer.add_image(overlay, name="network_0 overlay (batch output)", rgb=True)
    viewer.reset_view()
    shoot(viewer, args.out, "6-bundle-batch.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
