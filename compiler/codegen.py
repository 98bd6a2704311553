"""Code generation: a mapping plan, its schedule and its dataflow become one instruction stream
per core (of each chip). The loop nest follows the dataflow's order (mapping/dataflow.py); every
DRAM and global-buffer transfer, every NoC message and every chip-to-chip message is an
instruction that names its layer, so the costs of a program are read off the program itself.

A tensor that crosses chips (a `Cut`) goes where the producer would have stored it for a later
round, on the consumer's chip: each producer core sends its part over the link to a receiving
core there (the first consumer's first core), which stores it for the consumers. Errors come
back the same way; the partial sums of errors that a consumer's rounds compute are added up on
its chip, so the link carries each error tensor once."""

from __future__ import annotations

import math

from spikeforge.isa.arch import Arch
from spikeforge.isa.program import Header, Instr, Loop, Program, core_key
from spikeforge.mapping.bands import read_elements
from spikeforge.mapping.dataflow import CORE, DRAM, Dataflow
from spikeforge.mapping.groups import Group
from spikeforge.mapping.chips import Cut
from spikeforge.mapping.plan import Piece, Plan, bptt_bytes, needed_elements, state_bytes, weight_bytes
from spikeforge.mapping.schedule import Schedule, Stage


def _buffer(arch: Arch, role: str, engine: str) -> str:
    return arch.buffer_for(role, engine).name


def _split(pairs: set[tuple[str, float]], size: int) -> dict[str, int]:
    """Bytes at each home of a window of `size` bytes waiting at `pairs` of (home, share held
    there; the rest in DRAM): a global buffer keeps the largest share asked of it, DRAM the
    largest remainder."""
    out: dict[str, int] = {}
    for home, share in pairs:
        part = size if home == DRAM else int(size * share)
        out[home] = max(out.get(home, 0), part)
        if part < size:
            out[DRAM] = max(out.get(DRAM, 0), size - part)
    return {k: v for k, v in out.items() if v}


class _Layout:
    """What every core's emitter looks up: groups, pieces and NoC links indexed once."""

    def __init__(self, plan: Plan):
        self.gmap = {g.name: g for g in plan.groups}
        self.graph_outputs = {op.inputs[0] if op.kind == "output" else op.name for op in plan.graph.outputs}
        self.consumers = {g.name: [h for h in plan.groups if any(e.src == g.name for e in h.in_edges)]
                          for g in plan.groups}
        self.round_of_group: dict[str, set[int]] = {}
        self.by_round: dict[tuple[str, int], list[Piece]] = {}  # (group, round) -> its pieces
        self.cores_of: dict[tuple[str, int], list] = {}  # (group, round) -> its cores, the leader first
        for p in plan.pieces:
            self.round_of_group.setdefault(p.group, set()).add(p.round)
            self.by_round.setdefault((p.group, p.round), []).append(p)
            cs = self.cores_of.setdefault((p.group, p.round), [])
            if p.core not in cs:
                cs.append(p.core)
        for cs in self.cores_of.values():
            cs.sort()
        self.links_from: dict[tuple, list] = {}  # (group, round, source core) -> its NoC links
        self.links_to: dict[tuple, list] = {}  # (consumer group, round, destination core) -> its NoC links
        for l in plan.links:
            self.links_from.setdefault((l.src, l.round, l.a), []).append(l)
            self.links_to.setdefault((l.dst, l.round, l.b), []).append(l)
        self.cuts_from: dict[str, list[Cut]] = {}  # producer group -> the tensors it sends to other chips
        for c in plan.cuts:
            self.cuts_from.setdefault(c.src, []).append(c)

    def leader(self, group: str) -> tuple[int, int]:
        """The first core of a group's first round: where tensors from other chips arrive for it."""
        return self.cores_of[(group, min(self.round_of_group[group]))][0]


