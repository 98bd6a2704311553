"""hwsim.reference (dense NumPy forward + BPTT) against PyTorch autograd: a step-by-step torch
interpreter of the same graph (plain `lif` layers run as snnTorch `Leaky`), compared on values,
membranes, loss, tensor gradients and value gradients."""

import math
from pathlib import Path

import numpy as np
import pytest
import snntorch
import torch
import torch.nn.functional as F
from snntorch import surrogate

from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.yaml_reader import read_yaml
from spikeforge.hwsim.reference import run_dense
from spikeforge.isa import Graph, Op
from spikeforge.isa.ops import KINDS

ROOT = Path(__file__).resolve().parents[2]
SPIKING = {"lif", "if", "cubalif", "threshold"}


# ---- the torch interpreter -----------------------------------------------------------------

class Spike(torch.autograd.Function):
    """Heaviside of u - theta with the IR's surrogate derivative."""

    @staticmethod
    def forward(ctx, d, kind, slope):
        ctx.save_for_backward(d)
        ctx.kind, ctx.slope = kind, slope
        return (d > 0).float()

    @staticmethod
    def backward(ctx, g):
        (d,) = ctx.saved_tensors
        k = ctx.slope
        s = (k / 2) / (1 + (math.pi / 2 * k * d) ** 2) if ctx.kind == "atan" else 1 / (k * d.abs() + 1) ** 2
        return g * s, None, None


def _spike(op, u, theta):
    return Spike.apply(u - theta, op.params.get("surrogate", "atan"), op.params.get("slope", 2.0))


def _plain_lif(op):
    """A lif that snnTorch's Leaky expresses exactly: scalar coefficients, no gain/bias/v_reset."""
    p = op.params
    return (op.kind == "lif" and not op.tensors and p["gain"] == 1 and p["bias"] == 0 and p["v_reset"] == 0)


def _leaky(op):
    p = op.params
    grad = (surrogate.atan(alpha=p["slope"]) if p["surrogate"] == "atan"
            else surrogate.fast_sigmoid(slope=p["slope"]))
    return snntorch.Leaky(beta=p["beta"], threshold=p["threshold"], spike_grad=grad,
                          reset_mechanism=p["reset"])


def _step(op, ins, P, state, t):
    """One op at one time step on [B, *shape] tensors; P: (op, tensor) -> torch tensor."""
    k, p, x = op.kind, op.params, ins[0] if ins else None
    coef = lambda n: P[op.name, n] if (op.name, n) in P else p[n]  # noqa: E731
    if k == "output":
        return x
    if k == "linear":
        return F.linear(x, P[op.name, "weight"], P.get((op.name, "bias")))
    if k in ("conv1d", "conv2d"):
        conv = F.conv1d if k == "conv1d" else F.conv2d
        return conv(x, P[op.name, "weight"], P.get((op.name, "bias")), p["stride"], p["padding"],
                    p["dilation"], p["groups"])
    if k == "pool2d":
        s = p["stride"] or p["kernel"]
        if p["mode"] == "max":
            return F.max_pool2d(x, p["kernel"], s, p["padding"])
        y = F.avg_pool2d(x, p["kernel"], s, p["padding"], count_include_pad=True)
        return y if p["mode"] == "avg" else y * (p["kernel"][0] * p["kernel"][1])
    if k in ("flatten", "reshape"):
        return x.reshape(x.shape[0], *op.type.shape)
    if k == "add":
        return sum(ins[1:], ins[0])
    if k == "mul":
        return ins[0] * ins[1]
    if k == "sum":
        return x.sum(dim=p["axis"] % len(op.type.shape) + 1, keepdim=True)
    if k == "scale":
        return x * coef("scale")
    if k == "batchnorm":  # per step: batch statistics (updating the running ones) or the running ones
        assert p["stats"] != "batch_time", "a step-by-step interpreter has no statistics over time"
        return F.batch_norm(x, P[op.name, "mean"], P[op.name, "var"], P[op.name, "gamma"], P[op.name, "beta"],
                            training=p["stats"] == "batch", momentum=p["momentum"], eps=p["eps"])
    if k == "threshold":
        return _spike(op, x, coef("threshold"))
    u = state.get(("u", op.name), torch.zeros_like(x))
    if _plain_lif(op):
        spk, state["u", op.name] = state["leaky", op.name](x, u)
        return spk
    beta = 1.0 if k == "if" else coef("beta")
    if k == "cubalif":
        x = state["i", op.name] = coef("alpha") * state.get(("i", op.name), 0) + coef("gain_syn") * x
    if k == "li":
        u = beta * u + coef("gain") * x + coef("bias")
    else:
        th = coef("threshold")
        r = (u > th).float() if t else torch.zeros_like(u)
        if p["reset"] == "subtract":
            u = beta * u + coef("gain") * x + coef("bias") - r * th
        else:
            u = beta * ((1 - r) * u + r * p["v_reset"]) + coef("gain") * x + coef("bias")
    state["u", op.name] = u
    return u.clone() if k == "li" else _spike(op, u, coef("threshold"))  # li: output apart from state


