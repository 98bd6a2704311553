"""Functional simulation: the real spikes, membranes and gradients of a network over T steps, with
the synaptic work the engines did, measured per output unit. Forward and BPTT follow
docs/simulation.md (snnTorch `Leaky` conventions); linear and conv layers run on the event-driven
Numba kernels of hwsim.kernels, as do neuron updates, batch-norm, max pooling and FP16 rounding,
the other element-wise ops in NumPy. `run` simulates chunks of samples in threads and applies
their gradient accumulations in order, so results are those of the sequential loop bit for bit;
a training step whose batch-norms use batch statistics runs in phases on whole-batch arrays
(`_run_coupled`)."""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numba
import numpy as np

try:
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # NumPy 1.x, or a NumPy without the switch: huge pages stay as NumPy chooses
    try:
        from numpy.core.multiarray import _set_madvise_hugepage
    except ImportError:
        _set_madvise_hugepage = None

from spikeforge.hwsim import kernels as K
from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.isa.ir import Op
from spikeforge.isa.ops import NEURON_KINDS, SYNAPTIC_KINDS, WEIGHT_KINDS, couples

SPIKING = frozenset({"lif", "if", "cubalif"})


@dataclass
class OpStats:
    """Measured work of one op. Weight ops: synaptic ops per output unit (axis 0 of the output),
    `[B, T, units]`, for FP, BP and WG. Every op: non-zero outputs and non-zero output gradients per
    step, summed over the batch."""

    size: int
    units: int
    fp_ops: np.ndarray | None = None
    bp_ops: np.ndarray | None = None
    wg_ops: np.ndarray | None = None
    out_nonzero: np.ndarray | None = None  # [T]
    grad_nonzero: np.ndarray | None = None  # [T]


@dataclass
class RunResult:
    stats: dict[str, OpStats]
    loss: float | None = None
    correct: int = 0
    grads: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # recorded outputs [T, B, *shape]
    running: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (batch-norm, mean|var) after the step


def quantizer(fp16: bool):
    """Rounds arrays as FP16 storage would (values computed in FP32, stored in FP16)."""
    if not fp16:
        return lambda a: a
    return _fp16


def _fp16(a: np.ndarray) -> np.ndarray:
    """a.astype(np.float16).astype(np.float32) of a float32 array, on a kernel (NumPy's casts are slow)."""
    out = np.array(a, np.float32, order="C")
    K.round_fp16(out.reshape(-1))
    return out


def surrogate(op: Op, u: np.ndarray) -> np.ndarray:
    """dS/dU of the spike at membrane u (atan or fast sigmoid, as snnTorch)."""
    d = u - np.float32(op.coef("threshold"))
    s = np.float32(op.params.get("slope", 2.0))
    if op.params.get("surrogate", "atan") == "atan":
        return (s / 2) / (1 + (np.float32(np.pi / 2) * s * d) ** 2)
    return 1 / (s * np.abs(d) + 1) ** 2


def _coef(op: Op, name: str, default: float = 0.0):
    if name in op.tensors:
        return op.tensors[name]
    return np.float32(op.params.get(name, default))


def _conv_geometry(op: Op):
    p = op.params
    if op.kind == "conv1d":
        return (1, p["stride"]), (0, p["padding"]), (1, p["dilation"])
    return tuple(p["stride"]), tuple(p["padding"]), tuple(p["dilation"])


def _nchw(a: np.ndarray, kind: str) -> np.ndarray:
    """[B, C, H, W] (or [B, C, L] as [B, C, 1, L]) float32 view for the conv kernels."""
    a = np.asarray(a, np.float32)
    return a[:, :, None, :] if kind == "conv1d" else a


