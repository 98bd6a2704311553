"""The NeuroMC cost model (hwsim/neuromc.py): hand-counted energies, the weight-reuse rule, the
psum-spill variant, and agreement with the cost walk's dense mode on the `neuromc` preset."""

import pytest

from compiler.frontends import load_model
from compiler.frontends.yaml_reader import graph_from_doc
from hwsim.neuromc import neuromc_costs
from isa.arch import load_arch

NEUROMC = load_arch("neuromc")


def _net(n_in, n_out):
    return graph_from_doc({"name": "t", "input": {"shape": [n_in], "encoding": "rate"},
                           "layers": [{"linear": {"out_features": n_out}, "name": "fc"}, {"lif": None, "name": "lif"}]}, "test")


def test_one_linear_layer_by_hand():
    """8 spikes in, 4 outputs, T=2, B=1: FP is 32 gated adds per fragment, inputs 1 bit, weights
    and outputs 16 bits, all at 0.33 pJ/bit; the 36 FP16 weights fit the 2.25 KiB weight SRAM, so
    they are written into it once per step. No BP: the layer reads the graph's input."""
    r = neuromc_costs(_net(8, 4), NEUROMC, batch=1, timesteps=2)
    fc = r.layers[1]
    fp = 2 * (32 * 0.582 + (8 * 1 + 36 * 16 + 4 * 16) * 0.33) + 36 * 16 * 0.33
    wg = 2 * (32 * 0.582 + (8 * 1 + 4 * 16 + 2 * 36 * 16) * 0.33)
    assert fc.energy_pj["fp"] == pytest.approx(fp) and fc.energy_pj["wg"] == pytest.approx(wg)
    assert fc.energy_pj["bp"] == 0 and fc.syn_ops == {"fp": 64, "bp": 0, "wg": 64}
    lif = r.layers[2]
    fwd = 1.562 + 16 * 0.33 + 2 * 16 * 0.45 + 0.33 + 0.33 + 16 * 0.45  # psum in, membrane r/w, spike, mask, u stored
    bwd = 4.378 + 18 * 0.45 + 2 * 16 * 0.45
    assert lif.energy_pj["fp"] == pytest.approx(8 * fwd) and lif.energy_pj["bp"] == pytest.approx(8 * bwd)
    assert r.update_pj == pytest.approx(36 * (1.36 + 3 * 16 * 1.8))
    assert r.flops == 2 * 128 and r.tflops_per_w == pytest.approx(256 / r.onchip_pj)


def test_adam_update_by_hand():
    """NeuroMC's Adam (docs/neuromc_rules.md sections 5-6): per weight element 4 adds, 11 muls and
    a sqrt, 6 FP32 words read and 5 written at the optimizer SRAM (1.8 pJ/bit) and at the
    registers; each of the 4 bias elements counts twice. The FP/BP/WG energies do not change."""
    sgd = neuromc_costs(_net(8, 4), NEUROMC, batch=1, timesteps=2)
    adam = neuromc_costs(_net(8, 4), NEUROMC, batch=1, timesteps=2, optimizer="adam")
    per = 4 * 0.548 + 11 * 0.812 + 0.514 + 32 * (11 * 1.8 + 11 * 0.0025)
    assert adam.update_pj == pytest.approx((32 + 2 * 4) * per)
    assert adam.energy_pj == sgd.energy_pj


def test_weights_reload_per_fragment_when_they_do_not_fit():
    small, big = _net(32, 32), _net(64, 32)  # 2,112 B fit 2.25 KiB; 4,160 B do not
    for g, loads in ((small, 1), (big, 8)):
        r = neuromc_costs(g, NEUROMC, batch=2, timesteps=4)
        assert r.weight_dram_bytes == loads * g.param_count() * 2


def test_spill_variant_costs_more_and_inference_is_fp_only():
    g = load_model("resnet18", weights=False)
    once = neuromc_costs(g, NEUROMC, 16, 4)
    spill = neuromc_costs(g, NEUROMC, 16, 4, spill=True)
    assert spill.flops == once.flops and spill.onchip_pj > 1.5 * once.onchip_pj
    assert 1.5 < once.tflops_per_w < 2.5 and 1.0 < spill.tflops_per_w < 1.5  # the paper: 1.05
    inf = neuromc_costs(g, NEUROMC, 16, 4, training=False)
    assert inf.energy_pj["bp"] == inf.energy_pj["wg"] == inf.update_pj == 0
    assert inf.energy_pj["fp"] < once.energy_pj["fp"]  # no BPTT state stored


def test_op_counts_equal_the_dense_cost_walk():
    from spikeforge.api import simulate_to_dir

    # the model reloads weights per (sample, step) fragment, as the naive dataflow does
    rep = simulate_to_dir("mlp", arch="neuromc", training=True, timesteps=2, batch=2, mode="dense", dataflow="naive")
    r = neuromc_costs(load_model("mlp", weights=False), NEUROMC, 2, 2)
    assert rep["totals"]["synaptic_ops_by_engine"] == {e: sum(c.syn_ops[e] for c in r.layers) for e in ("fp", "bp", "wg")}
    assert rep["neuromc"]["totals"]["flops"] == r.flops  # dense reports carry the model's figures
    assert "neuromc" not in simulate_to_dir("mlp", arch="neuromc", timesteps=2, mode="sparse")
    walk = rep["totals"]["energy_breakdown_pj"]
    assert r.onchip_pj == pytest.approx(walk["compute"] + walk["sram"], rel=0.25)
