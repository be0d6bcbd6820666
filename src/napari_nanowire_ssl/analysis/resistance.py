"""Sheet resistance of a wire graph by Kirchhoff's laws (scipy.sparse).

Circuit (formulas in docs/analysis.md): each branch is a resistor of
``wire_resistance * length``; the arms that continue one wire through a
junction (:attr:`.graph.WireGraph.through`) share a contact node, and the
contact nodes of different wires at one junction are joined pairwise by
``junction_resistance``. An end point whose inscribed disc reaches an electrode
edge (within :data:`EDGE_SLACK_PX`) is joined to that electrode by the wire's
resistance over the remaining distance to the edge of the field. Electrode A is
held at 1 V and B at 0 V; the nodes of the components that join both are
solved for, ``R = 1 V / I`` and the sheet resistance is
``R_s = R * (electrode length) / (electrode separation)``, ``inf`` when no path
joins the electrodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve

from ..errors import NanowireSSLError
from .graph import WireGraph

ELECTRODES = ("lr", "tb")  # left-right or top-bottom electrode pair
DEFAULT_ELECTRODES = "lr"
DEFAULT_JUNCTION_RESISTANCE_OHM = 0.0
EDGE_SLACK_PX = 1.0  # an end point touches an edge when it is within its radius + this


@dataclass(frozen=True)
class SheetResistance:
    """``resistance_ohm`` between the electrodes, ``sheet_resistance_ohm_sq``, and per
    branch the current as a fraction of the total (0 where no current flows)."""

    resistance_ohm: float
    sheet_resistance_ohm_sq: float
    branch_current: np.ndarray
    electrodes: str


def check_resistances(wire_resistance_ohm_per_um, junction_resistance_ohm, electrodes) -> tuple:
    """Validated (wire resistance > 0, junction resistance >= 0, electrodes)."""
    try:
        r_wire, r_junction = float(wire_resistance_ohm_per_um), float(junction_resistance_ohm)
    except (TypeError, ValueError):
        raise NanowireSSLError(f"wire / junction resistance: must be numbers, got "
                               f"{wire_resistance_ohm_per_um!r} / {junction_resistance_ohm!r}") from None
    if not (math.isfinite(r_wire) and r_wire > 0):
        raise NanowireSSLError(f"wire resistance: must be a finite number > 0 ohm/um, got {wire_resistance_ohm_per_um!r}")
    if not (math.isfinite(r_junction) and r_junction >= 0):
        raise NanowireSSLError(f"junction resistance: must be a finite number >= 0 ohm, got {junction_resistance_ohm!r}")
    if electrodes not in ELECTRODES:
        raise NanowireSSLError(f"electrodes: must be one of {', '.join(ELECTRODES)}, got {electrodes!r}")
    return r_wire, r_junction, electrodes


def sheet_resistance(graph: WireGraph, *, pixel_size_nm: float, wire_resistance_ohm_per_um: float,
                     junction_resistance_ohm: float = DEFAULT_JUNCTION_RESISTANCE_OHM,
                     electrodes: str = DEFAULT_ELECTRODES) -> SheetResistance:
    """Solve the graph's resistor network between two opposite edges of the field."""
    r_wire, r_junction, electrodes = check_resistances(wire_resistance_ohm_per_um, junction_resistance_ohm,
                                                       electrodes)
    ohm_per_px = r_wire * float(pixel_size_nm) / 1000.0
    h, w = graph.shape
    nb = graph.n_branches
    no_current = SheetResistance(math.inf, math.inf, np.zeros(nb), electrodes)
    if nb == 0:
        return no_current

    # Contact nodes: one per branch end, the ends that continue one wire united.
    ends = np.arange(2 * nb)
    partner = graph.through.ravel()
    parent = ends.copy()
    paired = partner >= 0
    parent[paired] = np.minimum(ends[paired], partner[paired])
    contact = np.unique(parent, return_inverse=True)[1]
    n_contacts = int(contact.max()) + 1
    node_of_end = np.stack([graph.src, graph.dst], axis=1).ravel()

    # Junction contacts: the contact nodes of different wires at one node, pairwise
    # (one node when the junction resistance is zero).
    order = np.argsort(node_of_end, kind="stable")
    pairs = []
    for group in np.split(order, np.flatnonzero(np.diff(node_of_end[order])) + 1):
        cs = np.unique(contact[group])
        if len(cs) > 1:
            i, j = np.triu_indices(len(cs), 1)
            pairs.append(np.stack([cs[i], cs[j]], axis=1))
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    if r_junction == 0 and len(pairs):
        adj = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_contacts,) * 2)
        contact = connected_components(adj, directed=False)[1][contact]
        n_contacts, pairs = int(contact.max()) + 1, pairs[:0]
    rows, cols = [contact[0::2], pairs[:, 0]], [contact[1::2], pairs[:, 1]]
    g = [1.0 / np.maximum(graph.length_px * ohm_per_px, 1e-300), np.full(len(pairs), 1.0 / max(r_junction, 1e-300))]

    # Electrodes: nodes whose disc reaches the edge (wire ends cut by the border, or a
    # junction whose stub to the border was pruned); each of their contacts is joined to
    # the electrode through the wire's resistance on to the edge of the field.
    y, x = graph.nodes[:, 0], graph.nodes[:, 1]
    reach = graph.node_radius + EDGE_SLACK_PX
    if electrodes == "lr":
        to_a, to_b, dist_a, dist_b = x <= reach, (w - 1 - x) <= reach, x + 0.5, w - 0.5 - x
        span, separation = h, w
    else:
        to_a, to_b, dist_a, dist_b = y <= reach, (h - 1 - y) <= reach, y + 0.5, h - 0.5 - y
        span, separation = w, h
    a_nodes, b_nodes = n_contacts, n_contacts + 1
    for touches, dist, electrode in ((to_a & ~to_b, dist_a, a_nodes), (to_b & ~to_a, dist_b, b_nodes)):
        at_edge = np.unique(np.stack([node_of_end, contact], axis=1)[touches[node_of_end]], axis=0)
        rows.append(at_edge[:, 1])
        cols.append(np.full(len(at_edge), electrode))
        g.append(1.0 / np.maximum(dist[at_edge[:, 0]] * ohm_per_px, 1e-300))
    i, j, gv = np.concatenate(rows), np.concatenate(cols), np.concatenate(g)
    keep = i != j
    i, j, gv = i[keep], j[keep], gv[keep]
    n = n_contacts + 2
    adj = sparse.coo_matrix((gv, (i, j)), shape=(n, n)).tocsr()
    adj = adj + adj.T
    _, comp = connected_components(adj, directed=False)
    if comp[a_nodes] != comp[b_nodes]:
        return no_current
    live = np.flatnonzero(comp == comp[a_nodes])
    sub = adj[live][:, live].tocsr()
    lap = sparse.diags(np.asarray(sub.sum(axis=1)).ravel()) - sub
    pos = {int(v): k for k, v in enumerate(live)}
    ia, ib = pos[a_nodes], pos[b_nodes]
    free = np.setdiff1d(np.arange(len(live)), [ia, ib])
    v = np.zeros(len(live))
    v[ia] = 1.0
    if len(free):
        lff = lap[free][:, free].tocsc()
        rhs = -lap[free][:, [ia]].toarray().ravel()
        v[free] = spsolve(lff, rhs)
    current = float(np.asarray(sub[ia].toarray()).ravel() @ (v[ia] - v))
    if not current > 0:
        return no_current
    volts = np.zeros(n)
    volts[live] = v
    flow = np.abs(volts[contact[0::2]] - volts[contact[1::2]]) / np.maximum(graph.length_px * ohm_per_px, 1e-300)
    resistance = 1.0 / current
    return SheetResistance(resistance, resistance * span / separation, flow / current, electrodes)
