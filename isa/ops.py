"""The op kinds of the spike-driven IR: their parameters, tensors, shape/type inference and
dense work per time step. Shapes are per sample and per time step (no batch, no time axis).

A value is a *spike* tensor (binary) or a *real* tensor. A weight op (linear, conv) whose input
is spikes costs accumulates (AC); one whose input is real costs multiply-accumulates (MAC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from spikeforge.isa.params import Param

SPIKE, REAL = "spike", "real"
BN_STATS = ("batch", "batch_time", "running")  # what a training step's batch-norm normalises with


@dataclass(frozen=True)
class TensorType:
    """The type of a value: spike or real, and its per-sample shape."""

    kind: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __str__(self) -> str:
        return f"{self.kind}[{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class TensorSpec:
    """A tensor an op may hold. `broadcast` tensors (per-neuron coefficients) need only
    broadcast to the op's output shape; the others must match `shape` exactly."""

    shape: tuple[int, ...]
    trainable: bool = False
    required: bool = True
    broadcast: bool = False


@dataclass(frozen=True)
class Work:
    """Dense work of one op for one sample and one time step."""

    syn_ops: int = 0  # synaptic operations of weight ops (linear, conv) and products of `matmul`
    arith: str = ""  # "MAC" (real input) or "AC" (spike input; matmul: its first, streamed operand) for syn_ops
    elem_ops: int = 0  # element-wise operations (pooling, add, mask, scale, batch-norm)
    neurons: int = 0  # neuron state updates


@dataclass(frozen=True)
class OpKind:
    name: str
    params: tuple[Param, ...]
    n_inputs: tuple[int, int]  # (min, max); max -1 = any
    infer: Callable[[dict, list[TensorType]], TensorType]
    tensors: Callable[[dict, list[TensorType], TensorType], dict[str, TensorSpec]]
    work: Callable[[dict, list[TensorType], TensorType], Work]
    doc: str


def _no_tensors(p, ins, out):
    return {}


def _no_work(p, ins, out):
    return Work()


def _elem_work(p, ins, out):
    return Work(elem_ops=out.size)


def _conv_out(n: int, k: int, s: int, pad: int, d: int, axis: str) -> int:
    o = (n + 2 * pad - d * (k - 1) - 1) // s + 1
    if o < 1:
        raise ValueError(f"kernel {k} (dilation {d}, padding {pad}) does not fit input {axis} {n}")
    return o


# ---- input / output -------------------------------------------------------------------------

def _input_infer(p, ins):
    return TensorType(REAL if p["encoding"] == "direct" else SPIKE, p["shape"])


def _output_infer(p, ins):
    return ins[0]


# ---- weight ops -----------------------------------------------------------------------------

def _linear_infer(p, ins):
    (x,) = ins
    return TensorType(REAL, x.shape[:-1] + (p["out_features"],))


def _linear_tensors(p, ins, out):
    t = {"weight": TensorSpec((p["out_features"], ins[0].shape[-1]), trainable=True)}
    if p["bias"]:
        t["bias"] = TensorSpec((p["out_features"],), trainable=True)
    return t


def _linear_work(p, ins, out):
    return Work(syn_ops=out.size * ins[0].shape[-1], arith="AC" if ins[0].kind == SPIKE else "MAC")


def _groups_check(cin, p):
    g = p["groups"]
    if cin % g or p["out_channels"] % g:
        raise ValueError(f"groups={g} must divide input channels {cin} and out_channels {p['out_channels']}")


def _conv1d_infer(p, ins):
    (x,) = ins
    if len(x.shape) != 2:
        raise ValueError(f"expects a [C, L] input, got {x}")
    _groups_check(x.shape[0], p)
    L = _conv_out(x.shape[1], p["kernel"], p["stride"], p["padding"], p["dilation"], "length")
    return TensorType(REAL, (p["out_channels"], L))


def _conv2d_infer(p, ins):
    (x,) = ins
    if len(x.shape) != 3:
        raise ValueError(f"expects a [C, H, W] input, got {x}")
    _groups_check(x.shape[0], p)
    H = _conv_out(x.shape[1], p["kernel"][0], p["stride"][0], p["padding"][0], p["dilation"][0], "height")
    W = _conv_out(x.shape[2], p["kernel"][1], p["stride"][1], p["padding"][1], p["dilation"][1], "width")
    return TensorType(REAL, (p["out_channels"], H, W))