def torch_run(graph, x, labels):
    """Values, membranes, loss, tensor grads and value grads by autograd, one time step at a time."""
    P = {}
    for op in graph:
        spec = KINDS[op.kind].tensors(op.params, [graph[i].type for i in op.inputs], op.type)
        for n, a in op.tensors.items():
            P[op.name, n] = torch.tensor(a, requires_grad=spec[n].trainable)
    state = {("leaky", op.name): _leaky(op) for op in graph if _plain_lif(op)}
    vals = {op.name: [] for op in graph}
    mems = {op.name: [] for op in graph if op.kind in ("lif", "if", "cubalif", "li")}
    for t in range(len(x)):
        cur = {}
        for op in graph:
            v = torch.from_numpy(x[t]) if op.kind == "input" else _step(
                op, [cur[i] for i in op.inputs], P, state, t)
            if v.requires_grad:
                v.retain_grad()
            cur[op.name] = v
            vals[op.name].append(v)
            if op.name in mems:
                mems[op.name].append(state["u", op.name])
    (out,) = graph.outputs
    o = torch.stack(vals[out.name])
    loss = F.cross_entropy(o.mean(0).reshape(o.shape[1], -1), torch.from_numpy(labels))
    loss.backward()
    npy = lambda ts: torch.stack(ts).detach().numpy()  # noqa: E731
    vgrads = {n: np.stack([v.grad.numpy() if v.grad is not None else np.zeros(v.shape, np.float32)
                           for v in vs]) for n, vs in vals.items() if graph[n].kind != "input"}
    grads = {key: t.grad.numpy() for key, t in P.items() if t.requires_grad}
    return ({n: npy(v) for n, v in vals.items()}, {n: npy(v) for n, v in mems.items()}, loss.item(),
            grads, vgrads)


# ---- graphs --------------------------------------------------------------------------------

def with_tensors(ops, seed=0, w_gain=1.5):
    """Build the graph, filling every required non-coefficient tensor with random values."""
    g = Graph.build("t", ops)
    rng = np.random.default_rng(seed)
    filled = []
    for op in g:
        tensors = dict(op.tensors)
        for n, s in KINDS[op.kind].tensors(op.params, [g[i].type for i in op.inputs], op.type).items():
            if s.broadcast or n in tensors:
                continue
            if n == "weight":
                a = rng.normal(0, w_gain / math.sqrt(math.prod(s.shape[1:])), s.shape)
            elif n in ("var", "gamma"):
                a = rng.uniform(0.5, 1.5, s.shape)
            else:
                a = rng.normal(0, 0.3, s.shape)
            tensors[n] = a.astype(np.float32)
        filled.append(Op(op.name, op.kind, op.inputs, op.params, tensors))
    return Graph.build("t", filled)


