"""The schedule: per round, the stages that run inside each time step, and which engine of
which core does what in each stage. Stages are separated by barriers. Forward (FP) stages run
t = 0..T-1 in topological order; backward stages run t = T-1..0 in reverse order, each pairing
BP of one group with WG of the group after it (BP of layer l overlaps WG of layer l+1 on the
same core's two engines; a matmul's WG, the error of its stationary operand, runs beside its own BP,
since its producer's BP needs it next); the weight update follows the whole batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from spikeforge.isa.ops import NEURON_KINDS, SYNAPTIC_KINDS, WEIGHT_KINDS
from spikeforge.mapping.groups import Group
from spikeforge.mapping.plan import Piece, Plan

_VIEWS = frozenset({"flatten", "reshape"})


@dataclass(frozen=True)
class Task:
    """One engine instruction on one core: `opcode` on elements [lo, hi) of op `layer`, the
    share of piece `piece` (an id of Plan.pieces) of group `group`."""

    opcode: str
    layer: str
    lo: int
    hi: int
    core: tuple[int, int]
    group: str
    piece: int

    @property
    def engine(self) -> str:
        return self.opcode.split(".")[0]


@dataclass
class Stage:
    """Work between two barriers: `phase` fp (forward), bp (backward + weight gradients) or
    update; `groups` names the groups whose FP or BP runs here."""

    phase: str
    round: int
    groups: tuple[str, ...]
    tasks: list[Task] = field(default_factory=list)


@dataclass
class Schedule:
    fp: list[list[Stage]]  # per round, the body of `loop T`
    bp: list[list[Stage]]  # per round (same index), the body of `loop T reverse`
    update: Stage | None


def _range(op_size: int, g: Group, p: Piece) -> tuple[int, int]:
    per = op_size // g.units
    return p.lo * per, p.hi * per


def _fp_tasks(g: Group, pieces: list[Piece]) -> list[Task]:
    tasks = []
    for p in pieces:
        for op in g.ops:
            if op.kind in _VIEWS:
                continue
            code = ("fp.integrate" if op.kind in SYNAPTIC_KINDS else
                    "fp.fire" if op.kind in NEURON_KINDS else "fp.elem")
            tasks.append(Task(code, op.name, *_range(op.type.size, g, p), p.core, g.name, p.id))
    return tasks


def _bp_tasks(g: Group, pieces: list[Piece], input_names: set[str]) -> list[Task]:
    tasks = []
    for p in pieces:
        for op in reversed(g.ops):
            if op.kind in _VIEWS:
                continue
            if op.kind in SYNAPTIC_KINDS:
                if op.inputs[0] in input_names:
                    continue  # no error to propagate into the network input
                code = "bp.propagate"
            else:
                code = "bp.neuron" if op.kind in NEURON_KINDS else "bp.elem"
            tasks.append(Task(code, op.name, *_range(op.type.size, g, p), p.core, g.name, p.id))
    return tasks


def _wg_tasks(g: Group, pieces: list[Piece], opcode: str, input_names: frozenset[str] = frozenset()) -> list[Task]:
    """WG of a weight op; of a matmul, the error of its second operand (none into the network input)."""
    if g.root.kind not in SYNAPTIC_KINDS or (g.root.kind == "matmul" and g.root.inputs[1] in input_names):
        return []
    return [Task(opcode, g.root.name, *_range(g.root.type.size, g, p), p.core, g.name, p.id) for p in pieces]


def _update_tasks(g: Group, pieces: list[Piece]) -> list[Task]:
    """The update of a banded group's channel runs on the core of its first band, over the
    whole channel (the other bands' partial gradients reach it through the gradients' home)."""
    if g.root.kind not in WEIGHT_KINDS:
        return []
    if g.bands == 1:
        return _wg_tasks(g, pieces, "wg.update")
    per = g.root.type.size // g.channels
    return [Task("wg.update", g.root.name, p.lo // g.bands * per, (p.lo // g.bands + 1) * per, p.core, g.name, p.id)
            for p in pieces if g.root.kind in WEIGHT_KINDS and p.lo % g.bands == 0]


def build_schedule(plan: Plan) -> Schedule:
    inputs = {op.name for op in plan.graph.inputs}
    fp: list[list[Stage]] = []
    bp: list[list[Stage]] = []
    for r in range(plan.rounds):
        members = [(g, [p for p in plan.pieces_of(g.name) if p.round == r]) for g in plan.groups]
        members = [(g, ps) for g, ps in members if ps]
        fp.append([Stage("fp", r, (g.name,), _fp_tasks(g, ps)) for g, ps in members])
        stages: list[Stage] = []
        if plan.config.training:
            prev = None
            for g, ps in reversed(members):
                tasks = _bp_tasks(g, ps, inputs) + (_wg_tasks(*prev, "wg.accumulate") if prev else [])
                prev = (g, ps)
                if g.root.kind == "matmul":  # the error of its stationary operand is due upstream: WG beside BP
                    tasks += _wg_tasks(g, ps, "wg.accumulate", frozenset(inputs))
                    prev = None
                stages.append(Stage("bp", r, (g.name,), tasks))
            if prev:
                stages.append(Stage("bp", r, (), _wg_tasks(*prev, "wg.accumulate")))
        bp.append(stages)
    update = None
    if plan.config.training:
        update = Stage("update", -1, (), [t for g in plan.groups for t in _update_tasks(g, plan.pieces_of(g.name))])
    return Schedule(fp, bp, update)
