"""The mapper: split groups into pieces under per-core capacities, take turns (rounds) when
the model does not fit, partition pieces onto cores (METIS, traffic-weighted) or with the
sequential baseline, place partitions on the mesh, and measure the resulting NoC traffic. On a
system of several chips the groups are first split into a pipeline of runs, one per chip
(mapping/chips.py); each chip then takes its own rounds, one chip after another."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.isa.arch import Arch
from spikeforge.isa.limits import MAX_CORES
from spikeforge.isa.program import OPTIMIZERS, STATE_WORD_BYTES
from spikeforge.mapping.bands import band_choices, read_elements, set_bands
from spikeforge.mapping.chips import Cut, cuts, split
from spikeforge.mapping.groups import Edge, Group, build_groups, piece_bounds
from spikeforge.mapping.placement import anneal, hop_cost, hops_matrix, spectral_start

FILL = 0.85  # share of the chip's membrane SRAM a round plans to fill
PIECE_SHARE = 0.25  # largest piece, as a share of a core's membrane SRAM (eases packing)
PIECES_PER_CORE = 4  # pieces per core a round aims at, so that whole pieces balance the load
EVENT_BYTES = 4  # one address event per spike (AER packet payload)


@dataclass(frozen=True)
class MapConfig:
    training: bool = False
    timesteps: int = 4
    batch: int = 1
    spike_rate: float = 0.1  # expected spikes per neuron per step, weights the traffic
    strategy: str = "metis"  # metis | sequential
    seed: int = 0
    optimizer: str = "sgd"  # of the weight update (isa.program.OPTIMIZERS)
    chips: int = 1  # chips of the system the model is split over (mapping/chips.py)


@dataclass
class Piece:
    """Units [lo, hi) of a group, in one round, on one core of one chip."""

    id: int
    group: str
    lo: int
    hi: int
    round: int
    core: tuple[int, int] = (0, 0)
    chip: int = 0


@dataclass(frozen=True)
class Link:
    """Per sample and step: group `src`'s values from core `a` to core `b` (spikes multicast
    once per destination core, `fwd` bytes), and the error gradients back (`bwd` bytes)
    when training. `dst` is the first group on core b that reads them."""

    src: str
    dst: str
    a: tuple[int, int]
    b: tuple[int, int]
    fwd: int
    bwd: int
    round: int
    spike: bool
    chip: int = 0


@dataclass
class Plan:
    graph: Graph
    arch: Arch
    config: MapConfig
    groups: list[Group]
    pieces: list[Piece]
    rounds: int
    traffic: np.ndarray  # [cores, cores] NoC bytes per sample and time step (row = source), summed over chips
    packets: int  # multicast packets per sample and time step (one per destination core)
    links: list[Link] = field(default_factory=list)
    map_seconds: float = 0.0
    chip_of: dict[str, int] = field(default_factory=dict)  # group -> its chip
    cuts: list[Cut] = field(default_factory=list)  # tensors that cross between chips
    round_chip: list[int] = field(default_factory=list)  # round -> the chip it runs on

    def group(self, name: str) -> Group:
        return next(g for g in self.groups if g.name == name)

    def pieces_of(self, group: str) -> list[Piece]:
        return [p for p in self.pieces if p.group == group]

    @property
    def hop_bytes(self) -> float:
        return hop_cost(self.traffic, np.arange(self.arch.n_cores), hops_matrix(self.arch.rows, self.arch.cols))


# ---- per-unit needs --------------------------------------------------------------------------

def _vb(arch: Arch) -> int:
    return arch.value_bytes


def membrane_bytes(g: Group, units: int, arch: Arch) -> int:
    return math.ceil(g.states * units / g.units) * _vb(arch)


def weight_bytes(g: Group, units: int, arch: Arch) -> int:
    """Weights of `units` of g: their channels' whole kernels (a band needs its channel's)."""
    w = g.weights * math.ceil(units / g.bands) / g.channels if g.split_weights else g.weights
    return math.ceil(w) * _vb(arch)


def state_bytes(g: Group, units: int, arch: Arch, optimizer: str) -> int:
    """The optimizer state (FP32 words) the update keeps for the weights of `units` of g."""
    return weight_bytes(g, units, arch) // _vb(arch) * OPTIMIZERS[optimizer] * STATE_WORD_BYTES


def bptt_bytes(g: Group, units: int, arch: Arch, T: int) -> int:
    """Per step: stored membrane potential, plus 1-bit spike and surrogate mask per neuron, plus
    the operands a matmul keeps for its backward (1 bit per spike)."""
    share = units / g.units
    n = g.neurons * share
    saved = sum((k / 8 if spikes else k * _vb(arch)) * (share if split else 1) for k, spikes, split in g.saved)
    return math.ceil(T * (g.states * share * _vb(arch) + 2 * n / 8 + saved))


def _work(g: Group, training: bool) -> float:
    return g.syn_ops * (3 if training else 1) + g.neurons * (2 if training else 1) + g.elem_ops


# ---- rounds and pieces -----------------------------------------------------------------------

def _pieces(groups: list[Group], arch: Arch, cfg: MapConfig, chip_of: list[int]) -> tuple[list[Piece], dict[int, int]]:
    """Each chip's run of groups packed by `_pack`, the chips' rounds one after another. Returns
    the pieces and that packing (piece id -> core index on its chip), a feasible fallback."""
    pieces: list[Piece] = []
    packing: dict[int, int] = {}
    r = -1
    for chip in sorted(set(chip_of)):
        r = _pack([g for g, k in zip(groups, chip_of) if k == chip], arch, cfg, chip, r + 1, pieces, packing)
    return pieces, packing


def _pack(groups: list[Group], arch: Arch, cfg: MapConfig, chip: int, r: int, pieces: list[Piece],
          packing: dict[int, int]) -> int:
    """Split groups into pieces (at most PIECE_SHARE of a core's membrane SRAM, or smaller for
    load balance), then pack them in topological order onto the chip's cores from round r,
    least-loaded core with room first; when no core has room the chip starts a new round (layers
    take turns on the cores). A recurrent set runs its steps in order, so all of it goes into one
    round. Appends to `pieces` and `packing`; returns the last round."""
    cap = arch.capacity("membrane")
    total_mem = sum(membrane_bytes(g, g.units, arch) for g in groups)
    n_rounds = max(1, math.ceil(total_mem / (FILL * cap * arch.n_cores)))
    total_work = sum(_work(g, cfg.training) for g in groups) / n_rounds or 1.0
    used, load = np.zeros(arch.n_cores), np.zeros(arch.n_cores)
    for g in groups:  # channels larger than a core are split into row bands first
        if g.states and membrane_bytes(g, 1, arch) > cap:
            _band(g, arch)

    def bounds(g: Group) -> list[tuple[int, int]]:
        by_mem = math.ceil(membrane_bytes(g, g.units, arch) / (PIECE_SHARE * cap)) if g.states else 1
        by_work = math.ceil(PIECES_PER_CORE * arch.n_cores * _work(g, cfg.training) / total_work)
        return piece_bounds(g.units, g.units if g.bands > 1 else max(1, by_mem, by_work))

    def room(m: float, used: np.ndarray) -> np.ndarray:
        return np.flatnonzero(used + m <= FILL * cap) if used.any() else np.arange(arch.n_cores)

    def fits(gs: list[Group]) -> bool:
        """Would the pieces of gs all find room in this round?"""
        u, w = used.copy(), load.copy()
        for g in gs:
            for lo, hi in bounds(g):
                m = membrane_bytes(g, hi - lo, arch)
                free = room(m, u)
                if not len(free):
                    return False
                k = int(free[np.argmin(w[free])])
                u[k] += m
                w[k] += _work(g, cfg.training) * (hi - lo) / g.units
        return True

    for g in groups:
        if g.recurrence == g.name:
            rec = [h for h in groups if h.recurrence == g.name]
            if not fits(rec):
                r += 1
                used[:], load[:] = 0, 0
                if not fits(rec):
                    raise SpikeforgeError(
                        f"layer '{g.name}': its recurrent set ({', '.join(h.name for h in rec)}) needs more "
                        f"membrane SRAM than the chip's cores hold at once; a recurrence cannot take turns on them")
        for lo, hi in bounds(g):
            m = membrane_bytes(g, hi - lo, arch)
            free = room(m, used)
            if not len(free):
                r += 1
                used[:], load[:] = 0, 0
                free = np.arange(arch.n_cores)
            k = int(free[np.argmin(load[free])])
            used[k] += m
            load[k] += _work(g, cfg.training) * (hi - lo) / g.units
            packing[len(pieces)] = k
            pieces.append(Piece(len(pieces), g.name, lo, hi, r, chip=chip))
    return r


def _band(g: Group, arch: Arch) -> None:
    """Split each channel of g into row bands, one band per piece: the fewest bands that pack a
    core's planned fill (FILL of its membrane SRAM) to at least FILL, else the best packing of
    those that fit it, else bands of a whole core each."""
    cap = arch.capacity("membrane")
    per_unit = membrane_bytes(g, 1, arch)
    choices = band_choices(g)
    if len(choices) == 1:
        raise SpikeforgeError(
            f"layer '{g.name}': one unit (output channel or neuron) needs {per_unit / 1024:.1f} KiB of "
            f"membrane state, more than a core's membrane SRAM ({cap / 1024:.1f} KiB)")
    fill = FILL * cap

    def packing(n: int) -> float:  # share of the planned fill that whole bands use
        band = per_unit / n
        return math.floor(fill / band) * band / fill

    fit = [n for n in choices if per_unit / n <= fill]
    good = [n for n in fit if packing(n) >= FILL]
    best = good[:1] or sorted(fit, key=packing, reverse=True)[:1] or [n for n in choices if per_unit / n <= cap][:1]
    if not best:
        raise SpikeforgeError(
            f"layer '{g.name}': one output channel needs {per_unit / 1024:.1f} KiB of membrane state; even in its "
            f"finest {choices[-1]} row bands one band needs {per_unit / choices[-1] / 1024:.1f} KiB, more than "
            f"a core's membrane SRAM ({cap / 1024:.1f} KiB)")
    set_bands(g, best[0])


# ---- traffic between pieces ------------------------------------------------------------------

def needed_elements(graph: Graph, edge: Edge, src: Group, p: Piece, q: Piece, dst: Group) -> int:
    """Elements of p's output that piece q reads."""
    if dst.bands > 1 and not edge.aligned:
        return read_elements(graph, edge, src, p.lo, p.hi, dst, [(q.lo, q.hi)])
    per_unit = edge.elements / src.units
    if not edge.aligned:
        return round(per_unit * (p.hi - p.lo))
    # aligned: q's unit range mapped onto the producer's units
    scale = src.units / dst.units
    lo, hi = max(p.lo, q.lo * scale), min(p.hi, q.hi * scale)
    return max(0, round(per_unit * (hi - lo)))


