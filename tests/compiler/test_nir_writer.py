"""The NIR writer: export -> read back gives the same graph (ops, shapes, parameters, weights);
export -> snnTorch's `import_from_nir` gives the same spikes as spikeforge's simulator; ops
NIR cannot express are errors naming the op."""

import nir
import norse.torch as norse
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.init import init_tensors
from spikeforge.compiler.frontends.nir_reader import read_nir
from spikeforge.compiler.frontends.nir_writer import to_nir
from spikeforge.hwsim.functional import Simulator, new_stats
from spikeforge.isa import Graph, Op, SpikeforgeError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _graph(ops, seed=0, scale=1.0):
    g = init_tensors(Graph.build("t", ops), seed)
    for op in g:
        for k in ("weight", "bias"):
            if k in op.tensors:
                op.tensors[k] *= np.float32(scale)
    return g


def _round_trip(g, tmp_path, **kw):
    nir.write(tmp_path / "g.nir", to_nir(g))
    return read_nir(tmp_path / "g.nir", name=g.name, **kw)


def _same(a, b):
    """Equal ops by name (the order of equal-rank ops may differ: HDF5 keeps names sorted); an
    `output` op the writer added for a graph that marks none is left out."""
    ops = {op.name: op for op in b if not (op.kind == "output" and op.name not in {o.name for o in a})}
    assert set(ops) == {op.name for op in a}
    for op in a:
        assert ops[op.name] == op, (op, ops[op.name])


def test_every_writable_op_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.uniform(0.5, 0.95, s).astype(np.float32)  # noqa: E731
    g = _graph([
        Op("x", "input", params={"shape": [2, 8, 8], "encoding": "rate"}),
        Op("c1", "conv2d", ("x",), {"out_channels": 4, "kernel": 3, "padding": 1, "bias": False}),
        Op("l1", "lif", ("c1",), {"reset": "zero", "v_reset": 0.1, "surrogate": "fast_sigmoid", "slope": 4.0,
                                  "gain": 1.5, "bias": 0.05}, {"beta": f32(4, 1, 1)}),
        Op("c2", "conv2d", ("l1",), {"out_channels": 4, "kernel": 3, "padding": 1, "groups": 2, "dilation": 1}),
        Op("n2", "if", ("c2",), {"threshold": 0.8, "gain": 2.0}),
        Op("a", "add", ("n2", "l1")),
        Op("s", "scale", ("a",), {"scale": 0.5}),
        Op("pa", "pool2d", ("s",), {"mode": "avg", "kernel": 2}),
        Op("ps", "pool2d", ("pa",), {"mode": "sum", "kernel": 2, "stride": 1, "padding": 1}),
        Op("t", "threshold", ("ps",), {"threshold": 0.7}),
        Op("f", "flatten", ("t",)),
        Op("fc", "linear", ("f",), {"out_features": 6, "bias": False}),
        Op("cb", "cubalif", ("fc",), {"alpha": 0.6, "beta": 0.85, "gain": 1.2, "gain_syn": 0.9,
                                      "bias": 0.05}, {"threshold": f32(6)}),
        Op("fc2", "linear", ("cb",), {"out_features": 3}),
        Op("li", "li", ("fc2",), {"beta": 0.9, "gain": 0.5}),
        Op("acc", "li", ("li",), {"beta": 1.0, "gain": 2.0}),
    ])
    written = to_nir(g)
    assert {k: type(v).__name__ for k, v in written.nodes.items()} == {
        "x": "Input", "c1": "Conv2d", "l1": "LIF", "c2": "Conv2d", "n2": "IF", "a": "Scale", "s": "Scale",
        "pa": "AvgPool2d", "ps": "SumPool2d", "t": "Threshold", "f": "Flatten", "fc": "Linear", "cb": "CubaLIF",
        "fc2": "Affine", "li": "LI", "acc": "I", "output": "Output"}
    _same(g, _round_trip(g, tmp_path))
    c1 = _graph([Op("x", "input", params={"shape": [2, 16]}),
                 Op("c", "conv1d", ("x",), {"out_channels": 4, "kernel": 3, "stride": 2, "padding": 1, "groups": 2}),
                 Op("n", "lif", ("c",), {"beta": 0.5}), Op("out", "output", ("n",))])
    _same(c1, _round_trip(c1, tmp_path))


