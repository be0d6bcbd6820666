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
AGNW = "silver nanowire network (SEM)"  # the name of the shipped real sample's layer
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
# Real SEM files for the classification picture: (file, class, tagged).
CLASS_EXAMPLES = (("sparse_nanowires_sem/13.tif", "dispersed", True), ("sparse_nanowires_sem/22.tif", "dispersed", False),
                  ("aramid_nanofiber/ANF_stack_slice0281.tif", "network", True),
                  ("gelatin_fibers_sem/gelatin_15pct.png", "network", False))


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


def open_classification_examples(viewer, units) -> list[str]:
    """Open the real SEM files of :data:`CLASS_EXAMPLES` as hidden layers, tag one per
    class; synthetic images of the same classes where the shared data folder is absent."""
    from napari_nanowire_ssl.io import read_image
    from napari_nanowire_ssl.napari_plugin.classify_widget import TAG_KEY
    from napari_nanowire_ssl.synth import generate

    names = []
    for k, (file, morphology, tagged) in enumerate(CLASS_EXAMPLES):
        path = REAL_DATA / file
        if path.exists():
            micrograph = read_image(path)  # with its banner: the Classify tab leaves it out
            data, name, nm = micrograph.data, path.stem, micrograph.pixel_size_nm
        else:
            data, name, nm = generate(morphology, size=384, seed=k).image, f"{morphology} {k}", None
        # In the sample's units (napari warns about mixed ones); uncalibrated files at 1 per pixel.
        viewer.add_image(data, name=name, visible=False, metadata={TAG_KEY: morphology} if tagged else {},
                         scale=(nm or 1.0, nm or 1.0), units=units)
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    import numpy as np
    import tifffile
    from PIL import Image

    from skimage.filters import threshold_otsu

    from napari_nanowire_ssl.io import normalize
    from napari_nanowire_ssl.napari_plugin.workflow_widget import WorkflowWidget
    from napari_nanowire_ssl.synth.strokes import scribbles as strokes

    work = Path(tempfile.mkdtemp(prefix="nanowire-guide-"))
    viewer = napari.Viewer(title="napari: nanowire workflow")
    viewer.window.resize(*WINDOW)
    flow = WorkflowWidget(viewer)
    viewer.window.add_dock_widget(flow, name="Nanowire workflow", area="right")

    # Step 1: open the real silver-nanowire SEM sample, choose the default encoder, look at its features.
    viewer.open_sample("napari-nanowire-ssl", "silver_network")
    image = viewer.layers[AGNW]
    flow.encoder.default_button.native.click()
    flow.encoder.image.value = image
    flow.encoder.features_button.native.click()
    wait_until(lambda: f"{AGNW} encoder features" in viewer.layers, "encoder features")
    shoot(viewer, args.out, "1-encoder.png")
    viewer.layers.remove(f"{AGNW} encoder features")

    # Step 2: real SEM images of networks and of dispersed wires (the shared data folder when there,
    # else synthetic stand-ins), one tagged per class, Train.
    flow.setCurrentIndex(1)
    opened = open_classification_examples(viewer, tuple(image.units))
    flow.classify._refresh()
    flow.classify.train_button.native.click()
    wait_until(lambda: flow.classify.train_button.enabled and flow.classify.head is not None, "classification")
    shoot(viewer, args.out, "2-classify.png")
    for name in opened:
        viewer.layers.remove(name)
    image.visible = True

    # Step 3: a scribble layer, about 20 strokes (placed here from an Otsu mask of the bright wires,
    # as a user places them by eye), Train: the predicted wires in the colour of the wire strokes.
    flow.setCurrentIndex(2)
    seg = flow.segment
    seg.image.value = image
    seg.new_scribbles_button.native.click()
    scribbles = viewer.layers[f"{AGNW} scribbles"]
    x = normalize(image.data)
    scribbles.data = strokes(x > threshold_otsu(x), np.random.default_rng(0), n_wire=10, n_open=5, n_edge=5)
    shoot(viewer, args.out, "3-scribbles.png")
    seg.train_button.native.click()
    wait_until(lambda: seg.train_button.enabled, "training")
    viewer.layers.selection.active = scribbles
    shoot(viewer, args.out, "4-segmented.png")

    # Step 4: analyse the predicted mask (the pixel size comes from the file), export the CSV.
    flow.setCurrentIndex(3)
    mask = viewer.layers[f"{AGNW} nanowires"]
    for layer in viewer.layers:
        layer.visible = layer in (image, mask)
    flow.analyse.layer.value = mask
    flow.analyse.analyse_button.native.click()
    wait_until(lambda: "nanowire_ssl_metrics" in mask.metadata and flow.analyse.analyse_button.enabled, "analysis")
    flow.analyse.csv_file.value = work / "percolation.csv"
    flow.analyse.export_button.native.click()
    wait_until(lambda: (work / "percolation.csv").exists() and flow.analyse.export_button.enabled, "CSV export")
    shoot(viewer, args.out, "5-analyse.png")

    # Step 5: save the bundle and run it over a folder of other images.
    flow.setCurrentIndex(4)
    folder = work / "new images"
    folder.mkdir()
    for k, crop in enumerate((np.s_[:384, :384], np.s_[128:, 128:])):
        tifffile.imwrite(folder / f"agnw_field_{k}.tif", np.asarray(image.data)[crop])
    flow.batch.bundle_file.value = work / "my_setup.safetensors"
    flow.batch.save_button.native.click()
    flow.batch.folder.input_folder.value, flow.batch.folder.output_folder.value = folder, work / "results"
    flow.batch.run_button.native.click()
    wait_until(lambda: flow.batch.run_button.enabled, "batch run")
    overlay = np.asarray(Image.open(work / "results" / "overlays" / "agnw_field_1.png"))
    for layer in viewer.layers:
        layer.visible = False
    viewer.add_image(overlay, name="agnw_field_1 overlay (batch output)", rgb=True,
                     scale=tuple(image.scale), units=tuple(image.units))  # a crop of the same micrograph
    viewer.reset_view()
    shoot(viewer, args.out, "6-bundle-batch.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
