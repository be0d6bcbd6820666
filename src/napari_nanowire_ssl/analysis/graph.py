"""The wire graph of a skeleton: branches between junctions and end points, with
crossings merged into one junction and the wires traced through them.

skan (``skan.csr.PathGraph``) splits the skeleton's pixel graph into paths
between pixels whose degree is not 2. On top of it (formulas in docs/analysis.md):

- Residual spurs: end branches (junction to end point) of at most ``prune_px``
  pixels are removed and skan is run again (at most :data:`PRUNE_PASSES` times);
  this catches the forks at square wire ends that the pixel pruning of
  :func:`.wires.prune_spurs` regrows.
- Crossings: two wires crossing leave two 3-way junctions in the skeleton,
  joined by a short branch (about ``w / sin(theta / 2)`` long for width ``w``
  and crossing angle ``theta``). Two junctions joined by a branch are merged
  when their inscribed discs (radius = distance to the background) overlap, or
  when both have degree 3 and their four other arms line up as two straight
  wires crossing (antiparallel within :data:`STRAIGHT_DEG`, offset less than
  half a width plus :data:`OFFSET_SLACK_PX`) and the joining branch is at most
  :data:`CROSSING_SLACK` ``* (w + 1) / sin(theta / 2)`` long. The merged junction sits at the mean of the
  merged pixels.
- Wires: at each junction the most nearly antiparallel pair of arms (within
  :data:`STRAIGHT_DEG` of a straight line) continues one wire, greedily; arms
  left over end a wire there. This is what the resistance model's contacts
  and the wire count of the stick-percolation ratio use.
- Branch length is the length of a polyline through every
  :data:`POLYLINE_STEP`-th pixel of the path and its end pixels, extended
  straight to merged junction centres: within 0.3 % on digital straight lines at
  any angle and on circles of radius >= 20 px, where skan's chain-code length
  (1 per axial, sqrt 2 per diagonal step) is up to 8 % long and the
  Vossepoel-Smeulders skeleton length of :mod:`.wires` up to 2 % short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

POLYLINE_STEP = 5  # px between the vertices of the polyline a branch is measured on
PRUNE_PASSES = 3  # skan passes that remove end branches of at most prune_px pixels
STRAIGHT_DEG = 30.0  # two arms continue one wire when they are antiparallel within this
CROSSING_SLACK = 1.5  # joining branch of a crossing: at most this x (w + 1) / sin(theta / 2)
OFFSET_SLACK_PX = 1.5  # arms of one wire across a crossing: offset < w / 2 + this
ARM_WIDTHS = 3.0  # an arm's direction is measured over this many wire widths (at least ARM_MIN_PX)...
ARM_MIN_PX = 10  # ... starting one width past the junction disc


# Neighbour offsets (dy, dx) of the skeleton graph, one of each +/- pair.
_STEPS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _pairs(shape, dy: int, dx: int):
    """Slices (a, b) such that a pixel of a[...] and b[...] are (dy, dx) apart."""
    h, w = shape
    a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
    b = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
    return a, b


def skeleton_edges(skeleton: np.ndarray):
    """Yield (a, b, edge, diagonal) per step direction: ``edge`` marks edges between
    ``skeleton[a]`` and ``skeleton[b]`` pixels."""
    for dy, dx in _STEPS:
        a, b = _pairs(skeleton.shape, dy, dx)
        edge = skeleton[a] & skeleton[b]
        if dy and dx:  # diagonal: drop it when a common 4-neighbour joins the two pixels
            h, w = skeleton.shape
            c1 = skeleton[dy:, max(0, -dx) : w - max(0, dx)]  # (y + 1, x)
            c2 = skeleton[: h - dy, max(0, dx) : w - max(0, -dx)]  # (y, x + dx)
            edge &= ~(c1 | c2)
        yield a, b, edge, bool(dy and dx)



@dataclass(frozen=True)
class WireGraph:
    """Nodes (junctions, end points) and branches of a skeleton, in pixels.

    ``src`` / ``dst`` index ``nodes``; ``through[b, e]`` is the branch end
    (``2 * branch + end``, end 0 = src, 1 = dst) that continues the same wire
    across the node at end ``e`` of branch ``b``, or -1. ``wire[b]`` numbers the
    wires (chains of branches joined by ``through``). Paths (row, col of each
    pixel, src to dst) are ``path_coords[path_indptr[b]:path_indptr[b + 1]]``.
    """

    shape: tuple
    skeleton: np.ndarray
    nodes: np.ndarray  # (n, 2) row, col
    degree: np.ndarray  # (n,) branch ends at each node (a loop counts twice)
    node_radius: np.ndarray  # (n,) distance to the background at the node, px
    src: np.ndarray
    dst: np.ndarray
    length_px: np.ndarray
    mean_width_px: np.ndarray
    through: np.ndarray  # (b, 2)
    wire: np.ndarray
    path_indptr: np.ndarray
    path_coords: np.ndarray

    @property
    def n_branches(self) -> int:
        return len(self.src)

    @property
    def n_wires(self) -> int:
        return int(self.wire.max()) + 1 if len(self.wire) else 0

    @property
    def junctions(self) -> np.ndarray:
        return self.nodes[self.degree >= 3]

    @property
    def end_points(self) -> np.ndarray:
        return self.nodes[self.degree == 1]

    @property
    def end_to_end_px(self) -> np.ndarray:
        return np.linalg.norm(self.nodes[self.src] - self.nodes[self.dst], axis=1)

    @property
    def tortuosity(self) -> np.ndarray:
        """Length / end-to-end distance per branch (NaN for loops)."""
        e2e = self.end_to_end_px
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(e2e > 0, self.length_px / np.where(e2e > 0, e2e, 1.0), np.nan)

    def wire_lengths_px(self) -> np.ndarray:
        return np.bincount(self.wire, weights=self.length_px, minlength=self.n_wires)

    def components(self) -> tuple[int, np.ndarray]:
        """Connected components of the node graph: their number and each node's component."""
        n = len(self.nodes)
        if n == 0:
            return 0, np.zeros(0, dtype=np.int32)
        adj = coo_matrix((np.ones(self.n_branches), (self.src, self.dst)), shape=(n, n))
        return connected_components(adj, directed=False)


