"""Recurrent layers: the spikeforge simulator against snnTorch's `RLeaky` and `RSynaptic`.

Networks Linear -> RLeaky | RSynaptic -> Linear -> Leaky run three ways, as in test_snntorch.py:
in snnTorch step by step (init_hidden=False), exported by `export_to_nir` and read back (the cycle
`lif -> w_rec -> lif` becomes a `delay` op before `w_rec`), and built natively from YAML with
the snnTorch tensors copied in. Spikes must be identical at every step, membranes (and synaptic
currents) equal to 1e-5, and the loss and every gradient of one BPTT step equal to 1e-4 relative
to the largest.

snnTorch's recurrent update is U_t = beta U_{t-1} + x_t + rec(S_{t-1}) - R_t threshold (RLeaky) and
I_t = alpha I_{t-1} + x_t + rec(S_{t-1}), U_t = beta U_{t-1} + I_t - R_t threshold (RSynaptic),
with S_{-1} = 0, so that rec(S_{-1}) is rec's bias: in the IR, `add(x, rec)` feeds the neuron and
`rec` reads `delay(neuron)`, whose value at step 0 is zero. `all_to_all=False` scales the
previous spikes by a per-neuron V; snnTorch exports it as a Linear with the diagonal matrix
diag(V), which the IR holds as a full linear layer: its gradient's diagonal is V's gradient.
"""

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch.export_nir import export_to_nir

from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.yaml_reader import graph_from_doc
from spikeforge.hwsim.functional import Simulator, new_stats, output_name, run

pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph is being deprecated",
                                        "ignore::DeprecationWarning", "ignore::UserWarning")

CASES = [  # recurrent kind, all_to_all, widths (in, hidden, out), beta, alpha, threshold, gain, input, T
    ("rleaky", True, (12, 24, 6), 0.9, None, 1.0, 2.0, "spike", 10),
    ("rleaky", False, (12, 16, 6), 0.8, None, 0.8, 2.5, "real", 8),
    ("rsynaptic", True, (12, 24, 6), 0.85, 0.6, 1.0, 1.5, "spike", 10),
    ("rsynaptic", False, (12, 16, 6), 0.9, 0.5, 1.2, 1.5, "real", 8),
]


def _modules(case, init_hidden):
    """Linear -> RLeaky | RSynaptic -> Linear -> Leaky, seeded weights scaled by the case's gain."""
    kind, a2a, (n_in, n, n_out), beta, alpha, thr, gain, _, _ = case
    torch.manual_seed(3)
    fc1, fc2 = torch.nn.Linear(n_in, n), torch.nn.Linear(n, n_out)
    common = dict(beta=torch.full((n,), beta), threshold=torch.full((n,), thr), init_hidden=init_hidden)
    if a2a:
        common["linear_features"] = n
    else:
        common.update(all_to_all=False, V=torch.linspace(-0.6, 0.9, n))
    rec = snn.RLeaky(**common) if kind == "rleaky" else snn.RSynaptic(alpha=torch.full((n,), alpha), **common)
    out = snn.Leaky(beta=torch.full((n_out,), 0.85), threshold=torch.full((n_out,), 0.7), init_hidden=init_hidden)
    with torch.no_grad():
        for lin in (fc1, fc2) + ((rec.recurrent,) if a2a else ()):
            lin.weight.mul_(gain)
            lin.bias.mul_(gain)
    return [fc1, rec, fc2, out]


def snntorch_run(mods, x, labels):
    """Returns spikes of the recurrent and output layers, membranes (and the recurrent layer's
    synaptic current), the loss and every gradient (keys: module index, parameter name)."""
    fc1, rec, fc2, out = mods
    synaptic = isinstance(rec, snn.RSynaptic)
    state = list(rec.init_rsynaptic() if synaptic else rec.init_rleaky())
    mem_out = out.init_leaky()
    rec_spk, rec_mem, rec_syn, out_spk, out_mem = [], [], [], [], []
    for t in range(x.shape[0]):
        h = fc1(torch.from_numpy(x[t]))
        state = list(rec(h, *state))
        spk = state[0]
        s2, mem_out = out(fc2(spk), mem_out)
        rec_spk.append(spk)
        rec_mem.append(state[-1])
        if synaptic:
            rec_syn.append(state[1])
        out_spk.append(s2)
        out_mem.append(mem_out)
    loss = F.cross_entropy(torch.stack(out_spk).mean(0), torch.from_numpy(labels))
    loss.backward()
    grads = {(i, n): p.grad.numpy().copy() for i, m in enumerate(mods) for n, p in m.named_parameters()
             if p.grad is not None}
    npy = lambda ts: torch.stack(ts).detach().numpy()  # noqa: E731
    return {"rec": npy(rec_spk), "out": npy(out_spk), "rec_mem": npy(rec_mem), "out_mem": npy(out_mem),
            "rec_syn": npy(rec_syn) if synaptic else None}, loss.item(), grads


