"""The NIR frontend: snnTorch exports read back exactly, every supported node, and clear
errors for unsupported nodes, cycles it cannot read and malformed files."""

import shutil

import h5py
import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir

from spikeforge.compiler.frontends.nir_reader import read_nir
from spikeforge.isa import SpikeforgeError

pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph is being deprecated")


def _leaky(shape):
    """snnTorch exports Leaky only with per-neuron beta and threshold vectors."""
    return snn.Leaky(beta=torch.rand(shape) * 0.5 + 0.45, threshold=torch.rand(shape) + 0.5, init_hidden=True)


def _export(net, sample, path):
    graph = export_to_nir(net, sample, ignore_dims=[0])
    nir.write(path, graph)
    return graph


def _check_leaky(op, leaky):
    assert op.kind == "lif"
    np.testing.assert_allclose(op.coef("beta"), leaky.beta.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(op.coef("threshold"), leaky.threshold.numpy(), rtol=0, atol=1e-6)
    assert op.coef("gain") == 1.0 and op.coef("bias") == 0.0
    assert op.params["reset"] == "subtract"


def _check_weights(op, layer):
    assert np.array_equal(op.tensors["weight"], layer.weight.detach().numpy())
    assert np.array_equal(op.tensors["bias"], layer.bias.detach().numpy())
    assert op.params["bias"] is True


def _seq(in_shape, out_shape, **nodes):
    """A chain input -> nodes... -> output, built without NIR type checking."""
    names = ["in", *nodes, "out"]
    all_nodes = {"in": nir.Input(input_type=np.array(in_shape)), **nodes,
                 "out": nir.Output(output_type=np.array(out_shape))}
    return nir.NIRGraph(all_nodes, list(zip(names, names[1:])), type_check=False)


def _vec(*values):
    return np.array(values, dtype=np.float64)


# ---- snnTorch exports --------------------------------------------------------------------------

def test_snntorch_mlp(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 16), _leaky(16), torch.nn.Linear(16, 4), _leaky(4))
    _export(net, torch.randn(1, 20), tmp_path / "mlp.nir")
    g = read_nir(tmp_path / "mlp.nir")
    assert g.name == "mlp"
    assert [op.kind for op in g] == ["input", "linear", "lif", "linear", "lif", "output"]
    assert [op.type.shape for op in g] == [(20,), (16,), (16,), (4,), (4,), (4,)]
    assert [op.type.kind for op in g] == ["real", "real", "spike", "real", "spike", "spike"]
    ops = list(g)
    for op, layer in zip(ops[1::2], net[0::2]):
        _check_weights(op, layer)
    for op, layer in zip(ops[2::2], net[1::2]):
        _check_leaky(op, layer)


def test_snntorch_conv_net(tmp_path):
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), _leaky((4, 8, 8)), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(4, 6, 3), _leaky((6, 2, 2)), torch.nn.Flatten(), torch.nn.Linear(24, 5), _leaky(5))
    exported = _export(net, torch.randn(1, 2, 8, 8), tmp_path / "conv.nir")
    g = read_nir(tmp_path / "conv.nir")
    assert [op.kind for op in g] == ["input", "conv2d", "lif", "pool2d", "conv2d", "lif", "flatten",
                                     "linear", "lif", "output"]
    assert [op.type.shape for op in g] == [(2, 8, 8), (4, 8, 8), (4, 8, 8), (4, 4, 4), (6, 2, 2), (6, 2, 2),
                                           (24,), (5,), (5,), (5,)]
    ops = list(g)
    assert ops[1].params["padding"] == (1, 1) and ops[4].params["padding"] == (0, 0)
    assert ops[3].params["mode"] == "avg" and ops[3].params["kernel"] == (2, 2)
    assert (ops[6].params["start_dim"], ops[6].params["end_dim"]) == (0, -1)
    for i in (1, 4, 7):
        _check_weights(ops[i], net[{1: 0, 4: 3, 7: 6}[i]])
    for i in (2, 5, 8):
        _check_leaky(ops[i], net[{2: 1, 5: 4, 8: 7}[i]])
    assert read_nir(exported, name="conv") == g  # the in-memory graph reads the same