def _flows(graph: Graph, plan_groups: dict[str, Group], pieces: list[Piece], cfg: MapConfig, arch: Arch):
    """(p, q, fwd_bytes, bwd_bytes, spike, read) for every producer piece p read by consumer piece
    q in the same round (per sample and step). Forward: spikes as address events, real values
    dense. `read`: (lo, hi, elements per unit) of p's units that q reads, or None where q reads
    row bands (a halo, not a unit range)."""
    by_group: dict[tuple[str, int], list[Piece]] = {}
    for p in pieces:
        by_group.setdefault((p.group, p.round), []).append(p)
    out = []
    for dst in plan_groups.values():
        for e in dst.in_edges:
            if e.src not in plan_groups:
                continue
            src = plan_groups[e.src]
            rounds = {p.round for p in pieces if p.group == dst.name}
            for r in rounds:
                for q in by_group.get((dst.name, r), []):
                    for p in by_group.get((src.name, r), []):
                        n = needed_elements(graph, e, src, p, q, dst)
                        if n <= 0:
                            continue
                        fwd = _fwd_bytes(n, e.spike, cfg, arch)
                        bwd = n * _vb(arch) if cfg.training else 0
                        out.append((p, q, fwd, bwd, e.spike, _read(e, src, p, q, dst)))
    return out


