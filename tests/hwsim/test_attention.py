"""Spiking attention blocks against PyTorch twins, and the `matmul` op (shapes, measured work,
where the cost walk puts it).

Each block (the Spike-driven Transformer's SDSA, Spikformer's SSA, QKFormer's SSA, Q-K token
and Q-K channel attention) is built with the zoo's own builder behind a `stem` (conv1d k=1 from
the network input) and ahead of a linear readout, and run by hwsim.functional. Its twin is
written independently in torch from the papers' formulas, token-major where the papers are
(q @ k^T @ v on [N, d] heads), with snnTorch `Leaky` (beta 0.9, subtract reset, ATan alpha 2:
the IR's default `lif`) for every neuron. Spikes must be identical at every step for every
neuron layer; the loss equal; every weight, bias and batch-norm gradient equal within 1e-4 of
the largest, the stem's weight gradient (sum over tokens of dL/d(block input) x input^T)
standing for the gradient of the block's input."""

import re

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F

from spikeforge.compiler.frontends.init import init_tensors
from spikeforge.compiler.frontends.zoo import _op, _qkta, _sdsa, _ssa
from spikeforge.hwsim import kernels as K
from spikeforge.hwsim.functional import Simulator, run
from spikeforge.isa import Graph, Op, SpikeforgeError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

D, H, N, T, B, CLASSES = 16, 4, 8, 4, 2, 3


def _qkca(ops, p, x, dim):
    """QKFormer's Q-K channel attention: a channel mask lif(sum over tokens of Q) times K, then
    the projection (the paper's alternative to token attention; its CIFAR model uses the latter)."""
    from spikeforge.compiler.frontends.zoo import _cbl
    q, k = (_cbl(ops, p + m + ".", x, dim, 1, bias=False) for m in "qk")
    a = _op(ops, p + "attn_lif", "lif", _op(ops, p + "q_sum", "sum", q, axis=1), threshold=0.5)
    return _cbl(ops, p + "proj.", _op(ops, p + "mask", "mul", k, a), dim, 1, bias=True)


BLOCKS = {
    "sdsa": lambda ops, x: _sdsa(ops, "b.", x, D),
    "spikformer_ssa": lambda ops, x: _ssa(ops, "b.", x, D, H, N, qk_first=True, qkv_bias=True),
    "qkformer_ssa": lambda ops, x: _ssa(ops, "b.", x, D, H, N, qk_first=False, qkv_bias=False),
    "qkta": lambda ops, x: _qkta(ops, "b.", x, D, H, N),
    "qkca": lambda ops, x: _qkca(ops, "b.", x, D),
}


def block_graph(kind: str, seed: int = 0) -> Graph:
    ops = [Op("x", "input", (), {"shape": [D, N]})]
    y = BLOCKS[kind](ops, _op(ops, "stem", "conv1d", "x", out_channels=D, kernel=1, bias=False))
    _op(ops, "fc", "linear", _op(ops, "flat", "flatten", y), out_features=CLASSES)
    _op(ops, "output", "output", "fc")
    g = init_tensors(Graph.build(kind, ops), seed)
    rng = np.random.default_rng(seed)
    for op in g:  # batch-norm affine away from the identity (and running statistics, unused in training)
        if op.kind == "batchnorm":
            c = op.type.shape[0]
            op.tensors.update(gamma=rng.uniform(0.6, 1.4, c), beta=rng.uniform(-0.3, 0.3, c),
                              mean=rng.uniform(-0.2, 0.2, c), var=rng.uniform(0.5, 1.5, c))
            op.tensors = {k: np.asarray(v, np.float32) for k, v in op.tensors.items()}
    return g


