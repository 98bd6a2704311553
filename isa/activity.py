"""Counting apart from pricing (Accelergy's split). `count` walks a program once and yields its
`Activity`: operations per engine and energy class (performed and dense), SRAM read and write
bits per buffer, DRAM bytes per category and direction, NoC bits and bit-hops, chip-to-chip link
bits and bit-links, and per stage the cycles of the engines, the DRAM, the NoC and the links.
`price(activity, arch)` turns counts into energy terms and `time(activity, arch)` into cycles by
what bounds them; neither walks again, so a report can be re-priced under another energy table,
clock or DRAM.

The walk is array arithmetic: each instruction is evaluated once for all iterations of its loops
(a vector over the (sample, step) instances), with the work the caller measured or, without
measurements, the dense work of the graph (what the compiler's dataflow search prices).
The rules are in docs/simulation.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from spikeforge.isa.arch import Arch, xy_route
from spikeforge.isa.ir import Graph
from spikeforge.isa.ops import SPIKE, couples, matmul_split
from spikeforge.isa.program import CATEGORIES, OPTIMIZERS, STATE_WORD_BYTES, Instr, Loop, Program, chip_of, coord_of

ENGINES = ("fp", "bp", "wg")
OP_CLASSES = ("ac", "mac", "neuron_fwd", "neuron_bwd", "elem", "sgd", "adam")
TERMS = ("compute", "sram", "noc", "dram", "static", "link")
BOUNDS = ("compute", "dram", "noc", "barrier", "link")
GB_PORT = (0, 0)  # the router the global buffers hang off (see the preset)

# measured work: (layer, stats key, element range [lo, hi), sample index vector, step index vector) -> ops
Work = Callable[[str, str, int, int, np.ndarray, np.ndarray], np.ndarray]
# measured spike traffic: (layer, step index vector) -> spikes sent / spikes the plan assumed
SpikeScale = Callable[[str, np.ndarray], np.ndarray]


def _zeros(keys) -> dict:
    return dict.fromkeys(keys, 0.0)


@dataclass
class Counts:
    """What one layer (or the chip, or one core) did: counts only, no energies."""

    ops: dict[str, float] = field(default_factory=lambda: _zeros(OP_CLASSES))
    syn: dict[str, float] = field(default_factory=lambda: _zeros(ENGINES))  # synaptic ops performed
    dense_syn: dict[str, float] = field(default_factory=lambda: _zeros(ENGINES))
    sram_read_bits: dict[str, float] = field(default_factory=dict)
    sram_write_bits: dict[str, float] = field(default_factory=dict)
    dram_read: dict[str, float] = field(default_factory=lambda: _zeros(CATEGORIES))  # bytes
    dram_write: dict[str, float] = field(default_factory=lambda: _zeros(CATEGORIES))
    noc_bits: float = 0.0
    noc_bit_hops: float = 0.0
    link_bits: float = 0.0  # sent over chip-to-chip links
    link_bit_hops: float = 0.0  # bits x links crossed
    engine_cycles: float = 0.0  # busy cycles of its engine instructions, summed over engines

    @property
    def dram_bytes(self) -> float:
        return sum(self.dram_read.values()) + sum(self.dram_write.values())

    def dram_by_category(self) -> dict[str, float]:
        return {c: self.dram_read[c] + self.dram_write[c] for c in CATEGORIES}


@dataclass
class Stage:
    """One stage (the instructions between two barriers or loop boundaries) over its `instances`
    (sample, step) iterations: per instance, the busiest engine's cycles, the DRAM bytes and the
    global-buffer bytes (of the busiest chip), the NoC cycles (busiest link or longest message),
    and the bytes of the busiest chip-to-chip link and the most links a message crosses."""

    instances: int
    compute: np.ndarray
    dram_bytes: np.ndarray
    gb_bytes: np.ndarray
    noc: np.ndarray
    barrier: bool
    link_bytes: np.ndarray
    link_hops: np.ndarray
    layers: tuple[str, ...] = ()  # the layers its instructions name, in order


@dataclass
class Activity:
    total: Counts
    layers: dict[str, Counts]
    cores: dict[tuple[int, int], Counts]
    busy: dict[tuple[int, int], dict[str, float]]  # engine busy cycles per core
    peak: dict[tuple[int, int], dict[str, int]]  # bytes of each buffer one instruction touches, at most its size
    stages: list[Stage]
    link_flits: dict[tuple, float]  # per mesh link (of each chip: (chip, link) keys), whole run
    chips: int = 1  # of the program's system


@dataclass
class Timing:
    cycles: int
    by_bound: dict[str, int]
    seconds: float

    @property
    def bottleneck(self) -> str:
        return max(BOUNDS, key=lambda b: self.by_bound[b])


# ---- the walk --------------------------------------------------------------------------------

class _Seg:
    """A stage being counted: per instance vectors, summed over the cores."""

    def __init__(self, n: int):
        self.n = n
        self.eng: dict[tuple, np.ndarray] = {}
        self.dram: dict[int, np.ndarray] = {}  # per chip
        self.gb: dict[int, np.ndarray] = {}
        self.links: dict[tuple, np.ndarray] = {}
        self.msg = np.zeros(n)
        self.chip_links: dict[tuple, np.ndarray] = {}  # bytes per chip-to-chip link
        self.hops = np.zeros(n)
        self.barrier = False
        self.layers: dict[str, None] = {}


def _instances(loops: tuple[Loop, ...], B: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample and step index of every iteration of the loop nest (flattened, outermost first)."""
    if not loops:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    grids = np.meshgrid(*[np.arange(l.count) for l in loops], indexing="ij")
    b = np.zeros(grids[0].size, np.int64)
    t = np.zeros(grids[0].size, np.int64)
    for l, g in zip(loops, grids):
        idx = np.minimum(g.ravel(), (B if l.var == "batch" else T) - 1)
        if l.var == "batch":
            b = idx
        else:
            t = idx
    return b, t