class Simulator:
    """Runs one graph; holds pre-transposed weights. `fp16` rounds stored values to FP16."""

    def __init__(self, graph: Graph, fp16: bool = False):
        self.graph, self.q, self.fp16 = graph, quantizer(fp16), fp16
        self.ops = list(graph)
        self.w: dict[str, dict[str, np.ndarray]] = {}
        self.coefs: dict[str, dict[str, np.ndarray]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read (and round) the weights and neuron coefficients of the graph, e.g. after an update."""
        for op in self.ops:
            if op.kind in NEURON_KINDS and op.kind != "threshold":
                self.coefs[op.name] = _neuron_coefs(op)
            if op.kind in WEIGHT_KINDS:
                w = self.q(op.tensors["weight"].astype(np.float32))
                if op.kind == "linear":
                    self.w[op.name] = {"wt": np.ascontiguousarray(w.T), "w": np.ascontiguousarray(w)}
                else:
                    w4 = w[:, :, None, :] if op.kind == "conv1d" else w
                    cols = K.tap_order(w4.shape[3], _conv_geometry(op)[0][1])
                    self.w[op.name] = {"wf": np.ascontiguousarray(w4.transpose(1, 2, 3, 0)[:, :, cols]),
                                       "wb": np.ascontiguousarray(w4.transpose(0, 2, 3, 1))}

    # ---- forward -------------------------------------------------------------------------------
    def _weight_fwd(self, op: Op, x: np.ndarray, st: OpStats, b0: int, t: int) -> np.ndarray:
        B = x.shape[0]
        bias = op.tensors.get("bias")
        if op.kind == "linear":
            n_in = x.shape[-1]
            x2 = np.ascontiguousarray(x.reshape(-1, n_in), dtype=np.float32)
            out = np.zeros((x2.shape[0], op.type.shape[-1]), np.float32)
            ev = K.linear_fwd(x2, self.w[op.name]["wt"], out)
            if len(op.type.shape) == 1:
                st.fp_ops[b0:b0 + B, t] = ev[:, None]
            else:
                st.fp_ops[b0:b0 + B, t] = ev.reshape(B, -1, *op.type.shape[1:-1]).reshape(B, st.units, -1).sum(2) * op.type.shape[-1]
            out = out.reshape((B,) + op.type.shape)
            if bias is not None:
                out += bias
            return out
        stride, pad, dil = _conv_geometry(op)
        oshape = op.type.shape if op.kind == "conv2d" else (op.type.shape[0], 1, op.type.shape[1])
        g = op.params["groups"]
        out, ev = K.conv_fwd(_nchw(x, op.kind), self.w[op.name]["wf"], stride, pad, dil, g, *oshape[1:])
        st.fp_ops[b0:b0 + B, t] = np.repeat(ev, oshape[0] // g, axis=1)
        out = out.reshape((B,) + op.type.shape)
        if bias is not None:
            out += bias.reshape((-1,) + (1,) * (out.ndim - 2))
        return out

    def arrays(self, T: int, B: int):
        """Uninitialised outputs, membranes and synaptic currents of every op, [T, B, ...]."""
        vals: dict[str, np.ndarray] = {}
        mem: dict[str, np.ndarray] = {}
        cur: dict[str, np.ndarray] = {}
        for op in self.ops:
            if op.kind == "output":
                continue
            vals[op.name] = np.empty((T, B) + op.type.shape, np.float32)  # every step written by forward
            if op.kind in NEURON_KINDS and op.kind != "threshold":
                mem[op.name] = np.empty((T, B) + op.type.shape, np.float32)
            if op.kind == "cubalif":
                cur[op.name] = np.empty((T, B) + op.type.shape, np.float32)
        return vals, mem, cur

    def forward(self, x: dict[str, np.ndarray], stats: dict[str, OpStats], b0: int, ops: list[Op] | None = None,
                arrays=None):
        """x: input name -> [T, B, *shape]. Runs `ops` (default: all) at every step, each sample on
        its own (batch-norm with running statistics), into `arrays` (default: new ones).
        Returns per-op outputs and neuron states, [T, B, ...]."""
        T, B = next(iter(x.values())).shape[:2]
        vals, mem, cur = arrays or self.arrays(T, B)
        for t in range(T):
            for op in ops or self.ops:
                if op.kind == "output":
                    continue
                ins = [vals[i][t] for i in op.inputs]
                st = stats[op.name]
                if op.kind == "input":
                    y = x[op.name][t].astype(np.float32)
                elif op.kind == "delay":  # the previous step's value, computed by then
                    y = vals[op.inputs[0]][t - 1] if t else np.zeros((B,) + op.type.shape, np.float32)
                elif op.kind in WEIGHT_KINDS:
                    y = self._weight_fwd(op, ins[0], st, b0, t)
                elif op.kind == "matmul":
                    y = _matmul_fwd(op, ins, st, b0, t)
                elif op.kind in NEURON_KINDS:
                    y = self._neuron_fwd(op, ins[0], t, mem.get(op.name), cur.get(op.name))
                else:
                    y = _elem_fwd(op, ins)
                vals[op.name][t] = self.q(y)
                st.out_nonzero[t] += K.count_nonzero(vals[op.name][t])
        return vals, mem, cur

    def _neuron_fwd(self, op: Op, x, t, mem, cur):
        q = self.q
        if op.kind == "threshold":
            return (x > _coef(op, "threshold")).astype(np.float32)
        drive = x
        if op.kind == "cubalif":
            i_prev = cur[t - 1] if t else np.zeros_like(x)
            cur[t] = q(_coef(op, "alpha") * i_prev + _coef(op, "gain_syn", 1.0) * x)
            drive = cur[t]
        c, B = self.coefs[op.name], x.shape[0]
        spikes = np.empty(x.shape, np.float32)  # u_prev is not read at t = 0
        K.leaky(drive.reshape(B, -1), mem[t - 1 if t else t].reshape(B, -1), t == 0, c["beta"], c["gain"], c["bias"],
                c["threshold"], c["v_reset"], _reset_mode(op), mem[t].reshape(B, -1), spikes.reshape(B, -1))
        if self.fp16:  # the kernel's spikes are those of the unrounded membrane
            mem[t] = q(mem[t])
            spikes = (mem[t] > _coef(op, "threshold")).astype(np.float32)
        return mem[t] if op.kind == "li" else spikes

    # ---- backward ------------------------------------------------------------------------------
    def backward(self, vals, mem, cur, dout: dict[str, np.ndarray], stats, b0: int,
                 ops: list[Op] | None = None) -> list:
        """BPTT through `ops` (default: all) from the dL/d(values) that reach them from outside
        (`dout`: name -> [T, B, ...]: the loss, ops run later); what they pass to an op outside
        them is added into its array in `dout`. Returns the gradient accumulations in order, as
        functions of the gradient dict ((op, tensor) -> array, in the kernels' layouts) that add
        into it: run applies them chunk after chunk."""
        acc: list = []
        T = next(iter(vals.values())).shape[0]
        carry_u: dict[str, np.ndarray] = {}
        carry_i: dict[str, np.ndarray] = {}
        ops = ops or self.ops
        names = {op.name for op in ops}
        delayed: dict[str, np.ndarray] = {}  # dL/d(values at t) through delays read at t + 1
        for t in reversed(range(T)):
            g = {name: np.zeros_like(v[t]) for name, v in vals.items() if name in names}  # dL/d(values at t)
            for name, d in dout.items():
                if name in g:
                    g[name] += d[t]
            for name, d in delayed.items():
                g[name] += d
            delayed = {}
            for op in reversed(ops):
                if op.kind in ("output", "input"):
                    continue
                go = self.q(g[op.name])
                st = stats[op.name]
                st.grad_nonzero[t] += K.count_nonzero(go)
                if op.kind == "delay":
                    src = op.inputs[0]
                    if t and self.graph[src].kind != "input":
                        if src in g:
                            delayed[src] = delayed[src] + go if src in delayed else go
                        else:  # computed in a phase before `ops`
                            dout[src][t - 1] += go
                    continue
                ins = [vals[i][t] for i in op.inputs]
                if op.kind in WEIGHT_KINDS:
                    gx = self._weight_bwd(op, ins[0], go, st, acc, b0, t,
                                          need_x=self.graph[op.inputs[0]].kind != "input")
                    gxs = [gx]
                elif op.kind == "matmul":
                    gxs = _matmul_bwd(op, ins, go, st, b0, t, [self.graph[i].kind != "input" for i in op.inputs])
                elif op.kind in NEURON_KINDS:
                    gxs = [self._neuron_bwd(op, ins[0], go, t, mem, cur, carry_u, carry_i)]
                else:
                    gxs = _elem_bwd(op, ins, go, vals[op.name][t], acc)
                for i, gx in zip(op.inputs, gxs):
                    if gx is None or self.graph[i].kind == "input":
                        continue
                    if i in g:
                        g[i] += gx
                    else:  # an op run before `ops`
                        dout[i][t] += gx
        return acc

    def _weight_bwd(self, op, x, go, st, acc, b0, t, need_x: bool):
        B = x.shape[0]
        if op.kind == "linear":
            n_in, m = x.shape[-1], op.type.shape[-1]
            x2 = np.ascontiguousarray(x.reshape(-1, n_in), dtype=np.float32)
            e2 = np.ascontiguousarray(go.reshape(-1, m), dtype=np.float32)
            gx = np.zeros_like(x2)
            if need_x:
                ops = K.linear_bwd(e2, self.w[op.name]["w"], gx)
                st.bp_ops[b0:b0 + B, t] = ops.reshape(B, st.units, -1).sum(2)
            acc.append(partial(_linear_wg, key=(op.name, "weight:t"), x2=x2, e2=e2, ops=st.wg_ops[b0:b0 + B, t],
                               per_row=len(op.type.shape) > 1))
            if "bias" in op.tensors:
                acc.append(partial(_acc, key=(op.name, "bias"), value=e2.sum(0)))
            return gx.reshape(x.shape)
        stride, pad, dil = _conv_geometry(op)
        groups = op.params["groups"]
        x4 = _nchw(x, op.kind)
        eh = np.ascontiguousarray(_nchw(go, op.kind).transpose(0, 2, 3, 1))
        gx = None
        if need_x:
            gx, st.bp_ops[b0:b0 + B, t] = K.conv_bwd(eh, self.w[op.name]["wb"], stride, pad, dil, groups, *x4.shape[2:])
            gx = gx.reshape(x.shape)
        acc.append(partial(_conv_wg, key=(op.name, "weight:hwc"), shape=self.w[op.name]["wf"].shape, x4=x4, eh=eh,
                           geometry=(stride, pad, dil, groups), ops=st.wg_ops[b0:b0 + B, t]))
        if "bias" in op.tensors:
            acc.append(partial(_acc, key=(op.name, "bias"), value=eh.sum((0, 1, 2))))
        return gx

    def _neuron_bwd(self, op, x, go, t, mem, cur, carry_u, carry_i):
        if op.kind == "threshold":
            return go * surrogate(op, x)
        c, u, B = self.coefs[op.name], mem[op.name], go.shape[0]
        if op.name not in carry_u:
            carry_u[op.name] = np.zeros_like(go)
        out = np.empty(go.shape, np.float32)
        K.leaky_bwd(go.reshape(B, -1), u[t].reshape(B, -1), u[t - 1 if t else t].reshape(B, -1), t == 0,
                    carry_u[op.name].reshape(B, -1), c["beta"], c["gain"], c["threshold"],
                    np.float32(op.params.get("slope", 2.0)), op.params.get("surrogate", "atan") == "atan",
                    _reset_mode(op), out.reshape(B, -1))
        if op.kind == "cubalif":
            di = carry_i.get(op.name, 0) + out
            carry_i[op.name] = di * _coef(op, "alpha")
            return di * _coef(op, "gain_syn", 1.0)
        return out

    # ---- batch-norm with batch statistics (a training step's, over the whole batch) -------------
    def bn_forward(self, op: Op, vals, st: OpStats, running: dict, pmap) -> list:
        """Normalises the whole batch's input [T, B, ...] of `op` with its statistics, per step
        (`stats: batch`) or over all steps (`batch_time`), channels split over `pmap`'s threads;
        updates `running` ((op, mean|var) -> array) as torch does. Returns each group's (mean, sd)."""
        x, y = vals[op.inputs[0]], vals[op.name]
        w, C = op.tensors, x.shape[2]
        eps, m = np.float32(op.params["eps"]), np.float32(op.params["momentum"])
        mean_r, var_r = w["mean"], w["var"]
        saved = []
        for xs, ys in _bn_groups(op, x, y):
            mean, var = np.empty(C, np.float32), np.empty(C, np.float32)
            pmap(lambda c: K.batch_stats(xs[:, c], mean[c], var[c]), _channel_slices(C))
            sd = np.sqrt(var + eps)
            a = w["gamma"] / sd
            b = w["beta"] - mean * a
            pmap(lambda c: K.batchnorm(xs[:, c], a[c], b[c], ys[:, c]), _channel_slices(C))
            n = xs.shape[0] * xs.shape[2]
            mean_r = m * mean + (1 - m) * mean_r
            var_r = m * (var * np.float32(n / (n - 1))) + (1 - m) * var_r
            saved.append((mean, sd))
        running[(op.name, "mean")], running[(op.name, "var")] = mean_r, var_r
        st.out_nonzero += self._store(y, pmap)
        return saved

    def _store(self, v: np.ndarray, pmap) -> np.ndarray:
        """Rounds the whole batch's v [T, B, ...] (C-contiguous) in place as the chip stores it, each
        sample in `pmap`'s threads; returns the non-zeros of each step [T]."""
        assert v.flags.c_contiguous  # else reshape(-1) below would round a copy
        def sample(k: int) -> np.ndarray:
            n = np.zeros(len(v), np.int64)
            for t in range(len(v)):
                flat = v[t, k].reshape(-1)  # a view: v[t, k] is contiguous
                if self.fp16:
                    K.round_fp16(flat)
                n[t] = K.count_nonzero(flat)
            return n
        return sum(pmap(sample, range(v.shape[1])))

    def bn_backward(self, op: Op, vals, go: np.ndarray, st: OpStats, saved: list, grads: dict, pmap) -> np.ndarray:
        """Back through `bn_forward` from dL/d(output) `go` (the whole batch's, C-contiguous; rounded
        in place as stored): adds the gamma and beta gradients into `grads` and returns dL/d(input)."""
        x = vals[op.inputs[0]]
        st.grad_nonzero += self._store(go, pmap)
        gx, C = np.empty_like(x), x.shape[2]
        dgamma, dbeta = np.zeros(C), np.zeros(C)
        for (xs, gos, gxs), (mean, sd) in zip(_bn_groups(op, x, go, gx), saved):
            dg, db = np.empty(C), np.empty(C)
            pmap(lambda c: K.batchnorm_train_bwd(xs[:, c], gos[:, c], mean[c], sd[c], op.tensors["gamma"][c],
                                                 gxs[:, c], dg[c], db[c]), _channel_slices(C))
            dgamma += dg
            dbeta += db
        _acc(grads, (op.name, "gamma"), dgamma.astype(np.float32))
        _acc(grads, (op.name, "beta"), dbeta.astype(np.float32))
        return gx


def _bn_groups(op: Op, *arrays: np.ndarray) -> list[tuple]:
    """[N, C, P] views of whole-batch arrays [T, B, C, ...] of a batch-norm, per group of values
    that share statistics: each step's or (batch_time) all steps'."""
    T, B, C = arrays[0].shape[:3]
    if op.params["stats"] == "batch_time":
        return [tuple(a.reshape(T * B, C, -1) for a in arrays)]
    return [tuple(a[t].reshape(B, C, -1) for a in arrays) for t in range(T)]


def _channel_slices(C: int) -> list[slice]:
    """Channels 0 .. C - 1 in one contiguous range per thread."""
    n = min(C, numba.config.NUMBA_NUM_THREADS)
    return [slice(i * C // n, (i + 1) * C // n) for i in range(n)]


def phases(graph: Graph, training: bool) -> list[list[Op]]:
    """The ops of a run (no output ops) in the order they run: runs of ops that each sample goes
    through on its own, and alone each batch-norm that `couples` the samples, which needs its
    whole input (every sample; with batch_time every step too) first. One phase without them."""
    out: list[list[Op]] = [[]]
    for op in graph:
        if couples(op, training):
            out += [[op], []]
        elif op.kind != "output":
            out[-1].append(op)
    return [p for p in out if p]


def set_running(graph: Graph, running: dict) -> None:
    """Stores the running statistics of a training step (RunResult.running) in the graph."""
    for (name, k), v in running.items():
        graph[name].tensors[k][...] = v


def _reset_mode(op: Op) -> int:
    """The reset of kernels.leaky: 0 none (li), 1 subtract, 2 zero."""
    return 0 if op.kind == "li" else 1 if op.params["reset"] == "subtract" else 2


def _neuron_coefs(op: Op) -> dict[str, np.ndarray]:
    """The coefficients of kernels.leaky, one per neuron (flattened; scalars as broadcast views)."""
    n = math.prod(op.type.shape)
    out = {}
    for name, default in (("beta", 0.0), ("gain", 1.0), ("bias", 0.0), ("threshold", 0.0), ("v_reset", 0.0)):
        c = np.float32(1.0) if name == "beta" and op.kind == "if" else _coef(op, name, default)
        out[name] = np.broadcast_to(c, op.type.shape).reshape(-1) if np.ndim(c) else np.broadcast_to(c, (n,))
    return out


def _graph_layout(graph: Graph, grads: dict) -> dict:
    """Weight gradients accumulated in the kernels' layouts, back in the graph's layout."""
    out = {}
    for (name, tensor), g in grads.items():
        if tensor == "weight:t":
            out[(name, "weight")] = np.ascontiguousarray(g.T)
        elif tensor == "weight:hwc":
            cols = np.argsort(K.tap_order(g.shape[2], _conv_geometry(graph[name])[0][1]))
            w = g[:, :, cols].transpose(3, 0, 1, 2)
            out[(name, "weight")] = np.ascontiguousarray(w[:, :, 0, :] if graph[name].kind == "conv1d" else w)
        else:
            out[(name, tensor)] = g
    return out


def _linear_wg(grads: dict, key, x2: np.ndarray, e2: np.ndarray, ops: np.ndarray, per_row: bool) -> None:
    """Adds x2^T e2 into the linear weight gradient grads[key] [in, out]; its operations into ops."""
    if key not in grads:
        grads[key] = np.zeros((x2.shape[1], e2.shape[1]), np.float32)
    ev = K.linear_wg(x2, e2, grads[key])
    ops[:] = ev.reshape(len(ops), ops.shape[1], -1).sum(2) * e2.shape[1] if per_row else ev[:, None]


def _conv_wg(grads: dict, key, shape, x4: np.ndarray, eh: np.ndarray, geometry, ops: np.ndarray) -> None:
    """Adds the conv weight gradient of input x4 and errors eh into grads[key] (FP layout `shape`);
    its operations into ops [B, units]."""
    if key not in grads:
        grads[key] = np.zeros(shape, np.float32)
    ev = K.conv_wg(x4, eh, grads[key], *geometry)
    ops[:] = np.repeat(ev, ops.shape[1] // geometry[3], axis=1)


def _acc(grads: dict, key, value: np.ndarray) -> None:
    if key in grads:
        grads[key] += value
    else:
        grads[key] = value.astype(np.float32).copy()


def _operands(op: Op, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """op(a) as [G, M, K] and op(b) as [G, K, N], contiguous float32 (G: samples x leading axes)."""
    a = np.swapaxes(a, -1, -2) if op.params["transpose_a"] else a
    b = np.swapaxes(b, -1, -2) if op.params["transpose_b"] else b
    return (np.ascontiguousarray(a.reshape((-1,) + a.shape[-2:]), np.float32),
            np.ascontiguousarray(b.reshape((-1,) + b.shape[-2:]), np.float32))


def _per_unit(ops: np.ndarray, batch: int, units: int) -> np.ndarray:
    """Operations per output row [G, M] as [batch, units] (a unit: the output's axis 0)."""
    return ops.reshape(batch, units, -1).sum(2)


def _unoperand(g: np.ndarray, shape: tuple[int, ...], transposed: bool) -> np.ndarray:
    """The gradient of op(x) [G, r, c] back in x's layout `shape`."""
    if not transposed:
        return g.reshape(shape)
    return np.swapaxes(g.reshape(shape[:-2] + (shape[-1], shape[-2])), -1, -2)


def _matmul_fwd(op: Op, ins: list[np.ndarray], st: OpStats, b0: int, t: int) -> np.ndarray:
    """scale * op(a) @ op(b) on the event-driven kernel; its non-zero products into st.fp_ops."""
    B = ins[0].shape[0]
    a, b = _operands(op, *ins)
    out = np.zeros((a.shape[0], a.shape[1], b.shape[2]), np.float32)
    st.fp_ops[b0:b0 + B, t] = _per_unit(K.matmul_fwd(a, b, out), B, st.units)
    return out.reshape((B,) + op.type.shape) * np.float32(op.params["scale"])


def _matmul_bwd(op: Op, ins: list[np.ndarray], go: np.ndarray, st: OpStats, b0: int, t: int, need: list[bool]) -> list:
    """[dL/da, dL/db] (None where not needed): BP computes scale * dY @ op(b)^T, WG scale * op(a)^T @ dY
    (docs/attention.md); their non-zero products into st.bp_ops and st.wg_ops."""
    B = go.shape[0]
    a, b = _operands(op, *ins)
    e = np.ascontiguousarray((go * np.float32(op.params["scale"])).reshape(a.shape[:2] + (b.shape[2],)), np.float32)
    ga = gb = None
    if need[0]:
        ga = np.zeros(a.shape, np.float32)
        bt = np.ascontiguousarray(b.transpose(0, 2, 1))
        st.bp_ops[b0:b0 + B, t] = _per_unit(K.matmul_fwd(e, bt, ga), B, st.units)
        ga = _unoperand(ga, ins[0].shape, op.params["transpose_a"])
    if need[1]:
        gb = np.zeros(b.shape, np.float32)
        st.wg_ops[b0:b0 + B, t] = _per_unit(K.matmul_wg(a, e, gb), B, st.units)
        gb = _unoperand(gb, ins[1].shape, op.params["transpose_b"])
    return [ga, gb]


def _pool_geometry(op: Op):
    k = tuple(op.params["kernel"])
    s = tuple(op.params["stride"] or k)
    return k, s, tuple(op.params["padding"])


def _windows(x: np.ndarray, op: Op) -> np.ndarray:
    """[B, C, Ho, Wo, kh, kw] view of the zero-padded input's pooling windows."""
    (kh, kw), (sh, sw), (ph, pw) = _pool_geometry(op)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    Ho, Wo = op.type.shape[1:]
    return win[:, :, ::sh, ::sw][:, :, :Ho, :Wo]


def _elem_fwd(op: Op, ins: list[np.ndarray]) -> np.ndarray:
    x = ins[0]
    B = x.shape[0]
    k = op.kind
    if k in ("flatten", "reshape"):
        return x.reshape((B,) + op.type.shape)
    if k == "add":
        return sum(ins[1:], ins[0].copy())
    if k == "mul":
        return ins[0] * ins[1]
    if k == "sum":
        return x.sum(axis=_axis(op, x), keepdims=True)
    if k == "scale":
        return x * _coef(op, "scale", 1.0)
    if k == "batchnorm":
        a, c = _bn_affine(op, x.ndim)
        out = np.empty(x.shape, np.float32)
        K.batchnorm(_per_channel(x), a.reshape(-1), c.reshape(-1), _per_channel(out))
        return out
    if k == "pool2d":
        mode = op.params["mode"]
        if mode == "max":
            return K.max_pool(x, *_pool_geometry(op), op.type.shape[1:])[0]
        y = _windows(x, op).sum(axis=(4, 5))
        return y / np.float32(math.prod(op.params["kernel"])) if mode == "avg" else y
    raise NotImplementedError(k)


def _axis(op: Op, x: np.ndarray) -> int:
    a = op.params["axis"]
    return (a + x.ndim - 1 if a < 0 else a) + 1


def _per_channel(a: np.ndarray) -> np.ndarray:
    """[B, C, ...] as a [B, C, P] view."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def _bn_affine(op: Op, ndim: int):
    t = op.tensors
    shape = (-1,) + (1,) * (ndim - 2)
    a = t["gamma"] / np.sqrt(t["var"] + np.float32(op.params["eps"]))
    return a.reshape(shape).astype(np.float32), (t["beta"] - t["mean"] * a).reshape(shape).astype(np.float32)


def _elem_bwd(op: Op, ins, go, y, acc: list) -> list:
    k = op.kind
    x = ins[0]
    if k in ("flatten", "reshape"):
        return [go.reshape(x.shape)]
    if k == "add":
        return [go] * len(ins)
    if k == "mul":
        a, b = ins
        return [_unbroadcast(go * b, a.shape), _unbroadcast(go * a, b.shape)]
    if k == "sum":
        return [np.broadcast_to(go, x.shape)]
    if k == "scale":
        return [go * _coef(op, "scale", 1.0)]
    if k == "batchnorm":
        a, _ = _bn_affine(op, x.ndim)
        t = op.tensors
        red = (0,) + tuple(range(2, x.ndim))
        gxhat, gx = np.empty(go.shape, np.float32), np.empty(go.shape, np.float32)
        K.batchnorm_bwd(_per_channel(x), _per_channel(go), t["mean"], np.sqrt(t["var"] + np.float32(op.params["eps"])),
                        a.reshape(-1), _per_channel(gxhat), _per_channel(gx))
        acc.append(partial(_acc, key=(op.name, "gamma"), value=gxhat.sum(red)))
        acc.append(partial(_acc, key=(op.name, "beta"), value=go.sum(red)))
        return [gx]
    if k == "pool2d":
        return [_pool_bwd(op, x, go)]
    raise NotImplementedError(k)


def _unbroadcast(g: np.ndarray, shape) -> np.ndarray:
    axes = tuple(i for i, (gs, s) in enumerate(zip(g.shape, shape)) if s == 1 and gs != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _pool_bwd(op: Op, x: np.ndarray, go: np.ndarray) -> np.ndarray:
    geometry = _pool_geometry(op)
    if op.params["mode"] == "max":
        gx = np.zeros_like(x, np.float32)
        K.max_pool_bwd(K.max_pool(x, *geometry, go.shape[2:])[1], go, *geometry, gx)
        return gx
    (kh, kw), (sh, sw), (ph, pw) = geometry
    B, C, H, W = x.shape
    Ho, Wo = go.shape[2:]
    gp = np.zeros((B, C, H + 2 * ph, W + 2 * pw), np.float32)
    scale = np.float32(1.0 / (kh * kw)) if op.params["mode"] == "avg" else np.float32(1.0)
    for i in range(kh):
        for j in range(kw):
            gp[:, :, i:i + sh * Ho:sh, j:j + sw * Wo:sw] += go * scale
    return gp[:, :, ph:ph + H, pw:pw + W]


def new_stats(graph: Graph, batch: int, timesteps: int, training: bool) -> dict[str, OpStats]:
    out = {}
    for op in graph:
        if op.kind == "output":
            continue
        units = op.type.shape[0]
        st = OpStats(op.type.size, units, out_nonzero=np.zeros(timesteps, np.int64),
                     grad_nonzero=np.zeros(timesteps, np.int64))
        if op.kind in SYNAPTIC_KINDS:
            st.fp_ops = np.zeros((batch, timesteps, units), np.int64)
            if training:
                st.bp_ops = np.zeros((batch, timesteps, units), np.int64)
                st.wg_ops = np.zeros((batch, timesteps, units), np.int64)
        out[op.name] = st
    return out


def output_name(graph: Graph) -> str:
    outs = graph.outputs
    return outs[0].inputs[0] if outs and outs[0].kind == "output" else outs[0].name


def loss_grad(logits_t: np.ndarray, labels: np.ndarray, batch_total: int):
    """Cross-entropy of the time-averaged output: loss (summed over these samples, divided by
    the whole batch), dL/d(output at each step) and the number of correct predictions."""
    T, B = logits_t.shape[:2]
    z = logits_t.reshape(T, B, -1).mean(0).astype(np.float64)
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    loss = -np.log(p[np.arange(B), labels]).sum() / batch_total
    p[np.arange(B), labels] -= 1
    d = (p / (batch_total * T)).astype(np.float32)
    return float(loss), np.broadcast_to(d, (T, B, d.shape[1])).reshape(logits_t.shape).copy(), int((z.argmax(1) == labels).sum())


def run(sim: Simulator, x: dict[str, np.ndarray], labels: np.ndarray | None, training: bool,
        chunk: int | None = None, record: bool = False, progress=None) -> RunResult:
    """Forward (and, when training, BPTT with the loss of `loss_grad`) over the whole batch, in
    chunks of samples; returns measured stats, loss, weight gradients and recorded outputs.
    Chunks run in NUMBA_NUM_THREADS threads (the kernels release the GIL); their gradient
    accumulations are applied here, chunk after chunk, so every sum keeps its order."""
    T, B = next(iter(x.values())).shape[:2]
    order = phases(sim.graph, training)
    chunk = chunk or B
    if len(order) > 1:
        with _small_pages():
            return _run_coupled(sim, x, labels, order, chunk, record, progress)
    stats = new_stats(sim.graph, B, T, training)
    res = RunResult(stats)
    out_name = output_name(sim.graph)
    starts = range(0, B, chunk)
    losses = []
    recorded: dict[str, list] = {}

    def step(b0: int):
        """One chunk on stats of its own: values, stats, loss, correct and gradient accumulations."""
        st = new_stats(sim.graph, min(chunk, B - b0), T, training)
        vals, mem, cur = sim.forward({k: v[:, b0:b0 + chunk] for k, v in x.items()}, st, 0)
        if labels is None:
            return vals, st, None, 0, []
        loss, dout, correct = loss_grad(vals[out_name], labels[b0:b0 + chunk], B)
        return vals, st, loss, correct, sim.backward(vals, mem, cur, {out_name: dout}, st, 0) if training else []

    def finish(b0: int, vals, st, loss, correct, acc) -> None:
        """Applies a chunk's gradient accumulations and adds its stats, loss and values."""
        for f in acc:
            f(res.grads)
        _merge(stats, st, b0)
        if loss is not None:
            losses.append(loss)
            res.correct += correct
        if record:
            for name, v in vals.items():
                recorded.setdefault(name, []).append(v)
        if progress:
            progress(min(b0 + chunk, B))

    with ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS) as pool:
        _in_order(pool, step, starts, lambda b0, out: finish(b0, *out))
    res.loss = float(sum(losses)) if losses else None
    res.grads = _graph_layout(sim.graph, res.grads)
    res.values = {k: np.concatenate(v, axis=1) for k, v in recorded.items()}
    return res


_PAGES = {"lock": threading.Lock(), "runs": 0, "saved": True}


@contextmanager
def _small_pages():
    """NumPy asks Linux for transparent huge pages for large arrays (madvise). A coupled run
    allocates its whole-batch arrays at once (3 GB for resnet18, B = 16, T = 4), and on a
    machine whose memory is fragmented the kernel compacts it to find huge pages: first touching
    3 GB took 9.1 s here with them and 1.3 s with 4 KiB pages. The switch is NumPy's, for the
    whole process: the first of concurrent runs turns it off, the last restores it."""
    if _set_madvise_hugepage is None:
        yield
        return
    with _PAGES["lock"]:
        if _PAGES["runs"] == 0:
            _PAGES["saved"] = _set_madvise_hugepage(False)
        _PAGES["runs"] += 1
    try:
        yield
    finally:
        with _PAGES["lock"]:
            _PAGES["runs"] -= 1
            if _PAGES["runs"] == 0:
                _set_madvise_hugepage(_PAGES["saved"])


def _in_order(pool: ThreadPoolExecutor, f, items, consume) -> None:
    """f(item) for each of `items` in the pool's threads (of NUMBA_NUM_THREADS), one more in
    flight than there are threads (not all: each result may hold a chunk's values);
    consume(item, result) here, in the items' order, as they come."""
    todo = iter(items)
    pending = deque((i, pool.submit(f, i)) for i in itertools.islice(todo, numba.config.NUMBA_NUM_THREADS + 1))
    while pending:
        i, future = pending.popleft()
        pending.extend((j, pool.submit(f, j)) for j in itertools.islice(todo, 1))
        consume(i, future.result())


def _run_coupled(sim: Simulator, x: dict[str, np.ndarray], labels: np.ndarray | None, order: list[list[Op]],
                 chunk: int, record: bool, progress) -> RunResult:
    """`run` of a training step whose batch-norms use batch statistics: the `phases` one after the
    other on whole-batch arrays, forward then backward; a phase of per-sample ops runs its chunks
    of samples in threads, a batch-norm its channels. A phase's gradients are added here, chunk
    after chunk; a weight's gradient comes from one phase, so results do not depend on the threads."""
    graph = sim.graph
    T, B = next(iter(x.values())).shape[:2]
    for op in (p[0] for p in order if couples(p[0], True)):
        n = (B * T if op.params["stats"] == "batch_time" else B) * math.prod(op.type.shape[1:])
        if n < 2:
            raise SpikeforgeError(f"op '{op.name}' (batchnorm, stats {op.params['stats']}): batch statistics need "
                                  f"more than one value per channel, got {n} (B = {B}); use stats: running or a "
                                  f"larger batch", graph.name)
    phase = {op.name: i for i, ops in enumerate(order) for op in ops}
    for op in graph:
        if op.kind == "delay" and phase[op.inputs[0]] > phase[op.name]:  # a loop through a batch-norm's phase
            bn = next(p[0] for p in order[phase[op.name] + 1:phase[op.inputs[0]] + 1] if couples(p[0], True))
            raise SpikeforgeError(f"op '{bn.name}' (batchnorm, stats {bn.params['stats']}) is in the recurrent loop of "
                                  f"'{op.name}' (delay): batch statistics need every sample's step before the next "
                                  f"step; use stats: running", graph.name)
    stats = new_stats(graph, B, T, True)
    res = RunResult(stats)
    parts = [(b0, min(b0 + chunk, B)) for b0 in range(0, B, chunk)]
    part_stats = [new_stats(graph, b1 - b0, T, True) for b0, b1 in parts]
    arrays = sim.arrays(T, B)
    vals = arrays[0]

    def view(d: dict, k: int) -> dict:
        return {name: v[:, parts[k][0]:parts[k][1]] for name, v in d.items()}

    steps = len(order) * (2 if labels is not None else 1)
    saved: dict[str, list] = {}
    with ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS) as pool:
        def pmap(f, items):
            return list(pool.map(f, items))

        for i, ops in enumerate(order):
            if couples(ops[0], True):
                saved[ops[0].name] = sim.bn_forward(ops[0], vals, stats[ops[0].name], res.running, pmap)
            else:
                pmap(lambda k: sim.forward(view(x, k), part_stats[k], 0, ops, tuple(view(a, k) for a in arrays)),
                     range(len(parts)))
            if progress:
                progress(B * (i + 1) // steps)
        if labels is not None:
            out_name = output_name(graph)
            res.loss, dout, res.correct = loss_grad(vals[out_name], labels, B)
            grad = {out_name: dout}  # dL/d(values) that cross phases, whole batch
            for i, ops in enumerate(reversed(order)):
                names = {op.name for op in ops}
                if couples(ops[0], True):
                    src = ops[0].inputs[0]
                    if ops[0].name not in grad:  # no error reaches it (a branch the loss does not read)
                        grad[ops[0].name] = np.zeros_like(vals[ops[0].name])
                    gx = sim.bn_backward(ops[0], vals, grad[ops[0].name], stats[ops[0].name], saved.pop(ops[0].name),
                                         res.grads, pmap)
                    if src in grad:
                        grad[src] += gx
                    elif graph[src].kind != "input":
                        grad[src] = gx
                else:
                    for src in {s for op in ops for s in op.inputs} - names - set(grad):
                        if graph[src].kind != "input":
                            grad[src] = np.zeros_like(vals[src])
                    # each sample's weight gradients are added here while the next ones run: a weight's
                    # gradient comes from one phase, sample after sample, so every sum keeps `run`'s order
                    _in_order(pool, lambda k: sim.backward(*(view(a, k) for a in arrays), view(grad, k),
                                                           part_stats[k], 0, ops),
                              range(len(parts)), lambda k, acc: [f(res.grads) for f in acc])
                for name in names:  # done with: their gradients and, unless recorded, their values
                    grad.pop(name, None)
                    for a in arrays[int(record):]:
                        a.pop(name, None)
                if progress:
                    progress(B * (len(order) + i + 1) // steps)
    for (b0, _), st in zip(parts, part_stats):
        _merge(stats, st, b0)
    res.grads = _graph_layout(graph, res.grads)
    if record:
        res.values = vals
    return res


def _merge(stats: dict[str, OpStats], part: dict[str, OpStats], b0: int) -> None:
    """Adds the stats of a chunk starting at sample b0 into those of the batch."""
    for name, p in part.items():
        st = stats[name]
        st.out_nonzero += p.out_nonzero
        st.grad_nonzero += p.grad_nonzero
        for f in ("fp_ops", "bp_ops", "wg_ops"):
            if getattr(p, f) is not None:
                getattr(st, f)[b0:b0 + len(getattr(p, f))] = getattr(p, f)