def _fwd_bytes(n: float, spike: bool, cfg: MapConfig, arch: Arch) -> int:
    """Bytes of n elements on the NoC: spikes as address events at the planned rate, else values."""
    return math.ceil(n * cfg.spike_rate) * EVENT_BYTES if spike else round(n * _vb(arch))


def _read(edge: Edge, src: Group, p: Piece, q: Piece, dst: Group) -> tuple[float, float, float] | None:
    """The range of p's units that q reads along `edge` (as needed_elements), with the elements per unit."""
    if dst.bands > 1 and not edge.aligned:
        return None
    per_unit = edge.elements / src.units
    if not edge.aligned:
        return p.lo, p.hi, per_unit
    scale = src.units / dst.units
    return max(p.lo, q.lo * scale), min(p.hi, q.hi * scale), per_unit


def _piece_links(flows, core_index: dict[int, int], bwd_cap: dict[int, int], to_bytes) -> dict[tuple[int, int], list]:
    """(producer piece id, destination core) -> [fwd bytes, bwd bytes, first consumer piece]:
    what the consumer pieces on that core read of the piece goes there once (multicast: the
    union of their unit ranges; the largest need where one reads row bands); their gradients
    are summed there before they return (at most the producer piece's size). to_bytes(elements,
    spike): their forward bytes."""
    out: dict[tuple[int, int], list] = {}
    reads: dict[tuple[int, int], list] = {}
    for p, q, fwd, bwd, spike, read in flows:
        a, b = core_index[p.id], core_index[q.id]
        if a == b:
            continue
        e = out.setdefault((p.id, b), [0, 0, q, spike])
        e[0] = max(e[0], fwd)
        e[1] = min(e[1] + bwd, bwd_cap[p.id])
        if q.id < e[2].id:
            e[2] = q
        if read is not None:
            reads.setdefault((p.id, b), []).append(read)
    for key, rs in reads.items():
        e = out[key]
        e[0] = max(e[0], to_bytes(_union(rs), e[3]))
    return out