class Twin:
    """The blocks in torch, one time step per call; neuron state kept by name."""

    def __init__(self, g: Graph):
        self.g = g
        self.P = {(op.name, k): torch.tensor(v, requires_grad=k in ("weight", "bias", "gamma", "beta"))
                  for op in g for k, v in op.tensors.items()}
        self.mods, self.mems, self.spikes = {}, {}, {}

    def lif(self, name, x, thr=1.0):
        if name not in self.mods:
            self.mods[name] = snn.Leaky(beta=0.9, threshold=thr, init_hidden=False)
            self.mems[name] = torch.zeros_like(x)
        s, self.mems[name] = self.mods[name](x, self.mems[name])
        self.spikes.setdefault(name, []).append(s)
        return s

    def cbl(self, p, x, lif=True):
        w = self.P[(p + "conv", "weight")]
        y = F.conv1d(x, w, self.P.get((p + "conv", "bias")))
        # batch-norm in train mode, the batch's statistics of this step (the IR's default, stats: batch)
        y = F.batch_norm(y, None, None, self.P[(p + "bn", "gamma")], self.P[(p + "bn", "beta")], True, 0.1, 1e-5)
        return self.lif(p + "lif", y) if lif else y

    def heads(self, x):  # [B, D, N] -> token-major heads [B, H, N, d], as the papers' code
        return x.transpose(1, 2).reshape(x.shape[0], N, H, D // H).permute(0, 2, 1, 3)

    def merge(self, x):  # [B, H, N, d] -> [B, D, N]
        return x.permute(0, 2, 1, 3).reshape(x.shape[0], N, D).transpose(1, 2)

    def block(self, kind, x):
        if kind == "sdsa":
            s = self.lif("b.lif", x)
            q, k, v = (self.cbl(f"b.{m}.", s) for m in "qkv")
            kv = self.lif("b.kv_lif", (k * v).sum(2, keepdim=True), 0.5)
            return self.cbl("b.proj.", q * kv, lif=False) + x
        if kind in ("spikformer_ssa", "qkformer_ssa"):
            q, k, v = (self.heads(self.cbl(f"b.{m}.", x)) for m in "qkv")
            if kind == "spikformer_ssa":  # Zhou et al. 2023: (q k^T) v * scale
                y = (q @ k.transpose(-2, -1)) * 0.125 @ v
            else:  # Zhou et al. 2024: q (k^T v) * scale
                y = (q @ (k.transpose(-2, -1) @ v)) * 0.125
            return self.cbl("b.proj.", self.lif("b.attn_lif", self.merge(y), 0.5))
        q, k = (self.cbl(f"b.{m}.", x) for m in "qk")
        if kind == "qkta":  # token mask per head: sum of the head's channels of Q
            qh = q.reshape(q.shape[0], H, D // H, N)
            a = self.lif("b.attn_lif", qh.sum(2, keepdim=True), 0.5)
            y = (a * k.reshape(qh.shape)).reshape(q.shape)
        else:  # channel mask: sum over tokens of Q
            y = self.lif("b.attn_lif", q.sum(2, keepdim=True), 0.5) * k
        return self.cbl("b.proj.", y)

    def run(self, kind, x, labels):
        logits = []
        for t in range(x.shape[0]):
            h = F.conv1d(torch.from_numpy(x[t]), self.P[("stem", "weight")])
            y = self.block(kind, h).flatten(1)
            logits.append(F.linear(y, self.P[("fc", "weight")], self.P[("fc", "bias")]))
        loss = F.cross_entropy(torch.stack(logits).mean(0), torch.from_numpy(labels))
        loss.backward()
        return loss.item()


def _input(seed):
    return np.random.default_rng(seed).uniform(0, 1.5, (T, B, D, N)).astype(np.float32)


@pytest.mark.parametrize("kind", list(BLOCKS))
def test_block_matches_torch_twin(kind):
    g = block_graph(kind)
    x, labels = _input(1), np.array([0, 2])
    twin = Twin(g)
    loss_ref = twin.run(kind, x, labels)
    res = run(Simulator(g), {"x": x}, labels, True, record=True)
    vals = res.values
    lifs = [op.name for op in g if op.kind == "lif"]
    assert sorted(lifs) == sorted(twin.spikes)
    for name in lifs:
        ref = torch.stack(twin.spikes[name]).detach().numpy().reshape(vals[name].shape)
        assert np.array_equal(vals[name], ref), (name, np.abs(vals[name] - ref).sum())
        assert 0 < ref.mean() < 1, (name, ref.mean())  # every neuron layer fires, and not always
    assert res.loss == pytest.approx(loss_ref, rel=1e-5)
    trainable = [k for k, v in twin.P.items() if v.requires_grad]
    assert set(res.grads) == set(trainable)
    largest = max(float(np.abs(twin.P[k].grad.numpy()).max()) for k in trainable)
    for key in trainable:
        ref = twin.P[key].grad.numpy()
        if key[1] == "bias" and {c.kind for c in g.consumers(key[0])} == {"batchnorm"}:
            # a bias ahead of a batch-norm with batch statistics has no effect: its gradient is zero up to rounding
            assert np.abs(res.grads[key]).max() <= 1e-6 * largest and np.abs(ref).max() <= 1e-6 * largest, key
            continue
        err = float(np.abs(res.grads[key] - ref).max()) / max(float(np.abs(ref).max()), 1e-12)
        assert err <= 1e-4, (key, err)
    assert np.abs(twin.P[("stem", "weight")].grad.numpy()).max() > 0  # the error reaches the block's input


# ---- the op ----------------------------------------------------------------------------------

def _mm_graph(a_shape, b_shape, **params):
    return Graph.build("m", [Op("a", "input", (), {"shape": list(a_shape), "encoding": "rate"}),
                             Op("b", "input", (), {"shape": list(b_shape)}),
                             Op("m", "matmul", ("a", "b"), params)])


@pytest.mark.parametrize("a, b, params, msg", [
    ((4,), (4, 3), {}, "rank 2 or more"),
    ((2, 4, 3), (3, 3, 5), {}, "leading (batch) axes"),
    ((2, 4, 3), (2, 4, 5), {}, "inner sizes differ: op(a) is [.., 4, 3] but op(b) is [.., 4, 5]"),
    ((2, 3, 4), (2, 5, 4), {"transpose_a": True, "transpose_b": True}, "op(a) is [.., 4, 3] but op(b) is [.., 4, 5]"),
])
def test_matmul_shape_errors(a, b, params, msg):
    with pytest.raises(SpikeforgeError, match=r"op 'm' \(matmul\): .*" + re.escape(msg)):
        _mm_graph(a, b, **params)


def test_matmul_types_and_dense_work():
    g = _mm_graph((2, 4, 3), (2, 4, 5), transpose_a=True, scale=0.5)
    li = {l.name: l for l in g.layers()}["m"]
    assert str(li.out_type) == "real[2,3,5]"
    assert (li.work.syn_ops, li.work.arith, li.params) == (2 * 3 * 5 * 4, "AC", 0)
    g2 = Graph.build("m", [Op("a", "input", (), {"shape": [3, 4]}), Op("b", "input", (), {"shape": [4, 2]}),
                           Op("m", "matmul", ("a", "b"))])
    assert {l.name: l for l in g2.layers()}["m"].work.arith == "MAC"  # a real streamed operand multiplies


def test_kernels_count_nonzero_products():
    rng = np.random.default_rng(3)
    a = ((rng.random((3, 5, 7)) < 0.3) * rng.integers(1, 3, (3, 5, 7))).astype(np.float32)
    b = ((rng.random((3, 7, 4)) < 0.5) * rng.normal(size=(3, 7, 4))).astype(np.float32)
    e = ((rng.random((3, 5, 4)) < 0.6) * rng.normal(size=(3, 5, 4))).astype(np.float32)
    nz = lambda m: (m != 0).astype(np.int64)  # noqa: E731
    out = np.zeros((3, 5, 4), np.float32)
    ops = K.matmul_fwd(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-6, atol=1e-6)
    assert np.array_equal(ops, (nz(a) @ nz(b)).sum(2))  # per output row: the non-zero products
    ga = np.zeros_like(a)
    ops = K.matmul_fwd(e, np.ascontiguousarray(b.transpose(0, 2, 1)), ga)
    np.testing.assert_allclose(ga, e @ b.transpose(0, 2, 1), rtol=1e-5, atol=1e-6)
    assert np.array_equal(ops, (nz(e) @ nz(b).transpose(0, 2, 1)).sum(2))
    gb = np.zeros_like(b)
    ops = K.matmul_wg(a, e, gb)
    np.testing.assert_allclose(gb, a.transpose(0, 2, 1) @ e, rtol=1e-5, atol=1e-6)
    assert np.array_equal(ops, nz(a).sum(2) * nz(e).sum(2))
    assert ops.sum() == (nz(a).transpose(0, 2, 1)[:, :, :, None] * nz(e)[:, None]).sum()


def test_measured_work_lands_on_the_engines():
    """The simulator's measured matmul products are the FP, BP and WG engines' synaptic ops in
    the cost walk; the stationary operand is read from the FP weights buffer once per sample and
    step, and both operands are written to the BPTT banks (hand counts)."""
    from spikeforge.compiler.driver import compile_model
    from spikeforge.hwsim.cost import run_costs

    g = block_graph("spikformer_ssa")
    x, labels = _input(2), np.array([1, 0])
    res = run(Simulator(g), {"x": x}, labels, True)
    c = compile_model(g, "default", training=True, timesteps=T, batch=B)
    costs = run_costs(c.program, g, c.arch, res.stats)
    for name in ("b.attn", "b.attn_v"):
        st, lay = res.stats[name], costs.activity.layers[name]
        assert st.fp_ops.sum() > 0 and st.bp_ops.sum() > 0 and st.wg_ops.sum() > 0
        assert lay.syn == {"fp": st.fp_ops.sum(), "bp": st.bp_ops.sum(), "wg": st.wg_ops.sum()}
        assert lay.dense_syn["fp"] == T * B * g[name].type.size * (D // H if name == "b.attn" else N)
    # attn = K^T Q: both operands spikes, 1 bit each; attn_v = V (K^T Q): the stationary attn is real (FP16)
    attn, attn_v = costs.activity.layers["b.attn"], costs.activity.layers["b.attn_v"]
    assert attn.ops["ac"] == res.stats["b.attn"].fp_ops.sum() + res.stats["b.attn"].wg_ops.sum()
    assert attn.ops["mac"] == res.stats["b.attn"].bp_ops.sum()
    spikes_bits, real_bits = D * N, H * N * N * 16
    assert attn.sram_read_bits["fp_weights"] == T * B * spikes_bits
    assert attn_v.sram_read_bits["fp_weights"] == T * B * real_bits
    assert attn.sram_write_bits["bp_potential"] == T * B * 2 * spikes_bits
    assert attn_v.sram_write_bits["bp_potential"] == T * B * (spikes_bits + real_bits)


def test_operands_cross_the_noc_to_every_core_of_a_2d_product():
    """Hand count, naive order, a product without leading axes (a = k transposed, b = q stationary):
    every piece needs all of both operands, so each producer piece multicasts its spikes (4-byte
    events at the planned rate) to every other core that holds a piece of the product, every
    (sample, step)."""
    import math

    from spikeforge.compiler.driver import compile_model
    from spikeforge.mapping.plan import EVENT_BYTES

    n = 64
    ops = [Op("x", "input", (), {"shape": [16, n]}),
           Op("qc", "conv1d", ("x",), {"out_channels": 32, "kernel": 1}), Op("q", "lif", ("qc",)),
           Op("kc", "conv1d", ("x",), {"out_channels": 32, "kernel": 1}), Op("k", "lif", ("kc",)),
           Op("attn", "matmul", ("k", "q"), {"transpose_a": True}),
           Op("flat", "flatten", ("attn",)), Op("fc", "linear", ("flat",), {"out_features": 4}),
           Op("o", "output", ("fc",))]
    g = init_tensors(Graph.build("mm2d", ops))
    steps, batch, rate = 2, 2, 0.1
    c = compile_model(g, "default", training=True, timesteps=steps, batch=batch, dataflow="naive", spike_rate=rate)
    readers = {p.core for p in c.plan.pieces_of("attn")}
    assert len(readers) > 1
    for name, group in (("q", "qc"), ("k", "kc")):
        want = sum(math.ceil((p.hi - p.lo) * n * rate) * EVENT_BYTES * len(readers - {p.core})
                   for p in c.plan.pieces_of(group))
        sent = sum(i.args[2] * math.prod(loop.count for loop in loops) for core in c.program.cores
                   for i, loops in c.program.walk(core)
                   if i.op == "noc.send" and i.args[0] == "spike" and i.args[3] == name)
        assert want > 0 and sent == want * steps * batch, name


def test_a_core_with_several_heads_receives_the_union_of_what_they_read():
    """Hand count, naive order, a product with heads all on one core: each producer piece sends
    that core the union of the heads' ranges it holds (not the largest single need)."""
    import math

    from spikeforge.compiler.driver import compile_model
    from spikeforge.mapping.plan import EVENT_BYTES

    h, d, n = 4, 8, 64
    ops = [Op("x", "input", (), {"shape": [16, n]})]
    for m in ("q", "k"):
        ops += [Op(m + "c", "conv1d", ("x",), {"out_channels": h * d, "kernel": 1}), Op(m + "l", "lif", (m + "c",)),
                Op(m, "reshape", (m + "l",), {"shape": [h, d, n]})]
    ops += [Op("attn", "matmul", ("k", "q"), {"transpose_a": True}), Op("flat", "flatten", ("attn",)),
            Op("fc", "linear", ("flat",), {"out_features": 4}), Op("o", "output", ("fc",))]
    g = init_tensors(Graph.build("heads", ops))
    steps, batch, rate = 2, 2, 0.1
    c = compile_model(g, "default", training=True, timesteps=steps, batch=batch, dataflow="naive", spike_rate=rate)
    for name in ("q", "k"):
        want = 0
        for p in c.plan.pieces_of(name):
            for core in {r.core for r in c.plan.pieces_of("attn")} - {p.core}:
                heads = {u for r in c.plan.pieces_of("attn") if r.core == core for u in range(r.lo, r.hi)}
                want += math.ceil(len(heads & set(range(p.lo, p.hi))) * d * n * rate) * EVENT_BYTES
        sent = sum(i.args[2] * math.prod(loop.count for loop in loops) for core in c.program.cores
                   for i, loops in c.program.walk(core)
                   if i.op == "noc.send" and i.args[0] == "spike" and i.args[3] == name)
        assert want > 0 and sent == want * steps * batch, (name, sent, want * steps * batch)