class _Static:
    """What of an engine instruction's cost does not depend on the measured work."""

    def __init__(self, graph: Graph, arch: Arch, training: bool, optimizer: str):
        self.layers = {op.name: op for op in graph}
        self.work = {li.name: li for li in graph.layers()}
        self.arch, self.training, self.optimizer = arch, training, optimizer
        self.vb = arch.value_bytes * 8
        self.cache: dict[Instr, tuple] = {}
        self.buffers: dict[tuple[str, str], object] = {}

    def __call__(self, ins: Instr) -> tuple:
        got = self.cache.get(ins)
        if got is None:
            got = self.cache[ins] = self._static(ins)
        return got

    def _buffer(self, role: str, engine: str):
        got = self.buffers.get((role, engine))
        if got is None:
            got = self.buffers[(role, engine)] = self.arch.buffer_for(role, engine)
        return got

    def _static(self, ins: Instr) -> tuple:
        """(engine, stats key or None, op class, dense ops, read bits and write bits per buffer, port cycles)."""
        layer, lo, hi = ins.args
        op, li = self.layers[layer], self.work[layer]
        share = (hi - lo) / max(op.type.size, 1)
        n, vb = hi - lo, self.vb
        eng, kind = ins.op.split(".")
        spike_in = bool(op.inputs) and self.layers[op.inputs[0]].type.kind == SPIKE
        in_bits = (self.layers[op.inputs[0]].type.size if op.inputs else 0) * (1 if spike_in else vb)
        wbits = li.params * share * vb
        per_ch = max(op.type.size, 1) / (op.type.shape[0] if op.type.shape else 1)
        if n < per_ch and math.ceil(hi / per_ch) - lo // per_ch == 1:
            # a row band of one channel (mapping/bands.py): the channel's weights, the band's share of the input
            wbits = li.params / op.type.shape[0] * vb
            in_bits *= n / per_ch
        key = None
        if kind in ("integrate", "propagate", "accumulate"):
            key = {"integrate": "fp_ops", "propagate": "bp_ops", "accumulate": "wg_ops"}[kind]
            dense = li.work.syn_ops * share
            cls = "mac" if kind == "propagate" or not spike_in else "ac"
            if op.kind == "matmul":
                rd, wr = self._matmul_roles(kind, op, share, n)
            elif kind == "accumulate":
                rd, wr = {"wgrad": wbits, "input": in_bits, "grad_in": n * vb}, {"wgrad": wbits}
            else:
                rd, wr = {"weights": wbits, "input": in_bits, "psum": n * vb}, {"psum": n * vb}
        elif kind == "fire":
            cls, dense = "neuron_fwd", n
            rd, wr = {"psum": n * vb, "membrane": n * vb}, {"membrane": n * vb, "spikes": n}
            if self.training:
                wr["bptt"] = n * (vb + 2)
        elif kind == "neuron":
            cls, dense = "neuron_bwd", n
            rd, wr = {"bptt": n * (vb + 2), "grad_out": n * vb}, {"grad_out": n * vb}
        elif kind == "update":  # the optimizer's state streams through the weights' buffer with them
            cls, dense = self.optimizer, li.params * share
            state = li.params * share * OPTIMIZERS[self.optimizer] * STATE_WORD_BYTES * 8
            rd, wr = {"weights": wbits + state, "wgrad": wbits}, {"weights": wbits + state}
        else:  # fp.elem / bp.elem
            cls, dense = "elem", n * (li.work.elem_ops / max(op.type.size, 1) or 1)
            rd, wr = {"psum": n * vb}, {"psum": n * vb}
            if couples(op, self.training):
                # batch statistics: FP sums x and x^2 for the mean and variance before it normalises (x read
                # twice); BP sums the error and error * x^ before the input gradient (error and x read twice)
                dense += 2 * n
                rd["psum"] = n * vb * (2 if eng == "fp" else 4)
        reads, writes, port = {}, {}, 0
        for role in set(rd) | set(wr):
            buf = self._buffer(role, eng)
            r, w = rd.get(role, 0), wr.get(role, 0)
            reads[buf.name] = reads.get(buf.name, 0) + r
            writes[buf.name] = writes.get(buf.name, 0) + w
            port = max(port, math.ceil((r + w) / buf.port_bits))
        return eng, key, cls, dense, reads, writes, port

    def _matmul_roles(self, kind: str, op, share: float, n: int) -> tuple[dict, dict]:
        """What a matmul piece reads and writes (docs/attention.md): FP streams op(a) as the input
        against op(b) in the weights buffer and, when training, saves both to the BPTT banks; BP
        reads op(b) back and forms dA = dY op(b)^T in its partial sums; WG reads op(a) back and
        writes dB = op(a)^T dY to its output buffer, an error for b's producer, not a gradient
        to keep. An operand a piece needs whole (no leading axes) counts whole."""
        vb = self.vb
        ins = [self.layers[i].type for i in op.inputs]
        shares = tuple(share if split else 1.0 for split in matmul_split(op.params, len(op.type.shape)))
        a_bits, b_bits = (t.size * s * (1 if t.kind == SPIKE else vb) for t, s in zip(ins, shares))
        a_vals, b_vals = (t.size * s * vb for t, s in zip(ins, shares))
        if kind == "integrate":
            wr = {"psum": n * vb}
            if self.training:
                wr["bptt"] = a_bits + b_bits
            return {"weights": b_bits, "input": a_bits, "psum": n * vb}, wr
        if kind == "propagate":
            return {"bptt": b_bits, "grad_in": n * vb, "psum": a_vals}, {"psum": a_vals}
        return {"bptt": a_bits, "grad_in": n * vb}, {"wgrad": b_vals}


