"""Model-parallel mapping over the chips of a system: a pipeline of layer groups. Each chip gets a
contiguous run of groups (in topological order); within its run a chip maps as one chip does
(pieces, rounds, placement). The runs are chosen in two steps:
1. capacity: the fewest rounds R that the busiest chip needs (its run's membrane state over one
   round's worth, FILL of its cores' membrane SRAM), over every split into at most `chips` runs;
2. traffic: among the splits in which every run needs at most R rounds, the one whose cut
   tensors (spikes forward, errors back, per sample and step) are fewest bytes, each counted once
   per chip boundary it crosses (bytes x links on a line of chips). Ties: fewer chips.
A model that fits one chip stays on chip 0. Every tensor read on another chip than its producer's
is a `Cut`; the code generator sends it over the chip-to-chip links (docs/multichip.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from spikeforge.mapping.groups import Group


@dataclass(frozen=True)
class Cut:
    """Per sample and step, `elements` of op `tensor` (in group `src`, on chip `a`) cross to chip
    `b`, where `consumers` (one group per edge that reads it) take them; in training each
    consumer sends the tensor's errors back."""

    tensor: str
    src: str
    a: int
    b: int
    elements: int
    spike: bool
    consumers: tuple[str, ...]

    def fwd_bytes(self, value_bytes: int) -> float:
        """Per sample and step: a spike tensor as a bitmap, a real one in values."""
        return self.elements / 8 if self.spike else self.elements * value_bytes

    def bwd_bytes(self, value_bytes: int) -> int:
        """Per sample and step of a training step: the errors of every consumer, in values."""
        return self.elements * value_bytes * len(self.consumers)


def _edge_bytes(groups: list[Group], vb: int, training: bool) -> list[tuple[int, int, float]]:
    """(producer index, last consumer index, bytes per sample and step) of every tensor that a
    later group reads: its image once, and its errors once per consuming edge."""
    index = {g.name: i for i, g in enumerate(groups)}
    tensors: dict[str, list] = {}
    for j, g in enumerate(groups):
        for e in g.in_edges:
            if e.src not in index:
                continue
            t = tensors.setdefault(e.src_op, [index[e.src], j, (e.elements / 8 if e.spike else e.elements * vb)])
            t[1] = max(t[1], j)
            t[2] += e.elements * vb if training else 0
    return [tuple(t) for t in tensors.values()]


def split(groups: list[Group], chips: int, per_round: float, value_bytes: int, training: bool,
          membrane: Callable[[Group], int]) -> list[int]:
    """The chip of each group (see the module's docstring): `per_round` is the membrane bytes one
    round of a chip holds, `membrane(g)` a group's."""
    n = len(groups)
    if chips == 1 or n <= 1:
        return [0] * n
    prefix = [0.0]
    for g in groups:
        prefix.append(prefix[-1] + membrane(g))

    def rounds(i: int, j: int) -> int:  # rounds groups[i:j] need on one chip
        return max(1, math.ceil((prefix[j] - prefix[i]) / per_round))

    def runs_needed(cap: int) -> int:  # greedy: fewest contiguous runs of at most `cap` rounds each
        runs, start = 1, 0
        for j in range(1, n + 1):
            if rounds(start, j) > cap:
                runs, start = runs + 1, j - 1
        return runs

    lo, hi = max(rounds(i, i + 1) for i in range(n)), rounds(0, n)
    while lo < hi:  # the fewest rounds the busiest chip needs
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs_needed(mid) <= chips else (mid + 1, hi)
    cap = lo
    crossing = [0.0] * n  # bytes crossing the boundary after group j
    for src, last, nbytes in _edge_bytes(groups, value_bytes, training):
        for j in range(src, last):
            crossing[j] += nbytes
    # best[k][j]: least crossing bytes of groups[:j] in k runs of at most `cap` rounds
    inf = math.inf
    best = [[inf] * (n + 1) for _ in range(chips + 1)]
    back = [[0] * (n + 1) for _ in range(chips + 1)]
    best[0][0] = 0.0
    for k in range(1, chips + 1):
        for j in range(1, n + 1):
            for i in range(j - 1, -1, -1):
                if rounds(i, j) > cap:
                    break
                cost = best[k - 1][i] + (crossing[i - 1] if i else 0.0)
                if cost < best[k][j]:
                    best[k][j], back[k][j] = cost, i
    k = min(range(1, chips + 1), key=lambda k: (best[k][n], k))
    chip_of, j = [0] * n, n
    while k:
        i = back[k][j]
        chip_of[i:j] = [k - 1] * (j - i)
        j, k = i, k - 1
    return chip_of


def cuts(groups: list[Group], chip_of: dict[str, int]) -> list[Cut]:
    """Every tensor read on another chip than its producer's, once per (tensor, reading chip)."""
    found: dict[tuple[str, int], list] = {}
    for g in groups:
        for e in g.in_edges:
            if e.src in chip_of and chip_of[e.src] != chip_of[g.name]:
                c = found.setdefault((e.src_op, chip_of[g.name]), [e.src, e.elements, e.spike, []])
                c[3].append(g.name)
    return [Cut(t, src, chip_of[src], b, elements, spike, tuple(cons))
            for (t, b), (src, elements, spike, cons) in found.items()]
