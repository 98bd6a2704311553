"""Timing and energy: walk a compiled program core by core, with the work the functional
simulation measured, and charge every instruction its cycles and its energy terms. The rules
are in docs/simulation.md; every constant comes from the architecture."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwsim.functional import OpStats
from isa import Graph
from isa.arch import Arch, xy_route
from isa.ops import SPIKE
from isa.program import CATEGORIES, Instr, Loop, Program

ENGINES = ("fp", "bp", "wg")


@dataclass
class Costs:
    cycles: int = 0
    energy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("compute", "sram", "noc", "dram", "static"), 0.0))
    dram_bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    noc_bytes: float = 0.0
    noc_hop_bytes: float = 0.0
    syn_ops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENGINES, 0))
    dense_syn_ops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENGINES, 0))
    layers: dict[str, dict] = field(default_factory=dict)
    cores: dict[tuple, dict] = field(default_factory=dict)


def _walk(body, ctx: tuple[int, int], depth: int):
    """Yield (instruction, (b, t)): the outermost loop counts samples, the inner ones steps."""
    for item in body:
        if isinstance(item, Loop):
            order = range(item.count - 1, -1, -1) if item.reverse else range(item.count)
            for i in order:
                yield from _walk(item.body, (i, ctx[1]) if depth == 0 else (ctx[0], i), depth + 1)
        else:
            yield item, ctx


def _hops(a, b) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


class _Chip:
    def __init__(self, graph: Graph, arch: Arch, stats: dict[str, OpStats], mode: str, planned_rate: float,
                 training: bool):
        self.g, self.a, self.stats, self.mode, self.training = graph, arch, stats, mode, training
        self.vb = arch.value_bytes * 8
        self.rate = planned_rate
        self.layers = {op.name: op for op in graph}
        self.work = {li.name: li for li in graph.layers()}
        self.cum = {}
        self._fixed: dict[int, tuple] = {}
        for name, st in stats.items():
            for key in ("fp_ops", "bp_ops", "wg_ops"):
                arr = getattr(st, key)
                if arr is not None:
                    self.cum[(name, key)] = np.concatenate([np.zeros(arr.shape[:2] + (1,), np.int64), arr.cumsum(2)], 2)

    def _ops(self, layer: str, key: str, b: int, t: int, u0: int, u1: int, dense: int) -> tuple[int, int]:
        """(ops counted in this mode, dense ops) of units [u0, u1)."""
        c = self.cum.get((layer, key))
        measured = int(c[b, t, u1] - c[b, t, u0]) if c is not None else dense
        return (dense if self.mode == "dense" else measured), dense

    def engine(self, ins: Instr, b: int, t: int):
        """(engine, cycles, compute pJ, sram pJ, synaptic ops, dense synaptic ops, bytes touched per
        buffer) of one engine instruction at sample b, step t."""
        fixed = self._fixed.get(id(ins))
        if fixed is None:
            fixed = self._fixed[id(ins)] = self._static(ins)
        eng, key, u0, u1, dense, pj_op, compute, ops, sram, port_cycles, touched = fixed
        syn = 0
        if key:
            syn, dense = self._ops(ins.args[0], key, b, t, u0, u1, dense)
            compute, ops = syn * pj_op, syn
        cycles = max(math.ceil(ops / self.a.engines[eng].lanes), port_cycles)
        return eng, cycles, compute, sram, syn, dense, touched

    def _static(self, ins: Instr) -> tuple:
        """What of an engine instruction's cost does not depend on the measured work: (engine,
        stats key or None, units [u0, u1), dense ops, pJ per op, compute pJ and ops when not
        synaptic, SRAM pJ, SRAM port cycles, bytes touched per buffer)."""
        layer, lo, hi = ins.args
        op, st, li = self.layers[layer], self.stats[layer], self.work[layer]
        per = op.type.size // st.units
        u0, u1 = lo // per, math.ceil(hi / per)
        share = (u1 - u0) / st.units
        n = hi - lo
        e, vb = self.a.energy, self.vb
        eng, kind = ins.op.split(".")
        key, dense, pj_op = None, 0, 0.0
        spike_in = bool(op.inputs) and self.layers[op.inputs[0]].type.kind == SPIKE
        in_size = self.layers[op.inputs[0]].type.size if op.inputs else 0
        wcount = li.params * share
        if kind in ("integrate", "propagate", "accumulate"):
            key = {"integrate": "fp_ops", "propagate": "bp_ops", "accumulate": "wg_ops"}[kind]
            dense = round(li.work.syn_ops * share)
            pj_op = e.mac if kind == "propagate" or not spike_in else e.ac
            compute = ops = 0
            bits = {"weights": wcount * vb, "input": in_size * (1 if spike_in else vb), "psum": 2 * n * vb}
            if kind == "accumulate":
                bits = {"wgrad": 2 * wcount * vb, "input": in_size * (1 if spike_in else vb), "grad_in": n * vb}
        elif kind == "fire":
            compute, ops = n * e.neuron_fwd, n
            bits = {"psum": n * vb, "membrane": 2 * n * vb, "spikes": n}
            if self.training:
                bits["bptt"] = n * (vb + 2)
        elif kind == "neuron":
            compute, ops = n * e.neuron_bwd, n
            bits = {"bptt": n * (vb + 2), "grad_out": 2 * n * vb}
        elif kind == "update":
            compute, ops = wcount * e.sgd, wcount
            bits = {"weights": 2 * wcount * vb, "wgrad": wcount * vb}
        else:  # fp.elem / bp.elem
            k = li.work.elem_ops / max(op.type.size, 1) or 1
            compute, ops = n * k * e.elem, n * k
            bits = {"psum": 2 * n * vb}
        sram = 0.0
        port_cycles = 0
        touched = {}
        for role, nbits in bits.items():
            buf = self.a.buffer_for(role, eng)
            sram += nbits * buf.pj_per_bit
            port_cycles = max(port_cycles, math.ceil(nbits / buf.port_bits))
            touched[buf.name] = min(buf.bytes, math.ceil(nbits / 8))
        return eng, key, u0, u1, dense, pj_op, compute, ops, sram, port_cycles, touched


def run_costs(program: Program, graph: Graph, arch: Arch, stats: dict[str, OpStats], mode: str = "sparse") -> Costs:
    """Cycles, energy terms, traffic and per-layer / per-core figures of one run of `program`."""
    B = int(program.meta.get("batch", 1))
    chip = _Chip(graph, arch, stats, mode, float(program.meta.get("spike_rate", 0.1)), bool(program.meta.get("training")))
    out = Costs()
    a = arch
    bytes_per_cycle = a.dram.gb_per_s * 1e9 / (a.clock_mhz * 1e6)
    dram_latency = math.ceil(a.dram.latency_ns * a.clock_mhz / 1e3)
    barrier_cycles = (a.rows + a.cols) * a.noc.hop_cycles
    buffers = {x.name: x for x in a.buffers + a.global_buffers}
    routes: dict[tuple, list] = {}
    # per stage: per core engine cycles, DRAM bytes, link loads, longest message
    stages: list[dict] = []
    busy = {c: dict.fromkeys(ENGINES, 0) for c in program.cores}
    core_energy = dict.fromkeys(program.cores, 0.0)
    peak = {c: {} for c in program.cores}  # bytes of each buffer one instruction touches, at most its size
    for core, body in program.cores.items():
        k = 0
        for ins, (b, t) in _walk(body, (0, 0), 0):
            while len(stages) <= k:
                stages.append({"eng": {}, "dram": 0, "links": {}, "msg": 0})
            s = stages[k]
            unit = ins.unit
            if unit == "barrier":
                k += 1
            elif unit in ENGINES:
                eng, cyc, comp, sram, syn, dense, touched = chip.engine(ins, b, t)
                for name, nb in touched.items():
                    peak[core][name] = max(peak[core].get(name, 0), nb)
                key = (core, eng)
                s["eng"][key] = s["eng"].get(key, 0) + cyc
                busy[core][eng] += cyc
                out.energy["compute"] += comp
                out.energy["sram"] += sram
                core_energy[core] += comp + sram
                lay = out.layers.get(ins.args[0])
                if lay is None:
                    lay = out.layers[ins.args[0]] = {"ops": dict.fromkeys(ENGINES, 0), "energy_pj": 0.0, "cycles": 0}
                lay["ops"][eng] += syn
                lay["energy_pj"] += comp + sram
                lay["cycles"] += cyc
                if ins.op in ("fp.integrate", "bp.propagate", "wg.accumulate"):
                    out.syn_ops[eng] += syn
                    out.dense_syn_ops[eng] += dense
            elif unit == "dma":
                buf, nbytes, cat, _ = ins.args
                s["dram"] += nbytes
                out.dram_bytes[cat] += nbytes
                out.energy["dram"] += nbytes * 8 * a.dram.pj_per_bit
                known = buffers.get(buf)
                sram = nbytes * 8 * known.pj_per_bit if known else 0.0
                if known:
                    peak[core][buf] = max(peak[core].get(buf, 0), min(nbytes, known.bytes))
                out.energy["sram"] += sram
                core_energy[core] += sram
            elif ins.op == "noc.send":
                kind, dst, nbytes, tag = ins.args
                if kind == "spike":
                    st = stats.get(tag.split("->")[0])
                    if st is not None and chip.rate:
                        nbytes = nbytes * (st.out_nonzero[t] / (st.size * B)) / chip.rate
                hops = _hops(core, dst)
                flits = math.ceil(nbytes * 8 / a.noc.link_bits)
                route = routes.get((core, dst))
                if route is None:
                    route = routes[(core, dst)] = xy_route(core, dst)
                for link in route:
                    s["links"][link] = s["links"].get(link, 0) + flits
                s["msg"] = max(s["msg"], hops * a.noc.hop_cycles + flits)
                out.noc_bytes += nbytes
                out.noc_hop_bytes += nbytes * hops
                out.energy["noc"] += nbytes * 8 * hops * a.noc.hop_pj_per_bit
                core_energy[core] += nbytes * 8 * hops * a.noc.hop_pj_per_bit
    total = 0
    for s in stages:
        compute = max(s["eng"].values(), default=0)
        noc = max(max(s["links"].values(), default=0), s["msg"])
        dram = math.ceil(s["dram"] / bytes_per_cycle) + (dram_latency if s["dram"] else 0)
        total += max(compute, noc, dram) + barrier_cycles
    out.cycles = total
    seconds = total / (a.clock_mhz * 1e6)
    static_pj = a.static_mw * 1e-3 * seconds * 1e12
    out.energy["static"] = static_pj * a.n_cores
    for core in program.cores:
        out.cores[core] = {"utilisation": {e: round(busy[core][e] / total, 4) if total else 0.0 for e in ENGINES},
                           "energy_pj": core_energy[core] + static_pj, "sram_peak_bytes": dict(sorted(peak[core].items()))}
    return out

