"""Placement of partitions on the mesh: minimise Σ traffic × hops. Spectral start (Fiedler
ordering laid out on a snake path) refined by simulated annealing over pair swaps."""

from __future__ import annotations

import numpy as np


def hops_matrix(rows: int, cols: int) -> np.ndarray:
    """Manhattan (XY-routing) hop counts between all core slots, row-major."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.abs(r[:, None] - r[None, :]) + np.abs(c[:, None] - c[None, :])


def hop_cost(traffic: np.ndarray, slot_of: np.ndarray, hops: np.ndarray) -> float:
    return float((traffic * hops[np.ix_(slot_of, slot_of)]).sum())


def _snake(rows: int, cols: int) -> list[int]:
    return [r * cols + (c if r % 2 == 0 else cols - 1 - c) for r in range(rows) for c in range(cols)]


def spectral_start(traffic: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Order parts by the Fiedler vector of the symmetric traffic graph; lay them on a snake."""
    n = traffic.shape[0]
    w = traffic + traffic.T
    lap = np.diag(w.sum(1)) - w
    if n > 2 and w.any():
        _, vecs = np.linalg.eigh(lap)
        order = np.argsort(vecs[:, 1], kind="stable")
    else:
        order = np.arange(n)
    slot_of = np.empty(n, dtype=np.int64)
    slot_of[order] = np.array(_snake(rows, cols))[:n]
    return slot_of


def anneal(traffic: np.ndarray, slot_of: np.ndarray, hops: np.ndarray, seed: int = 0,
           steps: int = 20000) -> np.ndarray:
    """Simulated annealing over swaps of two parts' slots (or a part and a free slot)."""
    n_slots = hops.shape[0]
    n = traffic.shape[0]
    w = traffic + traffic.T
    if n < 2 or not w.any():
        return slot_of
    rng = np.random.default_rng(seed)
    # slot -> part (-1 = free), so a part may move to a free slot
    part_at = -np.ones(n_slots, dtype=np.int64)
    part_at[slot_of] = np.arange(n)
    slots = slot_of.copy()
    cost = hop_cost(traffic, slots, hops)
    temp = max(cost / max(n, 1) * 0.05, 1e-9)
    cool = (1e-4) ** (1.0 / steps)
    a = rng.integers(0, n_slots, steps)
    b = rng.integers(0, n_slots, steps)
    u = rng.random(steps)
    best, best_cost = slots.copy(), cost
    for k in range(steps):
        sa, sb = a[k], b[k]
        pa, pb = part_at[sa], part_at[sb]
        if sa == sb or (pa < 0 and pb < 0):
            continue
        delta = 0.0
        if pa >= 0:
            delta += float(w[pa] @ (hops[sb, slots] - hops[sa, slots]))
        if pb >= 0:
            delta += float(w[pb] @ (hops[sa, slots] - hops[sb, slots]))
        if pa >= 0 and pb >= 0:  # both terms above saw the other part unmoved; a swap keeps their distance
            delta += 2.0 * float(w[pa, pb]) * hops[sa, sb]
        if delta < 0 or u[k] < np.exp(-delta / temp):
            if pa >= 0:
                slots[pa] = sb
            if pb >= 0:
                slots[pb] = sa
            part_at[sa], part_at[sb] = pb, pa
            cost += delta
            if cost < best_cost - 1e-9:
                best, best_cost = slots.copy(), cost
        temp *= cool
    return best
