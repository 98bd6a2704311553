"""Read a NIR graph (a `.nir` file, a `nir.NIRGraph`, or a single NIR node) into the spike-driven IR.

NIR describes neurons in continuous time and keeps no time step and no reset mode; each
exporter (snnTorch, Norse, Sinabs) writes its own conventions, chosen by `exporter`. Neurons
are discretised as that exporter runs them (see docs/nir.md)."""

from __future__ import annotations

import numbers
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import nir
import numpy as np

from spikeforge.compiler.frontends.nir_conventions import EXPORTERS, META, Convention
from spikeforge.isa import Graph, Op, SpikeforgeError, TensorType
from spikeforge.isa.limits import check_memory
from spikeforge.isa.ops import KINDS
from spikeforge.isa.params import normalize_all

RESETS = ("subtract", "zero")
ENCODINGS = next(p for p in KINDS["input"].params if p.name == "encoding").choices
_RTOL = 1e-6  # values this close (relative) count as equal: float32 rounding of exported parameters


def read_nir(source: str | os.PathLike | nir.NIRNode, dt: float | None = None, reset: str | None = None,
             encoding: str | None = None, name: str | None = None, exporter: str = "snntorch") -> Graph:
    """Convert a NIR file, graph or single node to an IR `Graph`. `exporter` (snntorch | norse
    | sinabs) is the framework that wrote it, whose conventions apply; `dt` (seconds) and `reset`
    (subtract | zero) override its time step and reset; `encoding` is that of the input ops
    (default: as written by spikeforge, else direct). Raises SpikeforgeError naming the file
    and node for any problem."""
    if isinstance(source, nir.NIRNode):
        where = name or type(source).__name__
    elif isinstance(source, (str, os.PathLike)):
        where = str(source)
    else:
        raise SpikeforgeError(f"expects a .nir file path or a NIR node, got {type(source).__name__}", "read_nir")
    if exporter not in EXPORTERS:
        raise SpikeforgeError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}", where)
    dt = EXPORTERS[exporter].dt if dt is None else dt
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not 0 < dt < float("inf"):
        raise SpikeforgeError(f"dt must be a positive number of seconds, got {dt!r}", where)
    if reset is not None and reset not in RESETS:
        raise SpikeforgeError(f"reset must be 'subtract' or 'zero', got {reset!r}", where)
    if encoding is not None and encoding not in ENCODINGS:
        raise SpikeforgeError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}", where)
    if isinstance(source, nir.NIRNode):
        node, default = source, "nir"
    else:
        node, default = _load(Path(source), where), Path(source).stem
    nodes, edges = _leaves(_as_graph(node, where), where)
    return _convert(nodes, edges, name or default, where, _Reading(float(dt), reset, encoding, EXPORTERS[exporter]))


# ---- reading the file ------------------------------------------------------------------------

def _load(path: Path, where: str) -> nir.NIRNode:
    if not path.exists():
        raise SpikeforgeError("file not found", where)
    if not path.is_file():
        raise SpikeforgeError("not a file", where)
    if path.stat().st_size == 0:
        raise SpikeforgeError("file is empty", where)
    if not h5py.is_hdf5(path):
        raise SpikeforgeError("not a NIR file (NIR files are HDF5, this one is not)", where)
    try:
        with h5py.File(path, "r") as f:
            if not isinstance(f.get("node"), h5py.Group):
                raise SpikeforgeError("HDF5 file has no 'node' group: not a NIR graph", where)
            tree = _h5_dict(f["node"], where)
    except (OSError, KeyError, RuntimeError, ValueError) as e:
        raise SpikeforgeError(f"cannot read the HDF5 data (truncated or corrupt file?): {e}", where) from None
    return _from_dict(tree, "", where)