def _add(d: dict, k, v) -> None:
    d[k] = d.get(k, 0.0) + v


def count(program: Program, graph: Graph, arch: Arch, work: Work | None = None,
          spike_scale: SpikeScale | None = None) -> Activity:
    """The activity of one run of `program`: with `work` (measured synaptic ops) and
    `spike_scale` (measured spike traffic), or dense work and planned traffic without them."""
    h = program.header
    B, T, chips = h.batch, h.timesteps, h.chips
    system = replace(arch.system, chips=chips)  # the program's chips, on the architecture's links
    static = _Static(graph, arch, h.training, h.optimizer)
    total, layers = Counts(), {}
    cores = {c: Counts() for c in program.cores}
    busy = {c: _zeros(ENGINES) for c in program.cores}
    peak: dict = {c: {} for c in program.cores}
    segs: list[_Seg | None] = []
    link_flits: dict = {}
    routes: dict = {}
    globals_ = {b.name: b for b in arch.global_buffers}
    buffers = {b.name: b for b in arch.buffers + arch.global_buffers}
    lanes = {e: arch.engines[e].lanes for e in ENGINES}

    def layer_counts(name: str) -> Counts:
        c = layers.get(name)
        if c is None:
            c = layers[name] = Counts()
        return c

    def route(a, b):
        r = routes.get((a, b))
        if r is None:
            r = routes[(a, b)] = xy_route(a, b)
        return r

    def noc(seg: _Seg, chip: int, a, b, nbytes, lay: Counts, cc: Counts):
        hops = abs(a[0] - b[0]) + abs(a[1] - b[1])
        flits = np.ceil(nbytes * 8 / arch.noc.link_bits)
        n = seg.n
        for link in route(a, b):
            key = link if chips == 1 else (chip, link)
            _add(seg.links, key, flits * np.ones(n) if np.ndim(flits) == 0 else flits)
            _add(link_flits, key, float(np.sum(flits) * (n if np.ndim(flits) == 0 else 1)))
        seg.msg = np.maximum(seg.msg, hops * arch.noc.hop_cycles + flits)
        bits = float(np.sum(nbytes) * (n if np.ndim(nbytes) == 0 else 1)) * 8
        for c in (total, lay, cc):
            c.noc_bits += bits
            c.noc_bit_hops += bits * hops

    def chip_link(seg: _Seg, a: int, b: int, nbytes: float, lay: Counts, cc: Counts):
        path = system.route(a, b)
        for link in path:
            _add(seg.chip_links, link, nbytes)
        seg.hops = np.maximum(seg.hops, len(path))
        bits = nbytes * 8 * seg.n
        for c in (total, lay, cc):
            c.link_bits += bits
            c.link_bit_hops += bits * len(path)

    for core, body in program.cores.items():
        cc = cores[core]
        chip, here = chip_of(core), coord_of(core)
        k = 0

        def seg_for(n: int) -> _Seg:
            segs.extend([None] * (k + 1 - len(segs)))
            if segs[k] is None:
                segs[k] = _Seg(n)
            if segs[k].n != n:
                raise ValueError("cores do not share one loop and barrier structure")
            return segs[k]

        def walk(items, loops):
            nonlocal k
            b_idx, t_idx = _instances(loops, B, T)
            n = len(b_idx)
            for item in items:
                if isinstance(item, Loop):
                    k += 1
                    walk(item.body, loops + (item,))
                    k += 1
                    continue
                seg = seg_for(n)
                unit = item.unit
                if unit == "barrier":
                    seg.barrier = True
                    k += 1
                    continue
                if unit in ENGINES:
                    layer = item.args[0]
                    seg.layers[layer] = None
                    eng, key, cls, dense, reads, writes, port = static(item)
                    lay = layer_counts(layer)
                    ops = work(layer, key, item.args[1], item.args[2], b_idx, t_idx) if key and work else None
                    if ops is None:
                        ops, performed = dense, dense * n
                    else:
                        performed = float(ops.sum())
                    cyc = np.maximum(np.ceil(np.asarray(ops, float) / lanes[eng]), port)
                    cyc_total = float(np.sum(cyc) * (n if np.ndim(cyc) == 0 else 1))
                    _add(seg.eng, (core, eng), cyc)
                    busy[core][eng] += cyc_total
                    for c in (total, lay, cc):
                        c.ops[cls] += performed
                        c.engine_cycles += cyc_total
                        if key:
                            c.syn[eng] += performed
                            c.dense_syn[eng] += dense * n
                        for name, bits in reads.items():
                            _add(c.sram_read_bits, name, bits * n)
                        for name, bits in writes.items():
                            _add(c.sram_write_bits, name, bits * n)
                    for name in reads:
                        touched = min(buffers[name].bytes, math.ceil((reads[name] + writes[name]) / 8))
                        peak[core][name] = max(peak[core].get(name, 0), touched)
                elif unit == "dma":
                    buf, nbytes, cat, layer, level = item.args
                    seg.layers[layer] = None
                    lay = layer_counts(layer)
                    load = item.op == "dma.load"
                    known = buffers.get(buf)
                    for c in (total, lay, cc):
                        if known:
                            _add(c.sram_write_bits if load else c.sram_read_bits, buf, nbytes * 8 * n)
                        if level in globals_:
                            _add(c.sram_read_bits if load else c.sram_write_bits, level, nbytes * 8 * n)
                        else:
                            (c.dram_read if load else c.dram_write)[cat] += nbytes * n
                    if known:
                        peak[core][buf] = max(peak[core].get(buf, 0), min(nbytes, known.bytes))
                    if level in globals_:
                        _add(seg.gb, chip, nbytes)
                        noc(seg, chip, *((GB_PORT, here) if load else (here, GB_PORT)), nbytes, lay, cc)
                    else:
                        _add(seg.dram, chip, nbytes)
                elif item.op == "noc.send":
                    kind, dst, nbytes, layer = item.args
                    if kind == "spike" and spike_scale is not None:
                        nbytes = nbytes * spike_scale(layer, t_idx)
                    noc(seg, chip, here, dst, nbytes, layer_counts(layer), cc)
                elif item.op == "link.send":  # a dense image: 1 bit per spike element, else a value
                    kind, to, _, elements, layer = item.args
                    nbytes = elements / 8 if kind == "spike" else elements * arch.value_bytes
                    chip_link(seg, chip, to, nbytes, layer_counts(layer), cc)

        walk(body, ())
    stages = [_stage(s) for s in segs if s is not None]
    return Activity(total, layers, cores, busy, peak, stages, link_flits, chips)