def test_snntorch_synaptic(tmp_path):
    torch.manual_seed(4)
    syn = snn.Synaptic(alpha=torch.rand(4) * 0.5 + 0.4, beta=torch.rand(4) * 0.5 + 0.4, threshold=torch.ones(4),
                       init_hidden=True)
    _export(torch.nn.Sequential(torch.nn.Linear(3, 4), syn), torch.randn(1, 3), tmp_path / "syn.nir")
    op = read_nir(tmp_path / "syn.nir")["1"]
    assert op.kind == "cubalif" and op.type.shape == (4,)
    np.testing.assert_allclose(op.coef("alpha"), syn.alpha.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(op.coef("beta"), syn.beta.numpy(), rtol=0, atol=1e-6)
    assert op.coef("gain_syn") == op.coef("gain") == op.coef("threshold") == 1.0


def test_dt_and_reset_are_explicit(tmp_path):
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), _leaky(2))
    _export(net, torch.randn(1, 3), tmp_path / "m.nir")
    assert read_nir(tmp_path / "m.nir", reset="zero")["1"].params["reset"] == "zero"
    with pytest.raises(SpikeforgeError, match=r"m.nir: node '1' \(LIF\): time constant 'tau' .* shorter than dt"):
        read_nir(tmp_path / "m.nir", dt=1e-2)
    for bad in (0, -1e-4, float("nan"), "1e-4"):
        with pytest.raises(SpikeforgeError, match="dt must be a positive number"):
            read_nir(tmp_path / "m.nir", dt=bad)
    with pytest.raises(SpikeforgeError, match="reset must be 'subtract' or 'zero'"):
        read_nir(tmp_path / "m.nir", reset="hard")