def conv_graph(bn_stats: str = "batch"):
    """Every spatial op: conv2d (stride, padding, dilation, groups), batch-norm (statistics
    `bn_stats`), pools, conv1d, and the element-wise ops, with an if (zero reset, fast sigmoid),
    a threshold, a cubalif and an li readout."""
    rng = np.random.default_rng(1)
    f32 = lambda *s: rng.uniform(0.5, 1.5, s).astype(np.float32)  # noqa: E731
    return with_tensors([
        Op("x", "input", params={"shape": [3, 10, 10]}),
        Op("c1", "conv2d", ("x",), {"out_channels": 8, "kernel": 3, "stride": 2, "padding": 1}),
        Op("bn", "batchnorm", ("c1",), {"stats": bn_stats}),
        Op("l1", "lif", ("bn",), {"beta": 0.8}),
        Op("c2", "conv2d", ("l1",), {"out_channels": 8, "kernel": 3, "padding": 2, "dilation": 2, "groups": 4}),
        Op("n2", "if", ("c2",), {"reset": "zero", "v_reset": 0.1, "threshold": 0.8,
                                 "surrogate": "fast_sigmoid", "slope": 5.0}),
        Op("a1", "add", ("n2", "l1", "bn")),
        Op("s1", "sum", ("a1",), {"axis": 0}),
        Op("th", "threshold", ("s1",), {"threshold": 4.0}),
        Op("m", "mul", ("a1", "th")),
        Op("sc", "scale", ("m",), tensors={"scale": f32(8, 1, 1)}),
        Op("pmax", "pool2d", ("n2",), {"mode": "max", "kernel": 3, "stride": 2, "padding": 1}),
        Op("pavg", "pool2d", ("sc",), {"mode": "avg", "kernel": 2, "stride": 1, "padding": 1}),
        Op("psum", "pool2d", ("pavg",), {"mode": "sum", "kernel": 2}),
        Op("pm2", "pool2d", ("pavg",), {"mode": "max", "kernel": 3, "stride": 2, "padding": 1}),
        Op("a2", "add", ("pmax", "psum", "pm2")),
        Op("rs", "reshape", ("a2",), {"shape": [8, 9]}),
        Op("c3", "conv1d", ("rs",), {"out_channels": 6, "kernel": 3, "stride": 2, "padding": 1, "groups": 2}),
        Op("c4", "conv1d", ("c3",), {"out_channels": 6, "kernel": 2, "dilation": 2, "bias": False}),
        Op("cb", "cubalif", ("c4",), {"alpha": 0.6, "beta": 0.85, "threshold": 0.7, "gain": 1.2,
                                      "gain_syn": 0.9, "bias": 0.05}),
        Op("fl", "flatten", ("cb",)),
        Op("fc", "linear", ("fl",), {"out_features": 5}),
        Op("ro", "li", ("fc",), {"beta": 0.9, "gain": 0.5, "bias": 0.1}),
        Op("out", "output", ("ro",)),
    ], seed=2)


def dense_graph():
    """Rate-coded spikes through linear layers and lif (zero reset, plain and with per-neuron
    coefficients, v_reset), if (subtract, per-neuron threshold) neurons."""
    rng = np.random.default_rng(3)
    return with_tensors([
        Op("x", "input", params={"shape": [12], "encoding": "rate"}),
        Op("f1", "linear", ("x",), {"out_features": 16}),
        Op("l1", "lif", ("f1",), {"beta": 0.7, "reset": "zero", "surrogate": "fast_sigmoid", "slope": 4.0}),
        Op("f2", "linear", ("l1",), {"out_features": 16, "bias": False}),
        Op("l2", "lif", ("f2",), {"reset": "zero", "v_reset": 0.2, "gain": 1.5, "bias": 0.1, "threshold": 0.6},
           tensors={"beta": rng.uniform(0.5, 0.95, 16).astype(np.float32)}),
        Op("f3", "linear", ("l2",), {"out_features": 10}),
        Op("l3", "if", ("f3",), tensors={"threshold": rng.uniform(0.5, 1.5, 10).astype(np.float32)}),
        Op("f4", "linear", ("l3",), {"out_features": 4}),
        Op("out", "output", ("f4",)),
    ], seed=4, w_gain=2.5)


def _close(a, b, rtol=1e-4, atol=1e-5, what="", scale=0.0):
    s = max(float(np.abs(b).max()), scale, 1e-30)
    np.testing.assert_allclose(a / s, b / s, rtol=rtol, atol=atol, err_msg=what)