def nir_graph(case, tmp_path):
    """Exported by snnTorch (nirtorch names the recurrent layer's nodes '1.lif', '1.w_rec')."""
    path = tmp_path / "rnn.nir"
    nir.write(path, export_to_nir(torch.nn.Sequential(*_modules(case, True)), torch.zeros(1, case[2][0]),
                                  ignore_dims=[0]))
    g = load_model(str(path))
    return g, {"fc1": "0", "rec": "1.lif", "w_rec": "1.w_rec", "fc2": "2", "out": "3"}


def native_graph(case):
    kind, a2a, (n_in, n, n_out), beta, alpha, thr, _, _, _ = case
    mods = _modules(case, False)
    neuron = ({"lif": {"beta": beta, "threshold": thr}} if kind == "rleaky" else
              {"cubalif": {"alpha": alpha, "beta": beta, "threshold": thr}})
    layers = [{"linear": {"out_features": n}, "name": "fc1"},
              {"add": None, "name": "sum", "inputs": ["fc1", "w_rec"]},
              {**neuron, "name": "rec"},
              {"delay": {"shape": [n]}, "name": "prev", "inputs": "rec"},
              {"linear": {"out_features": n, "bias": a2a}, "name": "w_rec", "inputs": "prev"},
              {"linear": {"out_features": n_out}, "name": "fc2", "inputs": "rec"},
              {"lif": {"beta": 0.85, "threshold": 0.7}, "name": "out"}]
    g = graph_from_doc({"name": "rnn", "input": {"shape": [n_in]}, "layers": layers}, "rnn.yaml")
    for name, lin in (("fc1", mods[0]), ("fc2", mods[2])):
        g[name].tensors.update(weight=lin.weight.detach().numpy().copy(), bias=lin.bias.detach().numpy().copy())
    r = mods[1].recurrent
    if a2a:
        g["w_rec"].tensors.update(weight=r.weight.detach().numpy().copy(), bias=r.bias.detach().numpy().copy())
    else:
        g["w_rec"].tensors["weight"] = np.diag(r.V.detach().numpy()).astype(np.float32)
    return g, {"fc1": "fc1", "rec": "rec", "w_rec": "w_rec", "fc2": "fc2", "out": "out"}


def _input(kind, shape, seed):
    rng = np.random.default_rng(seed)
    if kind == "spike":
        return (rng.random(shape) < 0.4).astype(np.float32)
    return rng.uniform(0, 1.5, shape).astype(np.float32)


def check(case, g, names):
    kind, a2a, (n_in, n, n_out), *_, inp, T = case
    B = 4
    x = _input(inp, (T, B, n_in), seed=len(names) + T)
    labels = np.arange(B) % n_out
    ref, loss_ref, grads_ref = snntorch_run(_modules(case, False), x, labels)
    assert output_name(g) == names["out"]
    delay = next(op for op in g if op.kind == "delay")
    assert delay.inputs == (names["rec"],) and g[names["w_rec"]].inputs == (delay.name,)
    sim = Simulator(g)
    vals, mem, cur = sim.forward({g.inputs[0].name: x}, new_stats(g, B, T, True), 0)
    for key in ("rec", "out"):
        assert np.array_equal(vals[names[key]], ref[key]), key
        assert 0.05 < vals[names[key]].mean() < 0.95, key
        np.testing.assert_allclose(mem[names[key]], ref[f"{key}_mem"], rtol=0, atol=1e-5, err_msg=key)
    if kind == "rsynaptic":
        np.testing.assert_allclose(cur[names["rec"]], ref["rec_syn"], rtol=0, atol=1e-5)
    res = run(Simulator(g), {g.inputs[0].name: x}, labels, True)
    assert res.loss == pytest.approx(loss_ref, rel=1e-5, abs=1e-6)
    ours = {(0, "weight"): res.grads[names["fc1"], "weight"], (0, "bias"): res.grads[names["fc1"], "bias"],
            (2, "weight"): res.grads[names["fc2"], "weight"], (2, "bias"): res.grads[names["fc2"], "bias"]}
    w_rec = res.grads[names["w_rec"], "weight"]
    if a2a:
        ours[1, "recurrent.weight"] = w_rec
        ours[1, "recurrent.bias"] = res.grads[names["w_rec"], "bias"]
    else:
        ours[1, "V"] = np.diag(w_rec)
    assert set(ours) == set(grads_ref)
    for key, gr in grads_ref.items():
        scale = max(float(np.abs(gr).max()), 1e-6)
        np.testing.assert_allclose(ours[key] / scale, gr / scale, rtol=0, atol=1e-4, err_msg=str(key))
    assert np.abs(grads_ref[1, "recurrent.weight" if a2a else "V"]).max() > 0  # BPTT reaches the recurrent weights
    return ref, vals, mem, res, grads_ref