def _union(reads: list[tuple[float, float, float]]) -> float:
    """Elements in the union of unit ranges (lo, hi, elements per unit) of one producer piece."""
    total, end = 0.0, -math.inf
    for lo, hi, per_unit in sorted(reads):
        lo = max(lo, end)
        if hi > lo:
            total += (hi - lo) * per_unit
            end = hi
    return total


def _core_traffic(flows, core_index: dict[int, int], n_cores: int, bwd_cap, to_bytes) -> tuple[np.ndarray, int]:
    t = np.zeros((n_cores, n_cores))
    links = _piece_links(flows, core_index, bwd_cap, to_bytes)
    for (pid, b), (fwd, bwd, *_) in links.items():
        a = core_index[pid]
        t[a, b] += fwd
        t[b, a] += bwd
    return t, len(links)


# ---- partitioning ----------------------------------------------------------------------------

def _loads(pieces: list[Piece], groups: dict[str, Group], arch: Arch, cfg: MapConfig):
    mem = np.array([membrane_bytes(groups[p.group], p.hi - p.lo, arch) for p in pieces], dtype=float)
    work = np.array([_work(groups[p.group], cfg.training) * (p.hi - p.lo) / groups[p.group].units
                     for p in pieces])
    return mem, work


@contextlib.contextmanager
def _quiet_stdout():
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _metis(pieces, flows, mem, work, n_parts: int, seed: int) -> np.ndarray | None:
    import pymetis

    n = len(pieces)
    if n <= n_parts:
        return np.arange(n, dtype=np.int64)
    idx = {p.id: k for k, p in enumerate(pieces)}
    w: dict[tuple[int, int], float] = {}
    fan: dict[int, int] = {}
    for p, q, *_ in flows:
        fan[p.id] = fan.get(p.id, 0) + 1
    for p, q, fwd, bwd, *_ in flows:
        a, b = sorted((idx[p.id], idx[q.id]))
        if a != b:  # clique expansion of p's multicast hyperedge
            w[(a, b)] = w.get((a, b), 0.0) + fwd / fan[p.id] + bwd
    adj: list[dict[int, int]] = [dict() for _ in range(n)]
    top = max(w.values(), default=1.0)
    for (a, b), v in w.items():
        iv = max(1, int(round(1e4 * v / top)))  # small ints: METIS sums them in 32 bits
        adj[a][b] = adj[b][a] = iv
    xadj, adjncy, ew = [0], [], []
    for a in range(n):
        for b, v in sorted(adj[a].items()):
            adjncy.append(b)
            ew.append(v)
        xadj.append(len(adjncy))
    # one weight per piece: its work share (membrane capacity is enforced by _repair after)
    share = work / max(work.sum(), 1)
    vw = np.maximum(1, np.round(share * 1e4)).astype(int).tolist()
    # k-way METIS (pymetis 2025.2.2) sometimes returns every vertex in one part with skewed edge
    # weights; recursive bisection does not. Keep the first balanced answer, else none.
    limit = 1.5 * sum(vw) / n_parts + max(vw)
    for recursive in (True, False):
        with _quiet_stdout():  # METIS prints notes on tiny sub-problems straight to fd 1
            _, parts = pymetis.part_graph(n_parts, adjacency=pymetis.CSRAdjacency(xadj, adjncy), vweights=vw,
                                          eweights=ew or None, options=pymetis.Options(seed=seed),
                                          recursive=recursive)
        parts = np.asarray(parts, dtype=np.int64)
        if np.bincount(parts, weights=vw, minlength=n_parts).max() <= limit:
            return parts
    return None


