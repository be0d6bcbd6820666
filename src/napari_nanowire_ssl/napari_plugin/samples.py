"""napari sample data: one synthetic image per morphology (with its exact mask)
and one real SEM image of a silver-nanowire network."""

from __future__ import annotations

from importlib.resources import files

from ..labels import TRUTH_KEY

SAMPLE_SIZE = 512
SAMPLE_SEED = 2022
REAL_SAMPLE = "agnw_network_sem_crop.tif"
REAL_ATTRIBUTION = (
    "Silver-nanowire network film, FEI Helios 650 SEM, 32.3 nm/px; 512x512 crop of "
    "AgNWN/slice0001.tif from compass-stc/StructuralGT (BSD-3-Clause-style licence, "
    "University of Michigan)"
)


def _synthetic(morphology: str):
    from ..synth import generate

    sample = generate(morphology, size=SAMPLE_SIZE, seed=SAMPLE_SEED)
    meta = {
        "source": "napari-nanowire-ssl synthetic generator",
        "morphology": sample.morphology,
        "density": sample.density,
        "spans_lr": sample.spans_lr,
        "spans_tb": sample.spans_tb,
        "seed": SAMPLE_SEED,
    }
    name = f"synthetic {morphology}"
    return [
        (sample.image, {"name": name, "metadata": meta}, "image"),
        (sample.mask.astype("uint8"), {"name": f"{name} true mask", "metadata": {**meta, TRUTH_KEY: True},
                                       "opacity": 0.35},
         "labels"),
    ]


def singular():
    return _synthetic("singular")


def dispersed():
    return _synthetic("dispersed")


def network():
    return _synthetic("network")


def bundle():
    return _synthetic("bundle")


def real_sample_path():
    """Path of the shipped real SEM crop (inside the installed package)."""
    return files("napari_nanowire_ssl").joinpath("data", REAL_SAMPLE)


def silver_network():
    from ..io import read_image

    image = read_image(real_sample_path())
    size = image.pixel_size_nm
    meta = {"source": REAL_ATTRIBUTION, "pixel_size_nm": size, "licence": "BSD-3-Clause-style"}
    return [
        (image.data, {"name": "silver nanowire network (SEM)", "scale": (size, size),
                      "units": ("nm", "nm"), "metadata": meta}, "image")
    ]