def _paths(skeleton: np.ndarray):
    """skan's paths of ``skeleton``: (indptr, pixel ids, pixel coordinates, pixel degrees), or None.

    The pixel graph is :func:`skeleton_edges` (a diagonal step left out where a
    common 4-neighbour joins the two pixels, so staircase corners make no
    junction), handed to skan's ``PathGraph``, which walks the paths.
    """
    coords = np.argwhere(skeleton)
    if len(coords) < 2:
        return None
    from skan.csr import PathGraph

    index = np.full(skeleton.shape, -1, dtype=np.int32)
    index[tuple(coords.T)] = np.arange(len(coords), dtype=np.int32)
    i, j, d = [], [], []
    for a, b, edge, diagonal in skeleton_edges(skeleton):
        i.append(index[a][edge])
        j.append(index[b][edge])
        d.append(np.full(len(i[-1]), math.sqrt(2.0) if diagonal else 1.0))
    i, j, d = np.concatenate(i), np.concatenate(j), np.concatenate(d)
    if not len(i):
        return None
    n = len(coords)
    adj = coo_matrix((np.concatenate([d, d]), (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(n, n)).tocsr()
    pg = PathGraph.from_graph(adj=adj, node_coordinates=coords)
    if pg.n_paths == 0:
        return None
    return pg.paths.indptr.astype(np.int64), pg.paths.indices.astype(np.int64), coords, np.diff(adj.indptr)


def _prune(skeleton: np.ndarray, prune_px: int):
    """Remove end branches of at most ``prune_px`` pixels, re-running skan until none is left."""
    paths = _paths(skeleton)
    for _ in range(PRUNE_PASSES):
        if paths is None or prune_px <= 0:
            break
        indptr, idx, coords, deg = paths
        first, last = idx[indptr[:-1]], idx[indptr[1:] - 1]
        n = np.diff(indptr)
        spur = (n <= prune_px + 1) & (((deg[first] == 1) & (deg[last] >= 3)) | ((deg[last] == 1) & (deg[first] >= 3)))
        if not spur.any():
            break
        pid = np.repeat(np.arange(len(n)), n)
        drop = spur[pid] & (deg[idx] < 3)  # the spur's pixels, not its junction
        skeleton = skeleton.copy()
        skeleton[tuple(coords[idx[drop]].T)] = False
        paths = _paths(skeleton)
    return skeleton, paths


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)

    def labels(self) -> np.ndarray:
        roots = np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)
        return np.unique(roots, return_inverse=True)[1] if len(roots) else roots


