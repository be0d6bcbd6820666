"""Percolation and clustering on masks whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from napari_nanowire_ssl.analysis.percolation import percolation
from napari_nanowire_ssl.errors import NanowireSSLError


def test_horizontal_line_spans_left_right_only():
    m = np.zeros((20, 30), bool)
    m[7, :] = True
    r = percolation(m)
    assert (r.spans_lr, r.spans_tb, r.percolates) == (True, False, False)
    assert r.n_clusters == 1 and r.largest_cluster_fraction == 1.0
    assert not r.spanning_mask.any()
    lr = percolation(m, criterion="lr")
    assert lr.percolates and np.array_equal(lr.spanning_mask, m)
    assert percolation(m, criterion="any").percolates
    assert not percolation(m, criterion="tb").percolates


def test_vertical_line_spans_top_bottom_only():
    m = np.zeros((20, 30), bool)
    m[:, 11] = True
    r = percolation(m)
    assert (r.spans_lr, r.spans_tb, r.percolates) == (False, True, False)
    assert percolation(m, criterion="tb").percolates
    assert not percolation(m, criterion="lr").percolates


def test_cross_spans_both_and_short_line_nothing():
    m = np.zeros((21, 25), bool)
    m[10, :] = True
    m[:, 12] = True
    m[2, 3:6] = True  # a separate short piece: not part of the spanning cluster
    r = percolation(m)
    assert r.spans_lr and r.spans_tb and r.percolates
    assert r.n_clusters == 2
    expected = m.copy()
    expected[2, 3:6] = False
    assert np.array_equal(r.spanning_mask, expected)
    assert r.largest_cluster_fraction == pytest.approx(expected.sum() / m.sum())


def test_lines_touching_three_edges_do_not_percolate_with_both():
    m = np.zeros((20, 20), bool)
    m[3, :10] = True  # touches the left edge only
    m[:, 18] = True  # touches top and bottom; the right edge is column 19
    r = percolation(m)
    assert r.spans_tb and not r.spans_lr and not r.percolates
    assert percolation(m, criterion="any").percolates


@pytest.mark.parametrize("d", [1, 2, 3])
def test_gap_of_exactly_link_distance_is_bridged_one_more_is_not(d):
    # Two horizontal segments whose nearest pixels are `distance` apart (centre to centre).
    def two_segments(distance):
        m = np.zeros((5, 40), bool)
        m[2, :10] = True
        m[2, 9 + distance :] = True
        return m

    linked = percolation(two_segments(d), link_distance=d, connectivity=4, criterion="lr")
    assert linked.n_clusters == 1 and linked.percolates
    apart = percolation(two_segments(d + 1), link_distance=d, connectivity=4, criterion="lr")
    assert apart.n_clusters == 2 and not apart.percolates and apart.largest_cluster_fraction < 1


def test_link_distance_does_not_grow_clusters_to_the_edges():
    m = np.zeros((10, 10), bool)
    m[1:9, 1:9] = True  # one pixel short of every edge
    r = percolation(m, link_distance=3, criterion="any")
    assert not r.spans_lr and not r.spans_tb and not r.percolates
    assert np.array_equal(r.labels > 0, m)


def test_link_distance_is_euclidean_not_chessboard():
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[1, 2] = True  # sqrt(5) = 2.24 apart
    assert percolation(m, link_distance=2).n_clusters == 2
    assert percolation(m, link_distance=2.3).n_clusters == 1
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[2, 2] = True  # sqrt(8) = 2.83 apart
    assert percolation(m, link_distance=2.3).n_clusters == 2
    assert percolation(m, link_distance=3).n_clusters == 1


def _spiral_path(size: int) -> list[tuple[int, int]]:
    """Pixels of a square spiral from the corner (0, 0) inwards, turns one pixel apart."""
    seen = np.zeros((size, size), bool)

    def free(y, x):
        return 0 <= y < size and 0 <= x < size and not seen[y, x]

    def visited(y, x):
        return 0 <= y < size and 0 <= x < size and seen[y, x]

    y, x, dy, dx = 0, 0, 0, 1
    seen[0, 0] = True
    path = [(0, 0)]
    while True:
        for _ in range(2):
            if free(y + dy, x + dx) and not visited(y + 2 * dy, x + 2 * dx):
                break
            dy, dx = dx, -dy  # turn clockwise
        else:
            return path
        y, x = y + dy, x + dx
        seen[y, x] = True
        path.append((y, x))


def test_spanning_spiral_is_one_cluster_that_percolates():
    path = _spiral_path(31)
    m = np.zeros((31, 31), bool)
    m[tuple(np.array(path).T)] = True
    assert len(path) > 400 and m[0].all() and m[:, -1].all() and m[-1].all() and m[2:, 0].all()
    r = percolation(m, connectivity=4)
    assert r.n_clusters == 1 and r.percolates
    assert np.array_equal(r.spanning_mask, m)
    # Cut the curve after its first lap: the outer part still touches all four
    # edges, the inner part touches none.
    cut = m.copy()
    cut[path[200]] = False
    r = percolation(cut, connectivity=4)
    assert r.n_clusters == 2 and r.percolates
    outer = np.zeros_like(m)
    outer[tuple(np.array(path[:200]).T)] = True
    assert np.array_equal(r.spanning_mask, outer)
    assert r.largest_cluster_fraction == pytest.approx((len(path) - 201) / (len(path) - 1))
    # With a link distance of 2 the neighbouring turns merge across the gaps.
    assert percolation(cut, link_distance=2).n_clusters == 1


def test_empty_and_full_masks():
    empty = percolation(np.zeros((8, 9)))
    assert (empty.n_clusters, empty.largest_cluster_fraction, empty.percolates) == (0, 0.0, False)
    assert not empty.spans_lr and not empty.spans_tb
    assert empty.labels.dtype == np.int32 and not empty.labels.any()
    full = percolation(np.ones((8, 9)), link_distance=2)
    assert (full.n_clusters, full.largest_cluster_fraction, full.percolates) == (1, 1.0, True)
    assert full.spanning_mask.all()


def test_diagonal_pixels_join_with_8_connectivity_only():
    m = np.eye(12, dtype=np.uint8) * 255
    eight = percolation(m, connectivity=8)
    assert eight.n_clusters == 1 and eight.percolates
    four = percolation(m, connectivity=4)
    assert four.n_clusters == 12 and not four.percolates
    assert four.largest_cluster_fraction == pytest.approx(1 / 12)
    assert sorted(np.unique(four.labels)) == list(range(13))
    # A link distance of sqrt(2) makes 4-connectivity behave like 8.
    assert percolation(m, connectivity=4, link_distance=1.5).n_clusters == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"criterion": "all"}, {"connectivity": 6}, {"connectivity": True}, {"link_distance": -1},
     {"link_distance": float("nan")}, {"link_distance": "far"}],
)
def test_invalid_options_raise(kwargs):
    with pytest.raises(NanowireSSLError):
        percolation(np.ones((4, 4)), **kwargs)


def test_non_2d_mask_raises():
    with pytest.raises(NanowireSSLError, match="2D"):
        percolation(np.ones((2, 4, 4)))


def _dbscan_partition(mask: np.ndarray, eps: float) -> np.ndarray:
    """Cluster ids per wire pixel as DBSCAN(eps, min_samples=2) would give, noise as singletons.

    With min_samples=2 every point with a neighbour within eps is a core point,
    so DBSCAN's clusters are the connected components of the eps-graph.
    """
    pts = np.argwhere(mask)
    pairs = np.array(sorted(cKDTree(pts).query_pairs(r=eps + 1e-9)), dtype=int).reshape(-1, 2)
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pts),) * 2)
    return connected_components(graph, directed=False)[1]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("d", [2, 3])
def test_link_distance_clustering_equals_dbscan(seed, d):
    rng = np.random.default_rng(seed)
    mask = rng.random((48, 56)) < rng.uniform(0.05, 0.3)
    expected = _dbscan_partition(mask, d)
    for connectivity in (4, 8):
        r = percolation(mask, connectivity=connectivity, link_distance=d)
        got = r.labels[mask]
        assert got.min() == 1 and r.n_clusters == len(np.unique(expected))
        assert _same_partition(got, expected)