def _sequential(mem, work, n_parts: int, cap: float) -> np.ndarray:
    """Baseline: fill cores in order, each up to an equal share of the work still to place
    (or to the membrane limit)."""
    parts = np.zeros(len(mem), dtype=np.int64)
    k, left, w_used, m_used = 0, float(work.sum()), 0.0, 0.0
    for i in range(len(mem)):
        target = left / (n_parts - k)
        if k < n_parts - 1 and m_used and (w_used + work[i] / 2 > target or m_used + mem[i] > cap):
            k, left, w_used, m_used = k + 1, left - w_used, 0.0, 0.0
        parts[i] = k
        w_used += work[i]
        m_used += mem[i]
    return parts


def _repair(parts: np.ndarray, mem: np.ndarray, n_parts: int, cap: float, fallback: np.ndarray) -> np.ndarray:
    """Move pieces off parts whose membrane use exceeds the core's capacity."""
    parts = parts.copy()
    used = np.bincount(parts, weights=mem, minlength=n_parts)
    for i in np.argsort(-mem, kind="stable"):
        if used[parts[i]] <= cap:
            continue
        room = cap - used
        room[parts[i]] = -np.inf
        j = int(np.argmax(room))
        if room[j] < mem[i]:
            continue
        used[parts[i]] -= mem[i]
        used[j] += mem[i]
        parts[i] = j
    return fallback if (used > cap + 1e-9).any() else parts


# ---- the driver ------------------------------------------------------------------------------

