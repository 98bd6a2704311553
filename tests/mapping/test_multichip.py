"""Model-parallel mapping over the chips of a system: the pipeline split, the cut tensors and their
bytes on the chip-to-chip links, the functional result against one chip, one-chip programs
unchanged, and the errors."""

import itertools
import json
import math

import numpy as np
import pytest

from spikeforge.cli import main
from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.stats import compile_stats, link_bytes
from spikeforge.hwsim.simulate import make_input, simulate
from spikeforge.isa.activity import count
from spikeforge.isa.arch import load_arch, with_chips
from spikeforge.isa.sasm import assemble, disassemble
from spikeforge.mapping.plan import membrane_bytes


def _analytic_link_bytes(plan, steps: int) -> float:
    """Cut tensors counted from the graph and the chip of each group: a spike tensor's bitmap
    once per (tensor, reading chip), and its errors in FP16 once per reading edge."""
    sent, total = set(), 0.0
    for g in plan.groups:
        for e in g.in_edges:
            if e.src not in plan.chip_of or plan.chip_of[e.src] == plan.chip_of[g.name]:
                continue
            if (e.src_op, plan.chip_of[g.name]) not in sent:
                sent.add((e.src_op, plan.chip_of[g.name]))
                total += e.elements / 8 if e.spike else e.elements * 2
            total += e.elements * 2
    return total * steps


@pytest.fixture(scope="module")
def vgg16():
    return compile_model("vgg16", "edge4", training=True, timesteps=2, batch=1, chips=4, dataflow="ws_batch")


def test_vgg16_is_split_over_four_edge4_chips_in_row_bands(vgg16):
    plan, arch = vgg16.plan, vgg16.arch
    chips = [plan.chip_of[g.name] for g in plan.groups]
    assert chips == sorted(chips) and set(chips) == {0, 1, 2, 3}  # a pipeline: contiguous runs
    # a 224x224 channel (98 KiB of FP16 membrane) in 4 bands of 56 rows: 24.5 KiB, one per core's 27.2 KiB fill
    assert [g.bands for g in plan.groups[:3]] == [4, 4, 1]
    assert {p.hi - p.lo for p in plan.pieces_of("features.0.conv")} == {1}
    # the split: the fewest planned rounds on the busiest chip, then the fewest bytes crossing chips
    per_round = 0.85 * arch.capacity("membrane") * arch.n_cores
    mem = [membrane_bytes(g, g.units, arch) for g in plan.groups]
    edges = [(i, j, e) for j, g in enumerate(plan.groups) for e in g.in_edges
             for i, h in enumerate(plan.groups) if h.name == e.src]

    def figures(bounds):  # (rounds of the busiest chip, bytes per step crossing chip boundaries)
        runs = list(zip((0,) + bounds, bounds + (len(mem),)))
        rounds = max(math.ceil(sum(mem[a:b]) / per_round) for a, b in runs)
        crossing = sum((e.elements / 8 + e.elements * 2) * sum(i < b <= j for b in bounds) for i, j, e in edges)
        return rounds, crossing

    chosen = tuple(chips.index(k) for k in (1, 2, 3))
    splits = [figures(b) for b in itertools.combinations(range(1, len(mem)), 3)]
    assert figures(chosen) == min(splits) and figures(chosen)[0] == 71
    for r in range(plan.rounds):  # every round fits its chip's cores
        for core in arch.cores:
            used = sum(membrane_bytes(plan.group(p.group), p.hi - p.lo, arch)
                       for p in plan.pieces if p.round == r and p.core == core)
            assert used <= arch.capacity("membrane")
    # the rounds each chip takes, one chip after another (the packing needs more than the planned 71 on chip 3)
    assert [plan.round_chip.count(k) for k in range(4)] == [64, 64, 64, 87] and plan.rounds == 279
    assert [(c.tensor, c.a, c.b, c.elements) for c in plan.cuts] == [
        ("features.0.lif", 0, 1, 64 * 224 * 224), ("features.1.pool", 1, 2, 64 * 112 * 112),
        ("features.3.pool", 2, 3, 128 * 56 * 56)]


