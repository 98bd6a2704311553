"""Functional simulation: the real spikes, membranes and gradients of a network over T steps, with
the synaptic work the engines did, measured per output unit. Forward and BPTT follow
docs/simulation.md (snnTorch `Leaky` conventions); linear and conv layers run on the event-driven
Numba kernels of hwsim.kernels, everything element-wise in NumPy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwsim import kernels as K
from isa import Graph
from isa.ir import Op
from isa.ops import NEURON_KINDS, WEIGHT_KINDS

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


def quantizer(fp16: bool):
    """Rounds arrays as FP16 storage would (values computed in FP32, stored in FP16)."""
    if not fp16:
        return lambda a: a
    return lambda a: a.astype(np.float16).astype(np.float32)


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


def _hwc(a: np.ndarray, kind: str) -> np.ndarray:
    """[B, C, H, W] (or [B, C, L]) to contiguous channels-last [B, H, W, C]."""
    if kind == "conv1d":
        a = a[:, :, None, :]
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _chw(a: np.ndarray, kind: str) -> np.ndarray:
    a = a.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(a[:, :, 0, :] if kind == "conv1d" else a)


class Simulator:
    """Runs one graph; holds pre-transposed weights. `fp16` rounds stored values to FP16."""

    def __init__(self, graph: Graph, fp16: bool = False):
        self.graph, self.q = graph, quantizer(fp16)
        self.ops = list(graph)
        self.w: dict[str, dict[str, np.ndarray]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read (and round) the weights of the graph, e.g. after an update."""
        for op in self.ops:
            if op.kind in WEIGHT_KINDS:
                w = self.q(op.tensors["weight"].astype(np.float32))
                if op.kind == "linear":
                    self.w[op.name] = {"wt": np.ascontiguousarray(w.T), "w": np.ascontiguousarray(w)}
                else:
                    w4 = w[:, :, None, :] if op.kind == "conv1d" else w
                    self.w[op.name] = {"wf": np.ascontiguousarray(w4.transpose(1, 2, 3, 0)),
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
        xh = _hwc(x.astype(np.float32), op.kind)
        oshape = op.type.shape if op.kind == "conv2d" else (op.type.shape[0], 1, op.type.shape[1])
        out = np.zeros((B, oshape[1], oshape[2], oshape[0]), np.float32)
        g = op.params["groups"]
        ev = K.conv_fwd(xh, self.w[op.name]["wf"], out, stride, pad, dil, g)
        st.fp_ops[b0:b0 + B, t] = np.repeat(ev, oshape[0] // g, axis=1)
        out = _chw(out, op.kind)
        if bias is not None:
            out += bias.reshape((-1,) + (1,) * (out.ndim - 2))
        return out

    def forward(self, x: dict[str, np.ndarray], stats: dict[str, OpStats], b0: int):
        """x: input name -> [T, B, *shape]. Returns per-op outputs and neuron states, [T, B, ...]."""
        T, B = next(iter(x.values())).shape[:2]
        vals: dict[str, np.ndarray] = {}
        mem: dict[str, np.ndarray] = {}
        cur: dict[str, np.ndarray] = {}
        for op in self.ops:
            if op.kind == "output":
                continue
            vals[op.name] = np.zeros((T, B) + op.type.shape, np.float32)
            if op.kind in NEURON_KINDS and op.kind != "threshold":
                mem[op.name] = np.zeros((T, B) + op.type.shape, np.float32)
            if op.kind == "cubalif":
                cur[op.name] = np.zeros((T, B) + op.type.shape, np.float32)
        for t in range(T):
            for op in self.ops:
                if op.kind == "output":
                    continue
                ins = [vals[i][t] for i in op.inputs]
                st = stats[op.name]
                if op.kind == "input":
                    y = x[op.name][t].astype(np.float32)
                elif op.kind in WEIGHT_KINDS:
                    y = self._weight_fwd(op, ins[0], st, b0, t)
                elif op.kind in NEURON_KINDS:
                    y = self._neuron_fwd(op, ins[0], t, mem.get(op.name), cur.get(op.name))
                else:
                    y = _elem_fwd(op, ins)
                vals[op.name][t] = self.q(y)
                st.out_nonzero[t] += np.count_nonzero(vals[op.name][t])
        return vals, mem, cur

    def _neuron_fwd(self, op: Op, x, t, mem, cur):
        q = self.q
        if op.kind == "threshold":
            return (x > _coef(op, "threshold")).astype(np.float32)
        gain, bias = _coef(op, "gain", 1.0), _coef(op, "bias")
        u_prev = mem[t - 1] if t else np.zeros_like(x)
        drive = x
        if op.kind == "cubalif":
            i_prev = cur[t - 1] if t else np.zeros_like(x)
            cur[t] = q(_coef(op, "alpha") * i_prev + _coef(op, "gain_syn", 1.0) * x)
            drive = cur[t]
        beta = np.float32(1.0) if op.kind == "if" else _coef(op, "beta")
        if op.kind == "li":
            mem[t] = q(beta * u_prev + gain * drive + bias)
            return mem[t]
        thr = _coef(op, "threshold")
        r = (u_prev > thr).astype(np.float32) if t else np.zeros_like(x)
        if op.params["reset"] == "subtract":
            u = beta * u_prev + gain * drive + bias - r * thr
        else:
            u = beta * ((1 - r) * u_prev + r * _coef(op, "v_reset")) + gain * drive + bias
        mem[t] = q(u)
        return (mem[t] > thr).astype(np.float32)

    # ---- backward ------------------------------------------------------------------------------
    def backward(self, vals, mem, cur, dout: dict[str, np.ndarray], stats, grads, b0: int) -> None:
        """BPTT from dL/d(output values) (`dout`: name -> [T, B, ...]); adds weight gradients
        into `grads` ((op, tensor) -> array, in the graph's layout)."""
        T = next(iter(vals.values())).shape[0]
        g = {name: np.zeros_like(v) for name, v in vals.items()}
        for name, d in dout.items():
            g[name] += d
        carry_u: dict[str, np.ndarray] = {}
        carry_i: dict[str, np.ndarray] = {}
        for t in reversed(range(T)):
            for op in reversed(self.ops):
                if op.kind in ("output", "input"):
                    continue
                go = self.q(g[op.name][t])
                st = stats[op.name]
                st.grad_nonzero[t] += np.count_nonzero(go)
                ins = [vals[i][t] for i in op.inputs]
                if op.kind in WEIGHT_KINDS:
                    gx = self._weight_bwd(op, ins[0], go, st, grads, b0, t,
                                          need_x=self.graph[op.inputs[0]].kind != "input")
                    gxs = [gx]
                elif op.kind in NEURON_KINDS:
                    gxs = [self._neuron_bwd(op, ins[0], go, t, mem, cur, carry_u, carry_i)]
                else:
                    gxs = _elem_bwd(op, ins, go, vals[op.name][t], grads)
                for i, gx in zip(op.inputs, gxs):
                    if gx is not None and self.graph[i].kind != "input":
                        g[i][t] += gx

    def _weight_bwd(self, op, x, go, st, grads, b0, t, need_x: bool):
        B = x.shape[0]
        if op.kind == "linear":
            n_in, m = x.shape[-1], op.type.shape[-1]
            x2 = np.ascontiguousarray(x.reshape(-1, n_in), dtype=np.float32)
            e2 = np.ascontiguousarray(go.reshape(-1, m), dtype=np.float32)
            gx = np.zeros_like(x2)
            if need_x:
                ops = K.linear_bwd(e2, self.w[op.name]["w"], gx)
                st.bp_ops[b0:b0 + B, t] = ops.reshape(B, st.units, -1).sum(2)
            key = (op.name, "weight:t")
            if key not in grads:
                grads[key] = np.zeros((n_in, m), np.float32)
            ev = K.linear_wg(x2, e2, grads[key])
            st.wg_ops[b0:b0 + B, t] = (ev[:, None] if len(op.type.shape) == 1 else
                                       ev.reshape(B, st.units, -1).sum(2) * m)
            if "bias" in op.tensors:
                _acc(grads, (op.name, "bias"), e2.sum(0))
            return gx.reshape(x.shape)
        stride, pad, dil = _conv_geometry(op)
        groups = op.params["groups"]
        xh = _hwc(x.astype(np.float32), op.kind)
        eh = _hwc(go.astype(np.float32), op.kind)
        gx = np.zeros_like(xh)
        if need_x:
            st.bp_ops[b0:b0 + B, t] = K.conv_bwd(eh, self.w[op.name]["wb"], gx, stride, pad, dil, groups)
        key = (op.name, "weight:hwc")
        if key not in grads:
            grads[key] = np.zeros_like(self.w[op.name]["wf"])
        ev = K.conv_wg(xh, eh, grads[key], stride, pad, dil, groups)
        st.wg_ops[b0:b0 + B, t] = np.repeat(ev, op.type.shape[0] // groups, axis=1)
        if "bias" in op.tensors:
            _acc(grads, (op.name, "bias"), eh.sum((0, 1, 2)))
        return _chw(gx, op.kind)

    def _neuron_bwd(self, op, x, go, t, mem, cur, carry_u, carry_i):
        if op.kind == "threshold":
            return go * surrogate(op, x)
        gain = _coef(op, "gain", 1.0)
        beta = np.float32(1.0) if op.kind == "if" else _coef(op, "beta")
        du = carry_u.get(op.name, 0) + (go if op.kind == "li" else go * surrogate(op, mem[op.name][t]))
        if op.kind != "li" and op.params["reset"] == "zero":
            r = (mem[op.name][t - 1] > _coef(op, "threshold")).astype(np.float32) if t else 0
            carry_u[op.name] = du * beta * (1 - r)
        else:
            carry_u[op.name] = du * beta
        if op.kind == "cubalif":
            di = carry_i.get(op.name, 0) + du * gain
            carry_i[op.name] = di * _coef(op, "alpha")
            return di * _coef(op, "gain_syn", 1.0)
        return du * gain


def _graph_layout(graph: Graph, grads: dict) -> dict:
    """Weight gradients accumulated in the kernels' layouts, back in the graph's layout."""
    out = {}
    for (name, tensor), g in grads.items():
        if tensor == "weight:t":
            out[(name, "weight")] = np.ascontiguousarray(g.T)
        elif tensor == "weight:hwc":
            w = g.transpose(3, 0, 1, 2)
            out[(name, "weight")] = np.ascontiguousarray(w[:, :, 0, :] if graph[name].kind == "conv1d" else w)
        else:
            out[(name, tensor)] = g
    return out


def _acc(grads: dict, key, value: np.ndarray) -> None:
    if key in grads:
        grads[key] += value
    else:
        grads[key] = value.astype(np.float32).copy()


def _pool_geometry(op: Op):
    k = tuple(op.params["kernel"])
    s = tuple(op.params["stride"] or k)
    return k, s, tuple(op.params["padding"])


def _windows(x: np.ndarray, op: Op, fill: float) -> np.ndarray:
    """[B, C, Ho, Wo, kh, kw] view of the padded input's pooling windows."""
    (kh, kw), (sh, sw), (ph, pw) = _pool_geometry(op)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
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
        return x * a + c
    if k == "pool2d":
        mode = op.params["mode"]
        win = _windows(x, op, -np.inf if mode == "max" else 0.0)
        if mode == "max":
            return win.max(axis=(4, 5))
        y = win.sum(axis=(4, 5))
        return y / np.float32(math.prod(op.params["kernel"])) if mode == "avg" else y
    raise NotImplementedError(k)


def _axis(op: Op, x: np.ndarray) -> int:
    a = op.params["axis"]
    return (a + x.ndim - 1 if a < 0 else a) + 1


def _bn_affine(op: Op, ndim: int):
    t = op.tensors
    shape = (-1,) + (1,) * (ndim - 2)
    a = t["gamma"] / np.sqrt(t["var"] + np.float32(op.params["eps"]))
    return a.reshape(shape).astype(np.float32), (t["beta"] - t["mean"] * a).reshape(shape).astype(np.float32)


def _elem_bwd(op: Op, ins, go, y, grads) -> list:
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
        xhat = (x - t["mean"].reshape(a.shape)) / np.sqrt(t["var"] + np.float32(op.params["eps"])).reshape(a.shape)
        _acc(grads, (op.name, "gamma"), (go * xhat).sum(red))
        _acc(grads, (op.name, "beta"), go.sum(red))
        return [go * a]
    if k == "pool2d":
        return [_pool_bwd(op, x, go)]
    raise NotImplementedError(k)


def _unbroadcast(g: np.ndarray, shape) -> np.ndarray:
    axes = tuple(i for i, (gs, s) in enumerate(zip(g.shape, shape)) if s == 1 and gs != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _pool_bwd(op: Op, x: np.ndarray, go: np.ndarray) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = _pool_geometry(op)
    mode = op.params["mode"]
    B, C, H, W = x.shape
    Ho, Wo = go.shape[2:]
    gp = np.zeros((B, C, H + 2 * ph, W + 2 * pw), np.float32)
    if mode == "max":
        win = _windows(x, op, -np.inf).reshape(B, C, Ho, Wo, kh * kw)
        first = win.argmax(axis=4)  # first maximum in row-major window order
    scale = np.float32(1.0 / (kh * kw)) if mode == "avg" else np.float32(1.0)
    for i in range(kh):
        for j in range(kw):
            contrib = go * scale if mode != "max" else go * (first == i * kw + j)
            gp[:, :, i:i + sh * Ho:sh, j:j + sw * Wo:sw] += contrib
    return gp[:, :, ph:ph + H, pw:pw + W]


def new_stats(graph: Graph, batch: int, timesteps: int, training: bool) -> dict[str, OpStats]:
    out = {}
    for op in graph:
        if op.kind == "output":
            continue
        units = op.type.shape[0]
        st = OpStats(op.type.size, units, out_nonzero=np.zeros(timesteps, np.int64),
                     grad_nonzero=np.zeros(timesteps, np.int64))
        if op.kind in WEIGHT_KINDS:
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
    chunks of samples; returns measured stats, loss, weight gradients and recorded outputs."""
    T, B = next(iter(x.values())).shape[:2]
    stats = new_stats(sim.graph, B, T, training)
    res = RunResult(stats)
    out_name = output_name(sim.graph)
    chunk = chunk or B
    losses = []
    recorded: dict[str, list] = {}
    for b0 in range(0, B, chunk):
        xs = {k: v[:, b0:b0 + chunk] for k, v in x.items()}
        vals, mem, cur = sim.forward(xs, stats, b0)
        if labels is not None:
            loss, dout, correct = loss_grad(vals[out_name], labels[b0:b0 + chunk], B)
            losses.append(loss)
            res.correct += correct
            if training:
                sim.backward(vals, mem, cur, {out_name: dout}, stats, res.grads, b0)
        if record:
            for name, v in vals.items():
                recorded.setdefault(name, []).append(v)
        if progress:
            progress(min(b0 + chunk, B))
    res.loss = float(sum(losses)) if losses else None
    res.grads = _graph_layout(sim.graph, res.grads)
    res.values = {k: np.concatenate(v, axis=1) for k, v in recorded.items()}
    return res


def sgd_update(graph: Graph, grads: dict, lr: float) -> int:
    """w -= lr * grad for every trained tensor, in place; returns the parameters updated."""
    n = 0
    for (name, tensor), g in grads.items():
        w = graph[name].tensors[tensor]
        w -= np.float32(lr) * g.reshape(w.shape)
        n += w.size
    return n