def map_graph(graph: Graph, arch: Arch, cfg: MapConfig = MapConfig()) -> Plan:
    """Map a graph onto a chip. Pieces of each round are partitioned onto cores independently;
    one placement (partition -> mesh slot) per round minimises that round's traffic x hops."""
    import time

    t0 = time.perf_counter()
    if cfg.strategy not in ("metis", "sequential"):
        raise SpikeforgeError(f"mapping strategy: must be metis or sequential, got {cfg.strategy!r}")
    if isinstance(cfg.chips, bool) or not isinstance(cfg.chips, int) or cfg.chips < 1:
        raise SpikeforgeError(f"chips: must be a positive int, got {cfg.chips!r}")
    if cfg.chips * arch.n_cores > MAX_CORES:
        raise SpikeforgeError(f"chips: {cfg.chips} chips of {arch.n_cores} cores are more than {MAX_CORES} cores, "
                              "the limit of the mapper")
    groups = build_groups(graph)
    gmap = {g.name: g for g in groups}
    cap = arch.capacity("membrane")
    runs = split(groups, cfg.chips, FILL * cap * arch.n_cores, _vb(arch), cfg.training,
                 lambda g: membrane_bytes(g, g.units, arch))
    pieces, packing = _pieces(groups, arch, cfg, runs)
    n_rounds = pieces[-1].round + 1 if pieces else 0
    flows = _flows(graph, gmap, pieces, cfg, arch)
    bwd_cap = {p.id: _out_bytes(gmap[p.group], p) * _vb(arch) for p in pieces}

    def to_bytes(n: float, spike: bool) -> int:
        return _fwd_bytes(n, spike, cfg, arch)

    hops = hops_matrix(arch.rows, arch.cols)
    core_index: dict[int, int] = {}
    for r in range(n_rounds):
        rp = [p for p in pieces if p.round == r]
        rflows = [f for f in flows if f[0].round == r]
        mem, work = _loads(rp, gmap, arch, cfg)
        packed = np.array([packing[p.id] for p in rp], dtype=np.int64)
        seq = _repair(_sequential(mem, work, arch.n_cores, FILL * cap), mem, arch.n_cores, cap, packed)
        if cfg.strategy == "metis":
            metis = _metis(rp, rflows, mem, work, arch.n_cores, cfg.seed)
            candidates = [seq] + ([] if metis is None else [_repair(metis, mem, arch.n_cores, cap, packed)])
            parts, slot_of = _best_layout(rp, rflows, candidates, work, arch, hops, cfg.seed, bwd_cap, to_bytes)
        else:
            parts, slot_of = seq, np.arange(arch.n_cores)
        for k, p in enumerate(rp):
            core_index[p.id] = int(slot_of[parts[k]])
            p.core = divmod(core_index[p.id], arch.cols)
    traffic, packets = _core_traffic(flows, core_index, arch.n_cores, bwd_cap, to_bytes)
    links = _links(_piece_links(flows, core_index, bwd_cap, to_bytes), pieces, arch)
    chip_of = {g.name: k for g, k in zip(groups, runs)}
    round_chip = [0] * n_rounds
    for p in pieces:
        round_chip[p.round] = p.chip
    plan = Plan(graph, arch, cfg, groups, pieces, n_rounds, traffic, packets, links, chip_of=chip_of,
                cuts=cuts(groups, chip_of), round_chip=round_chip)
    plan.map_seconds = time.perf_counter() - t0
    return plan


def _out_bytes(g: Group, p: Piece) -> int:
    """Elements of the group's last op held by piece p."""
    return round(g.out_size * (p.hi - p.lo) / g.units)


def _links(piece_links, pieces: list[Piece], arch: Arch) -> list[Link]:
    """Aggregate piece links to (source group, source core, destination core)."""
    by_id = {p.id: p for p in pieces}
    agg: dict[tuple, list] = {}
    for (pid, b), (fwd, bwd, q, spike) in piece_links.items():
        p = by_id[pid]
        key = (p.group, p.core, divmod(b, arch.cols), p.round)
        e = agg.setdefault(key, [0, 0, q, spike])
        e[0] += fwd
        e[1] += bwd
        if q.id < e[2].id:
            e[2] = q
    return [Link(g, q.group, a, b, fwd, bwd, r, spike, q.chip)
            for (g, a, b, r), (fwd, bwd, q, spike) in sorted(agg.items())]


def _imbalance(parts: np.ndarray, work: np.ndarray, n_parts: int) -> float:
    w = np.bincount(parts, weights=work, minlength=n_parts)
    return float(w.max() / w.mean()) if w.mean() else 1.0


def _best_layout(rp, rflows, candidates, work, arch: Arch, hops, seed: int, bwd_cap, to_bytes):
    """The partition and placement with the least traffic x hops among the candidate partitions
    whose work balance is no worse than the first (sequential) one's or within 10 % of the best;
    each is placed row-major, spectrally, and annealed from the better of the two."""
    balance = [_imbalance(parts, work, arch.n_cores) for parts in candidates]
    ok = [parts for parts, b in zip(candidates, balance) if b <= max(1.1 * min(balance), balance[0])]
    best = None
    for parts in ok:
        local = {p.id: int(parts[k]) for k, p in enumerate(rp)}
        t, _ = _core_traffic(rflows, local, arch.n_cores, bwd_cap, to_bytes)
        starts = [np.arange(arch.n_cores), spectral_start(t, arch.rows, arch.cols)]
        start = min(starts, key=lambda s: hop_cost(t, s, hops))
        for slot_of in (start, anneal(t, start, hops, seed=seed)):
            cost = hop_cost(t, slot_of, hops)
            if best is None or cost < best[0]:
                best = (cost, parts, slot_of)
    return best[1], best[2]