def test_vgg16_chip_to_chip_bytes_equal_the_cut_tensors(vgg16):
    steps = 2  # T x B
    expected = ((64 * 224 * 224 + 64 * 112 * 112 + 128 * 56 * 56) * (1 / 8 + 2)) * steps
    assert _analytic_link_bytes(vgg16.plan, steps) == expected == 18_765_824
    assert link_bytes(vgg16) == expected
    act = vgg16.estimate.activity
    assert act.total.link_bits / 8 == expected
    assert act.total.link_bit_hops == act.total.link_bits * 2  # a star: up to the host and down
    doc = compile_stats(vgg16)["chips"]
    assert doc["link_bytes"] == {"analytic": expected, "program": expected}
    assert [c["groups"][0] for c in doc["chips"]] == ["features.0.conv", "features.1.conv", "features.2.conv",
                                                        "features.4.conv"]


def test_vgg16_training_step_simulates_on_four_edge4_chips(vgg16):
    graph = load_model("vgg16", seed=0)
    rep = simulate(graph, vgg16.program, vgg16.arch, make_input(graph, 2, 1, None, 0))
    t = rep["totals"]
    assert rep["config"]["chips"] == 4 and t["loss"] > 0 and t["energy_pj"] > 0
    assert t["chip_link_bytes"] == 18_765_824 and t["chip_link_hop_bytes"] == 2 * 18_765_824
    assert t["chip_link_energy_pj"] == pytest.approx(2 * 18_765_824 * 8 * 5.0)  # the default link: 5 pJ/bit
    assert t["energy_breakdown_pj"]["link"] == t["chip_link_energy_pj"]
    assert sum(t["cycles_by_bound"].values()) == t["cycles"] and "link" in t["cycles_by_bound"]
    assert len(rep["cores"]) == 16 and {c["core"][0] for c in rep["cores"]} == {0, 1, 2, 3}


@pytest.mark.parametrize("model, arch, chips, used", [("mlp", "default", 3, 1), ("vgg11", "edge4", 2, 2)])
def test_the_functional_result_on_several_chips_equals_one_chips(model, arch, chips, used):
    """mlp fits one chip (it stays on chip 0); vgg11 needs 3 rounds of edge4 and is split."""
    runs = []
    for n in (1, chips):
        c = compile_model(model, arch, training=True, timesteps=2, batch=2, chips=n)
        graph = load_model(model, seed=0)
        x = make_input(graph, 2, 2, None, 0)
        rep = simulate(graph, c.program, c.arch, x, record=True)
        runs.append((c, rep, {op.name: dict(op.tensors) for op in graph}))
    (c1, r1, w1), (cn, rn, wn) = runs
    assert len(set(cn.plan.chip_of.values())) == used and cn.program.header.chips == chips
    assert bool(cn.plan.cuts) == (used > 1)
    v1, vn = r1["_values"], rn["_values"]
    assert v1.keys() == vn.keys() and all(np.array_equal(v1[k], vn[k]) for k in v1)  # spikes, every layer
    for op, tensors in w1.items():  # the updated weights: the gradients were equal
        assert all(np.array_equal(tensors[k], wn[op][k]) for k in tensors)
    assert r1["totals"]["loss"] == rn["totals"]["loss"]
    assert rn["totals"]["chip_link_bytes"] == _analytic_link_bytes(cn.plan, 4)
    assert "link" in rn["totals"]["cycles_by_bound"] and rn["config"]["chips"] == chips