@pytest.mark.parametrize("model", ["mlp", "rsnn", "examples/models/digits_mlp.yaml", "examples/models/digits_rsnn.yaml"])
def test_zoo_and_yaml_models_round_trip(model, tmp_path):
    g = load_model(model, seed=1)
    _same(g, _round_trip(g, tmp_path))


def test_imported_models_round_trip(tmp_path):
    """snnTorch's and Norse's files, read with their conventions, written and read back."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), snn.Leaky(beta=torch.rand(5) * 0.5 + 0.4, threshold=torch.ones(5),
                                                               init_hidden=True))
    nir.write(tmp_path / "s.nir", export_to_nir(net, torch.randn(1, 6), ignore_dims=[0]))
    g = read_nir(tmp_path / "s.nir")
    _same(g, _round_trip(g, tmp_path))
    cells = norse.SequentialState(torch.nn.Linear(6, 5), norse.LIFCell(), torch.nn.Linear(5, 3), norse.LIFBoxCell())
    nir.write(tmp_path / "n.nir", norse.to_nir(cells, torch.randn(1, 6)), compression=None)
    g = read_nir(tmp_path / "n.nir", exporter="norse")
    _same(g, _round_trip(g, tmp_path))  # written in snnTorch's convention, read back with the default


def test_a_recurrence_is_written_as_a_cycle(tmp_path):
    """rsnn's delay becomes the edge lif1 -> rec closing the cycle lif1 -> rec -> add1 -> lif1 (its
    name in lif1's metadata); snnTorch's RLeaky and RSynaptic files come back as they were read."""
    written = to_nir(load_model("rsnn"))
    assert "prev1" not in written.nodes and ("lif1", "rec") in written.edges
    assert written.nodes["lif1"].metadata["spikeforge"]["delay"] == "prev1"
    torch.manual_seed(0)
    for rec in (snn.RLeaky(beta=torch.full((5,), 0.9), linear_features=5, init_hidden=True),
                snn.RSynaptic(alpha=torch.full((5,), 0.6), beta=torch.full((5,), 0.8), all_to_all=False,
                              V=torch.linspace(0.1, 0.5, 5), init_hidden=True)):
        net = torch.nn.Sequential(torch.nn.Linear(6, 5), rec)
        nir.write(tmp_path / "r.nir", export_to_nir(net, torch.randn(1, 6), ignore_dims=[0]))
        g = read_nir(tmp_path / "r.nir")
        _same(g, _round_trip(g, tmp_path))


def test_delays_nir_cannot_say():
    base = [Op("x", "input", params={"shape": [4]}), Op("fc", "linear", ("x",), {"out_features": 4})]
    two = _graph(base + [Op("a", "add", ("fc", "rec")), Op("n", "lif", ("a",)), Op("d1", "delay", ("n",), {"shape": [4]}),
                         Op("d2", "delay", ("d1",), {"shape": [4]}), Op("rec", "linear", ("d2",), {"out_features": 4})])
    with pytest.raises(SpikeforgeError, match=r"^t: op 'd2' \(delay\): NIR has no delay of two steps"):
        to_nir(two)
    # the cycle n -> rec -> a -> n delayed after rec, not where it leaves the neuron n
    late = _graph(base + [Op("a", "add", ("fc", "d")), Op("n", "lif", ("a",)), Op("rec", "linear", ("n",), {"out_features": 4}),
                          Op("d", "delay", ("rec",), {"shape": [4], "spikes": False})])
    with pytest.raises(SpikeforgeError, match=r"^t: op 'd' \(delay\): NIR marks no delays; a reader delays each cycle"):
        to_nir(late)
    feed_forward = _graph(base + [Op("d", "delay", ("fc",), {"shape": [4], "spikes": False}), Op("a", "add", ("fc", "d"))])
    with pytest.raises(SpikeforgeError, match=r"op 'd' \(delay\): NIR marks no delays"):
        to_nir(feed_forward)


@pytest.mark.parametrize("op, msg", [
    (Op("p", "pool2d", ("x",), {"mode": "max", "kernel": 2}), r"op 'p' \(pool2d\): NIR has no max pooling"),
    (Op("b", "batchnorm", ("x",)), r"op 'b' \(batchnorm\): NIR has no batch norm"),
    (Op("r", "reshape", ("x",), {"shape": [4, 16]}), r"op 'r' \(reshape\): NIR has no reshape"),
    (Op("n", "lif", ("x",), {"beta": 1.2}), r"op 'n' \(lif\): beta must be in \[0, 1\)"),
    (Op("n", "if", ("x",), {"bias": 0.1}), r"op 'n' \(if\): a neuron without leak \(beta = 1\) with a bias"),
    (Op("a/b", "lif", ("x",)), r"op 'a/b': NIR node names cannot hold '/'"),
])
def test_what_nir_cannot_express(op, msg):
    g = _graph([Op("x", "input", params={"shape": [4, 4, 4]}), op])
    with pytest.raises(SpikeforgeError, match="^t: " + msg):
        to_nir(g)


# ---- into snnTorch ---------------------------------------------------------------------------------

def _snntorch_run(path, x):
    """snnTorch's import_from_nir module stepped over time: the output at each step."""
    net = import_from_nir(nir.read(path))
    with torch.no_grad():
        return np.stack([net(torch.from_numpy(x[t]))[0].numpy() for t in range(x.shape[0])])


