"""Synthetic nanowire micrographs of the four morphologies of Lu et al. (2022).

``singular``: one isolated wire (two separate wires in a quarter of the
samples), wholly inside the image. ``dispersed``: several separate wires, none
touching another, so nothing spans the image. ``network``: long crossing wires
added until the pixel density reaches a target and one 8-connected cluster
touches all four edges. ``bundle``: a few groups of near-parallel wires lying
side by side, touching or nearly touching.

Every sample carries its exact ground truth (see :mod:`.geometry`) and is a
pure function of (morphology, size, seed, parameters): one
``np.random.default_rng(seed)`` stream drives everything, retries included.
Geometry defaults are given for a 256 px image and scale with min(h, w) / 256.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from ..analysis.percolation import percolation
from ..errors import NanowireSSLError
from .geometry import Canvas, Wire, offset_path, smooth_path
from .render import Imaging, tem_image

CLASSES = ("singular", "dispersed", "network", "bundle")
MIN_SIZE = 64
MAX_ATTEMPTS = 25

# Geometry defaults for a 256 px image; widths and lengths in px, curvature in
# rad per 100 px (RMS), densities as wire-pixel fractions. ``n_wires=None``:
# dispersed and network wires are added until a density drawn from ``density``
# is reached (a network also until it percolates, stopping at ``max_wires``,
# so very thin wires give sparser networks).
DEFAULTS = {
    "singular": {"n_wires": None, "width": (4.0, 9.0), "length": (100.0, 210.0), "curvature": 0.4},
    "dispersed": {
        "n_wires": None,
        "density": (0.03, 0.2),
        "width": (3.0, 8.0),
        "length": (30.0, 110.0),
        "curvature": 0.5,
    },
    "network": {
        "n_wires": None,
        "max_wires": 150,
        "density": (0.28, 0.45),
        "width": (3.0, 8.0),
        "length": (150.0, 300.0),
        "curvature": 0.4,
    },
    "bundle": {
        "n_bundles": None,
        "bundle_size": (3, 7),
        "width": (3.0, 7.0),
        "length": (80.0, 180.0),
        "curvature": 0.2,
    },
}
IMAGING_PARAMS = tuple(f.name for f in fields(Imaging))
_MIN_WIDTH = 1.0  # thinner wires can break into separate pixels


@dataclass(frozen=True, eq=False)
class NanowireSample:
    """A synthetic micrograph and its ground truth.

    ``image``: float32 (H, W) in [0, 1], dark wires. ``mask``: bool (H, W),
    True on wire. ``spans_lr``/``spans_tb``: an 8-connected wire cluster
    touches the left and right (top and bottom) edges. ``density``: wire pixel
    fraction. ``params``: every parameter used, the seed, the wires drawn
    (``wires``: tuple of :class:`Wire`) and the number of ``attempts``.
    """

    image: np.ndarray
    mask: np.ndarray
    morphology: str
    spans_lr: bool
    spans_tb: bool
    density: float
    params: dict


def _pair(value, kind) -> tuple:
    """``value`` as a pair: one ``kind`` number twice, or a 2-sequence; () when neither."""
    if isinstance(value, kind):
        return (value, value)
    return tuple(value) if isinstance(value, (tuple, list)) else ()


def _shape(size) -> tuple[int, int]:
    dims = _pair(size, numbers.Integral)
    if len(dims) != 2 or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise NanowireSSLError(f"size: must be an int or (height, width) of ints, got {size!r}")
    if min(dims) < MIN_SIZE:
        raise NanowireSSLError(f"size: each side must be at least {MIN_SIZE} px, got {size!r}")
    return int(dims[0]), int(dims[1])


def _check_seed(seed) -> int:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise NanowireSSLError(f"seed: must be an int >= 0, got {seed!r}")
    return int(seed)


def _count(name: str, value) -> int | None:
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise NanowireSSLError(f"{name}: must be an int >= 0 (or None for the default), got {value!r}")
    return int(value)


def _range(name: str, value, lo: float, hi: float = math.inf, integer: bool = False) -> tuple:
    kind = numbers.Integral if integer else numbers.Real
    pair = _pair(value, kind)
    if len(pair) != 2 or not all(isinstance(v, kind) and not isinstance(v, bool) and math.isfinite(v) for v in pair):
        raise NanowireSSLError(f"{name}: must be a number or a (min, max) pair, got {value!r}")
    if not (lo <= pair[0] <= pair[1] <= hi):
        raise NanowireSSLError(f"{name}: need {lo:g} <= min <= max <= {hi:g}, got {value!r}")
    return tuple(int(v) for v in pair) if integer else tuple(float(v) for v in pair)


def _number(name: str, value, lo: float, hi: float = math.inf, open_lo=False, open_hi=False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if open_lo else value >= lo) and (value < hi if open_hi else value <= hi)
    if not ok:
        bounds = f"{'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        raise NanowireSSLError(f"{name}: must be a number in {bounds}, got {value!r}")
    return float(value)


def _resolve(morphology: str, params: dict, scale: float) -> tuple[dict, Imaging]:
    """Defaults (scaled to the image) overridden by the validated user parameters."""
    valid = (*DEFAULTS[morphology], *IMAGING_PARAMS)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise NanowireSSLError(
            f"unknown parameter(s) for {morphology}: {', '.join(unknown)}; valid: {', '.join(valid)}"
        )
    geo = dict(DEFAULTS[morphology])
    geo["width"] = tuple(max(_MIN_WIDTH + 0.5, v * scale) for v in geo["width"])
    geo["length"] = tuple(v * scale for v in geo["length"])
    for name, value in params.items():
        if name in ("n_wires", "n_bundles", "max_wires"):
            geo[name] = _count(name, value)
        elif name == "width":
            geo[name] = _range(name, value, _MIN_WIDTH)
        elif name == "length":
            geo[name] = _range(name, value, 1.0)
        elif name == "density":
            geo[name] = _range(name, value, 0.0, 1.0)
        elif name == "bundle_size":
            geo[name] = _range(name, value, 1, integer=True)
        elif name == "curvature":
            geo[name] = _number(name, value, 0.0)
    imaging = Imaging(blur=Imaging.blur * scale, grain=Imaging.grain * scale)
    checks = {
        "contrast": dict(lo=0.0, hi=1.0, open_hi=True),
        "background": dict(lo=0.0, hi=1.0, open_lo=True),
        "illumination": dict(lo=0.0, hi=1.0, open_hi=True),
        "film": dict(lo=0.0),
        "grain": dict(lo=0.0, open_lo=True),
        "blur": dict(lo=0.0),
        "dose": dict(lo=0.0, open_lo=True),
        "read_noise": dict(lo=0.0),
    }
    for name in IMAGING_PARAMS:
        if name not in params:
            continue
        value = params[name]
        if not (name == "dose" and value is None):
            value = _number(name, value, **checks[name])
        imaging = replace(imaging, **{name: value})
    return geo, imaging


class _Draw:
    """Shared state of one drawing attempt: rng, image shape, parameters, scale."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], geo: dict, scale: float):
        self.rng, self.shape, self.geo, self.scale = rng, shape, geo, scale
        self.canvas = Canvas(shape)
        self.gap = max(2.0, 3.0 * scale)  # > sqrt(2): separate wires never 8-touch

    def path(self) -> np.ndarray:
        length = self.rng.uniform(*self.geo["length"])
        curvature = self.geo["curvature"]
        step = max(1.0, 2.0 * self.scale)
        return smooth_path(self.rng, length, curvature / (100.0 * self.scale), step, 50.0 * self.scale)

    def width(self) -> float:
        return float(self.rng.uniform(*self.geo["width"]))

    def darkness(self) -> float:
        return float(self.rng.uniform(0.85, 1.15))

    def centred(self, path: np.ndarray) -> np.ndarray:
        """``path`` moved so its middle vertex lies at a uniformly random point of the image."""
        h, w = self.shape
        return path - path[len(path) // 2] + self.rng.uniform((0, 0), (h - 1, w - 1))

    def inside(self, path: np.ndarray, margin: float) -> np.ndarray | None:
        """``path`` moved to a random place wholly inside the image (``margin`` px clear); None if too big."""
        lo, hi = path.min(axis=0), path.max(axis=0)
        room = np.array(self.shape, dtype=float) - 1 - 2 * margin - (hi - lo)
        if (room < 0).any():
            return None
        return path - lo + margin + self.rng.uniform(0, 1, 2) * room

    def density(self) -> float:
        return float(self.canvas.mask.mean())


def _singular(d: _Draw) -> Canvas | None:
    n = d.geo["n_wires"]
    n = (2 if d.rng.random() < 0.25 else 1) if n is None else n
    for _ in range(n):
        for _try in range(50):
            width = d.width()
            path = d.inside(d.path(), width / 2 + 2 * d.scale)
            if path is None or d.canvas.on_wire(path):
                continue
            fp = d.canvas.footprint(Wire(path, width), d.gap)
            if d.canvas.clear_of(fp, d.gap):
                d.canvas.add(fp, d.darkness())
                break
        else:
            return None
    return d.canvas


def _dispersed(d: _Draw) -> Canvas | None:
    n = d.geo["n_wires"]
    target = d.rng.uniform(*d.geo["density"])
    placed = failures = 0
    while (placed < n) if n is not None else (d.density() < target):
        path = d.centred(d.path())
        fp = None if d.canvas.on_wire(path) else d.canvas.footprint(Wire(path, d.width()), d.gap)
        if fp is not None and d.canvas.clear_of(fp, d.gap):
            d.canvas.add(fp, d.darkness())
            placed += 1
        else:
            failures += 1
            if failures > 300:  # the image is full: a fixed count fails, a density target stops here
                return None if n is not None else d.canvas
    return d.canvas


def _network(d: _Draw) -> Canvas | None:
    n, cap = d.geo["n_wires"], d.geo["max_wires"]
    target = d.rng.uniform(*d.geo["density"])
    placed = 0
    while n != 0:
        fp = d.canvas.footprint(Wire(d.centred(d.path()), d.width()))
        d.canvas.add(fp, d.darkness())
        placed += 1
        if n is not None:
            if placed == n:
                return d.canvas
        elif d.density() >= target or placed >= cap:
            r = percolation(d.canvas.mask, connectivity=8)
            if r.spans_lr and r.spans_tb:
                return d.canvas
            if placed >= cap:
                return None
    return d.canvas


def _bundle(d: _Draw) -> Canvas | None:
    n = d.geo["n_bundles"]
    n = int(d.rng.integers(2, 5)) if n is None else n
    lo, hi = d.geo["bundle_size"]
    for group in range(n):
        for attempt in range(30):
            spine = d.path()
            m = int(d.rng.integers(lo, hi + 1))
            widths = d.rng.uniform(*d.geo["width"], size=m)
            # Centre-to-centre spacing: touching, slightly overlapping or a pixel apart.
            steps = (widths[:-1] + widths[1:]) / 2 + d.rng.uniform(-0.5, 1.0, size=m - 1) * max(1.0, d.scale)
            offsets = np.concatenate([[0.0], np.cumsum(steps)])
            offsets -= offsets.mean()
            shift = d.rng.uniform((0.1, 0.1), (0.9, 0.9)) * (np.array(d.shape) - 1) - spine[len(spine) // 2]
            k = len(spine)
            wires = []
            for width, offset in zip(widths, offsets):
                i0 = int(d.rng.integers(0, k // 6 + 1))
                i1 = k - int(d.rng.integers(0, k // 6 + 1))
                wires.append(Wire(offset_path(spine, offset)[i0:i1] + shift, float(width), group))
            fps = [d.canvas.footprint(w, d.gap) for w in wires]
            visible = [fp for fp in fps if fp is not None]
            # Bundles keep clear of each other when they can; crossings are allowed as a last resort.
            if len(visible) == m and (attempt == 29 or all(d.canvas.clear_of(fp, d.gap) for fp in visible)):
                for fp in visible:
                    d.canvas.add(fp, d.darkness())
                break
        else:
            return None
    return d.canvas


_DRAW = {"singular": _singular, "dispersed": _dispersed, "network": _network, "bundle": _bundle}


def generate(morphology: str, *, size=256, seed: int = 0, **params) -> NanowireSample:
    """One synthetic micrograph of ``morphology`` with its exact mask.

    ``size``: int (square) or (height, width), at least 64 px. ``params``
    override the defaults of :data:`DEFAULTS` (``n_wires``, ``width``,
    ``length``, ``curvature``, ``density``, ``max_wires``, ``n_bundles``,
    ``bundle_size``, as valid for the morphology) and of
    :class:`~.render.Imaging` (``contrast``, ``background``, ``illumination``,
    ``film``, ``grain``, ``blur``, ``dose``, ``read_noise``). Ranges are
    ``(min, max)`` pairs or one number. Defaults of lengths (``width``,
    ``length``, ``blur``, ``grain``) scale with min(h, w) / 256; values passed
    are in pixels. ``curvature`` is the RMS turning in radians per 100 px of a
    256 px image (0: straight). Samples breaking the class (a network
    that does not percolate, dispersed wires that span) are redrawn from the
    same random stream, up to 25 times.
    """
    if morphology not in CLASSES:
        raise NanowireSSLError(f"unknown morphology {morphology!r}; valid: {', '.join(CLASSES)}")
    shape = _shape(size)
    seed = _check_seed(seed)
    scale = min(shape) / 256.0
    geo, imaging = _resolve(morphology, params, scale)
    rng = np.random.default_rng(seed)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        canvas = _DRAW[morphology](_Draw(rng, shape, geo, scale))
        if canvas is None:
            continue
        r = percolation(canvas.mask, connectivity=8)
        if morphology == "network" and not (r.spans_lr and r.spans_tb):
            continue
        if morphology == "dispersed" and (r.spans_lr or r.spans_tb):
            continue
        break
    else:
        raise NanowireSSLError(
            f"could not draw a {morphology} sample with these parameters in {MAX_ATTEMPTS} attempts "
            f"(size {shape[0]}x{shape[1]}, seed {seed}); try fewer/shorter/thinner wires or a larger image"
        )
    image = tem_image(canvas.absorbance, rng, imaging)
    used = {
        "size": shape,
        "seed": seed,
        **geo,
        **asdict(imaging),
        "n_wires_drawn": len(canvas.wires),
        "attempts": attempt,
        "wires": tuple(canvas.wires),
    }
    return NanowireSample(
        image=image,
        mask=canvas.mask,
        morphology=morphology,
        spans_lr=r.spans_lr,
        spans_tb=r.spans_tb,
        density=float(canvas.mask.mean()),
        params=used,
    )


def sample_seed(seed: int, morphology: str, index: int) -> int:
    """The seed of sample ``index`` of ``morphology`` in a dataset drawn with ``seed``."""
    tag = zlib.crc32(morphology.encode())
    return int(np.random.SeedSequence([seed, tag, index]).generate_state(1)[0])


def generate_dataset(
    per_class: int, *, size=256, seed: int = 0, classes=CLASSES
) -> Iterator[tuple[str, NanowireSample]]:
    """``per_class`` samples of each class as ``(id, sample)``, class by class; ids like ``network_0003``.

    Each sample's seed depends only on (seed, class, index), so a class's
    samples are the same whatever other classes are asked for. Arguments are
    checked at once, not on the first ``next()``.
    """
    per_class = _count("per_class", per_class)
    if per_class is None:
        raise NanowireSSLError("per_class: must be an int >= 0, got None")
    _shape(size)
    seed = _check_seed(seed)
    classes = tuple(classes)
    bad = [c for c in classes if c not in CLASSES]
    if bad:
        raise NanowireSSLError(f"unknown morphology {bad[0]!r}; valid: {', '.join(CLASSES)}")

    def samples():
        for morphology in classes:
            for index in range(per_class):
                sample = generate(morphology, size=size, seed=sample_seed(seed, morphology, index))
                yield f"{morphology}_{index:04d}", sample

    return samples()
