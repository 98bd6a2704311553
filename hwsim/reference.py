"""Dense NumPy reference of an IR graph: the forward pass over T time steps and the BPTT backward
pass (docs/models.md; snnTorch `Leaky` conventions: delayed reset, no gradient through the reset).
It is the independent check of the event-driven simulator and the baseline of its benchmark.

Values are `[T, B, *shape]` float32. Stateless ops run on all T*B samples at once, neurons loop
over time, convolutions are im2col + one matmul per group, pooling loops over kernel taps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikeforge.isa import Graph
from spikeforge.isa.ir import Op
from spikeforge.isa.ops import couples

F32 = np.float32


@dataclass
class RefResult:
    values: dict[str, np.ndarray]  # every op's output [T, B, *shape] (spikes as 0/1)
    membranes: dict[str, np.ndarray]  # neuron ops: U_t before reset [T, B, *shape]
    loss: float  # NaN without labels
    grads: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (op, tensor) -> dL/dtensor
    # op -> dL/d(output) from the op's consumers, every non-input op (for li: not via its own state)
    value_grads: dict[str, np.ndarray] = field(default_factory=dict)


def run_dense(graph: Graph, x: np.ndarray | dict[str, np.ndarray], labels: np.ndarray | None = None,
              training: bool = True) -> RefResult:
    """Run `graph` on `x` ([T, B, *input_shape] for the single input op, or a dict input name ->
    array). With `labels` ([B] ints) the loss is the cross-entropy of the time-averaged output;
    the backward pass runs when `training` and labels are given. Batch-norm normalises with its
    `stats` when `training`, else with the running statistics."""
    recurrent = [op.name for op in graph if op.kind == "delay"]
    if recurrent:
        raise ValueError(f"op '{recurrent[0]}' (delay): the dense reference runs each op over all steps at "
                         "once and has no recurrence")
    xs = x if isinstance(x, dict) else {_only(graph.inputs, "input").name: x}
    values, cache = {}, {}
    for op in graph:
        if op.kind == "input":
            v = np.asarray(xs[op.name], F32)
            if v.ndim < 2 or v.shape[2:] != op.type.shape:
                raise ValueError(f"input '{op.name}': expected [T, B, {', '.join(map(str, op.type.shape))}], "
                                 f"got {list(v.shape)}")
        else:
            cache[op.name] = {"batch": True} if couples(op, training) else {}  # batch-norm with batch statistics
            v = _forward(op, [values[i] for i in op.inputs], cache[op.name])
        values[op.name] = v
    res = RefResult(values, {n: c["u"] for n, c in cache.items() if "u" in c}, float("nan"))
    if labels is not None:
        out = _only(graph.outputs, "output").name
        res.loss, seed = _cross_entropy(values[out], np.asarray(labels))
        if training:
            res.grads, res.value_grads = _backward(graph, values, cache, out, seed)
    return res


def _only(ops: list[Op], what: str) -> Op:
    if len(ops) != 1:
        raise ValueError(f"expected one {what} op, got {[op.name for op in ops]}")
    return ops[0]


def _cross_entropy(o: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of logits mean_t(o_t) and its gradient with respect to o."""
    T, B = o.shape[:2]
    z = o.reshape(T, B, -1).mean(0)
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    rows = np.arange(B)
    d = np.exp(logp)
    d[rows, labels] -= 1
    d = (d / F32(B * T)).reshape(1, *o.shape[1:])
    return float(-logp[rows, labels].mean()), np.broadcast_to(d, o.shape)


def _backward(graph: Graph, values: dict, cache: dict, out: str, seed: np.ndarray):
    """Reverse-mode sweep over the ops in reverse topological order."""
    vg = {op.name: np.zeros_like(values[op.name]) for op in graph if op.kind != "input"}
    vg[out] += seed
    grads: dict[tuple[str, str], np.ndarray] = {}
    for op in reversed(graph.ops):
        if op.kind == "input":
            continue
        ins = [values[i] for i in op.inputs]
        for name, g in zip(op.inputs, _backward_op(op, ins, vg[op.name], cache[op.name], grads)):
            if name in vg:
                vg[name] += g
    return grads, vg


# ---- per-op forward and backward -----------------------------------------------------------

def _coef(op: Op, name: str) -> np.ndarray:
    return np.asarray(op.coef(name), F32)


def _channel(op: Op, a: np.ndarray) -> np.ndarray:
    """A per-channel vector shaped to broadcast over the per-sample shape (channels on axis 0)."""
    return a.reshape((-1,) + (1,) * (len(op.type.shape) - 1))