@pytest.mark.parametrize("route", ["nir", "native"])
@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{'all' if c[1] else 'one'}" for c in CASES])
def test_recurrent_layers_match_snntorch(case, route, tmp_path):
    g, names = nir_graph(CASES[case], tmp_path) if route == "nir" else native_graph(CASES[case])
    check(CASES[case], g, names)


def test_convolutional_recurrence_matches_snntorch():
    """RLeaky(conv2d_channels=3, kernel_size=3): the recurrent weights a 3x3 convolution (padding 1)
    of the previous step's spike map. snnTorch 1.0 cannot export it (its NIR type inference
    fails), so only the YAML route: conv -> add(conv, rec) -> lif, rec = conv2d(delay(lif))."""
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)
    rec = snn.RLeaky(beta=0.85, threshold=1.0, conv2d_channels=3, kernel_size=3)
    with torch.no_grad():
        conv.weight.mul_(2.0)
        rec.recurrent.weight.mul_(1.5)
    T, B = 8, 2
    x = _input("real", (T, B, 1, 6, 6), seed=9)
    spk, mem = rec.init_rleaky()
    spikes, mems = [], []
    for t in range(T):
        spk, mem = rec(conv(torch.from_numpy(x[t])), spk, mem)
        spikes.append(spk)
        mems.append(mem)
    labels = np.array([3, 100])
    loss = F.cross_entropy(torch.stack(spikes).mean(0).reshape(B, -1), torch.from_numpy(labels))
    loss.backward()
    layers = [{"conv2d": {"out_channels": 3, "kernel": 3, "padding": 1}, "name": "conv"},
              {"add": None, "name": "sum", "inputs": ["rec", "conv"]},
              {"lif": {"beta": 0.85}, "name": "lif"},
              {"delay": {"shape": [3, 6, 6]}, "name": "prev", "inputs": "lif"},
              {"conv2d": {"out_channels": 3, "kernel": 3, "padding": 1}, "name": "rec", "inputs": "prev"},
              {"flatten": None, "name": "flat", "inputs": "lif"}]
    g = graph_from_doc({"name": "crnn", "input": {"shape": [1, 6, 6]}, "layers": layers}, "crnn.yaml")
    for name, m in (("conv", conv), ("rec", rec.recurrent)):
        g[name].tensors.update(weight=m.weight.detach().numpy().copy(), bias=m.bias.detach().numpy().copy())
    vals, mem_sf, _ = Simulator(g).forward({"input": x}, new_stats(g, B, T, True), 0)
    assert np.array_equal(vals["lif"], torch.stack(spikes).detach().numpy()) and 0.05 < vals["lif"].mean() < 0.95
    np.testing.assert_allclose(mem_sf["lif"], torch.stack(mems).detach().numpy(), rtol=0, atol=1e-5)
    res = run(Simulator(g), {"input": x}, labels, True)
    assert res.loss == pytest.approx(loss.item(), rel=1e-5)
    for (name, key), p in (((n, k), p) for n, m in (("conv", conv), ("rec", rec.recurrent))
                           for k, p in m.named_parameters()):
        gr = p.grad.numpy()
        np.testing.assert_allclose(res.grads[name, key] / np.abs(gr).max(), gr / np.abs(gr).max(), rtol=0, atol=1e-4)