@pytest.mark.parametrize("case", ["mlp", "conv"])
def test_snntorch_import_gives_the_same_spikes(case, tmp_path):
    """snnTorch's import builds Leaky(reset_mechanism="zero", reset_delay=False) for every LIF:
    spikeforge's `lif` with reset zero. Its Flatten flattens the batch axis too (it takes NIR's
    per-sample axes as they are), so the conv case ends in a spiking feature map."""
    lif = {"reset": "zero"}
    if case == "mlp":
        ops = [Op("x", "input", params={"shape": [20]}), Op("fc1", "linear", ("x",), {"out_features": 32}),
               Op("l1", "lif", ("fc1",), {"beta": 0.85, **lif}), Op("fc2", "linear", ("l1",), {"out_features": 10}),
               Op("l2", "lif", ("fc2",), {"beta": 0.9, "threshold": 0.5, **lif})]
        x = np.random.default_rng(0).uniform(0, 1, (12, 4, 20)).astype(np.float32)
    else:
        ops = [Op("x", "input", params={"shape": [2, 8, 8]}),
               Op("c1", "conv2d", ("x",), {"out_channels": 4, "kernel": 3, "padding": 1}),
               Op("l1", "lif", ("c1",), {"beta": 0.8, "threshold": 0.5, **lif}),
               Op("p", "pool2d", ("l1",), {"mode": "avg", "kernel": 2}),
               Op("c2", "conv2d", ("p",), {"out_channels": 6, "kernel": 3}),
               Op("l2", "lif", ("c2",), {"beta": 0.9, "threshold": 0.3, **lif})]
        x = np.random.default_rng(1).uniform(0, 1, (10, 2, 2, 8, 8)).astype(np.float32)
    g = _graph(ops, seed=3, scale=3.0)
    nir.write(tmp_path / "g.nir", to_nir(g))
    T, B = x.shape[:2]
    vals, mem, _ = Simulator(g).forward({"x": x}, new_stats(g, B, T, False), 0)
    for n in ("l1", "l2"):  # firing, and no spike left to float32 rounding order (torch sums differently)
        assert 0 < vals[n].mean() < 1 and np.abs(mem[n] - g[n].params["threshold"]).min() > 1e-5, n
    assert np.array_equal(_snntorch_run(tmp_path / "g.nir", x), vals["l2"])