def _arm_geometry(indptr, pcoords, radius_at_end, width):
    """For each branch end (2b + e): a point on the arm past the junction disc and the
    arm's direction there (unit vector pointing away from the node)."""
    n = np.diff(indptr)
    b = np.repeat(np.arange(len(n)), 2)
    end = np.tile([0, 1], len(n))
    w = np.maximum(width[b], 1.0)
    i1 = np.minimum(np.ceil(radius_at_end + w).astype(np.int64), n[b] - 1)
    i2 = np.minimum(i1 + np.ceil(np.maximum(ARM_WIDTHS * w, ARM_MIN_PX)).astype(np.int64), n[b] - 1)
    i1 = np.where(i2 == i1, 0, i1)  # a short branch: its whole chord

    def at(i):  # the i-th pixel counted from this end
        return pcoords[np.where(end == 0, indptr[b] + i, indptr[b + 1] - 1 - i)].astype(float)

    p1, p2 = at(i1), at(i2)
    d = p2 - p1
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return p1, d / np.where(norm > 0, norm, 1.0)


def wire_graph(skeleton: np.ndarray, edt: np.ndarray, width: np.ndarray, *, prune_px: int = 0) -> WireGraph:
    """The wire graph of ``skeleton`` (a thin 2D skeleton) with ``edt`` the mask's
    Euclidean distance to the background (the junction discs' radii) and ``width`` its local wire
    width (``wires.width_map``: the branches' widths); see the module docstring."""
    skeleton, paths = _prune(np.asarray(skeleton, dtype=bool), prune_px)
    if paths is None:
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
        return WireGraph(skeleton.shape, skeleton, np.zeros((0, 2)), empty_i, empty_f, empty_i, empty_i, empty_f,
                         empty_f, np.zeros((0, 2), np.int64), empty_i, np.zeros(1, np.int64), np.zeros((0, 2), np.int64))
    indptr, idx, coords, _ = paths
    n_pix = np.diff(indptr)
    n_paths = len(n_pix)
    pcoords = coords[idx]
    pid = np.repeat(np.arange(n_paths), n_pix)
    pos = np.arange(len(idx)) - indptr[pid]

    # Nodes: the path end pixels; degree = branch ends at each.
    first, last = idx[indptr[:-1]], idx[indptr[1:] - 1]
    node_pixels, inverse = np.unique(np.concatenate([first, last]), return_inverse=True)
    src0, dst0 = inverse[:n_paths], inverse[n_paths:]
    n_nodes = len(node_pixels)
    degree0 = np.bincount(src0, minlength=n_nodes) + np.bincount(dst0, minlength=n_nodes)
    node_xy = coords[node_pixels].astype(float)
    radius = edt[tuple(coords[node_pixels].T)]

    # Polyline length through every POLYLINE_STEP-th pixel (and the last).
    vertex = (pos % POLYLINE_STEP == 0) | (pos == n_pix[pid] - 1)
    vx, vpid = pcoords[vertex].astype(float), pid[vertex]
    same = vpid[1:] == vpid[:-1]
    seg = np.linalg.norm(np.diff(vx, axis=0), axis=1)
    poly = np.bincount(vpid[1:][same], weights=seg[same], minlength=n_paths)

    # Mean width away from the junction discs (the whole path if nothing is left).
    widths = width[tuple(pcoords.T)]
    d_src = np.linalg.norm(pcoords - node_xy[src0[pid]], axis=1)
    d_dst = np.linalg.norm(pcoords - node_xy[dst0[pid]], axis=1)
    outside = (d_src > radius[src0[pid]]) & (d_dst > radius[dst0[pid]])
    n_out = np.bincount(pid[outside], minlength=n_paths)
    mean_out = np.bincount(pid[outside], weights=widths[outside], minlength=n_paths) / np.maximum(n_out, 1)
    mean_all = np.bincount(pid, weights=widths, minlength=n_paths) / n_pix
    width = np.where(n_out > 0, mean_out, mean_all)

    radius_at_end = np.stack([radius[src0], radius[dst0]], axis=1).ravel()
    arm_point, arm_dir = _arm_geometry(indptr, pcoords, radius_at_end, width)
    ends_at = np.stack([src0, dst0], axis=1).ravel()  # node of each branch end
    node_ends = [[] for _ in range(n_nodes)]
    for k, node in enumerate(ends_at.tolist()):
        node_ends[node].append(k)

    # Merge junctions: first those whose discs overlap, then pairs of 3-way groups that
    # are one crossing of two straight wires.
    uf = _UnionFind(n_nodes)
    internal = np.zeros(n_paths, bool)
    joins = np.flatnonzero((src0 != dst0) & (degree0[src0] >= 3) & (degree0[dst0] >= 3)).tolist()
    for b in joins:
        if poly[b] < radius[src0[b]] + radius[dst0[b]]:
            uf.union(int(src0[b]), int(dst0[b]))
            internal[b] = True
    group = uf.labels()
    # Short loops inside a merged junction (a hole of the skeleton in the overlap) go too.
    internal |= (group[src0] == group[dst0]) & (poly <= 2.0 * (radius[src0] + radius[dst0]))
    outside = [[] for _ in range(int(group.max()) + 1)]
    for k, node in enumerate(ends_at.tolist()):
        if not internal[k // 2]:
            outside[group[node]].append(k)
    for b in joins:
        ga, gc = group[src0[b]], group[dst0[b]]
        if ga != gc and len(outside[ga]) == 3 and len(outside[gc]) == 3 and _crossing(
                b, outside[ga], outside[gc], poly[b], arm_point, arm_dir, width):
            uf.union(int(src0[b]), int(dst0[b]))
            internal[b] = True
    group = uf.labels()
    n_groups = int(group.max()) + 1
    counts = np.bincount(group, minlength=n_groups)
    nodes = np.stack([np.bincount(group, weights=node_xy[:, i], minlength=n_groups) for i in (0, 1)], axis=1)
    nodes /= counts[:, None]
    node_radius = np.bincount(group, weights=radius, minlength=n_groups) / counts
    keep = ~internal
    src, dst = group[src0][keep], group[dst0][keep]
    length = poly[keep] + np.linalg.norm(pcoords[indptr[:-1]][keep] - nodes[src], axis=1) \
        + np.linalg.norm(pcoords[indptr[1:] - 1][keep] - nodes[dst], axis=1)
    degree = np.bincount(src, minlength=n_groups) + np.bincount(dst, minlength=n_groups)

    # Renumber the kept branches and their ends; pair the arms at each node into wires.
    old_to_new = np.full(n_paths, -1)
    old_to_new[keep] = np.arange(int(keep.sum()))
    ends_by_group = [[] for _ in range(n_groups)]
    for k in range(2 * n_paths):
        if keep[k // 2]:
            ends_by_group[group[ends_at[k]]].append(k)
    through = np.full((int(keep.sum()), 2), -1, dtype=np.int64)
    wires = _UnionFind(int(keep.sum()))
    limit = -math.cos(math.radians(STRAIGHT_DEG))
    for ends in ends_by_group:
        if len(ends) < 2:
            continue
        e = np.array(ends)
        cos = arm_dir[e] @ arm_dir[e].T
        pairs = sorted((cos[i, j], i, j) for i in range(len(e)) for j in range(i + 1, len(e)) if cos[i, j] < limit)
        used = set()
        for _, i, j in pairs:
            if i in used or j in used:
                continue
            used.update((i, j))
            ki, kj = int(e[i]), int(e[j])
            bi, bj = old_to_new[ki // 2], old_to_new[kj // 2]
            through[bi, ki % 2] = 2 * bj + kj % 2
            through[bj, kj % 2] = 2 * bi + ki % 2
            wires.union(bi, bj)
    sel = keep[pid]
    new_indptr = np.concatenate([[0], np.cumsum(n_pix[keep])])
    return WireGraph(
        shape=skeleton.shape, skeleton=skeleton, nodes=nodes, degree=degree, node_radius=node_radius,
        src=src, dst=dst, length_px=length, mean_width_px=width[keep], through=through,
        wire=wires.labels(), path_indptr=new_indptr, path_coords=pcoords[sel],
    )


def _crossing(b, ends_a, ends_c, length, arm_point, arm_dir, width) -> bool:
    """Whether branch ``b`` joining two 3-way junctions is the overlap of two straight
    wires crossing: the other arms pair up across it as two straight lines."""
    arms_a = [k for k in ends_a if k // 2 != b]
    arms_c = [k for k in ends_c if k // 2 != b]
    if len(arms_a) != 2 or len(arms_c) != 2:
        return False
    limit = -math.cos(math.radians(STRAIGHT_DEG))
    for pairing in (((arms_a[0], arms_c[0]), (arms_a[1], arms_c[1])),
                    ((arms_a[0], arms_c[1]), (arms_a[1], arms_c[0]))):
        ok = True
        for i, j in pairing:
            u, v = arm_dir[i], arm_dir[j]
            w = max(width[i // 2], width[j // 2])
            d = arm_point[j] - arm_point[i]
            offset = abs(u[0] * d[1] - u[1] * d[0])  # distance of j's arm point from i's arm line
            if float(u @ v) >= limit or offset > w / 2 + OFFSET_SLACK_PX:
                ok = False
                break
        if ok:
            (i, _), (k, _) = pairing
            sin_half = math.sqrt(max(0.0, (1.0 - abs(float(arm_dir[i] @ arm_dir[k]))) / 2.0))
            w = max(width[i // 2], width[k // 2])
            return sin_half > 0 and length <= CROSSING_SLACK * (w + 1.0) / sin_half
    return False