def test_snntorch_rleaky_reads_as_a_delayed_edge(tmp_path):
    """The cycle 1.lif -> 1.w_rec -> 1.lif is cut where the spikes leave the neuron: w_rec reads
    the previous step through a `delay` op, whose shape comes from the input from outside the cycle."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4),
                              snn.RLeaky(beta=torch.full((4,), 0.9), linear_features=4, init_hidden=True))
    _export(net, torch.randn(1, 5), tmp_path / "rec.nir")
    g = read_nir(tmp_path / "rec.nir")
    assert [(op.name, op.kind, op.inputs) for op in g] == [
        ("input", "input", ()), ("0", "linear", ("input",)), ("1.lif.delay", "delay", ("1.lif",)),
        ("1.w_rec", "linear", ("1.lif.delay",)), ("1.lif.add", "add", ("1.w_rec", "0")),
        ("1.lif", "lif", ("1.lif.add",)), ("output", "output", ("1.lif",))]
    assert str(g["1.lif.delay"].type) == "spike[4]" and g["1.lif.delay"].params == {"shape": (4,), "spikes": True}
    _check_weights(g["1.w_rec"], net[1].recurrent)


def _cycle(lif: nir.LIF, close: tuple[str, str]) -> nir.NIRGraph:
    nodes = {"in": nir.Input(input_type=np.array([2])), "fc": nir.Affine(np.eye(2), np.zeros(2)), "lif": lif,
             "rec": nir.Linear(np.eye(2)), "out": nir.Output(output_type=np.array([2]))}
    return nir.NIRGraph(nodes, [("in", "fc"), ("fc", "lif"), ("lif", "rec"), close, ("lif", "out")], type_check=False)


def test_cycles_the_reader_cannot_time_or_shape_are_errors():
    lif = nir.LIF(tau=_vec(1e-3, 1e-3), r=_vec(1, 1), v_leak=_vec(0, 0), v_threshold=_vec(1, 1))
    g = read_nir(_cycle(lif, ("rec", "fc")), name="loop")  # a loop through fc: fc reads in + rec(lif at t-1)
    assert g["rec"].inputs == ("lif.delay",) and g["fc.add"].inputs == ("in", "rec")
    no_neuron = _cycle(lif, ("rec", "fc"))
    no_neuron.edges[:] = [("in", "fc"), ("fc", "rec"), ("rec", "fc"), ("fc", "lif"), ("lif", "out")]
    with pytest.raises(SpikeforgeError, match=r"loop: node 'fc': cycle without a neuron \(fc -> rec -> fc\)"):
        read_nir(no_neuron, name="loop")
    scalar = nir.LIF(tau=np.array(1e-3), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(1.0))
    with pytest.raises(SpikeforgeError, match=r"node 'lif': its previous step feeds a cycle, but its shape is unknown"):
        read_nir(_cycle(scalar, ("rec", "fc")), name="loop")


# ---- every supported node, built directly ----------------------------------------------------

def test_cubalif_discretisation():
    dt = 1e-3
    tau_syn, tau_mem = _vec(2e-3, 4e-3), _vec(1e-2, 1e-2)
    node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=_vec(2.0, 2.0), v_leak=_vec(0.5, 0.5),
                       v_threshold=_vec(1.0, 1.5), w_in=_vec(3.0, 3.0))
    op = read_nir(_seq([2], [2], c=node), dt=dt)["c"]
    assert op.kind == "cubalif" and op.type.shape == (2,)
    np.testing.assert_allclose(op.coef("alpha"), 1 - dt / tau_syn, rtol=1e-6)
    np.testing.assert_allclose(op.coef("gain_syn"), 3.0 * dt / tau_syn, rtol=1e-6)
    assert op.coef("beta") == 0.9 and op.coef("gain") == 0.2 and op.coef("bias") == 0.05
    np.testing.assert_array_equal(op.coef("threshold"), [1.0, 1.5])


def test_if_with_v_reset():
    node = nir.IF(r=_vec(2.0, 2.0, 2.0), v_threshold=_vec(1.0, 1.0, 1.0), v_reset=_vec(0.25, 0.25, 0.25))
    op = read_nir(_seq([3], [3], n=node), dt=1e-3, reset="zero")["n"]
    assert op.kind == "if" and op.type.kind == "spike"
    assert op.params["gain"] == 0.002 and op.params["threshold"] == 1.0
    assert op.params["reset"] == "zero" and op.params["v_reset"] == 0.25 and not op.tensors


def test_per_neuron_v_reset_needs_subtract():
    node = nir.LIF(tau=_vec(1e-3, 1e-3), r=_vec(1.0, 1.0), v_leak=_vec(0.0, 0.0), v_threshold=_vec(1.0, 1.0),
                   v_reset=_vec(0.0, 0.5))
    assert read_nir(_seq([2], [2], n=node))["n"].params["reset"] == "subtract"
    with pytest.raises(SpikeforgeError, match="node 'n' \\(LIF\\): per-neuron v_reset"):
        read_nir(_seq([2], [2], n=node), reset="zero")


def test_li_and_integrator():
    li = nir.LI(tau=_vec(1e-3, 2e-3), r=_vec(1.0, 1.0), v_leak=_vec(0.1, 0.1))
    integ = nir.I(r=_vec(4.0, 4.0))
    g = read_nir(_seq([2], [2], li=li, integ=integ))
    op = g["li"]
    assert op.kind == "li" and op.type.kind == "real"
    np.testing.assert_allclose(op.coef("beta"), [0.9, 0.95], rtol=1e-6)
    np.testing.assert_allclose(op.coef("gain"), [0.1, 0.05], rtol=1e-6)
    np.testing.assert_allclose(op.coef("bias"), [0.01, 0.005], rtol=1e-6)
    op = g["integ"]
    assert op.kind == "li" and op.params == {"beta": 1.0, "gain": 4e-4, "bias": 0.0} and not op.tensors


def test_scale_threshold_and_scalar_params():
    g = read_nir(_seq([3], [3], s=nir.Scale(scale=_vec(1.0, 2.0, 3.0)), u=nir.Scale(scale=np.float64(0.5)),
                      t=nir.Threshold(threshold=_vec(0.5, 0.5, 0.5))))
    assert g["s"].kind == "scale" and np.array_equal(g["s"].tensors["scale"], np.float32([1, 2, 3]))
    assert g["u"].params["scale"] == 0.5 and not g["u"].tensors
    assert g["t"].kind == "threshold" and g["t"].params["threshold"] == 0.5 and g["t"].type.kind == "spike"


def test_sumpool_conv1d_and_same_padding(tmp_path):
    w2 = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
    conv2 = nir.Conv2d(input_shape=(6, 6), weight=w2, stride=1, padding="same", dilation=1, groups=1,
                       bias=np.zeros(2, np.float32))
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    nir.write(tmp_path / "p.nir", _seq([1, 6, 6], [2, 3, 3], c=conv2, p=pool))
    g = read_nir(tmp_path / "p.nir")
    assert g["c"].params["padding"] == (1, 1) and g["c"].type.shape == (2, 6, 6)
    assert g["p"].params["mode"] == "sum" and g["p"].type.shape == (2, 3, 3)
    assert np.array_equal(g["c"].tensors["weight"], w2)

    w1 = np.ones((4, 1, 3), np.float32)
    conv1 = nir.Conv1d(input_shape=10, weight=w1, stride=2, padding=1, dilation=1, groups=2,
                       bias=np.zeros(4, np.float32))
    op = read_nir(_seq([2, 10], [4, 5], c=conv1))["c"]
    assert op.kind == "conv1d" and op.type.shape == (4, 5)
    assert (op.params["kernel"], op.params["stride"], op.params["padding"], op.params["groups"]) == (3, 2, 1, 2)

    even = nir.Conv1d(input_shape=10, weight=np.ones((1, 1, 2)), stride=1, padding="same", dilation=1,
                      groups=1, bias=np.zeros(1))
    with pytest.raises(SpikeforgeError, match="node 'c' \\(Conv1d\\): 'same' padding is only supported"):
        read_nir(_seq([1, 10], [1, 10], c=even))


def test_per_channel_params_and_batch_axes():
    conv = nir.Conv2d(input_shape=(4, 4), weight=np.ones((3, 1, 1, 1)), stride=1, padding=0, dilation=1,
                      groups=1, bias=np.zeros(3))
    lif = nir.LIF(tau=_vec(1e-3, 2e-3, 4e-3), r=_vec(1, 1, 1), v_leak=_vec(0, 0, 0), v_threshold=_vec(1, 1, 1))
    flat = nir.Flatten(input_type={"input": np.array([1, 3, 4, 4])}, start_dim=1, end_dim=-1)  # counts batch
    g = read_nir(_seq([1, 1, 4, 4], [48], c=conv, n=lif, f=flat))
    assert g["in"].type.shape == (1, 4, 4)  # leading batch axis dropped: the conv wants 3 axes
    assert g["n"].tensors["beta"].shape == (3, 1, 1)
    assert (g["f"].params["start_dim"], g["f"].type.shape) == (0, (48,))


def test_nested_graph_from_file(tmp_path):
    lif = nir.LIF(tau=np.float64(2e-3), r=np.float64(1.0), v_leak=np.float64(0.0), v_threshold=np.float64(1.0))
    sub = _seq([3], [3], lif=lif)
    g = nir.NIRGraph({"in": nir.Input(input_type=np.array([3])), "sub": sub,
                      "out": nir.Output(output_type=np.array([3]))}, [("in", "sub"), ("sub", "out")],
                     type_check=False)
    nir.write(tmp_path / "nested.nir", g, compression=None)  # scalar parameters cannot be compressed
    ir = read_nir(tmp_path / "nested.nir")
    assert [(op.name, op.kind, op.inputs) for op in ir] == [
        ("in", "input", ()), ("sub.lif", "lif", ("in",)), ("out", "output", ("sub.lif",))]
    assert ir["sub.lif"].params["beta"] == 0.95 and ir["sub.lif"].params["gain"] == 0.05


def test_two_edges_into_one_node_add():
    lin = {k: nir.Linear(weight=np.eye(2)) for k in ("a", "b")}
    lif = nir.LIF(tau=_vec(1e-3, 1e-3), r=_vec(1, 1), v_leak=_vec(0, 0), v_threshold=_vec(1, 1))
    g = nir.NIRGraph({"in": nir.Input(input_type=np.array([2])), **lin, "lif": lif,
                      "out": nir.Output(output_type=np.array([2]))},
                     [("in", "a"), ("in", "b"), ("a", "lif"), ("b", "lif"), ("lif", "out")], type_check=False)
    ir = read_nir(g)
    assert ir["lif.add"].kind == "add" and ir["lif.add"].inputs == ("a", "b")
    assert ir["lif"].inputs == ("lif.add",) and ir["a"].params["bias"] is False


def test_unsupported_node_names_key(tmp_path):
    g = _seq([2], [2], d1=nir.Delay(delay=_vec(1.0, 2.0)))
    msg = r"node 'd1': unsupported NIR node Delay \(supported: Input, Output, Affine, .*\)"
    with pytest.raises(SpikeforgeError, match="NIRGraph: " + msg):
        read_nir(g)
    nir.write(tmp_path / "model.nir", g)
    with pytest.raises(SpikeforgeError, match="model.nir: " + msg):
        read_nir(tmp_path / "model.nir")


# ---- malformed files ---------------------------------------------------------------------------

@pytest.fixture
def real_file(tmp_path):
    g = _seq([4], [3], fc=nir.Affine(weight=np.ones((3, 4), np.float32), bias=np.zeros(3, np.float32)))
    nir.write(tmp_path / "ok.nir", g)
    return tmp_path / "ok.nir"


def test_malformed_files(tmp_path, real_file):
    assert read_nir(real_file)["fc"].type.shape == (3,)
    (tmp_path / "empty.nir").write_bytes(b"")
    (tmp_path / "garbage.nir").write_bytes(bytes(range(256)) * 8)
    data = real_file.read_bytes()
    (tmp_path / "cut.nir").write_bytes(data[: len(data) // 2])
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    cases = {"missing.nir": "file not found", "empty.nir": "file is empty",
             "garbage.nir": "not a NIR file \\(NIR files are HDF5",
             "cut.nir": "cannot read the HDF5 data \\(truncated or corrupt file\\?\\)",
             "other.h5": "HDF5 file has no 'node' group: not a NIR graph"}
    for name, msg in cases.items():
        with pytest.raises(SpikeforgeError, match=f"{name}: {msg}"):
            read_nir(tmp_path / name)
    with pytest.raises(SpikeforgeError, match="expects a .nir file path or a NIR node, got int"):
        read_nir(42)


def test_malformed_node(tmp_path, real_file):
    bad = tmp_path / "bad.nir"
    shutil.copy(real_file, bad)
    with h5py.File(bad, "a") as f:
        del f["node/nodes/fc/bias"]
    with pytest.raises(SpikeforgeError, match="bad.nir: node 'fc': malformed NIR Affine node"):
        read_nir(bad)


# ---- exporters' conventions and single nodes ---------------------------------------------------

def test_exporter_conventions():
    """The same nodes read with each exporter's conventions (docs/nir.md, 'Exporters')."""
    tau, tau_syn = _vec(2e-3, 4e-3), _vec(5e-3, 5e-3)
    nodes = dict(l=nir.LIF(tau=tau, r=_vec(2, 2), v_leak=_vec(0, 0), v_threshold=_vec(1, 1)),
                 i=nir.IF(r=_vec(3, 3), v_threshold=_vec(1, 1)),
                 c=nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau, r=_vec(1, 1), v_leak=_vec(0, 0), v_threshold=_vec(1, 1),
                               w_in=_vec(2, 2)))
    graph = _seq([2], [2], **nodes)
    g = read_nir(graph)  # snnTorch: forward Euler at dt 1e-4, subtract
    np.testing.assert_allclose(g["l"].coef("beta"), 1 - 1e-4 / tau, rtol=1e-7)
    np.testing.assert_allclose(g["l"].coef("gain"), 2e-4 / tau, rtol=1e-6)
    assert g["i"].params["gain"] == 3e-4 and g["c"].params["gain_syn"] == 0.04 and g["l"].params["reset"] == "subtract"
    g = read_nir(graph, exporter="norse")  # tau written as tau * dt, dt 1e-3; jumps; reset to v_reset
    np.testing.assert_allclose(g["l"].coef("beta"), 1 - 1e-6 / tau, rtol=1e-7)
    np.testing.assert_allclose(g["c"].coef("alpha"), 1 - 1e-6 / tau_syn, rtol=1e-7)
    assert g["i"].params["gain"] == 3.0 and g["c"].params["gain_syn"] == 2.0 and g["l"].params["reset"] == "zero"
    g = read_nir(graph, exporter="sinabs", dt=1e-3, reset="zero")  # exp(-dt/tau), input unscaled
    np.testing.assert_allclose(g["l"].coef("beta"), np.exp(-1e-3 / tau), rtol=1e-7)
    assert g["l"].params["gain"] == 2.0 and g["i"].params["gain"] == 3.0
    assert read_nir(graph, exporter="norse", reset="subtract")["l"].params["reset"] == "subtract"
    with pytest.raises(SpikeforgeError, match="exporter must be one of snntorch, norse, sinabs, got 'lava'"):
        read_nir(graph, exporter="lava")
    leak = _seq([2], [2], l=nir.LIF(tau=tau, r=_vec(1, 1), v_leak=_vec(0, 1), v_threshold=_vec(1, 1)))
    with pytest.raises(SpikeforgeError, match=r"node 'l' \(LIF\): v_leak must be 0 with exporter sinabs"):
        read_nir(leak, exporter="sinabs", reset="zero")