class _Emitter:
    def __init__(self, plan: Plan, schedule: Schedule, df: Dataflow, layout: _Layout, chip: int,
                 core: tuple[int, int]):
        self.plan, self.sched, self.df, self.arch, self.core = plan, schedule, df, plan.arch, core
        self.chip, self.lay = chip, layout
        self.gmap, self.consumers, self.cores_of = layout.gmap, layout.consumers, layout.cores_of
        self.round_of_group, self.graph_outputs = layout.round_of_group, layout.graph_outputs
        self.vb = self.arch.value_bytes
        self.T, self.B = plan.config.timesteps, plan.config.batch
        self.barrier = 0

    # -- helpers --------------------------------------------------------------------------------
    def _mine(self, g: str, r: int) -> list[Piece]:
        return self._on(g, r, self.core) if self.plan.round_chip[r] == self.chip else []

    def _on(self, g: str, r: int, core: tuple[int, int]) -> list[Piece]:
        """The pieces of group g in round r on `core` (of the round's chip)."""
        return [p for p in self.lay.by_round.get((g, r), []) if p.core == core]

    def _here(self, t) -> bool:
        """Does task t run on this core of this chip?"""
        return t.core == self.core and self.plan.pieces[t.piece].chip == self.chip

    def _links_from(self, g: str, r: int) -> list:
        return self.lay.links_from.get((g, r, self.core), []) if self.plan.round_chip[r] == self.chip else []

    def _links_to(self, g: str, r: int) -> list:
        return self.lay.links_to.get((g, r, self.core), []) if self.plan.round_chip[r] == self.chip else []

    def _local(self, groups: list[Group]) -> list[Group]:
        return [h for h in groups if self.plan.chip_of[h.name] == self.chip]

    def _share(self, g: Group, ps: list[Piece]) -> float:
        return sum(p.hi - p.lo for p in ps) / g.units

    def _bytes(self, elements: float, spike: bool) -> int:
        """Image of a tensor for one step: 1 bit per spike element, else a value each."""
        return math.ceil(elements / 8) if spike else math.ceil(elements) * self.vb

    def _next_barrier(self) -> Instr:
        self.barrier += 1
        return Instr("barrier", (self.barrier,))

    def _stored_later(self, g: Group, r: int, consumers: list[Group] | None = None) -> bool:
        """Does any consumer of g (of `consumers`) run in another round, or is g a graph output?"""
        if any(o.name in self.graph_outputs for o in g.ops):
            return True
        return any(self.round_of_group.get(h.name, set()) - {r}
                   for h in (self.consumers[g.name] if consumers is None else consumers))

    def _inputs_home(self, src: str, g: Group) -> str:
        """Where g's input from group `src` comes from: the NoC (CORE) when both run in one loop
        nest, else the home where g's input window waits."""
        return CORE if self.df.together(src, g.name) else self.df.flows[g.name].inputs

    def _errors_home(self, src: str, g: Group) -> str:
        """Where the errors g returns to group `src` go: the NoC, or the home where they wait."""
        return CORE if self.df.together(src, g.name) else self.df.flows[g.name].errors

    def _waits(self, src: str, consumers: list[Group], kind: str) -> set[tuple[str, float]]:
        """(home, share held there) of the `inputs` or `errors` windows between `src` and each
        consumer that does not run in its loop nest."""
        return {(getattr(self.df.flows[h.name], kind), getattr(self.df.flows[h.name], f"{kind}_share"))
                for h in consumers if not self.df.together(src, h.name)}

    def _per_step(self, g: Group) -> bool:
        """Are g's weight tiles fetched (and its weight gradient flushed) at every (sample, step)?"""
        return self.df.flows[g.name].window == 1

    def _weights(self, g: Group, p: Piece, engine: str) -> list[Instr]:
        """Fetch a piece's weights into an engine's tile buffer from their home (none if resident)."""
        if not g.weights or p.id in self.df.resident_weights:
            return []
        return [Instr("dma.load", (_buffer(self.arch, "weights", engine), weight_bytes(g, p.hi - p.lo, self.arch),
                                   "weights", g.root.name, self.df.flows[g.name].weights))]

    def _wgrad(self, t, store: bool) -> list[Instr]:
        p, g = self.plan.pieces[t.piece], self.gmap[t.group]
        if p.id in self.df.resident_wgrad or not g.weights:  # a matmul's WG result is an error, sent on
            return []
        return [Instr("dma.store" if store else "dma.load", (_buffer(self.arch, "wgrad", "wg"), weight_bytes(g, p.hi - p.lo, self.arch),
                                                             "gradients", t.layer, self.df.flows[g.name].wgrad))]

    def _bptt(self, g: Group, p: Piece, store: bool) -> list[Instr]:
        if p.id not in self.df.spilled_bptt:
            return []
        step = math.ceil(bptt_bytes(g, p.hi - p.lo, self.arch, self.T) / self.T)
        return [Instr("dma.store" if store else "dma.load", (_buffer(self.arch, "bptt", "bp"), step, "bptt_state", g.last.name,
                                                             self.df.flows[g.name].bptt))]

    # -- forward --------------------------------------------------------------------------------
    def fp_stage(self, st: Stage) -> list[Instr]:
        out: list[Instr] = []
        if st.groups:
            g = self.gmap[st.groups[0]]
            ps = self._mine(g.name, st.round)
            if ps:
                out += self._fp_inputs(g, ps, st.round)
                if self._per_step(g):
                    out += [i for p in ps for i in self._weights(g, p, "fp")]
                out += [Instr(t.opcode, (t.layer, t.lo, t.hi)) for t in st.tasks if self._here(t)]
                out += [Instr("noc.send", ("spike" if l.spike else "psum", l.b, l.fwd, g.last.name))
                        for l in self._links_from(g.name, st.round) if l.fwd
                        and self._inputs_home(g.name, self.gmap[l.dst]) == CORE]
                out += self._fp_outputs(g, ps, st.round)
                out += [Instr("link.send", (_kind(c), c.b, self.lay.leader(c.consumers[0]), self._elements(c, ps),
                                            c.tensor)) for c in self.lay.cuts_from.get(g.name, [])]
                out += [i for p in ps for i in self._bptt(g, p, True)]
            out += [i for c in self.lay.cuts_from.get(g.name, []) if c.b == self.chip
                    and self.lay.leader(c.consumers[0]) == self.core for i in self._receive(c, st.round)]
        out.append(self._next_barrier())
        return out

    def _fp_outputs(self, g: Group, ps: list[Piece], r: int) -> list[Instr]:
        """This step's outputs to DRAM when a later round (of this chip) or the host reads them,
        and to each home where a consumer's input window waits outside the cores."""
        size = self._bytes(g.out_size * self._share(g, ps), g.last.type.kind == "spike")
        local = self._local(self.consumers[g.name])
        parts = _split(self._waits(g.name, local, "inputs"), size)
        if self.plan.config.training and g.last.type.kind == "spike" and all(p.id in self.df.spilled_bptt for p in ps):
            parts.pop(self.df.flows[g.name].bptt, None)  # the spilled BPTT state holds these spikes already
        if self._stored_later(g, r, local):
            parts[DRAM] = size
        return [Instr("dma.store", (_buffer(self.arch, "spikes", "fp"), parts[home], "activations", g.last.name, home))
                for home in sorted(parts)]

    def _elements(self, c: Cut, ps: list[Piece]) -> int:
        """Elements of tensor c that pieces ps compute."""
        g = self.gmap[c.src]
        return sum(p.hi - p.lo for p in ps) * (self.plan.graph[c.tensor].type.size // g.units)

    def _receive(self, c: Cut, r: int) -> list[Instr]:
        """On the receiving core of chip c.b: round r's parts of tensor c from each producer core,
        stored where its consumers on this chip read them in their later rounds."""
        kind = _kind(c)
        parts = [(s, self._elements(c, self._on(c.src, r, s))) for s in self.cores_of[(c.src, r)]]
        out = [Instr("link.recv", (kind, c.a, s, n, c.tensor)) for s, n in parts]
        size = self._bytes(sum(n for _, n in parts), c.spike)
        homes = _split(self._waits(c.src, [self.gmap[h] for h in c.consumers], "inputs"), size)
        homes[DRAM] = size
        return out + [Instr("dma.store", (_buffer(self.arch, "spikes", "fp"), homes[home], "activations", c.tensor,
                                          home)) for home in sorted(homes)]

    @staticmethod
    def _per_core(e, g: Group) -> bool:
        """Does each core of g read its own part of edge e (aligned units, or the rows under a
        band), rather than the first core reading all of it for every core?"""
        return e.aligned or g.bands > 1

    def _from_elsewhere(self, e, g: Group, ps: list[Piece], r: int) -> float:
        """Elements of edge e that pieces ps (this core, round r) read from memory rather than
        from a producer over the NoC: all of it for the network input or when g's input window
        waits outside the cores, else the part its producer computed in other rounds."""
        graph, spans = self.plan.graph, [(q.lo, q.hi) for q in ps]
        if e.src not in self.gmap or self._inputs_home(e.src, g) != CORE:
            if g.bands > 1 and not e.aligned:
                return read_elements(graph, e, None, 0, 0, g, spans)
            return e.elements * (self._share(g, ps) if e.aligned else 1.0)
        src = self.gmap[e.src]
        if g.bands > 1 and not e.aligned:  # all the rows it reads, less those its round's producers send
            return read_elements(graph, e, None, 0, 0, g, spans) - sum(
                read_elements(graph, e, src, p.lo, p.hi, g, spans) for p in self.lay.by_round.get((e.src, r), []))
        other = [p for rr in self.round_of_group[e.src] - {r} for p in self.lay.by_round[(e.src, rr)]]
        if e.aligned:
            return sum(needed_elements(graph, e, src, p, q, g) for p in other for q in ps)
        return sum(needed_elements(graph, e, src, p, ps[0], g) for p in other)

    def _fp_inputs(self, g: Group, ps: list[Piece], r: int) -> list[Instr]:
        """Inputs from memory: an aligned share is loaded by each core; a full input (every core
        of g needs all of it) by g's first core, which multicasts it to the others. A window
        outside the cores is read once per weight tile. A matmul's stationary operand goes to the
        FP engine's weights buffer (docs/attention.md)."""
        out = []
        cores = self.cores_of[(g.name, r)]
        for e in g.in_edges:
            elems = self._from_elsewhere(e, g, ps, r)
            if not elems:
                continue
            home = self._inputs_home(e.src, g)
            reads = 1 if home == CORE or self._per_step(g) else self.df.flows[g.name].tiles
            level = DRAM if e.src not in self.gmap or home == CORE else home
            share = self.df.flows[g.name].inputs_share if level == home else 1.0
            size = self._bytes(elems, e.spike) * reads
            kind = "spike" if e.spike else "psum"
            own = self._per_core(e, g)
            buf = _buffer(self.arch, "weights" if e.stationary else "input", "fp")  # a matmul's stationary operand
            if own or self.core == cores[0]:
                out += [Instr("dma.load", (buf, part, "activations", g.root.name, lvl))
                        for lvl, part in sorted(_split({(level, share)}, size).items())]
            if not own and self.core == cores[0]:
                out += [Instr("noc.send", (kind, c, size, e.src_op)) for c in cores[1:]]
            elif not own:
                out.append(Instr("noc.recv", (kind, cores[0], size, e.src_op)))
        out += [Instr("noc.recv", ("spike" if l.spike else "psum", l.a, l.fwd, self.gmap[l.src].last.name))
                for l in self._links_to(g.name, r) if l.fwd
                and self._inputs_home(l.src, g) == CORE]
        return out

    # -- backward -------------------------------------------------------------------------------
    def bp_stage(self, st: Stage) -> list[Instr]:
        out: list[Instr] = []
        g = self.gmap[st.groups[0]] if st.groups else None
        ps = self._mine(g.name, st.round) if g else []
        if ps:
            size = math.ceil(g.out_size * self._share(g, ps)) * self.vb
            parts = _split(self._waits(g.name, self.consumers[g.name], "errors"), size)
            if self._stored_later(g, st.round) and not any(o.name in self.graph_outputs for o in g.ops):
                parts[DRAM] = size
            out += [Instr("dma.load", (_buffer(self.arch, "grad_out", "bp"), parts[home], "errors", g.last.name, home))
                    for home in sorted(parts)]
            out += [Instr("noc.recv", ("grad", l.b, l.bwd, self.gmap[l.dst].root.name))
                    for l in self._links_from(g.name, st.round) if l.bwd
                    and self._errors_home(g.name, self.gmap[l.dst]) == CORE]
            for p in ps:
                out += self._bptt(g, p, False)
                if self._per_step(g) and any(t.opcode == "bp.propagate" and self._here(t) for t in st.tasks):
                    out += self._weights(g, p, "bp")
        for t in st.tasks:
            if not self._here(t):
                continue
            step_wgrad = t.opcode == "wg.accumulate" and self._per_step(self.gmap[t.group])
            out += self._wgrad(t, False) if step_wgrad else []
            out.append(Instr(t.opcode, (t.layer, t.lo, t.hi)))
            out += self._wgrad(t, True) if step_wgrad else []
        if ps:
            out += [Instr("noc.send", ("grad", l.a, l.bwd, g.root.name))
                    for l in self._links_to(g.name, st.round) if l.bwd
                    and self._errors_home(l.src, g) == CORE]
            cores = self.cores_of[(g.name, st.round)]
            for e in g.in_edges:
                elems = self._from_elsewhere(e, g, ps, st.round) if e.src in self.gmap else 0
                if not elems:
                    continue
                remote = self.plan.chip_of[e.src] != self.chip
                if remote and e.aligned:  # no partial sums: each core's part goes straight to the producer's chip
                    out += [Instr("link.send", ("grad", self.plan.chip_of[e.src], self.lay.leader(e.src), n,
                                                g.root.name)) for c, n in self._error_parts(e, g, st.round)
                            if c == self.core]
                    continue
                size = math.ceil(elems) * self.vb
                own = self._per_core(e, g)
                if not own and self.core != cores[0]:  # partial sums go to the first core
                    out.append(Instr("noc.send", ("grad", cores[0], size, g.root.name)))
                    continue
                if not own:
                    out += [Instr("noc.recv", ("grad", c, size, g.root.name)) for c in cores[1:]]
                if not remote:
                    out += self._store_errors(e, g, size)
                    continue
                # partial sums add up in this chip's DRAM; after g's last backward round its first
                # core sends the sum to the producer's chip
                out.append(Instr("dma.store", (_buffer(self.arch, "grad_out", "bp"), size, "errors", g.root.name, DRAM)))
                for _, n in self._error_parts(e, g, st.round) if self.core == cores[0] else []:
                    out += [Instr("dma.load", (_buffer(self.arch, "grad_out", "bp"), n * self.vb, "errors", g.root.name,
                                               DRAM)),
                            Instr("link.send", ("grad", self.plan.chip_of[e.src], self.lay.leader(e.src), n, g.root.name))]
        if g and self.plan.chip_of[g.name] != self.chip:
            out += [i for e in g.in_edges if e.src in self.gmap and self.plan.chip_of[e.src] == self.chip
                    and self.lay.leader(e.src) == self.core for i in self._errors_in(e, g, st.round)]
        out.append(self._next_barrier())
        return out

    def _store_errors(self, e, g: Group, size: int) -> list[Instr]:
        """The errors g returns over edge e, to where its producer's backward pass reads them."""
        home = self._errors_home(e.src, g)
        share = 1.0 if home == CORE else self.df.flows[g.name].errors_share
        return [Instr("dma.store", (_buffer(self.arch, "grad_out", "bp"), part, "errors", g.root.name, lvl))
                for lvl, part in sorted(_split({(DRAM if home == CORE else home, share)}, size).items())]

    def _error_parts(self, e, g: Group, r: int) -> list[tuple[tuple[int, int], int]]:
        """(core, elements) of the errors over edge e, to a producer on another chip, that g's cores
        send in round r: each core its own units' when e is aligned; else the first core the sum
        of all rounds' partial sums, once, in g's last backward round (its first round)."""
        cores = self.cores_of[(g.name, r)]
        if e.aligned:
            return [(c, math.ceil(self._from_elsewhere(e, g, self._on(g.name, r, c), r))) for c in cores]
        return [(cores[0], e.elements)] if r == min(self.round_of_group[g.name]) else []

    def _errors_in(self, e, g: Group, r: int) -> list[Instr]:
        """On the producer's first core: the errors g's round r sends back over edge e, stored
        where the producer's backward pass reads them."""
        parts = self._error_parts(e, g, r)
        out = [Instr("link.recv", ("grad", self.plan.chip_of[g.name], c, n, g.root.name)) for c, n in parts]
        return out + (self._store_errors(e, g, sum(n for _, n in parts) * self.vb) if parts else [])

    # -- windows (sample and batch orders) ------------------------------------------------------
    def _windowed_wg(self, st: Stage) -> list:
        return [t for t in st.tasks if self._here(t) and t.opcode == "wg.accumulate"
                and not self._per_step(self.gmap[t.group])]

    def window_open(self, st: Stage, reload: bool) -> list[Instr]:
        """Before a stage's window: fetch its weight tiles and, when earlier windows added to them
        (`reload`: a window per sample, or per step of a recurrence), the gradient partial sums."""
        out: list[Instr] = []
        if st.groups and not self._per_step(self.gmap[st.groups[0]]):
            g = self.gmap[st.groups[0]]
            eng = "fp" if st.phase == "fp" else "bp"
            if eng == "fp" or any(t.opcode == "bp.propagate" and self._here(t) for t in st.tasks):
                out += [i for p in self._mine(g.name, st.round) for i in self._weights(g, p, eng)]
        # the gradient of earlier windows is read back (`reload`), and so is the one the channel's
        # other bands have summed (a band after the first adds to it)
        out += [i for t in self._windowed_wg(st) if reload or self._later_band(t) for i in self._wgrad(t, False)]
        return out

    def _later_band(self, t) -> bool:
        g = self.gmap[t.group]
        return g.bands > 1 and self.plan.pieces[t.piece].lo % g.bands != 0

    def window_close(self, st: Stage) -> list[Instr]:
        return [i for t in self._windowed_wg(st) for i in self._wgrad(t, True)]

    # -- outside the loops ----------------------------------------------------------------------
    def preload(self) -> list[Instr]:
        """Weights that stay on chip for the whole step: into the engines' tile buffers, or into a global buffer."""
        out = []
        for p in self.plan.pieces:
            if p.core != self.core or p.chip != self.chip:
                continue
            g = self.gmap[p.group]
            w = weight_bytes(g, p.hi - p.lo, self.arch)
            if p.id in self.df.resident_weights:
                for eng in ("fp", "bp") if self.plan.config.training else ("fp",):
                    out.append(Instr("dma.load", (_buffer(self.arch, "weights", eng), w, "weights", g.root.name, DRAM)))
            elif g.weights and self.df.flows[g.name].weights != DRAM:
                out.append(Instr("dma.load", (self.df.flows[g.name].weights, w, "weights", g.root.name, DRAM)))
        return out

    def update(self) -> list[Instr]:
        """Per piece: its weights and the optimizer's state in, the update, both back to their homes."""
        out: list[Instr] = []
        for t in self.sched.update.tasks if self.sched.update else []:
            if not self._here(t):
                continue
            p, g = self.plan.pieces[t.piece], self.gmap[t.group]
            w, home = weight_bytes(g, p.hi - p.lo, self.arch), self.df.flows[g.name].weights
            state = state_bytes(g, p.hi - p.lo, self.arch, self.plan.config.optimizer)
            wb = _buffer(self.arch, "weights", "fp")
            resident = p.id in self.df.resident_weights
            if not resident:
                out.append(Instr("dma.load", (wb, w, "optimizer", t.layer, home)))
            if state:
                out.append(Instr("dma.load", (wb, state, "optimizer", t.layer, self.df.flows[g.name].optimizer)))
            out += self._wgrad(t, False)
            out.append(Instr("wg.update", (t.layer, t.lo, t.hi)))
            if state:
                out.append(Instr("dma.store", (wb, state, "optimizer", t.layer, self.df.flows[g.name].optimizer)))
            if not resident:
                out.append(Instr("dma.store", (wb, w, "optimizer", t.layer, home)))
                if home != DRAM:  # the updated weights leave the chip once
                    out.append(Instr("dma.store", (home, w, "optimizer", t.layer, DRAM)))
        return out


def _group(st: Stage) -> str | None:
    """The group whose loop nest a stage belongs to (a stage of weight gradients only: theirs)."""
    return st.groups[0] if st.groups else st.tasks[0].group if st.tasks else None


def _runs(stages: list[Stage], df: Dataflow) -> list[list[Stage]]:
    """Consecutive stages of one segment of the dataflow share a loop nest, with the round."""
    out: list[list[Stage]] = []
    key = None
    for st in stages:
        g = _group(st)
        k = (df.flows[g].segment, st.round) if g else key
        if out and k == key:
            out[-1].append(st)
        else:
            out.append([st])
        key = k
    return out


def _windowed(em: _Emitter, stages: list[Stage], emit, reverse: bool, batch_inside: bool) -> list:
    """Each run in its loop nest, its windows opened before and closed after. A recurrence in the
    batch order runs its steps outside the samples: a window per step."""
    out: list = []
    for run in _runs(stages, em.df):
        body = [i for st in run for i in emit(st)]
        g = next(g for st in run if (g := _group(st)))
        if em.df.flows[g].time_outer:
            step = [i for st in run for i in em.window_open(st, True)] + [Loop("batch", em.B, False, body)]
            out.append(Loop("time", em.T, reverse, step + [i for st in run for i in em.window_close(st)]))
            continue
        inner = Loop("time", em.T, reverse, body)
        out += [i for st in run for i in em.window_open(st, em.df.order == "sample")]
        out.append(Loop("batch", em.B, False, [inner]) if batch_inside else inner)
        out += [i for st in run for i in em.window_close(st)]
    return out


def _kind(c: Cut) -> str:
    return "spike" if c.spike else "psum"


def generate(plan: Plan, schedule: Schedule, df: Dataflow) -> Program:
    """One program for the whole system: every core of every chip runs the same loops and
    barrier sequence."""
    cfg, arch = plan.config, plan.arch
    cores: dict[tuple, list] = {}
    fp_stages = [st for r in range(plan.rounds) for st in schedule.fp[r]]
    bp_stages = [st for r in reversed(range(plan.rounds)) for st in schedule.bp[r]] if cfg.training else []
    layout = _Layout(plan)
    for chip, core in ((k, c) for k in range(cfg.chips) for c in arch.cores):
        em = _Emitter(plan, schedule, df, layout, chip, core)
        body = em.preload()
        if df.order == "step":
            per_sample = [Loop("time", cfg.timesteps, False, [i for st in schedule.fp[r] for i in em.fp_stage(st)])
                          for r in range(plan.rounds)]
            if cfg.training:
                per_sample += [Loop("time", cfg.timesteps, True, [i for st in schedule.bp[r] for i in em.bp_stage(st)])
                               for r in reversed(range(plan.rounds))]
            body.append(Loop("batch", cfg.batch, False, per_sample))
        else:
            batch_inside = df.order == "batch"
            nest = _windowed(em, fp_stages, em.fp_stage, False, batch_inside)
            nest += _windowed(em, bp_stages, em.bp_stage, True, batch_inside)
            body += nest if batch_inside else [Loop("batch", cfg.batch, False, nest)]
        if cfg.training:
            body += em.update() + [em._next_barrier()]
        cores[core_key(chip, core, cfg.chips)] = body
    header = Header(model=plan.graph.name, arch=arch.name, training=cfg.training, timesteps=cfg.timesteps,
                    batch=cfg.batch, dataflow=df.name, order=df.order, rounds=plan.rounds, strategy=cfg.strategy,
                    spike_rate=cfg.spike_rate, optimizer=cfg.optimizer, chips=cfg.chips)
    return Program(header, cores)
