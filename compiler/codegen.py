"""Code generation: a mapping plan and its schedule become one instruction stream per core.
Every DRAM transfer and NoC message of the plan is an instruction, so the statistics of a
compiled program are read off the program itself."""

from __future__ import annotations

import math

from isa.arch import Arch
from isa.program import Instr, Loop, Program
from mapping.groups import Group
from mapping.plan import Piece, Plan, needed_elements, bptt_bytes, weight_bytes
from mapping.schedule import Schedule, Stage


def _buffer(arch: Arch, role: str, engine: str) -> str:
    return arch.buffer_for(role, engine).name


class _Emitter:
    def __init__(self, plan: Plan, schedule: Schedule):
        self.plan, self.sched, self.arch = plan, schedule, plan.arch
        self.gmap = {g.name: g for g in plan.groups}
        self.vb = self.arch.value_bytes
        self.round_of_group: dict[str, set[int]] = {}
        for p in plan.pieces:
            self.round_of_group.setdefault(p.group, set()).add(p.round)
        self.graph_outputs = {op.inputs[0] if op.kind == "output" else op.name for op in plan.graph.outputs}
        self.barrier = 0

    # -- helpers --------------------------------------------------------------------------------
    def _mine(self, g: str, core, r: int) -> list[Piece]:
        return [p for p in self.plan.pieces if p.group == g and p.core == core and p.round == r]

    def _share(self, g: Group, ps: list[Piece]) -> float:
        return sum(p.hi - p.lo for p in ps) / g.units

    def _bytes(self, elements: float, spike: bool) -> int:
        """DRAM image of a tensor for one step: 1 bit per spike element, else a value each."""
        return math.ceil(elements / 8) if spike else math.ceil(elements) * self.vb

    def _next_barrier(self) -> Instr:
        self.barrier += 1
        return Instr("barrier", (self.barrier,))

    def _stored_later(self, g: Group, r: int) -> bool:
        """Does any consumer of g run in another round, or is g a graph output?"""
        if any(o.name in self.graph_outputs for o in g.ops):
            return True
        for h in self.plan.groups:
            if any(e.src == g.name for e in h.in_edges) and self.round_of_group.get(h.name, set()) - {r}:
                return True
        return False

    # -- forward --------------------------------------------------------------------------------
    def fp_stage(self, st: Stage, core) -> list[Instr]:
        out: list[Instr] = []
        if st.groups:
            g = self.gmap[st.groups[0]]
            ps = self._mine(g.name, core, st.round)
            if ps:
                out += self._fp_inputs(g, ps, core, st.round)
                for p in ps:
                    if g.weights and not p.weights_resident:
                        out.append(Instr("dma.load", (_buffer(self.arch, "weights", "fp"), weight_bytes(g, p.hi - p.lo, self.arch),
                                                      "weights", f"{g.root.name}.weight[{p.lo}:{p.hi}]")))
                out += [Instr(t.opcode, (t.layer, t.lo, t.hi)) for t in st.tasks if t.core == core]
                out += [Instr("noc.send", ("spike" if l.spike else "psum", l.b, l.fwd, f"{g.last.name}->{l.dst}"))
                        for l in self.plan.links if l.src == g.name and l.a == core and l.round == st.round and l.fwd]
                if self._stored_later(g, st.round):
                    out.append(Instr("dma.store", (_buffer(self.arch, "spikes", "fp"),
                                                   self._bytes(g.out_size * self._share(g, ps), g.last.type.kind == "spike"),
                                                   "activations", f"{g.last.name}[t]")))
                for p in ps:
                    if p.bptt_spilled:
                        out.append(Instr("dma.store", (_buffer(self.arch, "bptt", "bp"), self._bptt_step(g, p),
                                                       "bptt_state", f"{g.name}.state[{p.lo}:{p.hi}][t]")))
        out.append(self._next_barrier())
        return out

    def _bptt_step(self, g: Group, p: Piece) -> int:
        return math.ceil(bptt_bytes(g, p.hi - p.lo, self.arch, self.plan.config.timesteps) / self.plan.config.timesteps)

    def _from_dram(self, e, g: Group, ps: list[Piece], r: int) -> float:
        """Elements of edge e that pieces ps (one core, round r) read from DRAM: all of it for the
        network input, else the part its producer computed in other rounds."""
        if e.src not in self.gmap:
            return e.elements * (self._share(g, ps) if e.aligned else 1.0)
        src = self.gmap[e.src]
        other = [p for p in self.plan.pieces if p.group == e.src and p.round != r]
        if e.aligned:
            return sum(needed_elements(e, src, p, q, g) for p in other for q in ps)
        return sum(needed_elements(e, src, p, ps[0], g) for p in other)

    def _fp_inputs(self, g: Group, ps: list[Piece], core, r: int) -> list[Instr]:
        out = []
        for e in g.in_edges:
            elems = self._from_dram(e, g, ps, r)
            if elems:
                out.append(Instr("dma.load", (_buffer(self.arch, "input", "fp"), self._bytes(elems, e.spike),
                                              "activations", f"{e.src_op}[t]")))
        out += [Instr("noc.recv", ("spike" if l.spike else "psum", l.a, l.fwd, f"{self.gmap[l.src].last.name}->{l.dst}"))
                for l in self.plan.links if l.dst == g.name and l.b == core and l.round == r and l.fwd]
        return out

    # -- backward -------------------------------------------------------------------------------
    def bp_stage(self, st: Stage, core) -> list[Instr]:
        out: list[Instr] = []
        g = self.gmap[st.groups[0]] if st.groups else None
        ps = self._mine(g.name, core, st.round) if g else []
        if ps:
            out += [Instr("noc.recv", ("grad", l.b, l.bwd, f"{l.dst}->{l.src}:grad"))
                    for l in self.plan.links if l.src == g.name and l.a == core and l.round == st.round and l.bwd]
            if self._stored_later(g, st.round) and not any(o.name in self.graph_outputs for o in g.ops):
                out.append(Instr("dma.load", (_buffer(self.arch, "grad_out", "bp"), math.ceil(g.out_size * self._share(g, ps)) * self.vb,
                                              "gradients", f"{g.last.name}.grad[t]")))
            for p in ps:
                if p.bptt_spilled:
                    out.append(Instr("dma.load", (_buffer(self.arch, "bptt", "bp"), self._bptt_step(g, p),
                                                  "bptt_state", f"{g.name}.state[{p.lo}:{p.hi}][t]")))
                if g.weights and not p.weights_resident and any(
                        t.opcode == "bp.propagate" and t.core == core for t in st.tasks):
                    out.append(Instr("dma.load", (_buffer(self.arch, "weights", "bp"), weight_bytes(g, p.hi - p.lo, self.arch),
                                                  "weights", f"{g.root.name}.weight[{p.lo}:{p.hi}]")))
        for t in st.tasks:
            if t.core != core:
                continue
            wgrad = t.opcode == "wg.accumulate" and not self._piece(t).wgrad_resident
            if wgrad:
                out.append(Instr("dma.load", (_buffer(self.arch, "wgrad", "wg"), self._wbytes(t), "gradients", f"{t.layer}.wgrad[{t.lo}:{t.hi}]")))
            out.append(Instr(t.opcode, (t.layer, t.lo, t.hi)))
            if wgrad:
                out.append(Instr("dma.store", (_buffer(self.arch, "wgrad", "wg"), self._wbytes(t), "gradients", f"{t.layer}.wgrad[{t.lo}:{t.hi}]")))
        if ps:
            out += [Instr("noc.send", ("grad", l.a, l.bwd, f"{l.dst}->{l.src}:grad"))
                    for l in self.plan.links if l.dst == g.name and l.b == core and l.round == st.round and l.bwd]
            for e in g.in_edges:
                elems = self._from_dram(e, g, ps, st.round) if e.src in self.gmap else 0
                if elems:
                    out.append(Instr("dma.store", (_buffer(self.arch, "grad_out", "bp"), math.ceil(elems) * self.vb,
                                                   "gradients", f"{e.src_op}.grad[t]")))
        out.append(self._next_barrier())
        return out

    def _piece(self, t) -> Piece:
        return self.plan.pieces[t.piece]

    def _wbytes(self, t) -> int:
        p = self._piece(t)
        return weight_bytes(self.gmap[t.group], p.hi - p.lo, self.arch)

    # -- weight update --------------------------------------------------------------------------
    def update(self, core) -> list[Instr]:
        out: list[Instr] = []
        for t in self.sched.update.tasks if self.sched.update else []:
            if t.core != core:
                continue
            p, w = self._piece(t), self._wbytes(t)
            wb = _buffer(self.arch, "weights", "fp")
            if not p.weights_resident:
                out.append(Instr("dma.load", (wb, w, "optimizer", f"{t.layer}.weight[{t.lo}:{t.hi}]")))
            if not p.wgrad_resident:
                out.append(Instr("dma.load", (_buffer(self.arch, "wgrad", "wg"), w, "gradients", f"{t.layer}.wgrad[{t.lo}:{t.hi}]")))
            out.append(Instr("wg.update", (t.layer, t.lo, t.hi)))
            if not p.weights_resident:
                out.append(Instr("dma.store", (wb, w, "optimizer", f"{t.layer}.weight[{t.lo}:{t.hi}]")))
        return out


