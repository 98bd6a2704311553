"""The spikeforge simulator (hwsim.functional) against snnTorch itself.

The same network is run three ways on the same input:
  * in snnTorch, step by step with `snn.Leaky(init_hidden=False)` (default subtract reset,
    default ATan surrogate with alpha=2);
  * exported by `snntorch.export_nir.export_to_nir`, read back by spikeforge's NIR frontend
    (`load_model(path.nir)`, default dt=1e-4) and run by `hwsim.functional.Simulator`;
  * built natively from a YAML document (`lif` layers with beta/threshold) with the snnTorch
    weights copied into `op.tensors`, and run by the same simulator.
Spikes must be identical at every step and layer, membranes equal to 1e-5, and one BPTT step
(loss and weight/bias gradients) equal to 1e-4 relative to the largest gradient.

Conventions matched (all are snnTorch's defaults, and spikeforge's `lif` follows them):
  * membrane: u_t = beta * u_{t-1} + x_t - r_t * threshold with r_t = (u_{t-1} > threshold)
    ("subtract" reset, delayed by one step, r_t detached from the autograd graph);
  * spike: s_t = (u_t > threshold), strict >; the membrane snnTorch returns is u_t *before* the
    reset that u_t's spike causes at step t+1, which is what the simulator reports as `mem`;
  * surrogate: ATan with alpha=2 <-> spikeforge params surrogate="atan", slope=2.0;
  * NIR: snnTorch writes tau = dt / (1 - beta) with dt = 1e-4 and no dt in the file, so the
    reader must be given dt = 1e-4 (its default) to get beta back (to float32 rounding);
    snnTorch's exporter writes v_reset = 0 whatever the reset mode, so reset="subtract" (the
    reader's default) must be given too; it only exports Leaky with per-neuron beta/threshold
    tensors (init_hidden=True modules), and the batch axis is dropped with ignore_dims=[0];
  * loss: `hwsim.functional.run` uses the value feeding the graph's `output` op (the last layer
    of a YAML graph without one), which for these graphs is the spike train of the last Leaky, so the torch loss is
    cross_entropy(mean_t spk_last, labels) (mean over the batch);
  * layouts: linear [out, in] and conv2d [Cout, Cin, kh, kw], as in torch; simulator arrays are
    [T, B, *shape], like a stack of snnTorch step outputs.
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


# ---- the networks ----------------------------------------------------------------------------

def _mlp(widths, betas, thresholds, gain, seed):
    """Linear/Leaky layers; widths e.g. (20, 32, 10). Returns a list of layer specs."""
    torch.manual_seed(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        lin = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            lin.weight.mul_(gain)
            lin.bias.mul_(gain)
        layers.append(("linear", lin))
        layers.append(("leaky", torch.full((n_out,), betas[i]), torch.full((n_out,), thresholds[i])))
    return layers


def _convnet(seed):
    """conv2d 1->4 3x3 padding 1 on 8x8, Leaky, flatten, linear 256->5, Leaky."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    lin = torch.nn.Linear(4 * 8 * 8, 5)
    with torch.no_grad():
        conv.weight.mul_(3.0)
        lin.weight.mul_(4.0)
    return [("conv2d", conv), ("leaky", torch.full((4, 8, 8), 0.85), torch.full((4, 8, 8), 1.0)),
            ("flatten", torch.nn.Flatten()), ("linear", lin),
            ("leaky", torch.full((5,), 0.9), torch.full((5,), 0.8))]


# ---- snnTorch: the reference run -------------------------------------------------------------

