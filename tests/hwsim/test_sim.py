"""The Numba simulator: agreement with the NumPy dense reference, measured work, cost trends,
determinism and the `simulate` CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.yaml_reader import graph_from_doc
from spikeforge.hwsim.functional import Simulator, new_stats, run
from spikeforge.hwsim.reference import run_dense
from spikeforge.hwsim.simulate import make_input, simulate
from spikeforge.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"


def _graph(name):
    if name.endswith(".yaml"):
        return load_model(str(EXAMPLES / name), seed=1)
    return load_model(name, seed=1)


@pytest.mark.parametrize("name", ["mlp", "tiny_resnet.yaml", "sdt"])
def test_spikes_membranes_and_gradients_equal_the_numpy_reference(name):
    g = _graph(name)
    T, B = 4, 2
    x = make_input(g, T, B, None, seed=3)
    labels = np.array([1, 7]) % int(np.prod(g.outputs[0].type.shape))
    ref = run_dense(g, x, labels, training=False)  # batch-norm with running statistics, as sim.forward
    sim = Simulator(g)
    stats = new_stats(g, B, T, True)
    vals, mem, _ = sim.forward({g.inputs[0].name: x}, stats, 0)
    rates = []
    for op in g:
        if op.kind == "output":
            continue
        if op.type.kind == "spike" and op.kind != "input":
            assert np.array_equal(vals[op.name], ref.values[op.name]), op.name
            rates.append(vals[op.name].mean())
        else:
            np.testing.assert_allclose(vals[op.name], ref.values[op.name], rtol=1e-5, atol=1e-4, err_msg=op.name)
        if op.name in mem:
            np.testing.assert_allclose(mem[op.name], ref.membranes[op.name], rtol=1e-5, atol=1e-4, err_msg=op.name)  # summation order
    assert 0.01 < np.mean(rates) < 0.9  # the network really spikes
    ref = run_dense(g, x, labels, training=True)  # tiny_resnet: batch-norm with batch statistics
    res = run(Simulator(g), {g.inputs[0].name: x}, labels, True, record=True)
    for op in g:
        if op.type.kind == "spike" and op.kind != "input":
            assert np.array_equal(res.values[op.name], ref.values[op.name]), op.name
    assert res.loss == pytest.approx(ref.loss, rel=1e-5)
    assert set(res.grads) == set(ref.grads)
    for key, gr in ref.grads.items():
        # a bias before a batch-norm with batch statistics has gradient 0 (rounding noise): scaled as its weight's
        scale = max(np.abs(gr).max(), np.abs(ref.grads.get((key[0], "weight"), 0)).max(), 1e-6)
        np.testing.assert_allclose(res.grads[key] / scale, gr / scale, atol=1e-4, err_msg=str(key))


def _one_layer(kind: str, spike: bool):
    layer = ({"linear": {"out_features": 16}} if kind == "linear" else
             {"conv2d": {"out_channels": 6, "kernel": 3, "stride": 2}})  # padded taps are no events
    shape = [40] if kind == "linear" else [3, 9, 9]
    doc = {"name": "one", "input": {"shape": shape, "encoding": "rate" if spike else "direct"},
           "layers": [layer, {"lif": None}, {"flatten": None}, {"linear": {"out_features": 4}}, {"li": None}]}
    return graph_from_doc(doc, "one.yaml")


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_dense_input_gives_the_analytic_operation_count(kind):
    g = _one_layer(kind, spike=True)
    c = compile_model(g, "edge4", training=False, timesteps=3, batch=2)
    x = np.ones((3, 2) + g.inputs[0].type.shape, np.float32)
    rep = simulate(g, c.program, c.arch, x)
    first = rep["layers"][0]
    dense = next(li for li in g.layers() if li.name == first["name"]).work.syn_ops * 3 * 2
    assert first["ops"]["fp"] == dense


def test_fp_ops_scale_with_the_input_rate_and_costs_are_monotone():
    g = load_model("mlp", seed=0)
    c = compile_model(g, "default", training=False, timesteps=4, batch=4)
    dense_fc1 = 784 * 512 * 4 * 4
    out = []
    for r in (0.05, 0.2, 0.5):
        rep = simulate(g, c.program, c.arch, make_input(g, 4, 4, r, seed=5))
        fc1 = next(l for l in rep["layers"] if l["name"] == "fc1")["ops"]["fp"]
        assert fc1 / dense_fc1 == pytest.approx(r, rel=0.05)  # 12,544 Bernoulli draws
        out.append(rep["totals"])
    for a, b in zip(out, out[1:]):
        assert a["energy_pj"] < b["energy_pj"] and a["cycles"] <= b["cycles"]
        assert a["synaptic_ops"] < b["synaptic_ops"]


def test_dense_mode_counts_every_iteration():
    g = load_model("mlp", seed=0)
    c = compile_model(g, "default", training=True, timesteps=2, batch=1)
    x = make_input(g, 2, 1, 0.1, seed=0)
    sparse = simulate(load_model("mlp", seed=0), c.program, c.arch, x, mode="sparse")["totals"]
    dense = simulate(load_model("mlp", seed=0), c.program, c.arch, x, mode="dense")["totals"]
    assert dense["synaptic_ops"] == dense["dense_synaptic_ops"] == sparse["dense_synaptic_ops"]
    assert sparse["synaptic_ops"] < 0.5 * dense["synaptic_ops"]
    assert dense["energy_breakdown_pj"]["compute"] > sparse["energy_breakdown_pj"]["compute"]


def _cli(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_simulate_report_is_complete_and_byte_identical_for_the_same_seed(capsys, tmp_path):
    for d in ("a", "b"):
        rc, _, err = _cli(capsys, "simulate", "mlp", "--train", "-T", "3", "-B", "2", "--seed", "4", "-o", tmp_path / d)
        assert rc == 0, err
    a, b = (tmp_path / "a" / "report.json").read_bytes(), (tmp_path / "b" / "report.json").read_bytes()
    assert a == b
    rep = json.loads(a)
    t = rep["totals"]
    assert set(t["energy_breakdown_pj"]) == {"compute", "sram", "noc", "dram", "static"}
    assert t["energy_pj"] == pytest.approx(sum(t["energy_breakdown_pj"].values()), rel=1e-9)
    assert set(t["dram_bytes_by_category"]) == {"weights", "activations", "errors", "bptt_state", "gradients", "optimizer"}
    assert t["dram_bytes"] == sum(t["dram_bytes_by_category"].values()) > 0
    assert t["gpu_baseline_dram_bytes"] > 0 and t["dram_reduction_vs_gpu"] is not None
    assert t["cycles"] > 0 and t["latency_s"] > 0 and t["noc_hop_bytes"] >= t["noc_bytes"] > 0
    assert 0 < t["synaptic_ops"] < t["dense_synaptic_ops"]
    assert rep["config"]["seed"] == 4 and rep["config"]["batch"] == 2
    lif = next(l for l in rep["layers"] if l["name"] == "lif1")
    assert 0 < lif["spike_rate"] < 1 and 0 < lif["grad_nonzero"] <= 1
    assert all(0 <= u <= 1 for c in rep["cores"] for u in c["utilisation"].values())
    from spikeforge.isa.arch import load_arch
    chip = load_arch("default")
    for c in rep["cores"]:
        assert c["sram_peak_bytes"] and all(0 < n <= chip.buffer(b).bytes for b, n in c["sram_peak_bytes"].items())
    rc, _, _ = _cli(capsys, "simulate", "mlp", "--train", "-T", "3", "-B", "2", "--seed", "5", "-o", tmp_path / "c")
    assert (tmp_path / "c" / "report.json").read_bytes() != a


def test_simulate_records_spikes_and_runs_a_compile_directory(capsys, tmp_path):
    rc, _, err = _cli(capsys, "compile", "mlp", "-T", "2", "-B", "3", "-o", tmp_path / "c")
    assert rc == 0, err
    x = (np.random.default_rng(0).random((3, 784)) < 0.3).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    rc, out, err = _cli(capsys, "simulate", tmp_path / "c", "--input", tmp_path / "in.npz", "--record-spikes",
                        "-o", tmp_path / "s", "--json")
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["config"]["timesteps"] == 2 and rep["config"]["batch"] == 3 and not rep["config"]["training"]
    with np.load(tmp_path / "s" / "spikes.npz") as f:
        assert f["lif1"].shape == (2, 3, 512) and set(np.unique(f["lif1"])) <= {0.0, 1.0}
        assert np.array_equal(f["input"][0], x) and np.array_equal(f["input"][1], x)


@pytest.mark.parametrize("argv, needle", [
    (["simulate", "mlp", "--mode", "fast"], "--mode"),
    (["simulate", "mlp", "--input-rate", "1.5"], "--input-rate"),
    (["simulate", "mlp", "--record-spikes"], "-o"),
    (["simulate", "mlp", "--train", "--optimizer", "rmsprop"], "--optimizer"),
    (["simulate", "mlp", "--input", "{bad}", "-o", "{o}"], "expected shape"),
])
def test_simulate_errors_are_one_line(capsys, tmp_path, argv, needle):
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 5), np.float32))
    argv = [a.replace("{bad}", str(tmp_path / "bad.npz")).replace("{o}", str(tmp_path / "o")) for a in argv]
    rc, _, err = _cli(capsys, *argv)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err
    assert not (tmp_path / "o").exists()


def test_adam_costs_its_ops_and_its_state_traffic_in_dram(capsys):
    """With no global buffer (naive), Adam's m and v (2 FP32 words per parameter) are loaded
    from DRAM and stored back by every update: 2 x 2 x 4 B per parameter more than SGD's update,
    which reads and writes the weights alone; nothing else changes."""
    from spikeforge.isa.arch import load_arch

    reps = {}
    for opt in ("sgd", "adam"):
        rc, out, err = _cli(capsys, "simulate", "mlp", "--train", "-T", "2", "-B", "2", "--dataflow", "naive",
                            "--optimizer", opt, "--json")
        assert rc == 0, err
        reps[opt] = json.loads(out)
    sgd, adam = (reps[k]["totals"] for k in ("sgd", "adam"))
    assert reps["adam"]["config"]["optimizer"] == "adam" and reps["sgd"]["config"]["optimizer"] == "sgd"
    params = sum(li.params for li in load_model("mlp", weights=False).layers() if li.kind == "linear")
    a, s = adam["dram_bytes_by_category"], sgd["dram_bytes_by_category"]
    assert a["optimizer"] - s["optimizer"] == 2 * 2 * 4 * params
    assert all(a[k] == s[k] for k in s if k != "optimizer") and s["optimizer"] == 2 * 2 * params  # FP16 weights
    chip = load_arch("default")
    ea, es = adam["energy_breakdown_pj"], sgd["energy_breakdown_pj"]
    assert ea["compute"] - es["compute"] == pytest.approx(params * (chip.energy.adam - chip.energy.sgd), rel=1e-6)
    # the state passes the weights' tile buffer: DMA in, read and written by the update, DMA out
    wb = chip.buffer("fp_weights").read_pj_per_bit
    assert ea["sram"] - es["sram"] == pytest.approx(4 * 64 * params * wb, rel=1e-6)
    assert ea["dram"] - es["dram"] == pytest.approx(16 * params * 8 * chip.dram.pj_per_bit, rel=1e-6)
    assert adam["cycles"] > sgd["cycles"]


def test_fp16_arithmetic_rounds_stored_values_and_stays_close_to_fp32():
    from spikeforge.isa.arch import arch_doc, arch_from_doc

    doc, _ = arch_doc("default")
    fp16 = arch_from_doc({**doc, "arithmetic": "fp16"}, "fp16.yaml")
    assert fp16.arithmetic == arch_from_doc(doc).arithmetic == "fp16"  # an FP16 chip computes in FP16
    assert arch_from_doc({**doc, "arithmetic": "fp32"}).arithmetic == "fp32"
    assert arch_from_doc({**doc, "precision": "fp32"}).arithmetic == "fp32"
    g = load_model("mlp", seed=0)
    x = make_input(g, 4, 2, 0.3, seed=1)
    stats = new_stats(g, 2, 4, False)
    v16, m16, _ = Simulator(g, fp16=True).forward({"input": x}, stats, 0)
    v32, m32, _ = Simulator(g).forward({"input": x}, new_stats(g, 2, 4, False), 0)
    u = m16["lif1"]
    assert np.array_equal(u, u.astype(np.float16).astype(np.float32))
    assert np.mean(np.abs(u - m32["lif1"]) < 1e-2) > 0.98  # a few threshold crossings flip
    assert np.mean(v16["lif1"] == v32["lif1"]) > 0.99
    with pytest.raises(Exception, match="arithmetic"):
        arch_from_doc({**doc, "arithmetic": "int8"}, "bad.yaml")