def generate(plan: Plan, schedule: Schedule) -> Program:
    """One program for the whole chip: every core runs the same barrier sequence."""
    cfg, arch = plan.config, plan.arch
    cores: dict[tuple[int, int], list] = {}
    for core in arch.cores:
        em = _Emitter(plan, schedule)
        pre = []
        for p in plan.pieces:
            g = em.gmap[p.group]
            if p.core == core and p.weights_resident:
                for eng in ("fp", "bp") if cfg.training else ("fp",):
                    pre.append(Instr("dma.load", (_buffer(arch, "weights", eng), weight_bytes(g, p.hi - p.lo, arch),
                                                  "weights", f"{g.root.name}.weight[{p.lo}:{p.hi}]")))
        per_sample: list = []
        for r in range(plan.rounds):
            per_sample.append(Loop(cfg.timesteps, False, [i for st in schedule.fp[r] for i in em.fp_stage(st, core)]))
        if cfg.training:
            for r in reversed(range(plan.rounds)):
                body = [i for st in schedule.bp[r] for i in em.bp_stage(st, core)]
                if body:
                    per_sample.append(Loop(cfg.timesteps, True, body))
        body = pre + [Loop(cfg.batch, False, per_sample)]
        if cfg.training:
            body += em.update(core) + [em._next_barrier()]
        cores[core] = body
    meta = {"model": plan.graph.name, "arch": arch.name, "training": cfg.training, "timesteps": cfg.timesteps,
            "batch": cfg.batch, "rounds": plan.rounds, "strategy": cfg.strategy, "spike_rate": cfg.spike_rate}
    return Program(meta, cores)
