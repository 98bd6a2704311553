"""The dataflow search: loop orders and memory homes change the costs, never the functional result;
the analytic price agrees with the simulator's walk; DRAM traffic against hand counts."""

import json
from pathlib import Path

import numpy as np
import pytest

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.stats import program_traffic
from spikeforge.hwsim.cost import reprice, run_costs
from spikeforge.hwsim.simulate import make_input, simulate
from spikeforge.isa import SpikeforgeError
from spikeforge.isa.arch import load_arch
from spikeforge.mapping.dataflow import dram_lower_bound
from spikeforge.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"
TINY = str(EXAMPLES / "tiny_resnet.yaml")
DATAFLOWS = ("naive", "ws_time", "ws_batch", "fused", "search")


def _run(model, dataflow, arch="default", mode="sparse", T=3, B=2):
    g = load_model(model, seed=2)
    c = compile_model(g, arch, training=True, timesteps=T, batch=B, dataflow=dataflow)
    rep = simulate(g, c.program, c.arch, make_input(g, T, B, None, seed=4), mode=mode, seed=4, record=True)
    return g, c, rep


@pytest.mark.parametrize("model", ["mlp", TINY, "rsnn"])
def test_the_functional_result_is_the_same_for_every_dataflow(model):
    results = [_run(model, d) for d in DATAFLOWS]
    g0, _, r0 = results[0]
    assert len({c.program.header.order for _, c, _ in results}) >= 2  # the nests really differ
    for g, c, rep in results[1:]:
        assert rep["totals"]["loss"] == r0["totals"]["loss"]
        for name, v in r0["_values"].items():
            assert rep["_values"][name].tobytes() == v.tobytes(), name
        for op in g0:  # the SGD update of the step: byte for byte
            for key, w in op.tensors.items():
                assert g[op.name].tensors[key].tobytes() == w.tobytes(), (op.name, key)


@pytest.mark.parametrize("model, arch", [("mlp", "default"), (TINY, "default"), (TINY, "edge4"), ("rsnn", "default")])
def test_the_analytic_price_agrees_with_the_dense_walk(model, arch):
    for dataflow in ("naive", "search"):
        _, c, rep = _run(model, dataflow, arch, mode="dense")
        t = rep["totals"]
        assert c.estimate.dram_bytes == t["dram_bytes"]  # DRAM traffic is fixed by the program
        assert c.estimate.energy_pj == pytest.approx(t["energy_pj"], rel=0.01)
        assert c.estimate.seconds == pytest.approx(t["latency_s"], rel=0.01)


@pytest.mark.parametrize("model, arch", [("mlp", "default"), (TINY, "default"), (TINY, "edge4"), ("mlp", "large64"),
                                         ("rsnn", "default")])
def test_the_searched_dataflow_simulates_no_worse_than_any_fixed_one(model, arch):
    energy = {d: _run(model, d, arch)[2]["totals"]["energy_pj"] for d in DATAFLOWS}
    assert energy["search"] <= min(energy[d] for d in DATAFLOWS[:4]) * (1 + 1e-9)
    assert energy["search"] < energy["naive"]


def test_naive_reads_every_weight_at_every_sample_and_step():
    """Hand count: FP reads every layer's weights and BP every layer's but the first's, per (b, t)."""
    T, B = 3, 2
    c = compile_model("mlp", "default", training=True, timesteps=T, batch=B, dataflow="naive")
    dram, _ = program_traffic(c)
    w = {li.name: li.params * 2 for li in c.graph.layers() if li.params}
    first = next(iter(w))
    assert not c.dataflow.resident_weights  # none of mlp's pieces fits a 2.25 KiB tile buffer
    assert dram["weights"] == B * T * (2 * sum(w.values()) - w[first])
    # gradients: read and written around every (b, t), then read once by the update
    assert dram["gradients"] >= (2 * B * T + 1) * sum(w.values())


