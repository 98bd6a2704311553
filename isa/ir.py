"""The spike-driven IR: a DAG of typed ops. `Graph.build` validates names, edges, parameters,
tensors and shapes, orders ops topologically and infers every value's type."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spikeforge.isa.errors import SpikeforgeError
from spikeforge.isa.limits import VALUE_BYTES, check_array, check_memory
from spikeforge.isa.ops import KINDS, TensorType, Work
from spikeforge.isa.params import normalize_all


@dataclass(eq=False)
class Op:
    """One node: `inputs` name the ops whose values it reads. Tensors are float32 arrays."""

    name: str
    kind: str
    inputs: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    type: TensorType | None = None  # set by Graph.build

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Op) and (self.name, self.kind, tuple(self.inputs), self.params, self.type)
                == (other.name, other.kind, tuple(other.inputs), other.params, other.type)
                and self.tensors.keys() == other.tensors.keys()
                and all(np.array_equal(v, other.tensors[k]) for k, v in self.tensors.items()))

    def coef(self, name: str) -> float | np.ndarray:
        """A neuron coefficient: the per-neuron tensor if given, else the scalar param."""
        return self.tensors[name] if name in self.tensors else self.params[name]


@dataclass(frozen=True)
class LayerInfo:
    """What `inspect` shows for one op."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    in_types: tuple[TensorType, ...]
    out_type: TensorType
    params: int
    work: Work


@dataclass(eq=False)
class Graph:
    """A validated IR graph; build one with `Graph.build`."""

    name: str
    ops: list[Op]

    def __post_init__(self):
        self._by_name = {op.name: op for op in self.ops}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.name == other.name and self.ops == other.ops

    def __getitem__(self, name: str) -> Op:
        return self._by_name[name]

    def __iter__(self):
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def inputs(self) -> list[Op]:
        return [op for op in self.ops if op.kind == "input"]

    @property
    def outputs(self) -> list[Op]:
        """Output ops, or the sinks of the graph when it marks none (ops that no op reads in
        the same step: one read only through a `delay` is a sink)."""
        marked = [op for op in self.ops if op.kind == "output"]
        if marked:
            return marked
        used = {i for op in self.ops if op.kind != "delay" for i in op.inputs}
        return [op for op in self.ops if op.name not in used]

    def consumers(self, name: str) -> list[Op]:
        return [op for op in self.ops if name in op.inputs]

    @staticmethod
    def build(name: str, ops: list[Op], where: str = "") -> "Graph":
        """Validate and type a list of ops. Errors name the op (`where: op 'x': ...`)."""
        pre = f"{where}: " if where else ""
        if not ops:
            raise SpikeforgeError(f"{pre}model has no layers")
        seen: dict[str, Op] = {}
        for op in ops:
            if not isinstance(op.name, str) or not op.name:
                raise SpikeforgeError(f"{pre}an op has an empty name")
            if op.name in seen:
                raise SpikeforgeError(f"{pre}op '{op.name}': duplicate name")
            seen[op.name] = op
        order = _topo_order(ops, seen, pre)
        typed: list[Op] = []
        for op in order:
            typed.append(_check_op(op, seen, pre))
            seen[op.name] = typed[-1]
        _check_delays(typed, seen, pre)
        g = Graph(name, typed)
        if not g.inputs:
            raise SpikeforgeError(f"{pre}model has no input op")
        check_memory(f"{pre}model '{name}' (its weights and one sample's values)", g.footprint(1, 1))
        return g

    def footprint(self, timesteps: int, batch: int, training: bool = False) -> int:
        """An estimate of the bytes a step needs: the weights (with gradients when training) and
        each op's values per time step and sample (with state and errors when training)."""
        weights = sum(math.prod(s.shape) for op in self.ops
                      for s in KINDS[op.kind].tensors(op.params, [self[i].type for i in op.inputs], op.type).values())
        values = sum(op.type.size for op in self.ops) * timesteps * batch
        return VALUE_BYTES * (weights + values) * (3 if training else 1)

    def layers(self) -> list[LayerInfo]:
        out = []
        for op in self.ops:
            ins = [self[i].type for i in op.inputs]
            spec = KINDS[op.kind]
            tspec = spec.tensors(op.params, ins, op.type)
            n_params = sum(math.prod(s.shape) for k, s in tspec.items() if s.trainable)
            out.append(LayerInfo(op.name, op.kind, op.inputs, tuple(ins), op.type, n_params,
                                 spec.work(op.params, ins, op.type)))
        return out

    def param_count(self) -> int:
        return sum(li.params for li in self.layers())

    def structure(self) -> "Graph":
        """The same graph without tensors (shapes and parameters only)."""
        return Graph(self.name, [Op(o.name, o.kind, o.inputs, dict(o.params), {}, o.type) for o in self.ops])