def check_against_torch(graph, x, labels, rates=True):
    ref = run_dense(graph, x, labels)
    vals, mems, loss, grads, vgrads = torch_run(graph, x, labels)
    for op in graph:
        v = ref.values[op.name]
        assert v.dtype == np.float32 and v.shape == x.shape[:2] + op.type.shape, op.name
        if op.kind in SPIKING:
            np.testing.assert_array_equal(v, vals[op.name], err_msg=op.name)
            if rates:
                assert 0 < v.mean() < 1, (op.name, v.mean())
        np.testing.assert_allclose(v, vals[op.name], rtol=1e-5, atol=1e-5, err_msg=op.name)
    assert ref.membranes.keys() == mems.keys()
    for n, m in mems.items():
        np.testing.assert_allclose(ref.membranes[n], m, rtol=1e-5, atol=1e-5, err_msg=n)
    assert abs(ref.loss - loss) < 1e-5
    assert ref.grads.keys() == grads.keys()
    for key, g in grads.items():
        assert ref.grads[key].dtype == np.float32
        # a bias before a batch-norm with batch statistics has gradient 0 (rounding noise): scaled as its weight's
        _close(ref.grads[key], g, what=str(key), scale=float(np.abs(grads.get((key[0], "weight"), 0)).max()))
    assert ref.value_grads.keys() == vgrads.keys()
    for n, g in vgrads.items():
        assert ref.value_grads[n].dtype == np.float32
        _close(ref.value_grads[n], g, what=n)
    return ref


@pytest.mark.parametrize("bn_stats", ["batch", "running"])
def test_conv_graph_matches_torch(bn_stats):
    x = np.random.default_rng(0).uniform(0, 2, (5, 3, 3, 10, 10)).astype(np.float32)
    ref = check_against_torch(conv_graph(bn_stats), x, np.array([0, 3, 4]))
    assert np.abs(ref.grads["c1", "weight"]).max() > 0


def test_dense_graph_matches_torch():
    x = (np.random.default_rng(0).random((6, 4, 12)) < 0.4).astype(np.float32)
    check_against_torch(dense_graph(), x, np.array([0, 1, 2, 3]))


def test_tiny_resnet_matches_torch():
    g = read_yaml(ROOT / "examples" / "models" / "tiny_resnet.yaml")
    x = np.random.default_rng(0).uniform(0, 2, (3, 2, 3, 32, 32)).astype(np.float32)
    check_against_torch(g, x, np.array([1, 7]), rates=False)


def test_inference_skips_backward():
    g = dense_graph()
    x = (np.random.default_rng(1).random((3, 2, 12)) < 0.5).astype(np.float32)
    full = run_dense(g, x, np.array([1, 2]))
    inf = run_dense(g, x, np.array([1, 2]), training=False)
    assert inf.loss == full.loss and not inf.grads and not inf.value_grads
    assert math.isnan(run_dense(g, {"x": x}).loss)
    with pytest.raises(ValueError, match="expected"):
        run_dense(g, x[:, :, :5])
    rsnn = load_model("rsnn", seed=0)
    with pytest.raises(ValueError, match=r"op 'prev1' \(delay\): the dense reference .* has no recurrence"):
        run_dense(rsnn, np.zeros((2, 1, 700), np.float32))


@pytest.mark.parametrize("name, T, B", [("mlp", 4, 3), ("vgg11", 2, 1)])
def test_zoo_forward(name, T, B):
    g = load_model(name, seed=0)
    (inp,) = g.inputs
    x = np.random.default_rng(0).random((T, B) + inp.type.shape).astype(np.float32)
    if inp.params["encoding"] != "direct":
        x = (x < 0.3).astype(np.float32)
    ref = run_dense(g, x, training=False)
    for op in g:
        v = ref.values[op.name]
        assert v.shape == (T, B) + op.type.shape and v.dtype == np.float32 and np.isfinite(v).all(), op.name
        if op.type.kind == "spike":
            assert np.isin(v, (0, 1)).all(), op.name
    assert set(ref.membranes) == {op.name for op in g if op.kind in ("lif", "if", "cubalif", "li")}