@pytest.mark.parametrize("objective", ["energy", "latency"])
def test_simulate_keeps_the_candidate_whose_measured_walk_is_best(objective):
    g = load_model(TINY, seed=2)
    c = compile_model(g, "large64", training=True, timesteps=3, batch=2, objective=objective)
    assert len(c.alternatives) == len(c.programs) - 1 >= 4
    x = make_input(g, 3, 2, 0.6, seed=4)  # spikes far above the planned rate: the NoC weighs more
    weights = {(op.name, k): w.copy() for op in g for k, w in op.tensors.items()}
    rep = simulate(g, c.program, c.arch, x, seed=4, alternatives=c.alternatives, objective=objective)
    measured = {m["name"]: m for m in rep["dataflow"]["measured"]}
    assert set(measured) == {p.header.dataflow for p in c.programs}
    key = "energy_pj" if objective == "energy" else "latency_s"
    best = min(measured, key=lambda n: measured[n][key])
    assert rep["dataflow"]["compiled"] == c.dataflow.name and rep["dataflow"]["chosen"] == best
    assert rep["config"]["dataflow"] == best and rep["totals"][key] == measured[best][key]
    for op in g:  # each candidate walked the one functional step: a single update
        for k, w in op.tensors.items():
            g[op.name].tensors[k][...] = weights[(op.name, k)]
    for p in c.programs:  # the same walks, one program at a time
        r = simulate(g, p, c.arch, x, seed=4)
        assert r["totals"][key] == measured[p.header.dataflow][key]
        for op in g:
            for k, w in op.tensors.items():
                g[op.name].tensors[k][...] = weights[(op.name, k)]


@pytest.mark.parametrize("model, within", [("vgg11", 1.5), ("resnet18", 1.5)])
def test_the_searched_dataflow_moves_each_weight_a_few_times_and_nears_the_floor(model, within):
    params = load_model(model, weights=False).param_count() * 2  # FP16 bytes
    per_t = {}
    for T in (4, 8):
        c = compile_model(model, "default", training=True, timesteps=T, batch=16)
        dram, _ = program_traffic(c)
        assert c.dataflow.order == "batch"
        assert dram["weights"] + dram["gradients"] + dram["optimizer"] <= 8 * params  # naive: 257x
        per_t[T] = dram["weights"]
        if T == 4:
            bound = dram_lower_bound(c.plan)
            assert sum(bound.values()) <= sum(dram.values()) <= within * sum(bound.values())
            assert bound["bptt_state"] > 0 and bound["weights"] < 2 * params
    assert per_t[8] <= 1.10 * per_t[4]  # time runs inside the weight tiles