def snntorch_run(layers, x, labels):
    """Step-by-step snnTorch run. Returns {layer index: [T, B, ...] values}, {index: membranes},
    loss, {(index, 'weight'|'bias'): grad}. Leaky values are spikes; other layers their outputs."""
    mods = [l[1] if l[0] != "leaky" else snn.Leaky(beta=l[1], threshold=l[2], init_hidden=False)
            for l in layers]
    mems = {i: m.init_leaky() for i, m in enumerate(mods) if layers[i][0] == "leaky"}
    vals = {i: [] for i in range(len(layers))}
    mem_rec = {i: [] for i in mems}
    for t in range(x.shape[0]):
        h = torch.from_numpy(x[t])
        for i, m in enumerate(mods):
            if i in mems:
                h, mems[i] = m(h, mems[i])
                mem_rec[i].append(mems[i])
            else:
                h = m(h)
            vals[i].append(h)
    logits = torch.stack(vals[len(layers) - 1]).mean(0)
    loss = F.cross_entropy(logits, torch.from_numpy(labels))
    for m in mods:
        m.zero_grad()
    loss.backward()
    grads = {(i, n): p.grad.numpy().copy() for i, m in enumerate(mods) if layers[i][0] in ("linear", "conv2d")
             for n, p in m.named_parameters()}
    npy = lambda ts: torch.stack(ts).detach().numpy()  # noqa: E731
    return ({i: npy(v) for i, v in vals.items()}, {i: npy(v) for i, v in mem_rec.items()}, loss.item(), grads)


# ---- spikeforge graphs -----------------------------------------------------------------------

def nir_graph(layers, in_shape, tmp_path):
    """Export through snnTorch's NIR exporter (init_hidden=True Leaky with the same tensors) and
    read back with spikeforge's defaults (dt=1e-4, reset='subtract'). Ops are named by the
    Sequential index, as nirtorch names the nodes."""
    mods = [l[1] if l[0] != "leaky" else snn.Leaky(beta=l[1], threshold=l[2], init_hidden=True)
            for l in layers]
    path = tmp_path / "net.nir"
    nir.write(path, export_to_nir(torch.nn.Sequential(*mods), torch.zeros(1, *in_shape), ignore_dims=[0]))
    g = load_model(str(path))
    names = {i: str(i) for i in range(len(layers))}
    return g, names


def native_graph(layers, in_shape):
    """The same network as a YAML document (scalar beta/threshold on `lif`), snnTorch weights
    copied into the built graph's op.tensors."""
    doc_layers = []
    for i, l in enumerate(layers):
        kind, mod = l[0], l[1]
        if kind == "linear":
            entry = {"linear": {"out_features": mod.out_features}}
        elif kind == "conv2d":
            entry = {"conv2d": {"out_channels": mod.out_channels, "kernel": list(mod.kernel_size),
                                "padding": list(mod.padding)}}
        elif kind == "flatten":
            entry = {"flatten": None}
        else:
            beta, thr = float(l[1].flatten()[0]), float(l[2].flatten()[0])
            assert (l[1] == beta).all() and (l[2] == thr).all()  # scalar params in the YAML
            entry = {"lif": {"beta": beta, "threshold": thr, "reset": "subtract",
                             "surrogate": "atan", "slope": 2.0}}
        entry["name"] = f"l{i}"
        doc_layers.append(entry)
    g = graph_from_doc({"name": "native", "input": {"shape": list(in_shape)}, "layers": doc_layers}, "native.yaml")
    for i, l in enumerate(layers):
        if l[0] in ("linear", "conv2d"):
            op = g[f"l{i}"]
            op.tensors["weight"] = l[1].weight.detach().numpy().astype(np.float32).copy()
            op.tensors["bias"] = l[1].bias.detach().numpy().astype(np.float32).copy()
    return g, {i: f"l{i}" for i in range(len(layers))}


# ---- the comparison --------------------------------------------------------------------------

