"""Spatial bands: when one output channel of a layer needs more membrane state than a core holds
(a 224x224 map on a small core), the group's units become row bands of its channels. Unit
k of a banded group is band k % bands of channel k // bands: the same rows of every op's output
map (the band count divides each op's rows, so a band is a contiguous element range of every op).
A band of a window op (conv, pooling) reads the rows of its input under its output rows plus the
halo the kernel reaches; the weights of its channel are whole on every band's core."""

from __future__ import annotations

import math

from spikeforge.isa import Graph
from spikeforge.mapping.groups import Edge, Group

_WINDOW = frozenset({"conv1d", "conv2d", "pool2d"})


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def band_choices(g: Group) -> list[int]:
    """Band counts that split every op of g into equal row ranges of each channel, ascending."""
    rows = [o.type.shape[1] for o in g.ops if len(o.type.shape) >= 2]
    if len(g.root.type.shape) < 2 or not rows:
        return [1]
    common = math.gcd(*rows)
    return [n for n in _divisors(common) if all(o.type.size % (g.units * n) == 0 for o in g.ops)]


def set_bands(g: Group, bands: int) -> None:
    """Make g's units the `bands` row bands of each of its channels."""
    g.units *= bands
    g.bands = bands


def band_rows(rows: int, bands: int, j: int) -> tuple[int, int]:
    """Rows [lo, hi) of band j of a map of `rows` rows."""
    return j * rows // bands, (j + 1) * rows // bands


def _input_rows(g: Group, in_rows: int, j: int) -> tuple[int, int]:
    """Rows of g's root input that band j of its output reads: its rows under the kernel, halo
    included (every row for an op that is not a window op)."""
    root = g.root
    lo, hi = band_rows(root.type.shape[1], g.bands, j)
    if root.kind not in _WINDOW:
        return band_rows(in_rows, g.bands, j)
    p = root.params
    first = lambda v: v if isinstance(v, int) else v[0]  # noqa: E731 (conv1d: ints; 2-D: pairs, rows first)
    k, pad = first(p["kernel"]), first(p.get("padding", 0))
    s = first(p.get("stride") or p["kernel"])
    d = first(p.get("dilation", 1))
    return max(0, lo * s - pad), min(in_rows, (hi - 1) * s - pad + d * (k - 1) + 1)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def rows_read(g: Group, spans: list[tuple[int, int]], in_rows: int) -> list[tuple[int, int]]:
    """Input rows that the units in `spans` ([lo, hi) ranges) of banded group g read (merged intervals)."""
    bands: set[int] = set()
    for lo, hi in spans:
        bands |= set(range(g.bands)) if hi - lo >= g.bands else {u % g.bands for u in range(lo, hi)}
    return _merged([_input_rows(g, in_rows, j) for j in sorted(bands)])


def _overlap(a: list[tuple[int, int]], lo: int, hi: int) -> int:
    return sum(max(0, min(h, hi) - max(l, lo)) for l, h in a)


def read_elements(graph: Graph, e: Edge, src: Group | None, plo: int, phi: int, dst: Group,
                  spans: list[tuple[int, int]]) -> int:
    """Elements of edge e's tensor held by producer units [plo, phi) of `src` (all of the tensor
    when `src` is None) that the units in `spans` of the banded group `dst` read through its
    root's window (rows that several of them read are read once)."""
    shape = graph[e.src_op].type.shape
    channels, in_rows = shape[0], shape[1]
    per_row = e.elements // (channels * in_rows)
    need = rows_read(dst, spans, in_rows)
    if src is None or src.bands == 1:
        n_channels = channels if src is None else round(channels * (phi - plo) / src.units)
        return n_channels * _overlap(need, 0, in_rows) * per_row
    return sum(_overlap(need, *band_rows(in_rows, src.bands, u % src.bands)) for u in range(plo, phi)) * per_row
