"""PairVAE data physics: morphologies, their scattering patterns, and the S2 metric, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nanowire_ssl.errors import NanowireSSLError
from napari_nanowire_ssl.fewshot.symmetry import dihedral
from napari_nanowire_ssl.pairvae.metrics import autocorrelation, grouped_errors, s2_mae, two_point_correlation
from napari_nanowire_ssl.pairvae.morphologies import MORPHOLOGIES, generate_morphology
from napari_nanowire_ssl.pairvae.scattering import (
    beam_stop_mask,
    detector_counts,
    intensity,
    log_scale,
    saxs_dihedral,
)

N = 64


def perfect(kind, period=8.0, angle=0.0):
    return generate_morphology(kind, N, seed=0, period=period, angle=angle, grains=1, defects=False)


def brightest_peaks(pattern: np.ndarray, n: int) -> list[tuple[float, float]]:
    """(radius px, angle deg) of the ``n`` brightest local maxima (3x3) outside the beam stop, y pointing down."""
    from scipy.ndimage import maximum_filter

    pattern = np.where(beam_stop_mask(N, 2), 0, pattern)
    peaks = np.argwhere((pattern == maximum_filter(pattern, 3)) & (pattern > 0))
    peaks = sorted(peaks, key=lambda p: -pattern[tuple(p)])[:n]
    return [(float(np.hypot(y - N // 2, x - N // 2)), float(np.degrees(np.arctan2(y - N // 2, x - N // 2)) % 360))
            for y, x in peaks]


def test_lamellae_of_period_p_scatter_at_n_over_p_across_the_layers():
    # cos(2 pi x / 8) varies along x: first-order peaks at (N/2, N/2 +- N/P) = (32, 24) and (32, 40).
    pattern = intensity(perfect("lamellae").density)
    pattern[beam_stop_mask(N, 2)] = 0
    top = np.argsort(pattern.ravel())[::-1][:2]
    assert sorted(map(tuple, np.array(np.unravel_index(top, pattern.shape)).T.tolist())) == [(32, 24), (32, 40)]


def test_end_on_cylinders_give_six_peaks_60_degrees_apart_at_n_over_p():
    # The three waves at 10, 130 and 250 degrees give peaks at +-k: six directions 10 + 60 m.
    peaks = brightest_peaks(intensity(perfect("cylinders_end_on", angle=10).density), 6)
    radii, angles = zip(*peaks)
    assert np.allclose(radii, N / 8, atol=1.0)
    expected = (10 + 60 * np.arange(6)) % 360
    for a in angles:
        assert np.min(np.abs((expected - a + 180) % 360 - 180)) < 6


def test_side_on_cylinders_have_one_axis_and_spheres_a_square_lattice():
    (r1, a1), (r2, a2) = brightest_peaks(intensity(perfect("cylinders_side_on", angle=30).density), 2)
    assert r1 == pytest.approx(8, abs=1) and abs((a1 - a2) % 360 - 180) < 1  # +-k of one wave
    angles = sorted(a for _, a in brightest_peaks(intensity(perfect("spheres").density), 4))
    assert np.allclose(angles, [0, 90, 180, 270], atol=1)


def test_disordered_scatters_into_a_ring_at_n_over_p():
    pattern = intensity(generate_morphology("disordered", N, seed=3, period=8).density)
    yy, xx = np.mgrid[0:N, 0:N] - N // 2
    r = np.rint(np.hypot(yy, xx)).astype(int)
    profile = np.bincount(r.ravel(), pattern.ravel()) / np.bincount(r.ravel())
    assert 6 <= int(np.argmax(profile[3:20])) + 3 <= 10


def test_volume_fraction_period_and_defects_are_as_asked():
    for kind in MORPHOLOGIES:
        m = generate_morphology(kind, N, seed=1, volume_fraction=0.3)
        assert m.density.dtype == bool and m.density.shape == (N, N)
        assert m.volume_fraction == pytest.approx(0.3, abs=0.01)
        assert N / 10 <= m.period_px <= N / 5
    with pytest.raises(NanowireSSLError, match="unknown morphology 'gyroid'"):
        generate_morphology("gyroid")
    a, b = generate_morphology("lamellae", N, seed=5), generate_morphology("lamellae", N, seed=5)
    assert np.array_equal(a.density, b.density)


def test_beam_stop_zeroes_the_centre_and_counts_are_poisson():
    density = perfect("lamellae").density
    counts = detector_counts(density, rng=0, beam_stop_px=3)
    assert (counts[beam_stop_mask(N, 3)] == 0).all() and beam_stop_mask(N, 3).sum() == 29
    expected = detector_counts(density, noise=False, peak_counts=1e4, background=0.5)
    assert expected.max() == pytest.approx(1e4 + 0.5)
    assert np.array_equal(counts, np.round(counts))  # integer photon counts
    outside = ~beam_stop_mask(N, 3)
    assert counts[outside].mean() == pytest.approx(expected[outside].mean(), rel=0.05)
    scaled = log_scale(counts)
    assert scaled.max() == 1 and scaled.min() == 0


def test_rotating_the_sample_rotates_the_pattern_about_q0_exactly():
    density = generate_morphology("cylinders_end_on", N, seed=2).density
    pattern = intensity(density)
    for t in range(8):
        assert np.allclose(intensity(dihedral(density, t)), saxs_dihedral(pattern, t))


def test_s2_at_zero_is_the_volume_fraction_and_tends_to_its_square():
    rng = np.random.default_rng(0)
    noise = rng.random((N, N)) < 0.3
    s2 = two_point_correlation(noise)
    assert s2[0] == pytest.approx(noise.mean())
    assert np.allclose(s2[2:], noise.mean() ** 2, atol=0.01)
    m = generate_morphology("spheres", N, seed=4)
    assert two_point_correlation(m.density)[0] == pytest.approx(m.volume_fraction)


def test_s2_of_period_two_stripes_by_hand():
    # a[y, x] = 1 on even columns: S2(dy, dx) = 1/2 for even dx, else 0.
    # r = 1 holds (0, +-1), (+-1, 0), (+-1, +-1): 2 of 8 even -> 1/8.
    # r = 2 holds (0, +-2), (+-2, 0), (+-1, +-2), (+-2, +-1) (sqrt 5 rounds to 2): 8 of 12 even -> 1/3.
    stripes = np.zeros((16, 16), bool)
    stripes[:, ::2] = True
    assert two_point_correlation(stripes)[:3] == pytest.approx([0.5, 1 / 8, 1 / 3])
    assert s2_mae(stripes, stripes) == 0


def test_fft_autocorrelation_equals_the_direct_sum():
    a = np.random.default_rng(1).random((12, 12)) < 0.4
    direct = np.array([[np.mean(a & np.roll(a, (-dy, -dx), axis=(0, 1))) for dx in range(12)] for dy in range(12)])
    assert np.allclose(autocorrelation(a), direct)


def test_grouped_errors_average_per_morphology_and_overall():
    saxs_true = np.zeros((3, 8, 8))
    saxs_pred = saxs_true + np.array([0.1, 0.2, 0.3])[:, None, None]
    sem = np.zeros((3, 8, 8), bool)
    result = grouped_errors(saxs_pred, saxs_true, sem, sem, ["b", "a", "b"])
    assert list(result) == ["a", "b", "all"]
    assert result["b"]["saxs_mae"] == pytest.approx(0.2) and result["b"]["n"] == 2
    assert result["all"]["saxs_mae"] == pytest.approx(0.2) and result["a"]["s2_mae"] == 0
