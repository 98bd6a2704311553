"""Write an IR graph as NIR, in snnTorch's convention (dt = 1e-4 s, forward Euler), so that
snnTorch's `import_from_nir` and spikeforge's `read_nir` read it back (docs/nir.md).

What NIR has no field for (the reset mode, surrogate gradient, input encoding, a convolution
without bias, the name of a `delay`) goes into the node's metadata under `spikeforge`, which
`read_nir` applies; an `add` becomes a `Scale` of 1 that its inputs' edges feed (NIR sums a
node's inputs). A `delay` becomes no node: its readers read its source, closing a cycle, which
NIR runs once per step (the reader puts the delay back where the cycle leaves its last neuron)."""

from __future__ import annotations

from typing import Any, Callable

import nir
import numpy as np

from spikeforge.compiler.frontends.nir_conventions import EXPORTERS, META
from spikeforge.compiler.frontends.nir_reader import recurrent_edges
from spikeforge.isa import Graph, Op, SpikeforgeError

DT = EXPORTERS["snntorch"].dt
_NO_NIR = {"reshape": "reshape", "mul": "element-wise product", "sum": "sum over an axis",
           "batchnorm": "batch norm", "matmul": "product of two activations"}


def to_nir(graph: Graph) -> nir.NIRGraph:
    """The graph as a NIRGraph, one node per op named as the op. Raises SpikeforgeError naming
    the first op NIR cannot express."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    delayed: list[tuple[str, str]] = []
    for op in graph:
        if "/" in op.name:
            raise SpikeforgeError(f"op '{op.name}': NIR node names cannot hold '/' (HDF5 group names)", graph.name)
        if op.kind in _NO_NIR:
            raise SpikeforgeError(f"op '{op.name}' ({op.kind}): NIR has no {_NO_NIR[op.kind]}", graph.name)
        if op.kind == "delay":
            if graph[op.inputs[0]].kind == "delay":
                raise SpikeforgeError(f"op '{op.name}' (delay): NIR has no delay of two steps", graph.name)
            continue
        nodes[op.name] = _WRITERS[op.kind](_Op(op, graph))
        for i in op.inputs:
            edges.append((graph[i].inputs[0], op.name) if graph[i].kind == "delay" else (i, op.name))
            if graph[i].kind == "delay":
                delayed.append(edges[-1])
    for op in graph:
        if op.kind == "delay":
            nodes[op.inputs[0]].metadata.setdefault(META, {})["delay"] = op.name
    if set(recurrent_edges(nodes, edges, graph.name)) != set(delayed):
        d = next(op for op in graph if op.kind == "delay")
        raise SpikeforgeError(f"op '{d.name}' (delay): NIR marks no delays; a reader delays each cycle where it "
                              "leaves its last neuron, which is not where this graph's delays are", graph.name)
    if not any(op.kind == "output" for op in graph):  # a YAML graph marks none: its sinks are the outputs
        for sink in graph.outputs:
            key = "output"
            while key in nodes:
                key += "_"
            nodes[key] = nir.Output(output_type={"output": np.array(sink.type.shape)})
            edges.append((sink.name, key))
    return nir.NIRGraph(nodes, edges, type_check=False)


class _Op:
    """One op being written, with the graph for its input shape."""

    def __init__(self, op: Op, graph: Graph):
        self.op, self.graph = op, graph
        self.in_shape = graph[op.inputs[0]].type.shape if op.inputs else ()

    def err(self, msg: str) -> SpikeforgeError:
        return SpikeforgeError(f"op '{self.op.name}' ({self.op.kind}): {msg}", self.graph.name)

    def coefs(self, *names: str) -> dict[str, np.ndarray]:
        """Neuron coefficients as float64 arrays of one shape (NIR wants one for all of a node's
        parameters): the layer's, or the broadcast shape of the per-neuron tensors given."""
        tensors = [self.op.tensors[n].shape for n in names if n in self.op.tensors]
        shape = np.broadcast_shapes(*tensors) if tensors else self.op.type.shape
        return {n: np.broadcast_to(np.asarray(self.op.coef(n), np.float64), shape).copy() for n in names}

    def meta(self, *names: str) -> dict[str, Any]:
        return {META: {n: self.op.params[n] for n in names}}

    def rate(self, decay: np.ndarray, name: str) -> np.ndarray:
        """1 - decay = dt / tau, which must be in (0, 1] for a time constant tau >= dt."""
        k = 1.0 - decay
        if np.any(k <= 0) or np.any(k > 1):
            raise self.err(f"{name} must be in [0, 1) to be written as a time constant tau = dt / (1 - {name})")
        return k