def test_one_chip_is_the_program_and_report_there_were_before(capsys, tmp_path):
    plain = compile_model("vgg11", "edge4", training=True, timesteps=2, batch=1)
    one = compile_model("vgg11", "edge4", training=True, timesteps=2, batch=1, chips=1)
    assert one.program == plain.program and disassemble(one.program) == disassemble(plain.program)
    assert ".chip" not in disassemble(one.program) and "chips=" not in disassemble(one.program)
    reps = []
    for extra in ([], ["--chips", "1"]):
        assert main(["simulate", "vgg11", "--arch", "edge4", "--train", "-T", "2", "--json", *extra]) == 0
        reps.append(json.loads(capsys.readouterr().out))
    assert reps[0] == reps[1]
    t = reps[0]["totals"]
    assert set(t["energy_breakdown_pj"]) == {"compute", "sram", "noc", "dram", "static"}
    assert "link" not in t["cycles_by_bound"] and "chip_link_bytes" not in t and "chips" not in reps[0]["config"]


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_links_are_priced_per_link_crossed_and_the_system_section_is_used(tmp_path, capsys):
    ring = with_chips(load_arch("edge4"), 2)
    from dataclasses import replace

    ring = replace(ring, system=replace(ring.system, topology="ring"))
    c = compile_model("vgg11", ring, training=True, timesteps=2, batch=1, dataflow="ws_batch")
    assert c.program.header.chips == 2
    act = count(c.program, c.graph, ring)
    assert act.total.link_bit_hops == act.total.link_bits > 0  # neighbours on a ring: one link
    # the architecture's system: section sets the chips when --chips is not given
    arch = tmp_path / "pair.yaml"
    _, text, _ = _run(capsys, "arch", "show", "edge4")
    arch.write_text(text + "system: {chips: 2, topology: ring, link: {gb_per_s: 25, pj_per_bit: 1.5, latency_ns: 200}}\n")
    rc, out, err = _run(capsys, "compile", "vgg11", "--arch", arch, "--train", "-T", "2", "--json", "-o", tmp_path / "c")
    stats = json.loads(out)
    assert rc == 0 and stats["chips"]["count"] == 2 and stats["chips"]["link"]["gb_per_s"] == 25
    assert assemble((tmp_path / "c" / "program.sasm").read_text()).header.chips == 2
    rc, out, err = _run(capsys, "simulate", tmp_path / "c", "--json")  # the compiled directory: chips from its header
    rep = json.loads(out)
    t = rep["totals"]
    assert t["chip_link_bytes"] == stats["chips"]["link_bytes"]["program"]
    assert t["chip_link_energy_pj"] == pytest.approx(t["chip_link_hop_bytes"] * 8 * 1.5)


def test_a_layer_that_fits_no_core_of_any_chip_is_one_error_line(capsys, tmp_path):
    model = tmp_path / "wide.yaml"  # one row of a channel: 20,000 FP16 membranes, 39 KiB > 32 KiB
    model.write_text("name: wide\ninput: {shape: [1, 2, 20000]}\nlayers:\n"
                     "  - conv2d: {out_channels: 4, kernel: 1}\n    name: wide_conv\n  - lif:\n")
    rc, _, err = _run(capsys, "compile", model, "--arch", "edge4", "--chips", "4", "-o", tmp_path / "o")
    assert rc == 2 and err.startswith("error: layer 'wide_conv': one output channel needs 78.1 KiB") and err.count("\n") == 1
    assert "one band needs 39.1 KiB, more than a core's membrane SRAM (32.0 KiB)" in err
    assert not (tmp_path / "o").exists()
    for bad in ("0", "100000"):
        rc, _, err = _run(capsys, "compile", "mlp", "--chips", bad, "-o", tmp_path / "o")
        assert rc == 2 and err.startswith("error: --chips") and err.count("\n") == 1
    arch = tmp_path / "many.yaml"
    _, text, _ = _run(capsys, "arch", "show", "large64")
    arch.write_text(text.replace("mesh: {rows: 8, cols: 8}", "mesh: {rows: 256, cols: 256}"))
    rc, _, err = _run(capsys, "compile", "mlp", "--arch", arch, "--chips", "2", "-o", tmp_path / "o")
    assert rc == 2 and err == "error: chips: 2 chips of 65536 cores are more than 65536 cores, the limit of the mapper\n"
    arch.write_text(text + "system: {chips: 5000, topology: star, link: {gb_per_s: 8, pj_per_bit: 5, latency_ns: 1000}}\n")
    rc, _, err = _run(capsys, "compile", "mlp", "--arch", arch, "-o", tmp_path / "o")
    assert rc == 2 and "system.chips: must be at most 1024, got 5000" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:  # argparse
        main(["compile", "mlp", "--chips", "x", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: argument --chips") and err.count("\n") == 1