def _kernel(p):
    k = p["kernel"]
    return tuple(k) if isinstance(k, tuple) else (k,)


def _conv_tensors(p, ins, out):
    t = {"weight": TensorSpec((p["out_channels"], ins[0].shape[0] // p["groups"]) + _kernel(p), trainable=True)}
    if p["bias"]:
        t["bias"] = TensorSpec((p["out_channels"],), trainable=True)
    return t


def _conv_work(p, ins, out):
    fan_in = ins[0].shape[0] // p["groups"] * math.prod(_kernel(p))
    return Work(syn_ops=out.size * fan_in, arith="AC" if ins[0].kind == SPIKE else "MAC")


# ---- pooling and shape ops -----------------------------------------------------------------

def _pool_infer(p, ins):
    (x,) = ins
    if len(x.shape) != 3:
        raise ValueError(f"expects a [C, H, W] input, got {x}")
    s = p["stride"] or p["kernel"]
    H = _conv_out(x.shape[1], p["kernel"][0], s[0], p["padding"][0], 1, "height")
    W = _conv_out(x.shape[2], p["kernel"][1], s[1], p["padding"][1], 1, "width")
    kind = SPIKE if (p["mode"] == "max" and x.kind == SPIKE) else REAL
    return TensorType(kind, (x.shape[0], H, W))


def _pool_work(p, ins, out):
    return Work(elem_ops=out.size * math.prod(p["kernel"]))


def _axis(ax: int, ndim: int, what: str) -> int:
    a = ax + ndim if ax < 0 else ax
    if not 0 <= a < ndim:
        raise ValueError(f"{what} {ax} out of range for a {ndim}-d value")
    return a


def _flatten_infer(p, ins):
    (x,) = ins
    s = _axis(p["start_dim"], len(x.shape), "start_dim")
    e = _axis(p["end_dim"], len(x.shape), "end_dim")
    if e < s:
        raise ValueError(f"end_dim {p['end_dim']} is before start_dim {p['start_dim']}")
    return TensorType(x.kind, x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def _reshape_infer(p, ins):
    (x,) = ins
    if math.prod(p["shape"]) != x.size:
        raise ValueError(f"cannot reshape {x} ({x.size} elements) to {list(p['shape'])}")
    return TensorType(x.kind, p["shape"])


# ---- element-wise ops ----------------------------------------------------------------------

def _add_infer(p, ins):
    if any(t.shape != ins[0].shape for t in ins):
        raise ValueError("inputs differ in shape: " + ", ".join(str(t) for t in ins))
    return TensorType(REAL, ins[0].shape)


def _add_work(p, ins, out):
    return Work(elem_ops=out.size * (len(ins) - 1))


def _mul_infer(p, ins):
    a, b = ins
    if len(a.shape) != len(b.shape):
        raise ValueError(f"inputs differ in rank: {a}, {b}")
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"inputs do not broadcast: {a}, {b}") from None
    return TensorType(SPIKE if a.kind == b.kind == SPIKE else REAL, tuple(shape))


def matmul_dims(p: dict, a: TensorType, b: TensorType) -> tuple[int, int, int]:
    """(M, K, N) of `matmul`: op(a) is [.., M, K], op(b) is [.., K, N] (op transposes the last two
    axes when the param says so)."""
    m, k = a.shape[-2:][::-1] if p["transpose_a"] else a.shape[-2:]
    kb, n = b.shape[-2:][::-1] if p["transpose_b"] else b.shape[-2:]
    if k != kb:
        raise ValueError(f"inner sizes differ: op(a) is [.., {m}, {k}] but op(b) is [.., {kb}, {n}] ({a}, {b})")
    return m, k, n


def couples(op, training: bool) -> bool:
    """Whether `op` needs the whole batch at once: a training step's batch-norm with batch statistics."""
    return training and op.kind == "batchnorm" and op.params["stats"] != "running"


def matmul_split(p: dict, out_rank: int) -> tuple[bool, bool]:
    """Whether a piece of a `matmul` (a range of its output's axis 0) needs only the matching range
    of each operand (a, b): with leading (batch) axes both split with the pieces; without, only the
    untransposed first operand (its rows are the output's), every piece needing all of b."""
    batched = out_rank > 2
    return batched or not p["transpose_a"], batched


def _matmul_infer(p, ins):
    a, b = ins
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ValueError(f"expects inputs of rank 2 or more, got {a}, {b}")
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"inputs differ in their leading (batch) axes: {a}, {b}")
    m, _, n = matmul_dims(p, a, b)
    return TensorType(REAL, a.shape[:-2] + (m, n))


def _matmul_work(p, ins, out):
    _, k, _ = matmul_dims(p, *ins)
    return Work(syn_ops=out.size * k, arith="AC" if ins[0].kind == SPIKE else "MAC")


def _sum_infer(p, ins):
    (x,) = ins
    a = _axis(p["axis"], len(x.shape), "axis")
    return TensorType(REAL, x.shape[:a] + (1,) + x.shape[a + 1:])


def _sum_work(p, ins, out):
    return Work(elem_ops=ins[0].size)


def _same_real(p, ins):
    return TensorType(REAL, ins[0].shape)


def _scale_tensors(p, ins, out):
    return {"scale": TensorSpec(out.shape, required=False, broadcast=True)}


def _bn_infer(p, ins):
    if len(ins[0].shape) < 1:
        raise ValueError("expects at least a channel axis")
    if p["momentum"] > 1:
        raise ValueError(f"momentum must be at most 1, got {p['momentum']}")
    return TensorType(REAL, ins[0].shape)


def _bn_tensors(p, ins, out):
    c = (ins[0].shape[0],)
    return {"gamma": TensorSpec(c, trainable=True), "beta": TensorSpec(c, trainable=True),
            "mean": TensorSpec(c), "var": TensorSpec(c)}


# ---- neurons -------------------------------------------------------------------------------

_RESET = Param("reset", "str", "subtract", ("subtract", "zero"))
_SURR = (Param("surrogate", "str", "atan", ("atan", "fast_sigmoid")), Param("slope", "pos_float", 2.0))


def _coef_tensors(*names):
    def tensors(p, ins, out):
        return {n: TensorSpec(out.shape, required=False, broadcast=True) for n in names}
    return tensors


def _delay_infer(p, ins):
    return TensorType(SPIKE if p["spikes"] else REAL, p["shape"])


def _spike_infer(p, ins):
    return TensorType(SPIKE, ins[0].shape)


def _neuron_work(p, ins, out):
    return Work(neurons=out.size)


def _k(name, params, n_in, infer, tensors=_no_tensors, work=_no_work, doc=""):
    return OpKind(name, tuple(params), n_in, infer, tensors, work, doc)


_P = Param
KINDS: dict[str, OpKind] = {k.name: k for k in [
    _k("input", [_P("shape", "shape"), _P("encoding", "str", "direct", ("direct", "rate", "events"))],
       (0, 0), _input_infer, doc="model input; direct = real values each step, rate/events = spikes"),
    _k("output", [], (1, 1), _output_infer, doc="marks a model output"),
    _k("linear", [_P("out_features", "pos_int"), _P("bias", "bool", True)], (1, 1),
       _linear_infer, _linear_tensors, _linear_work, "y = x W^T + b over the last axis"),
    _k("conv1d", [_P("out_channels", "pos_int"), _P("kernel", "pos_int"), _P("stride", "pos_int", 1),
                  _P("padding", "nonneg_int", 0), _P("dilation", "pos_int", 1), _P("groups", "pos_int", 1),
                  _P("bias", "bool", True)], (1, 1), _conv1d_infer, _conv_tensors, _conv_work, "1-D convolution"),
    _k("conv2d", [_P("out_channels", "pos_int"), _P("kernel", "pair"), _P("stride", "pair", (1, 1)),
                  _P("padding", "nonneg_pair", (0, 0)), _P("dilation", "pair", (1, 1)),
                  _P("groups", "pos_int", 1), _P("bias", "bool", True)], (1, 1),
       _conv2d_infer, _conv_tensors, _conv_work, "2-D convolution"),
    _k("pool2d", [_P("mode", "str", choices=("sum", "avg", "max")), _P("kernel", "pair"),
                  _P("stride", "pair", None), _P("padding", "nonneg_pair", (0, 0))], (1, 1),
       _pool_infer, work=_pool_work, doc="sum / avg / max pooling (stride defaults to kernel)"),
    _k("flatten", [_P("start_dim", "axis", 0), _P("end_dim", "axis", -1)], (1, 1), _flatten_infer,
       doc="merge axes start_dim..end_dim"),
    _k("reshape", [_P("shape", "shape")], (1, 1), _reshape_infer, doc="reshape to a new shape"),
    _k("add", [], (2, -1), _add_infer, work=_add_work, doc="element-wise sum (residual add)"),
    _k("mul", [], (2, 2), _mul_infer, work=_elem_work, doc="element-wise product with broadcasting (spike mask)"),
    _k("matmul", [_P("transpose_a", "bool", False), _P("transpose_b", "bool", False), _P("scale", "float", 1.0)],
       (2, 2), _matmul_infer, work=_matmul_work,
       doc="y = scale * op(a) @ op(b) over the last two axes, leading axes batched: a product of two activations "
           "(a streams as events, b is stationary; docs/attention.md)"),
    _k("sum", [_P("axis", "axis")], (1, 1), _sum_infer, work=_sum_work, doc="sum over one axis (kept as size 1)"),
    _k("scale", [_P("scale", "float", 1.0)], (1, 1), _same_real, _scale_tensors, _elem_work,
       "element-wise multiply by a scalar or per-element tensor"),
    _k("batchnorm", [_P("eps", "pos_float", 1e-5), _P("stats", "str", "batch", BN_STATS),
                     _P("momentum", "pos_float", 0.1)], (1, 1), _bn_infer, _bn_tensors, _elem_work,
       "batch-norm over axis 0 (channels); training normalises with `stats`: batch (per step, over the "
       "batch and positions), batch_time (over time steps too) or running; inference with running"),
    _k("delay", [_P("shape", "shape"), _P("spikes", "bool", True)], (1, 1), _delay_infer,
       doc="its input's value at the previous step (zeros at step 0): a recurrent edge; declares that value's "
           "type, since its input is usually computed later in the step"),
    _k("threshold", [_P("threshold", "float", 1.0)], (1, 1), _spike_infer, _coef_tensors("threshold"),
       _neuron_work, "stateless spike: x > threshold"),
    _k("lif", [_P("beta", "float", 0.9), _P("threshold", "float", 1.0), _P("gain", "float", 1.0),
               _P("bias", "float", 0.0), _RESET, _P("v_reset", "float", 0.0), *_SURR], (1, 1),
       _spike_infer, _coef_tensors("beta", "threshold", "gain", "bias"), _neuron_work,
       "leaky integrate-and-fire: v = beta*v + gain*x + bias; spike v > threshold"),
    _k("if", [_P("threshold", "float", 1.0), _P("gain", "float", 1.0), _P("bias", "float", 0.0),
              _RESET, _P("v_reset", "float", 0.0), *_SURR], (1, 1),
       _spike_infer, _coef_tensors("threshold", "gain", "bias"), _neuron_work,
       "integrate-and-fire: v = v + gain*x + bias"),
    _k("cubalif", [_P("alpha", "float", 0.5), _P("beta", "float", 0.9), _P("threshold", "float", 1.0),
                   _P("gain_syn", "float", 1.0), _P("gain", "float", 1.0), _P("bias", "float", 0.0),
                   _RESET, _P("v_reset", "float", 0.0), *_SURR], (1, 1),
       _spike_infer, _coef_tensors("alpha", "beta", "threshold", "gain_syn", "gain", "bias"), _neuron_work,
       "current-based LIF: i = alpha*i + gain_syn*x; v = beta*v + gain*i + bias"),
    _k("li", [_P("beta", "float", 0.9), _P("gain", "float", 1.0), _P("bias", "float", 0.0)], (1, 1),
       _same_real, _coef_tensors("beta", "gain", "bias"), _neuron_work,
       "leaky integrator (readout, no spikes): v = beta*v + gain*x + bias"),
]}

NEURON_KINDS = frozenset({"lif", "if", "cubalif", "li", "threshold"})
WEIGHT_KINDS = frozenset({"linear", "conv1d", "conv2d"})
# ops that run on the synaptic engines (fp.integrate, bp.propagate, wg.accumulate): the weight ops and
# `matmul`, whose second operand takes the weights' place (docs/attention.md)
SYNAPTIC_KINDS = WEIGHT_KINDS | {"matmul"}


def canonical_value(v: Any) -> Any:
    """Params as stored: tuples become lists for printing/serialising."""
    return list(v) if isinstance(v, tuple) else v
