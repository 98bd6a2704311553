"""Mapping units. A *group* is a root op (weight op, pooling or reduction that starts a layer)
plus the ops fused after it that are element-wise along the root's first axis (batch-norm,
neurons, residual add, mask, channel-preserving pooling, flatten). A group splits into *pieces*
along that axis (output channels of a conv, output neurons of a linear), or, when one channel
exceeds a core's membrane SRAM, into row bands of its channels (mapping/bands.py).

A `delay` op is no group: a group reading one reads its source's values of the previous step
(a delayed edge). Groups on a cycle through delayed edges form a *recurrent set*, which runs
its steps in order; the groups are ordered so that each set's groups follow each other."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from spikeforge.isa import Graph, Op
from spikeforge.isa.ops import NEURON_KINDS, SPIKE, WEIGHT_KINDS, matmul_split

_FOLLOW = frozenset({"batchnorm", "scale", "lif", "if", "cubalif", "li", "threshold", "flatten", "reshape",
                     "add", "mul", "pool2d", "sum"})
_STATES = {"lif": 1, "if": 1, "li": 1, "cubalif": 2, "threshold": 0}


@dataclass
class Group:
    """A layer as the mapper sees it: ops [root, *followers], split into `units` along axis 0
    (or, with `bands` > 1, into `bands` row bands of each channel: units = channels x bands)."""

    name: str
    ops: list[Op]
    units: int
    syn_ops: int = 0  # dense synaptic ops per step (root)
    in_size: int = 0  # elements the root reads per step
    weights: int = 0  # weight + bias values of the root
    neurons: int = 0  # neuron updates per step (followers)
    states: int = 0  # neuron state values per step (membrane, synaptic current)
    elem_ops: int = 0
    out_size: int = 0  # elements of the last op
    split_weights: bool = True  # weights divide among pieces along the unit axis
    in_edges: list["Edge"] = field(default_factory=list)
    recurrence: str = ""  # on a cycle through delayed edges: the first group of its recurrent set
    bands: int = 1  # row bands per channel (mapping/bands.py)
    saved: tuple[tuple[int, bool, bool], ...] = ()  # a `matmul` root's operands kept per step for its
    # backward: (elements, spikes?, split among the pieces?)

    @property
    def channels(self) -> int:
        return self.units // self.bands

    @property
    def root(self) -> Op:
        return self.ops[0]

    @property
    def last(self) -> Op:
        return self.ops[-1]


@dataclass(frozen=True)
class Edge:
    """Values of producer op `src_op` (in group `src`) read by group `dst`, of the same step or,
    `delayed`, of the previous one. `aligned` edges need only the matching unit range; others
    need every unit (full fan-in)."""

    src: str
    dst: str
    src_op: str
    elements: int
    spike: bool
    aligned: bool
    delayed: bool = False
    stationary: bool = False  # the second operand of a `matmul` root: it takes the weights' place


def _units(op: Op) -> int:
    return op.type.shape[0]


def _follows(op: Op, graph: Graph, group_of: dict[str, str], groups: dict[str, Group]) -> str | None:
    """The group `op` fuses into, or None when it starts a group."""
    if op.kind not in _FOLLOW or not op.inputs or op.inputs[0] not in group_of:
        return None
    g = groups[group_of[op.inputs[0]]]
    shape = op.type.shape
    if op.kind == "sum" and op.params["axis"] in (0, -len(shape)):
        return None
    if op.kind in ("flatten", "reshape") and shape[0] % g.units:
        return None
    if op.kind not in ("flatten", "reshape") and shape[0] != g.units:
        return None
    if op.kind == "reshape" and op.type.size != graph[op.inputs[0]].type.size:
        return None
    order = list(groups)
    if any(order.index(group_of.get(i, g.name)) > order.index(g.name) for i in op.inputs[1:]):
        return None  # it also reads a later group: fusing would run it before that group
    return g.name


def build_groups(graph: Graph) -> list[Group]:
    """Groups in topological order, with their work, state and the edges between them."""
    groups: dict[str, Group] = {}
    group_of: dict[str, str] = {}
    for op in graph:
        if op.kind in ("input", "output", "delay"):
            continue
        gname = None if op.kind in WEIGHT_KINDS else _follows(op, graph, group_of, groups)
        if gname is None:
            groups[op.name] = Group(op.name, [op], _units(op))
            gname = op.name
        else:
            groups[gname].ops.append(op)
        group_of[op.name] = gname
    layers = {li.name: li for li in graph.layers()}
    for g in groups.values():
        _fill_work(g, graph, layers)
        members = {o.name for o in g.ops}
        for o in g.ops:
            for j, src in enumerate(o.inputs):
                delayed = graph[src].kind == "delay"
                while graph[src].kind == "delay":
                    src = graph[src].inputs[0]
                s = graph[src]
                aligned = (o is not g.root or (o.kind in ("conv1d", "conv2d") and o.params["groups"] > 1)
                           or o.kind not in WEIGHT_KINDS) and s.type.shape[:1] == (g.units,)
                stationary = o is g.root and o.kind == "matmul" and j == 1
                if o is g.root and o.kind == "matmul":
                    aligned = matmul_split(o.params, len(o.type.shape))[j]
                if src in members and (aligned or not delayed):
                    continue  # within the group's pieces (a delayed one reads its own units' last step)
                src_group = group_of.get(src, "input" if s.kind == "input" else src)
                g.in_edges.append(Edge(src_group, g.name, src, s.type.size, s.type.kind == SPIKE, aligned, delayed,
                                       stationary))
    ordered = list(groups.values())
    return _recurrent_sets(ordered) if any(e.delayed for g in ordered for e in g.in_edges) else ordered


def _recurrent_sets(groups: list[Group]) -> list[Group]:
    """Mark the groups on cycles (their strongly connected sets, through delayed edges) and
    order the groups as the sets' graph orders them, each set's groups together in their order."""
    index = {g.name: i for i, g in enumerate(groups)}
    succs: dict[str, set[str]] = {g.name: set() for g in groups}
    for g in groups:
        for e in g.in_edges:
            if e.src in succs:
                succs[e.src].add(g.name)
    reach = {n: _reach(succs, n) for n in succs}  # n is in reach[n] when it is on a cycle
    first = {n: min((m for m in reach[n] if n in reach[m]), key=index.__getitem__, default=n) for n in succs}
    for g in groups:
        if g.name in reach[g.name]:
            g.recurrence = first[g.name]
    sets: dict[str, list[Group]] = {}
    for g in groups:
        sets.setdefault(first[g.name], []).append(g)
    waits = {k: {first[e.src] for g in gs for e in g.in_edges if e.src in first} - {k} for k, gs in sets.items()}
    out: list[Group] = []
    done: set[str] = set()
    while len(done) < len(sets):  # Kahn over the sets, earliest first
        k = min((k for k in sets if k not in done and waits[k] <= done), key=index.__getitem__)
        done.add(k)
        out += sets[k]
    return out


def _reach(succs: dict[str, set[str]], start: str) -> set[str]:
    """The groups reachable from `start` by one edge or more."""
    seen: set[str] = set()
    todo = list(succs[start])
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += succs[n]
    return seen


def _fill_work(g: Group, graph: Graph, layers) -> None:
    root = g.root
    li = layers[root.name]
    if root.kind == "matmul":  # its operands, kept for BP (the second) and WG (the first)
        split = matmul_split(root.params, len(root.type.shape))
        g.saved = tuple((graph[i].type.size, graph[i].type.kind == SPIKE, s) for i, s in zip(root.inputs, split))
    g.syn_ops = li.work.syn_ops
    g.in_size = graph[root.inputs[0]].type.size if root.inputs else 0
    g.weights = li.params if root.kind in WEIGHT_KINDS else 0
    g.split_weights = root.kind in ("conv1d", "conv2d") or len(root.type.shape) == 1
    for o in g.ops:
        w = layers[o.name].work
        g.elem_ops += w.elem_ops
        if o.kind in NEURON_KINDS:
            g.neurons += w.neurons
            g.states += _STATES[o.kind] * o.type.size
    g.out_size = g.last.type.size


def piece_bounds(units: int, pieces: int) -> list[tuple[int, int]]:
    """Split [0, units) into `pieces` near-equal contiguous ranges."""
    pieces = max(1, min(pieces, units))
    cuts = [round(k * units / pieces) for k in range(pieces + 1)]
    return [(cuts[k], cuts[k + 1]) for k in range(pieces)]


def spike_count(elements: int, rate: float) -> int:
    return math.ceil(elements * rate)