def test_a_tile_buffer_smaller_than_one_kernel_slice_is_one_error_line(capsys, tmp_path):
    with pytest.raises(SpikeforgeError, match=r"layer 'stem'.*buffer 'fp_weights'"):
        compile_model(TINY, load_arch("default", {"core.buffers.fp_weights.kib": 0.01}))
    arch = tmp_path / "tiny_tile.yaml"
    text = (Path(__file__).resolve().parents[2] / "isa" / "presets" / "edge4.yaml").read_text()
    arch.write_text(text.replace("fp_weights:   {kib: 1,", "fp_weights:   {kib: 0.01,"))
    rc = main(["compile", TINY, "--arch", str(arch), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "fp_weights" in err
    assert not (tmp_path / "out").exists()


def test_a_report_reprices_without_walking_again():
    g = load_model("mlp", seed=0)
    c = compile_model(g, "default", training=True, timesteps=2, batch=2)
    from spikeforge.hwsim.simulate import functional_step

    res = functional_step(g, make_input(g, 2, 2, None, 0), True)
    costs = run_costs(c.program, g, c.arch, res.stats)
    same = reprice(costs.activity, c.arch)
    assert same.energy == costs.energy and same.cycles == costs.cycles
    dear = reprice(costs.activity, load_arch("default", {"dram.pj_per_bit": 40.6, "energy_pj.ac": 1.164}))
    assert dear.energy["dram"] == pytest.approx(2 * costs.energy["dram"], rel=1e-12)
    assert dear.energy["sram"] == costs.energy["sram"] and dear.energy["noc"] == costs.energy["noc"]
    ac = costs.activity.total.ops["ac"] * 0.582
    assert dear.energy["compute"] == pytest.approx(costs.energy["compute"] + ac, rel=1e-12)
    slow = reprice(costs.activity, load_arch("default", {"dram.gb_per_s": 2.56}))
    assert slow.timing.by_bound["dram"] > costs.timing.by_bound["dram"] and slow.energy["dram"] == costs.energy["dram"]


def test_report_totals_add_up_by_layer_and_by_bound(capsys, tmp_path):
    rc = main(["simulate", TINY, "--train", "-T", "3", "-B", "2", "-o", str(tmp_path / "s")])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    t = rep["totals"]
    assert sum(l["energy_pj"] for l in rep["layers"]) == pytest.approx(t["energy_pj"], rel=1e-6)
    assert sum(l["dram_bytes"] for l in rep["layers"]) == t["dram_bytes"]
    for term in ("dram", "noc", "sram", "compute"):
        assert sum(l["energy_breakdown_pj"][term] for l in rep["layers"]) == pytest.approx(
            t["energy_breakdown_pj"][term], rel=1e-6)
    assert sum(t["cycles_by_bound"].values()) == t["cycles"] and t["bottleneck"] in t["cycles_by_bound"]
    assert t["cycles_by_bound"][t["bottleneck"]] == max(t["cycles_by_bound"].values())
    assert t["dram_read_bytes"] + t["dram_write_bytes"] == t["dram_bytes"]
    onchip = t["energy_breakdown_pj"]["compute"] + t["energy_breakdown_pj"]["sram"]
    assert t["dense_tflops_per_w_onchip"] == pytest.approx(2 * t["dense_synaptic_ops"] / onchip, rel=1e-5)
    assert t["effective_tflops_per_w_onchip"] == pytest.approx(2 * t["synaptic_ops"] / onchip, rel=1e-5)
    assert t["effective_tflops_per_w_onchip"] < t["dense_tflops_per_w_onchip"]
    assert t["area_mm2"] == pytest.approx(load_arch("default").area_mm2, abs=1e-3)
    assert rep["config"]["dataflow"] in DATAFLOWS[:4] and "step" not in capsys.readouterr().err


def test_compile_json_records_the_choice_and_the_runners_up(capsys, tmp_path):
    rc = main(["compile", TINY, "--train", "-T", "2", "-B", "4", "-o", str(tmp_path / "c"), "--objective", "edp"])
    assert rc == 0, capsys.readouterr().err
    d = json.loads((tmp_path / "c" / "compile.json").read_text())["dataflow"]
    assert d["objective"] == "edp" and len(d["runners_up"]) == 4
    edp = lambda e: e["energy_pj"] * e["latency_s"]  # noqa: E731
    assert all(edp(d["estimate"]) <= edp(r) for r in d["runners_up"])
    assert {g["group"] for g in d["groups"]} >= {"stem"} and all(len(g["runners_up"]) == 4 for g in d["groups"])
    capsys.readouterr()
    rc = main(["compile", TINY, "--dataflow", "naive", "-o", str(tmp_path / "n"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["dataflow"]["name"] == "naive" and out["dataflow"]["runners_up"] == []
    assert np.isfinite(out["area_mm2"])


def test_adam_state_lives_in_the_global_buffer_when_it_fits_else_in_dram():
    from spikeforge.compiler.stats import compile_stats

    def run(model, arch, dataflow, opt):
        g = load_model(model, weights=False)
        c = compile_model(g, arch, training=True, timesteps=2, batch=4, dataflow=dataflow, optimizer=opt)
        params = {li.name: li.params for li in g.layers() if li.kind == "linear"}
        return c, compile_stats(c), params

    digits = str(EXAMPLES / "digits_mlp.yaml")
    c, adam, params = run(digits, "default", "search", "adam")
    _, sgd, _ = run(digits, "default", "search", "sgd")
    assert adam["optimizer"] == "adam" and c.program.header.optimizer == "adam"
    assert {g["group"]: g["optimizer_state"] for g in adam["dataflow"]["groups"]} == {"fc1": "gb", "fc2": "gb"}
    assert all(g["optimizer_state"] is None for g in sgd["dataflow"]["groups"])
    assert adam["dram_bytes"] == sgd["dram_bytes"]  # 77 KB of state stay in the 6 MiB buffer between steps
    moved = {op: sum(i.args[1] for core in c.program.cores for i, _ in c.program.walk(core)
                     if i.op == op and i.args[2:5:2] == ("optimizer", "gb")) for op in ("dma.load", "dma.store")}
    assert moved == {"dma.load": 8 * sum(params.values()), "dma.store": 8 * sum(params.values())}  # m, v: FP32
    _, naive, _ = run(digits, "default", "naive", "adam")
    assert {g["optimizer_state"] for g in naive["dataflow"]["groups"]} == {"dram"}
    # mlp's 5.4 MB of state against edge4's 1 MiB buffer: what does not fit is loaded and stored per step
    c, adam, params = run("mlp", "edge4", "search", "adam")
    _, sgd, _ = run("mlp", "edge4", "search", "sgd")
    homes = {g["group"]: g["optimizer_state"] for g in adam["dataflow"]["groups"]}
    assert "dram" in homes.values() and "gb" in homes.values()
    in_dram = sum(params[n] for n, home in homes.items() if home == "dram")
    assert adam["dram_bytes"]["optimizer"] - sgd["dram_bytes"]["optimizer"] == 2 * 2 * 4 * in_dram
    state, w = 8 * sum(params.values()), 2 * sum(params.values())
    bound = dram_lower_bound(c.plan)["optimizer"]
    assert bound == 2 * w + 2 * (state - 1024 * 1024) and adam["dram_bytes"]["optimizer"] >= bound