def test_single_node_is_wrapped(tmp_path):
    lif = nir.LIF(tau=_vec(1e-3, 2e-3, 4e-3), r=_vec(1, 1, 1), v_leak=_vec(0, 0, 0), v_threshold=_vec(1, 1, 1))
    nir.write(tmp_path / "lif.nir", lif)
    g = read_nir(tmp_path / "lif.nir")
    assert [(op.name, op.kind, op.inputs, op.type.shape) for op in g] == [
        ("input", "input", (), (3,)), ("lif", "lif", ("input",), (3,)), ("output", "output", ("lif",), (3,))]
    assert read_nir(nir.Affine(weight=np.ones((2, 5)), bias=np.zeros(2)))["affine"].type.shape == (2,)
    scalar = nir.LIF(tau=np.float64(1e-3), r=np.float64(1), v_leak=np.float64(0), v_threshold=np.float64(1))
    with pytest.raises(SpikeforgeError, match="LIF: a single LIF node with scalar parameters does not give its input"):
        read_nir(scalar)
    with pytest.raises(SpikeforgeError, match="holds a single Input node, not a network"):
        read_nir(nir.Input(input_type=np.array([3])))
    with h5py.File(tmp_path / "delay.nir", "w") as f:
        f.create_group("node")["type"] = "Delay"
    with pytest.raises(SpikeforgeError, match="delay.nir: top-level node: unsupported NIR node Delay"):
        read_nir(tmp_path / "delay.nir")