def _as_graph(node: nir.NIRNode, where: str) -> nir.NIRGraph:
    """A single node (a file may hold one, as Norse writes a lone cell) wrapped as
    input -> node -> output, its input shape taken from the node's declared input type."""
    if isinstance(node, nir.NIRGraph):
        return node
    kind = type(node).__name__
    if kind not in _CONVERTERS:
        raise SpikeforgeError(f"holds a single {kind} node, not a network", where)
    shape = (node.input_type or {}).get("input")
    if shape is None or np.size(shape) == 0:
        raise SpikeforgeError(f"a single {kind} node with scalar parameters does not give its input shape "
                              "(write per-neuron parameters, or wrap it in a NIRGraph with an Input node)", where)
    key = kind.lower()
    return nir.NIRGraph({"input": nir.Input(input_type={"input": np.asarray(shape)}), key: node,
                         "output": nir.Output(output_type=node.output_type)},
                        [("input", key), (key, "output")], type_check=False)


def _h5_dict(group: h5py.Group, where: str) -> dict:
    """The group as nested dicts; each dataset's size is checked before it is read (a small
    compressed file may hold a huge one)."""
    out: dict[str, Any] = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = _h5_dict(item, where)
        else:
            check_memory(f"{where}: dataset '{item.name}'", item.size * item.dtype.itemsize)
            v = item[()]
            out[key] = v.decode("utf8") if isinstance(v, bytes) else v
    return out