def _bn(op: Op) -> tuple[np.ndarray, np.ndarray]:
    """Batch-norm as y = a * x + b, per channel."""
    t = op.tensors
    inv = F32(1) / np.sqrt(t["var"] + F32(op.params["eps"]))
    return _channel(op, t["gamma"] * inv), _channel(op, t["beta"] - t["gamma"] * t["mean"] * inv)


def _bn_axes(op: Op, x: np.ndarray) -> tuple[int, ...]:
    """The axes of [T, B, C, ...] a batch-norm's statistics run over: B and the positions, and T
    for batch_time."""
    return ((0, 1) if op.params["stats"] == "batch_time" else (1,)) + tuple(range(3, x.ndim))


def _bn_batch(op: Op, x: np.ndarray, c: dict) -> np.ndarray:
    """Batch-norm with the batch's statistics (biased variance); caches x^ and the sd."""
    axes = _bn_axes(op, x)
    mean = x.mean(axes, keepdims=True, dtype=np.float64)
    var = ((x - mean) ** 2).mean(axes, keepdims=True)
    c["sd"] = np.sqrt(var + op.params["eps"]).astype(F32)
    c["xhat"] = ((x - mean.astype(F32)) / c["sd"]).astype(F32)
    return _channel(op, op.tensors["gamma"]) * c["xhat"] + _channel(op, op.tensors["beta"])


def _forward(op: Op, ins: list[np.ndarray], c: dict) -> np.ndarray:
    k, w, x = op.kind, op.tensors, ins[0]
    if k == "output":
        return x
    if k == "linear":
        y = (x.reshape(-1, x.shape[-1]) @ w["weight"].T).reshape(x.shape[:-1] + (-1,))
        return y + w["bias"] if "bias" in w else y
    if k in ("conv1d", "conv2d"):
        return _conv(op, x, c)
    if k == "pool2d":
        return _pool(op, x, c)
    if k in ("flatten", "reshape"):
        return x.reshape(x.shape[:2] + op.type.shape)
    if k == "add":
        return sum(ins[1:], ins[0])
    if k == "mul":
        return ins[0] * ins[1]
    if k == "matmul":
        a, b = _mm_operands(op, ins)
        return (a @ b) * F32(op.params["scale"])
    if k == "sum":
        return x.sum(axis=op.params["axis"] % len(op.type.shape) + 2, keepdims=True)
    if k == "scale":
        return x * _coef(op, "scale")
    if k == "batchnorm":
        if c.get("batch"):
            return _bn_batch(op, x, c)
        a, b = _bn(op)
        return a * x + b
    if k == "threshold":
        return (x > _coef(op, "threshold")).astype(F32)
    return _neuron(op, x, c)


def _backward_op(op: Op, ins: list[np.ndarray], dy: np.ndarray, c: dict, grads: dict) -> list[np.ndarray]:
    """dL/d(each input) of one op from dL/d(its output); adds its tensor gradients to `grads`."""
    k, w, x = op.kind, op.tensors, ins[0]
    if k in ("output", "add"):
        return [dy] * len(ins)
    if k == "linear":
        d2 = dy.reshape(-1, dy.shape[-1])
        grads[op.name, "weight"] = d2.T @ x.reshape(-1, x.shape[-1])
        if "bias" in w:
            grads[op.name, "bias"] = d2.sum(0)
        return [(d2 @ w["weight"]).reshape(x.shape)]
    if k in ("conv1d", "conv2d"):
        return [_conv_back(op, x, dy, c, grads)]
    if k == "pool2d":
        return [_pool_back(op, x, dy, c)]
    if k in ("flatten", "reshape"):
        return [dy.reshape(x.shape)]
    if k == "mul":
        return [_unbroadcast(dy * ins[1], ins[0].shape), _unbroadcast(dy * ins[0], ins[1].shape)]
    if k == "matmul":
        a, b = _mm_operands(op, ins)
        d = dy * F32(op.params["scale"])
        da, db = d @ np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2) @ d
        return [np.swapaxes(da, -1, -2) if op.params["transpose_a"] else da,
                np.swapaxes(db, -1, -2) if op.params["transpose_b"] else db]
    if k == "sum":
        return [np.broadcast_to(dy, x.shape)]
    if k == "scale":
        return [dy * _coef(op, "scale")]
    if k == "batchnorm":
        axes = (0, 1) + tuple(range(3, dy.ndim))
        if c.get("batch"):  # through the batch statistics
            grads[op.name, "gamma"], grads[op.name, "beta"] = (dy * c["xhat"]).sum(axes), dy.sum(axes)
            shared = _bn_axes(op, dy)
            m = lambda a: a.mean(shared, keepdims=True, dtype=np.float64).astype(F32)  # noqa: E731
            return [_channel(op, w["gamma"]) / c["sd"] * (dy - m(dy) - c["xhat"] * m(dy * c["xhat"]))]
        inv = F32(1) / np.sqrt(w["var"] + F32(op.params["eps"]))
        grads[op.name, "gamma"] = (dy * ((x - _channel(op, w["mean"])) * _channel(op, inv))).sum(axes)
        grads[op.name, "beta"] = dy.sum(axes)
        return [dy * _bn(op)[0]]
    if k == "threshold":
        return [dy * _surrogate(op, x, _coef(op, "threshold"))]
    return [_neuron_back(op, dy, c)]