def _most(values, n: int) -> np.ndarray:
    """Per instance, the largest of `values` (scalars or length-n vectors)."""
    return np.max(np.stack([np.broadcast_to(v, (n,)) for v in values]), axis=0) if values else np.zeros(n)


def _stage(s: _Seg) -> Stage:
    return Stage(s.n, _most(list(s.eng.values()), s.n), _most(list(s.dram.values()), s.n),
                 _most(list(s.gb.values()), s.n), np.maximum(_most(list(s.links.values()), s.n), s.msg), s.barrier,
                 _most(list(s.chip_links.values()), s.n), s.hops, tuple(s.layers))


# ---- pricing and timing ----------------------------------------------------------------------

def stage_cycles(activity: Activity, arch: Arch) -> list[dict[str, int]]:
    """Per stage, its cycles by bound: over its instances, the slowest of compute, DRAM
    (bandwidth + latency, of the busiest chip), NoC (busiest link, longest message, the global
    buffers' ports) and the chip-to-chip links (the busiest link's bytes at its bandwidth, plus
    its latency per link the longest message crosses) of each, plus a barrier per instance."""
    clock = arch.clock_mhz * 1e6
    bytes_per_cycle = arch.dram.gb_per_s * 1e9 / clock
    latency = math.ceil(arch.dram.latency_ns * arch.clock_mhz / 1e3)
    link = arch.system.link
    link_per_cycle = link.gb_per_s * 1e9 / clock
    link_latency = math.ceil(link.latency_ns * arch.clock_mhz / 1e3)
    barrier = (arch.rows + arch.cols) * arch.noc.hop_cycles
    gb_port = sum(b.port_bits for b in arch.global_buffers) / 8 or 1.0
    out = []
    for s in activity.stages:
        dram = np.ceil(s.dram_bytes / bytes_per_cycle) + np.where(s.dram_bytes > 0, latency, 0)
        noc = np.maximum(s.noc, np.ceil(s.gb_bytes / gb_port))
        chip_links = np.ceil(s.link_bytes / link_per_cycle) + s.link_hops * link_latency
        stacked = np.stack([s.compute, dram, noc, chip_links])
        which = np.argmax(stacked, axis=0)
        top = stacked.max(axis=0)
        by = {name: int(top[which == i].sum()) for i, name in enumerate(("compute", "dram", "noc", "link"))}
        by["barrier"] = barrier * s.instances if s.barrier else 0
        out.append(by)
    return out