def _topo_order(ops: list[Op], by_name: dict[str, Op], pre: str) -> list[Op]:
    """Kahn's algorithm, stable in the given order; names a node on a cycle. A `delay` reads
    the previous step, so its edge does not order it."""
    for op in ops:
        for i in op.inputs:
            if i not in by_name:
                raise SpikeforgeError(f"{pre}op '{op.name}': input '{i}' is not defined")
    deps = {op.name: () if op.kind == "delay" else tuple(dict.fromkeys(op.inputs)) for op in ops}
    indeg = {n: len(d) for n, d in deps.items()}
    users: dict[str, list[str]] = {op.name: [] for op in ops}
    for op in ops:
        for i in deps[op.name]:
            users[i].append(op.name)
    pos = {op.name: k for k, op in enumerate(ops)}
    ready = sorted((n for n, d in indeg.items() if d == 0), key=pos.__getitem__)
    order: list[Op] = []
    import heapq
    heap = [(pos[n], n) for n in ready]
    heapq.heapify(heap)
    while heap:
        _, n = heapq.heappop(heap)
        order.append(by_name[n])
        for u in users[n]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(heap, (pos[u], u))
    if len(order) != len(ops):
        stuck = next(op.name for op in ops if indeg[op.name] > 0)
        raise SpikeforgeError(f"{pre}op '{stuck}': graph has a cycle through this op "
                              "(a recurrent edge reads the previous step through a `delay` op)")
    return order


def _check_delays(ops: list[Op], by_name: dict[str, Op], pre: str) -> None:
    """A delay carries its input's type, something reads it, and it reads something other than
    delays in the end."""
    read = {i for op in ops for i in op.inputs}
    for op in ops:
        if op.kind != "delay":
            continue
        src = by_name[op.inputs[0]]
        if src.type != op.type:
            raise SpikeforgeError(f"{pre}op '{op.name}' (delay): declares {op.type}, but its input "
                                  f"'{src.name}' is {src.type}")
        if op.name not in read:
            raise SpikeforgeError(f"{pre}op '{op.name}' (delay): no op reads it")
        chain = {op.name}
        while src.kind == "delay":
            if src.name in chain:
                raise SpikeforgeError(f"{pre}op '{op.name}' (delay): a cycle of delays only, with no value in it")
            chain.add(src.name)
            src = by_name[src.inputs[0]]


def _check_op(op: Op, by_name: dict[str, Op], pre: str) -> Op:
    where = f"{pre}op '{op.name}' ({op.kind})"
    spec = KINDS.get(op.kind)
    if spec is None:
        raise SpikeforgeError(f"{pre}op '{op.name}': unknown op kind '{op.kind}' "
                              f"(known: {', '.join(KINDS)})")
    lo, hi = spec.n_inputs
    n = len(op.inputs)
    if n < lo or (hi >= 0 and n > hi):
        want = f"{lo}" if lo == hi else (f"at least {lo}" if hi < 0 else f"{lo} to {hi}")
        raise SpikeforgeError(f"{where}: takes {want} input(s), got {n}")
    params = normalize_all(spec.params, op.params, f"{pre}op '{op.name}'")
    ins = [by_name[i].type for i in op.inputs]
    try:
        out = spec.infer(params, ins)
    except ValueError as e:
        raise SpikeforgeError(f"{where}: {e}") from None
    tspec = spec.tensors(params, ins, out)
    tensors: dict[str, np.ndarray] = {}
    for k, v in op.tensors.items():
        if k not in tspec:
            raise SpikeforgeError(f"{where}: unexpected tensor '{k}' (allowed: {', '.join(tspec) or 'none'})")
        a = np.asarray(v)
        if a.dtype.kind not in "biuf":
            raise SpikeforgeError(f"{where}: tensor '{k}' must be real numbers, got dtype {a.dtype}")
        with np.errstate(over="ignore"):
            a = a.astype(np.float32)
        s = tspec[k]
        ok = (_broadcasts(a.shape, s.shape) if s.broadcast else a.shape == s.shape)
        if not ok:
            raise SpikeforgeError(f"{where}: tensor '{k}' has shape {list(a.shape)}, expected "
                                  f"{'one broadcastable to ' if s.broadcast else ''}{list(s.shape)}")
        tensors[k] = a
    if tensors:
        missing = [k for k, s in tspec.items() if s.required and k not in tensors]
        if missing:
            raise SpikeforgeError(f"{where}: missing tensor(s) {', '.join(missing)}")
    return Op(op.name, op.kind, tuple(op.inputs), params, tensors, out)


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(a, b) == tuple(b)
    except ValueError:
        return False


def check_finite(graph: Graph, where: str = "") -> None:
    """Every tensor of the graph is finite (NaN, inf and values beyond float32 are errors)."""
    pre = f"{where}: " if where else ""
    for op in graph:
        for k, a in op.tensors.items():
            check_array(f"{pre}op '{op.name}': tensor '{k}'", a)