def _mm_operands(op: Op, ins: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """op(a) and op(b) of a matmul: the last two axes swapped where the params say so."""
    a, b = ins
    return (np.swapaxes(a, -1, -2) if op.params["transpose_a"] else a,
            np.swapaxes(b, -1, -2) if op.params["transpose_b"] else b)


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, g.shape)) if n == 1 and m != 1)
    return g.sum(axis=axes, keepdims=True)


# ---- neurons -------------------------------------------------------------------------------

def _surrogate(op: Op, u: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """dS/dU; a `threshold` op has no surrogate params and uses the defaults (atan, slope 2)."""
    d, k = u - theta, F32(op.params.get("slope", 2.0))
    if op.params.get("surrogate", "atan") == "atan":
        return (k / F32(2)) / (F32(1) + (F32(np.pi / 2) * k * d) ** 2)
    return F32(1) / (k * np.abs(d) + F32(1)) ** 2


def _neuron_coefs(op: Op) -> dict[str, np.ndarray]:
    names = ("alpha", "beta", "threshold", "gain_syn", "gain", "bias", "v_reset")
    c = {n: _coef(op, n) for n in names if n in op.params or n in op.tensors}
    c.setdefault("beta", F32(1))  # `if`
    return c


def _neuron(op: Op, x: np.ndarray, cache: dict) -> np.ndarray:
    """lif / if / cubalif / li over time; caches the membranes U_t (before reset) as 'u'."""
    c, zero = _neuron_coefs(op), op.params.get("reset") == "zero"
    beta, gain, bias = c["beta"], c["gain"], c["bias"]
    u = i = np.zeros(x.shape[1:], F32)
    us = np.empty_like(x)
    for t in range(len(x)):
        drive = x[t]
        if op.kind == "cubalif":
            i = c["alpha"] * i + c["gain_syn"] * x[t]
            drive = i
        if op.kind == "li":
            u = beta * u + gain * drive + bias
        else:
            th = c["threshold"]
            r = (u > th).astype(F32) if t else F32(0)
            if zero:
                u = beta * ((F32(1) - r) * u + r * c["v_reset"]) + gain * drive + bias
            else:
                u = beta * u + gain * drive + bias - r * th
        us[t] = u
    cache["u"] = us
    return us if op.kind == "li" else (us > c["threshold"]).astype(F32)


def _neuron_back(op: Op, dy: np.ndarray, cache: dict) -> np.ndarray:
    """BPTT through U (and I for cubalif); the reset r_t is detached."""
    c, u, zero = _neuron_coefs(op), cache["u"], op.params.get("reset") == "zero"
    dx = np.empty_like(dy)
    carry_u = carry_i = F32(0)  # gradient reaching U_t (I_t) from step t+1
    for t in reversed(range(len(dy))):
        du = carry_u + (dy[t] if op.kind == "li" else dy[t] * _surrogate(op, u[t], c["threshold"]))
        carry_u = c["beta"] * du
        if zero and t:
            carry_u = carry_u * (u[t - 1] <= c["threshold"])  # 1 - r_t
        if op.kind == "cubalif":
            di = carry_i + c["gain"] * du
            carry_i = c["alpha"] * di
            dx[t] = c["gain_syn"] * di
        else:
            dx[t] = c["gain"] * du
    return dx


# ---- convolution and pooling: [T, B, C, (H,) W] values as padded [C, T*B, Hp, Wp] planes ----

def _hw(shape: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) of a per-sample [C, H, W] or [C, L] shape (a 1-d signal is 1 x L)."""
    return ((1,) + tuple(shape[1:]))[-2:]


def _geometry(op: Op):
    """(kernel, stride, padding, dilation) pairs; conv1d is a 1 x k conv2d."""
    p = op.params
    if op.kind == "conv1d":
        return (1, p["kernel"]), (1, p["stride"]), (0, p["padding"]), (1, p["dilation"])
    if op.kind == "pool2d":
        return p["kernel"], p["stride"] or p["kernel"], p["padding"], (1, 1)
    return p["kernel"], p["stride"], p["padding"], p["dilation"]


def _taps(op: Op):
    """Per kernel tap n (row-major): the slices of the padded planes it reads at every output."""
    (kh, kw), s, _, d = _geometry(op)
    out = _hw(op.type.shape)
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, (slice(None), slice(None)) + tuple(
                slice(a * dd, a * dd + ss * (n - 1) + 1, ss) for a, dd, ss, n in zip((i, j), d, s, out))


def _padded(op: Op, x: np.ndarray, fill: float) -> np.ndarray:
    (ph, pw), (H, W), C = _geometry(op)[2], _hw(x.shape[2:]), x.shape[2]
    xp = np.full((C, x.shape[0] * x.shape[1], H + 2 * ph, W + 2 * pw), fill, F32)
    xp[:, :, ph:ph + H, pw:pw + W] = x.reshape(-1, C, H, W).transpose(1, 0, 2, 3)
    return xp


def _scatter(op: Op, x_shape: tuple[int, ...], part) -> np.ndarray:
    """Backward of the tap reads: sum part(n) [C, N, Ho, Wo] into the padded planes, crop, unplane."""
    (ph, pw), (H, W), C = _geometry(op)[2], _hw(x_shape[2:]), x_shape[2]
    dxp = np.zeros((C, x_shape[0] * x_shape[1], H + 2 * ph, W + 2 * pw), F32)
    for n, sl in _taps(op):
        dxp[sl] += part(n)
    return dxp[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3).reshape(x_shape)


def _unplane(op: Op, y: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    return y.transpose(1, 0, 2, 3).reshape(x_shape[:2] + op.type.shape)


def _plane(op: Op, dy: np.ndarray) -> np.ndarray:
    return dy.reshape((-1, op.type.shape[0]) + _hw(op.type.shape)).transpose(1, 0, 2, 3)


def _conv(op: Op, x: np.ndarray, c: dict) -> np.ndarray:
    """Cross-correlation: im2col columns [G, Cg*kh*kw, N*Ho*Wo] times weights [G, Og, Cg*kh*kw]."""
    w, G = op.tensors["weight"], op.params["groups"]
    xp = _padded(op, x, 0.0)
    (kh, kw), (Ho, Wo) = _geometry(op)[0], _hw(op.type.shape)
    cols = np.empty((xp.shape[0], kh * kw, xp.shape[1], Ho, Wo), F32)
    for n, sl in _taps(op):
        cols[:, n] = xp[sl]
    c["cols"] = cols = cols.reshape(G, -1, xp.shape[1] * Ho * Wo)
    y = np.matmul(w.reshape(G, w.shape[0] // G, -1), cols).reshape(w.shape[0], xp.shape[1], Ho, Wo)
    if "bias" in op.tensors:
        y += op.tensors["bias"][:, None, None, None]
    return _unplane(op, y, x.shape)


def _conv_back(op: Op, x: np.ndarray, dy: np.ndarray, c: dict, grads: dict) -> np.ndarray:
    w, G = op.tensors["weight"], op.params["groups"]
    d = _plane(op, dy).reshape(G, w.shape[0] // G, -1)
    grads[op.name, "weight"] = np.matmul(d, c["cols"].transpose(0, 2, 1)).reshape(w.shape)
    if "bias" in op.tensors:
        grads[op.name, "bias"] = d.sum(-1).reshape(-1)
    (kh, kw), C = _geometry(op)[0], x.shape[2]
    dcols = np.matmul(w.reshape(G, w.shape[0] // G, -1).transpose(0, 2, 1), d)
    dcols = dcols.reshape((C, kh * kw, -1) + _hw(op.type.shape))
    return _scatter(op, x.shape, lambda n: dcols[:, n])


def _pool(op: Op, x: np.ndarray, c: dict) -> np.ndarray:
    """Sum / avg (zero padding counted) / max (-inf padding; the first maximal tap wins)."""
    mode = op.params["mode"]
    xp = _padded(op, x, -np.inf if mode == "max" else 0.0)
    wins = [xp[sl] for _, sl in _taps(op)]
    if mode == "max":
        y, arg = wins[0].copy(), np.zeros(wins[0].shape, np.int32)
        for n, v in enumerate(wins[1:], 1):
            m = v > y
            y[m], arg[m] = v[m], n
        c["arg"] = arg
    else:
        y = sum(wins[1:], wins[0].copy())
        if mode == "avg":
            y /= F32(len(wins))
    return _unplane(op, y, x.shape)


def _pool_back(op: Op, x: np.ndarray, dy: np.ndarray, c: dict) -> np.ndarray:
    d = _plane(op, dy)
    if op.params["mode"] == "max":
        return _scatter(op, x.shape, lambda n: d * (c["arg"] == n))
    if op.params["mode"] == "avg":
        d = d / F32(op.params["kernel"][0] * op.params["kernel"][1])
    return _scatter(op, x.shape, lambda n: d)