def _input(o: _Op):
    return nir.Input(input_type={"input": np.array(o.op.type.shape)}, metadata=o.meta("encoding"))


def _output(o: _Op):
    return nir.Output(output_type={"output": np.array(o.op.type.shape)})


def _linear(o: _Op):
    w = o.op.tensors["weight"]
    return nir.Affine(weight=w, bias=o.op.tensors["bias"]) if o.op.params["bias"] else nir.Linear(weight=w)


def _conv(o: _Op):
    p, w = o.op.params, o.op.tensors["weight"]
    bias = o.op.tensors["bias"] if p["bias"] else np.zeros(w.shape[0], np.float32)
    meta = {} if p["bias"] else {META: {"bias": False}}
    if o.op.kind == "conv1d":
        return nir.Conv1d(input_shape=o.in_shape[1], weight=w, stride=p["stride"], padding=p["padding"],
                          dilation=p["dilation"], groups=p["groups"], bias=bias, metadata=meta)
    return nir.Conv2d(input_shape=o.in_shape[1:], weight=w, stride=p["stride"], padding=p["padding"],
                      dilation=p["dilation"], groups=p["groups"], bias=bias, metadata=meta)


def _pool(o: _Op):
    p = o.op.params
    if p["mode"] == "max":
        raise o.err("NIR has no max pooling")
    cls = nir.SumPool2d if p["mode"] == "sum" else nir.AvgPool2d
    return cls(kernel_size=np.array(p["kernel"]), stride=np.array(p["stride"] or p["kernel"]),
               padding=np.array(p["padding"]))


def _flatten(o: _Op):
    return nir.Flatten(input_type={"input": np.array(o.in_shape)}, start_dim=o.op.params["start_dim"],
                       end_dim=o.op.params["end_dim"])


def _add(o: _Op):
    return nir.Scale(scale=np.ones(o.op.type.shape))


def _scale(o: _Op):
    return nir.Scale(scale=o.coefs("scale")["scale"])


def _threshold(o: _Op):
    return nir.Threshold(threshold=o.coefs("threshold")["threshold"])


_SPIKING = ("reset", "surrogate", "slope")


def _integrator_of(o: _Op, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """r of dv/dt = r I for a neuron without leak (beta = 1); it has no bias term."""
    if np.any(c["bias"] != 0):
        raise o.err("a neuron without leak (beta = 1) with a bias has no NIR node (IF and I have no v_leak)")
    return {"r": c["gain"] / DT}


def _lif(o: _Op):
    c = o.coefs("beta", "threshold", "gain", "bias", "v_reset")
    if np.all(c["beta"] == 1):
        return _if_node(o, c)
    k = o.rate(c["beta"], "beta")
    return nir.LIF(tau=DT / k, r=c["gain"] / k, v_leak=c["bias"] / k, v_threshold=c["threshold"],
                   v_reset=c["v_reset"], metadata=o.meta(*_SPIKING))


def _if(o: _Op):
    return _if_node(o, o.coefs("threshold", "gain", "bias", "v_reset"))


def _if_node(o: _Op, c: dict[str, np.ndarray]):
    return nir.IF(**_integrator_of(o, c), v_threshold=c["threshold"], v_reset=c["v_reset"],
                  metadata=o.meta(*_SPIKING))


def _cubalif(o: _Op):
    c = o.coefs("alpha", "beta", "threshold", "gain_syn", "gain", "bias", "v_reset")
    ks, k = o.rate(c["alpha"], "alpha"), o.rate(c["beta"], "beta")
    return nir.CubaLIF(tau_syn=DT / ks, tau_mem=DT / k, r=c["gain"] / k, v_leak=c["bias"] / k,
                       w_in=c["gain_syn"] / ks, v_threshold=c["threshold"], v_reset=c["v_reset"],
                       metadata=o.meta(*_SPIKING))


def _li(o: _Op):
    c = o.coefs("beta", "gain", "bias")
    if np.all(c["beta"] == 1):
        return nir.I(**_integrator_of(o, c))
    k = o.rate(c["beta"], "beta")
    return nir.LI(tau=DT / k, r=c["gain"] / k, v_leak=c["bias"] / k)


_WRITERS: dict[str, Callable[[_Op], nir.NIRNode]] = {
    "input": _input, "output": _output, "linear": _linear, "conv1d": _conv, "conv2d": _conv,
    "pool2d": _pool, "flatten": _flatten, "add": _add, "scale": _scale, "threshold": _threshold,
    "lif": _lif, "if": _if, "cubalif": _cubalif, "li": _li,
}