def check(g, names, layers, x, labels):
    vals_ref, mems_ref, loss_ref, grads_ref = snntorch_run(layers, x, labels)
    (inp,) = g.inputs
    T, B = x.shape[:2]
    # `run` takes its logits from the value feeding the `output` op (NIR graphs), or from the
    # last layer when the graph has no `output` op (YAML graphs): here the last Leaky's spikes
    # either way, so the loss `run` uses is the one computed above
    assert output_name(g) == names[len(layers) - 1]
    leaky_ops = [names[i] for i, l in enumerate(layers) if l[0] == "leaky"]
    assert [op.name for op in g if op.kind == "lif"] == leaky_ops
    for op in g:
        if op.kind == "lif":
            assert op.params["reset"] == "subtract", op.name
            assert (op.params["surrogate"], op.params["slope"]) == ("atan", 2.0), op.name
    sim = Simulator(g)
    vals, mem, _ = sim.forward({inp.name: x}, new_stats(g, B, T, True), 0)
    for i, l in enumerate(layers):
        n = names[i]
        assert vals[n].shape == vals_ref[i].shape, n
        if l[0] == "leaky":
            assert np.array_equal(vals[n], vals_ref[i]), (n, np.abs(vals[n] - vals_ref[i]).sum())
            rate = vals[n].mean()
            assert 0 < rate < 1, (n, rate)
            np.testing.assert_allclose(mem[n], mems_ref[i], rtol=0, atol=1e-5, err_msg=n)
        else:
            np.testing.assert_allclose(vals[n], vals_ref[i], rtol=1e-5, atol=1e-5, err_msg=n)
    res = run(Simulator(g), {inp.name: x}, labels, True)
    assert res.loss == pytest.approx(loss_ref, rel=1e-5, abs=1e-6)
    compared = 0
    for (i, pn), gr in grads_ref.items():
        key = (names[i], pn)
        assert key in res.grads, key
        scale = max(float(np.abs(gr).max()), 1e-6)
        np.testing.assert_allclose(res.grads[key] / scale, gr / scale, rtol=0, atol=1e-4, err_msg=str(key))
        compared += 1
    assert compared == 2 * sum(l[0] in ("linear", "conv2d") for l in layers)
    # the gradient reaches the first layer (the surrogate path through every Leaky is live)
    assert np.abs(grads_ref[0, "weight"]).max() > 0


MLPS = [  # widths, betas, thresholds, weight gain, input kind, T
    ((20, 32, 10), (0.9, 0.8), (1.0, 0.7), 2.5, "spike", 6),
    ((20, 48, 10), (0.5, 0.95), (0.5, 1.2), 2.0, "real", 5),
    ((20, 16, 10), (0.95, 0.7), (1.5, 0.6), 3.5, "spike", 8),
    ((20, 32, 24, 10), (0.8, 0.9, 0.85), (1.0, 1.0, 0.9), 3.0, "real", 7),
]


def _input(kind, shape, seed):
    rng = np.random.default_rng(seed)
    if kind == "spike":
        return (rng.random(shape) < 0.4).astype(np.float32)
    return rng.uniform(0, 1.5, shape).astype(np.float32)


@pytest.mark.parametrize("route", ["nir", "native"])
@pytest.mark.parametrize("case", range(len(MLPS)))
def test_mlp_matches_snntorch(case, route, tmp_path):
    widths, betas, thrs, gain, kind, T = MLPS[case]
    layers = _mlp(widths, betas, thrs, gain, seed=case)
    B = 4
    x = _input(kind, (T, B, widths[0]), seed=case)
    labels = np.arange(B) % widths[-1]
    g, names = nir_graph(layers, (widths[0],), tmp_path) if route == "nir" else native_graph(layers, (widths[0],))
    check(g, names, layers, x, labels)


@pytest.mark.parametrize("route", ["nir", "native"])
@pytest.mark.parametrize("kind", ["spike", "real"])
def test_convnet_matches_snntorch(kind, route, tmp_path):
    layers = _convnet(seed=7)
    T, B = 6, 3
    x = _input(kind, (T, B, 1, 8, 8), seed=11)
    labels = np.array([0, 2, 4])
    g, names = nir_graph(layers, (1, 8, 8), tmp_path) if route == "nir" else native_graph(layers, (1, 8, 8))
    check(g, names, layers, x, labels)


def test_nir_beta_needs_snntorch_dt(tmp_path):
    """snnTorch writes tau = 1e-4 / (1 - beta) and no dt: read with dt=1e-4 (the default) beta comes
    back, read with another dt the dynamics differ (beta = 1 - dt / tau)."""
    layers = _mlp((20, 32, 10), (0.9, 0.8), (1.0, 0.7), 2.5, seed=0)
    g, _ = nir_graph(layers, (20,), tmp_path)
    np.testing.assert_allclose(g["1"].coef("beta"), 0.9, rtol=0, atol=1e-6)
    np.testing.assert_allclose(g["3"].coef("beta"), 0.8, rtol=0, atol=1e-6)
    other = load_model(str(tmp_path / "net.nir"), dt=5e-5)
    np.testing.assert_allclose(other["1"].coef("beta"), 0.95, rtol=0, atol=1e-6)  # 1 - 5e-5 / 1e-3