def _from_dict(d: Any, key: str, where: str) -> nir.NIRNode:
    """Build NIR nodes ourselves: nir.read's type_check=False does not reach nested graphs,
    whose type inference fails on scalar parameters."""
    kind = d.get("type") if isinstance(d, dict) else None
    at = f"node '{key}': " if key else ""
    if kind == "NIRGraph":
        try:
            edges = [(_str(a), _str(b)) for a, b in d["edges"]]
            nodes = {k: _from_dict(v, f"{key}.{k}" if key else k, where) for k, v in d["nodes"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SpikeforgeError(f"{at}malformed NIRGraph ({type(e).__name__}: {e})", where) from None
        return nir.NIRGraph(nodes, edges, type_check=False)
    if kind not in _SUPPORTED:
        raise _unsupported(where, key, kind)
    try:
        return nir.dict2NIRNode(dict(d))
    except Exception as e:  # nir raises assorted errors on malformed nodes
        raise SpikeforgeError(f"{at}malformed NIR {kind} node ({type(e).__name__}: {e})", where) from None


def _str(s: Any) -> str:
    return s.decode("utf8") if isinstance(s, bytes) else str(s)


def _unsupported(where: str, key: str, kind: Any) -> SpikeforgeError:
    at = f"node '{key}'" if key else "top-level node"
    return SpikeforgeError(f"{at}: unsupported NIR node {kind} "
                           f"(supported: {', '.join(_SUPPORTED)})", where)


# ---- graph structure ---------------------------------------------------------------------------

def _leaves(graph: nir.NIRGraph, where: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Leaf nodes (subgraph nodes named `sub.node`) and the edges between them. A subgraph's
    Input/Output nodes are pass-throughs and are removed."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    through: list[str] = []
    _collect(graph, "", where, nodes, edges, through)
    for t in through:
        ins = [a for a, b in edges if b == t]
        outs = [b for a, b in edges if a == t]
        edges = [e for e in edges if t not in e] + [(a, b) for a in ins for b in outs]
        del nodes[t]
    return nodes, list(dict.fromkeys(edges))


def _collect(graph: nir.NIRGraph, prefix: str, where: str, nodes: dict[str, Any],
             edges: list[tuple[str, str]], through: list[str]) -> None:
    for key, node in graph.nodes.items():
        full = prefix + key
        if full in nodes:
            raise SpikeforgeError(f"node '{full}': duplicate name after flattening subgraphs", where)
        if isinstance(node, nir.NIRGraph):
            _collect(node, full + ".", where, nodes, edges, through)
            continue
        if type(node).__name__ not in _SUPPORTED:
            raise _unsupported(where, full, type(node).__name__)
        nodes[full] = node
        if prefix and isinstance(node, (nir.Input, nir.Output)):
            through.append(full)
    for a, b in graph.edges:
        edges.append((_port(graph, a, nir.Output, prefix, where), _port(graph, b, nir.Input, prefix, where)))


def _port(graph: nir.NIRGraph, key: str, cls: type, prefix: str, where: str) -> str:
    """The leaf node an edge end names: a subgraph stands for its one Input (or Output) node."""
    node = graph.nodes.get(key)
    if node is None:
        raise SpikeforgeError(f"edge names unknown node '{prefix}{key}'", where)
    if isinstance(node, nir.NIRGraph):
        ports = [k for k, v in node.nodes.items() if isinstance(v, cls)]
        if len(ports) != 1:
            raise SpikeforgeError(f"node '{prefix}{key}': an edge into or out of a subgraph needs exactly "
                                  f"one {cls.__name__} node in it, found {len(ports)}", where)
        return _port(node, ports[0], cls, f"{prefix}{key}.", where)
    return prefix + key


NEURONS = ("LIF", "IF", "CubaLIF", "LI", "I", "Threshold")
SPIKING = ("LIF", "IF", "CubaLIF", "Threshold")


def recurrent_edges(nodes: dict[str, Any], edges: list[tuple[str, str]], where: str) -> list[tuple[str, str]]:
    """The edges that carry the previous step's value. NIR marks no delay: a cycle (a recurrent
    layer, `lif -> w_rec -> lif`) goes round once per step. A depth-first walk from the Input
    nodes finds the edge closing each cycle; the cycle is cut at the edge leaving its last
    neuron before that edge, so that e.g. snnTorch's `w_rec` reads the previous step's spikes.
    Walks repeat until no cycle is left; a cycle without a neuron is an error."""
    cut: set[tuple[str, str]] = set()
    while True:
        cycles = _cycles(nodes, [e for e in edges if e not in cut])
        if not cycles:
            return [e for e in edges if e in cut]
        for path in cycles:
            neurons = [i for i, k in enumerate(path) if type(nodes[k]).__name__ in NEURONS]
            if not neurons:
                raise SpikeforgeError(f"node '{path[0]}': cycle without a neuron ({' -> '.join(path + path[:1])}); "
                                      "a recurrent connection must pass a neuron, whose previous step it reads", where)
            i = neurons[-1]
            cut.add((path[i], path[(i + 1) % len(path)]))


def _cycles(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> list[list[str]]:
    """One cycle per edge that closes one in a depth-first walk (Input nodes first, then in
    order): its nodes from the one the edge enters to the one it leaves."""
    succs: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        succs[a].append(b)
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    out = []
    for start in [k for k, v in nodes.items() if isinstance(v, nir.Input)] + list(nodes):
        if start in state:
            continue
        path, its = [start], [iter(succs[start])]
        state[start] = 1
        while path:
            nxt = next(its[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                its.pop()
            elif state.get(nxt) == 1:
                out.append(path[path.index(nxt):])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                its.append(iter(succs[nxt]))
    return out


def _topo_order(keys: list[str], after: dict[str, list[str]], late: set[str]) -> list[str]:
    """Kahn's algorithm over `after` (what each key waits for), which holds no cycle; keys in
    `late` (delays) only when nothing else is ready, i.e. just before what reads them."""
    indeg = {k: len(after[k]) for k in keys}
    succs: dict[str, list[str]] = {k: [] for k in keys}
    for k in keys:
        for p in after[k]:
            succs[p].append(k)
    ready = {True: deque(k for k in keys if indeg[k] == 0 and k not in late),
             False: deque(k for k in keys if indeg[k] == 0 and k in late)}
    order = []
    while ready[True] or ready[False]:
        k = (ready[True] or ready[False]).popleft()
        order.append(k)
        for s in succs[k]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready[s not in late].append(s)
    return order


def _reachable(start: str, edges: list[tuple[str, str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        k = todo.pop()
        for a, b in edges:
            if a == k and b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


# ---- conversion --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Reading:
    """The caller's choices (reset, encoding: None for as written, else the default) and the
    exporter's conventions."""

    dt: float
    reset: str | None
    encoding: str | None
    exporter: Convention


def _convert(nodes: dict[str, Any], edges: list[tuple[str, str]], name: str, where: str, r: _Reading) -> Graph:
    delays: dict[str, str] = {}  # source node of recurrent edges -> its `delay` op
    taken = set(nodes)
    recurrent = recurrent_edges(nodes, edges, where)
    for a, _ in recurrent:
        if a not in delays:
            delays[a] = _unique(_meta(nodes[a], a, where).get("delay") or f"{a}.delay", taken)
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        preds[b].append(delays[a] if (a, b) in recurrent else a)
    # a delay's shape is its source's, the shape of the source's inputs from outside its cycle
    cycle = {a: _reachable(a, edges) | set(delays.values()) for a in delays}
    outside = {a: [p for p in preds[a] if p not in cycle[a]] for a in delays}
    after = {**preds, **{d: outside[a] for a, d in delays.items()}}
    ops: list[Op] = []
    types: dict[str, TensorType] = {}

    def emit(op: Op, key: str) -> None:
        spec = KINDS[op.kind]
        params = normalize_all(spec.params, op.params, f"{where}: node '{key}'")
        try:
            types[op.name] = spec.infer(params, [] if op.kind == "delay" else [types[i] for i in op.inputs])
        except ValueError as e:
            raise SpikeforgeError(f"node '{key}' ({type(nodes[key]).__name__}): {e}", where) from None
        ops.append(op)

    for key in _topo_order(list(nodes) + list(delays.values()), after, set(delays.values())):
        if key not in nodes:
            a = next(a for a, d in delays.items() if d == key)
            emit(Op(key, "delay", (a,), {"shape": _delayed_shape(a, nodes[a], outside[a], types, where),
                                         "spikes": type(nodes[a]).__name__ in SPIKING}), a)
            continue
        node, kind, srcs = nodes[key], type(nodes[key]).__name__, preds[key]
        meta = _meta(node, key, where)
        if kind == "Input":
            if srcs:
                raise SpikeforgeError(f"node '{key}': Input node has incoming edges", where)
            shape = _input_shape(key, node, [nodes[b] for a, b in edges if a == key], r.exporter, where)
            emit(Op(key, "input", (), {"shape": shape, "encoding": r.encoding or meta.get("encoding", "direct")}),
                 key)
            continue
        if not srcs:
            raise SpikeforgeError(f"node '{key}': {kind} node has no incoming edge "
                                  "(graph inputs must come from nir.Input nodes)", where)
        if len(srcs) > 1 and kind == "Scale" and np.all(np.asarray(node.scale) == 1):
            emit(Op(key, "add", tuple(srcs)), key)  # a sum node: how nir_writer writes an `add`
            continue
        if len(srcs) > 1:  # several edges into one node: their sum
            add = _unique(f"{key}.add", taken)
            emit(Op(add, "add", tuple(srcs)), key)
            srcs = [add]
        if kind == "Output":
            emit(Op(key, "output", (srcs[0],)), key)
            continue
        n = _Node(key, node, types[srcs[0]].shape, r, meta, where)
        op_kind, params, tensors = _CONVERTERS[kind](n)
        params.update({k: v for k, v in meta.items() if k not in ("reset", "bias", "delay")})
        emit(Op(key, op_kind, (srcs[0],), params, tensors), key)
    return Graph.build(name, ops, where=where)


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _delayed_shape(key: str, node: Any, outside: list[str], types: dict[str, TensorType], where: str) -> list[int]:
    """The per-sample shape of a neuron whose previous step a cycle reads: that of its inputs
    from outside the cycle, else its declared input type."""
    if outside:
        return list(types[outside[0]].shape)
    shape = (node.input_type or {}).get("input")
    if shape is None or np.size(shape) == 0:
        raise SpikeforgeError(f"node '{key}': its previous step feeds a cycle, but its shape is unknown (no input "
                              "from outside the cycle and no declared input type)", where)
    return [int(s) for s in np.asarray(shape).reshape(-1)]


def _meta(node: Any, key: str, where: str) -> dict[str, Any]:
    """The IR parameters nir_writer keeps in a node's metadata (reset, encoding, surrogate, ...)."""
    m = (getattr(node, "metadata", None) or {}).get(META, {})
    if not isinstance(m, dict):
        raise SpikeforgeError(f"node '{key}': metadata '{META}' is not a group", where)
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in m.items()}


def _input_shape(key: str, node: Any, consumers: list[Any], exporter: Convention, where: str) -> tuple[int, ...]:
    """The per-sample shape of an Input node. A leading axis of size 1 is taken as a batch
    axis and dropped when every consumer that declares a rank expects one axis fewer, or
    (Norse, which always writes one) when no consumer declares a rank."""
    shape = (node.input_type or {}).get("input")
    if shape is None:
        raise SpikeforgeError(f"node '{key}': Input node has no shape", where)
    shape = tuple(int(s) for s in np.asarray(shape).reshape(-1))
    ranks = {r for c in consumers if (r := _expected_rank(c)) is not None}
    if len(shape) > 1 and shape[0] == 1 and (ranks == {len(shape) - 1} or (exporter.batch_input and not ranks)):
        shape = shape[1:]
    return shape


def _expected_rank(node: Any) -> int | None:
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return np.ndim(node.weight) - 1
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        return 3
    t = (node.input_type or {}).get("input")
    return None if t is None or np.size(t) == 0 else int(np.size(t))


@dataclass
class _Node:
    """One NIR node being converted, with the per-sample shape of its input."""

    key: str
    nir: Any
    shape: tuple[int, ...]
    read: _Reading
    meta: dict[str, Any]
    where: str

    @property
    def exporter(self) -> Convention:
        return self.read.exporter

    @property
    def reset(self) -> str:
        return self.read.reset or self.meta.get("reset") or self.exporter.reset

    def err(self, msg: str) -> SpikeforgeError:
        return SpikeforgeError(f"node '{self.key}' ({type(self.nir).__name__}): {msg}", self.where)

    def field(self, name: str) -> Any:
        v = getattr(self.nir, name, None)
        if v is None:
            raise self.err(f"missing parameter '{name}'")
        return v

    def arr(self, name: str) -> np.ndarray:
        """A neuron parameter as float64, shaped to broadcast to the layer's shape: the full
        shape, a scalar, or one value per channel (axis 0)."""
        try:
            a = np.asarray(self.field(name), dtype=np.float64)
        except (TypeError, ValueError):
            raise self.err(f"parameter '{name}' is not numeric") from None
        s = self.shape
        if a.size == 0 or not np.all(np.isfinite(a)):
            raise self.err(f"parameter '{name}' is empty or not finite")
        if a.ndim == 0 or a.shape == s:
            return a
        if a.size == np.prod(s):
            return a.reshape(s)
        if a.ndim == 1 and len(s) > 1 and a.shape[0] == s[0]:
            return a.reshape((-1,) + (1,) * (len(s) - 1))
        try:
            if np.broadcast_shapes(a.shape, s) == s:
                return a
        except ValueError:
            pass
        raise self.err(f"parameter '{name}' has shape {list(a.shape)}, which does not fit the layer "
                       f"shape {list(s)}")

    def decay(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(beta, k) of a time constant: the decay per step and the factor on the input; forward
        Euler 1 - dt/tau and dt/tau (stable for dt <= tau), or exp(-dt/tau) and 1 (Sinabs)."""
        tau = self.arr(name)
        if np.any(tau <= 0):
            raise self.err(f"time constant '{name}' must be positive")
        dt = self.read.dt
        if self.exporter.tau_times_dt:
            tau = tau / dt
        if self.exporter.exact:
            beta = np.exp(-dt / tau)
            return beta, np.ones_like(beta)
        k = dt / tau
        if np.any(k > 1 + _RTOL):
            shown = f"{tau.min():.4g} s" + (", read as tau/dt" if self.exporter.tau_times_dt else "")
            raise self.err(f"time constant '{name}' (min {shown}) is shorter than dt={dt:g} s; forward Euler "
                           "needs dt <= tau: pass the dt and the exporter the model was written with "
                           "(snnTorch: 1e-4; Norse writes tau*dt: exporter norse)")
        k = np.minimum(k, 1.0)
        return 1.0 - k, k

    def ints(self, name: str, n: int) -> tuple[int, ...]:
        a = np.asarray(self.field(name)).reshape(-1)
        if a.size == 1:
            a = np.repeat(a, n)
        if a.size != n or not np.issubdtype(a.dtype, np.number) or np.any(a != np.round(a)):
            raise self.err(f"'{name}' must be an int or {n} ints, got {self.field(name)!r}")
        return tuple(int(x) for x in a)


def _value(n: _Node, name: str, v: np.ndarray) -> float | np.ndarray:
    """A scalar when all values are equal (up to float32 rounding), else a float32 tensor.
    A scalar is the shortest decimal that rounds to the same float32 (0.9, not 0.89999998)."""
    if not np.all(np.isfinite(v)):
        raise n.err(f"discretised {name} is not finite (infinite tau or r?)")
    flat = v.reshape(-1)
    if np.all(np.abs(flat - flat[0]) <= _RTOL * np.abs(flat).max()):
        return float(str(np.float32(flat.mean())))
    return v.astype(np.float32)


def _coefs(n: _Node, kind: str, coefs: dict[str, np.ndarray], **params: Any) -> tuple[str, dict, dict]:
    tensors = {}
    for name, v in coefs.items():
        c = _value(n, name, v)
        if isinstance(c, float):
            params[name] = c
        else:
            tensors[name] = c
    return kind, params, tensors


def _reset(n: _Node) -> dict[str, Any]:
    """Reset mode from the caller; v_reset from the node (one value: the IR has no per-neuron
    v_reset; a per-neuron one is ignored with 'subtract', which does not use it)."""
    out: dict[str, Any] = {"reset": n.reset}
    if getattr(n.nir, "v_reset", None) is not None:
        v = _value(n, "v_reset", n.arr("v_reset"))
        if isinstance(v, float):
            out["v_reset"] = v
        elif n.reset == "zero":
            raise n.err("per-neuron v_reset values differ; the IR supports one v_reset per layer")
    return out


def _membrane(n: _Node, tau: str) -> dict[str, np.ndarray]:
    """tau dv/dt = (v_leak - v) + r I  ->  v = beta v + gain I + bias."""
    beta, k = n.decay(tau)
    v_leak = n.arr("v_leak")
    if n.exporter.exact and np.any(v_leak != 0):
        raise n.err(f"v_leak must be 0 with exporter {n.exporter.name} (its neurons have no leak potential)")
    return {"beta": beta, "gain": n.arr("r") * k, "bias": v_leak * k}


def _lif(n: _Node):
    coefs = {**_membrane(n, "tau"), "threshold": n.arr("v_threshold")}
    if n.exporter.exact and n.reset == "subtract" and np.any(coefs["beta"] != 1):
        raise n.err("Sinabs' subtract reset of a leaky neuron removes the decayed threshold (v = alpha (v - "
                    "threshold) + x), which the IR cannot express; read with reset 'zero' if the model resets "
                    "to zero (MembraneReset)")
    return _coefs(n, "lif", coefs, **_reset(n))


def _li(n: _Node):
    return _coefs(n, "li", _membrane(n, "tau"))


def _jump(n: _Node) -> float:
    """The factor on an integrator's input: dt (NIR's dv/dt = r I), or 1 where the exporter's
    neuron adds its input directly (Norse, Sinabs)."""
    return 1.0 if n.exporter.jump else n.read.dt


def _if(n: _Node):
    return _coefs(n, "if", {"gain": n.arr("r") * _jump(n), "threshold": n.arr("v_threshold")}, **_reset(n))


def _integrator(n: _Node):
    return _coefs(n, "li", {"gain": n.arr("r") * _jump(n)}, beta=1.0, bias=0.0)


def _cubalif(n: _Node):
    alpha, k = n.decay("tau_syn")
    syn = {"alpha": alpha, "gain_syn": n.arr("w_in") * (1.0 if n.exporter.jump else k)}
    return _coefs(n, "cubalif", {**syn, **_membrane(n, "tau_mem"), "threshold": n.arr("v_threshold")},
                  **_reset(n))


def _threshold(n: _Node):
    return _coefs(n, "threshold", {"threshold": n.arr("threshold")})


def _scale(n: _Node):
    return _coefs(n, "scale", {"scale": n.arr("scale")})


def _weight(n: _Node, ndim: int) -> np.ndarray:
    w = np.asarray(n.field("weight"), dtype=np.float32)
    if w.ndim != ndim:
        raise n.err(f"weight must have {ndim} axes, has shape {list(w.shape)}")
    return w


def _bias(n: _Node, out: int) -> np.ndarray:
    b = np.asarray(n.field("bias"), dtype=np.float32)
    if b.size not in (1, out):
        raise n.err(f"bias has {b.size} values for {out} outputs")
    return np.broadcast_to(b.reshape(-1), (out,)).copy()


def _affine(n: _Node):
    w = _weight(n, 2)
    return "linear", {"out_features": w.shape[0], "bias": True}, {"weight": w, "bias": _bias(n, w.shape[0])}


def _linear(n: _Node):
    w = _weight(n, 2)
    return "linear", {"out_features": w.shape[0], "bias": False}, {"weight": w}


def _conv(n: _Node, dims: int):
    w = _weight(n, dims + 2)
    kernel = tuple(w.shape[2:])
    stride, dilation = n.ints("stride", dims), n.ints("dilation", dims)
    padding = n.field("padding")
    if isinstance(padding, bytes):
        padding = padding.decode("utf8")
    if not isinstance(padding, str):
        padding = n.ints("padding", dims)
    elif padding == "valid":
        padding = (0,) * dims
    elif padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        if any(s != 1 for s in stride) or any(t % 2 for t in total):
            raise n.err("'same' padding is only supported with stride 1 and odd (dilated) kernels, "
                        "where it pads equally on both sides")
        padding = tuple(t // 2 for t in total)
    else:
        raise n.err(f"padding must be 'same', 'valid' or ints, got {padding!r}")
    unpack = (lambda t: t) if dims == 2 else (lambda t: t[0])
    bias = n.meta.get("bias", True)  # NIR convolutions always have one; nir_writer notes a zero one
    tensors = {"weight": w, "bias": _bias(n, w.shape[0])}
    if bias is False:
        if np.any(tensors.pop("bias") != 0):
            raise n.err(f"metadata '{META}' says there is no bias, but the bias is not zero")
    params = {"out_channels": w.shape[0], "kernel": unpack(kernel), "stride": unpack(stride),
              "padding": unpack(padding), "dilation": unpack(dilation),
              "groups": n.ints("groups", 1)[0], "bias": bias}
    return f"conv{dims}d", params, tensors


def _pool(mode: str) -> Callable[[_Node], tuple]:
    def convert(n: _Node):
        kernel, stride = n.ints("kernel_size", 2), n.ints("stride", 2)
        return "pool2d", {"mode": mode, "kernel": kernel, "stride": None if stride == kernel else stride,
                          "padding": n.ints("padding", 2)}, {}  # None: the IR's default, the kernel
    return convert


def _flatten_op(n: _Node):
    """NIR axes are per sample (snnTorch's exporter subtracts its batch axis); if the node's
    declared input type has one axis more than the actual input, they count a batch axis."""
    start, end = int(n.field("start_dim")), int(n.field("end_dim"))
    declared = (n.nir.input_type or {}).get("input")
    if declared is not None and np.size(declared) == len(n.shape) + 1:
        if start == 0:
            raise n.err("flattens the batch axis (start_dim 0 of a type with a batch axis)")
        start, end = (start - 1 if start > 0 else start), (end - 1 if end > 0 else end)
    return "flatten", {"start_dim": start, "end_dim": end}, {}


_CONVERTERS: dict[str, Callable[[_Node], tuple[str, dict, dict]]] = {
    "Affine": _affine, "Linear": _linear,
    "Conv1d": lambda n: _conv(n, 1), "Conv2d": lambda n: _conv(n, 2),
    "SumPool2d": _pool("sum"), "AvgPool2d": _pool("avg"), "Flatten": _flatten_op,
    "Scale": _scale, "Threshold": _threshold,
    "IF": _if, "LIF": _lif, "LI": _li, "CubaLIF": _cubalif, "I": _integrator,
}
_SUPPORTED = ("Input", "Output", *_CONVERTERS, "NIRGraph")