def time(activity: Activity, arch: Arch) -> Timing:
    """Cycles of a run: the stages' cycles by bound (`stage_cycles`), summed."""
    by = dict.fromkeys(BOUNDS, 0)
    for stage in stage_cycles(activity, arch):
        for k, v in stage.items():
            by[k] += v
    cycles = sum(by.values())
    return Timing(cycles, by, cycles / (arch.clock_mhz * 1e6))


def price(counts: Counts, arch: Arch, seconds: float = 0.0, cores: int | None = None) -> dict[str, float]:
    """Energy terms (pJ) of `counts` under `arch`'s tables; static power of `cores` cores
    (default: all of one chip) over `seconds`; the chip-to-chip links at their pJ per bit and
    link crossed."""
    e = arch.energy
    buffers = {b.name: b for b in arch.buffers + arch.global_buffers}
    sram = sum(bits * buffers[n].read_pj_per_bit for n, bits in counts.sram_read_bits.items())
    sram += sum(bits * buffers[n].write_pj_per_bit for n, bits in counts.sram_write_bits.items())
    return {
        "compute": sum(counts.ops[k] * getattr(e, k) for k in OP_CLASSES),
        "sram": sram,
        "noc": counts.noc_bit_hops * arch.noc.hop_pj_per_bit,
        "dram": counts.dram_bytes * 8 * arch.dram.pj_per_bit,
        "static": arch.static_mw * 1e-3 * seconds * 1e12 * (arch.n_cores if cores is None else cores),
        "link": counts.link_bit_hops * arch.system.link.pj_per_bit,
    }
