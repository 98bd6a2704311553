"""The authors' cost model, spikeforge's port (hwsim/neuromc.py) beside SpikingJelly 2.0.0's own
profiler (op_counter/neuromc): one training step, B = 16, T = 4, Adam, on the `neuromc` preset;
energy per engine and per layer with the difference, and TFLOPS/W beside the paper's 1.05.
VGG-11 (32x32, the zoo's `vgg11`) runs SpikingJelly live when it is importable (about 5 s), else
reads its committed record; ResNet-18 (224x224) reads the committed record, or runs live with
--live-resnet (one to two minutes, 4.5 GB). SpikingJelly's figures are its module fragments only
(docs/validation.md says why). With --walk, ResNet-18 at B = 1 also runs through the chip's own
cost walk on real data, in dense and sparse mode. Output is Markdown (docs/validation.md is made of it).

    .venv/bin/python benchmarks/neuromc.py [--live-resnet] [--all-layers] [--walk]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(HERE, "neuromc_oracle"))  # the oracle's helpers (compare.py, run_oracle.py)

import compare  # noqa: E402
from spikeforge.compiler.frontends import load_model  # noqa: E402
from spikeforge.hwsim.neuromc import ENGINES, neuromc_costs  # noqa: E402
from spikeforge.isa.arch import load_arch  # noqa: E402

PAPER_TFLOPS_PER_W = 1.05  # [LI2024], FP16, 28 nm, on-chip
B, T = 16, 4  # the official workloads' batch and time steps [NEUROMC]; run_oracle.py's setting


def oracle(model: str, live: bool) -> tuple[dict, str]:
    """SpikingJelly's record of `model`: a live run when asked and possible, else the committed one."""
    if live:
        try:
            import run_oracle
        except ImportError as e:
            print(f"(spikingjelly not importable: {e}; using the committed record)\n")
        else:
            t = time.perf_counter()
            rec = run_oracle.run(model)
            return rec, f"live run, {time.perf_counter() - t:.1f} s"
    rec = compare.load(model)
    return rec, f"committed record neuromc_oracle/{model}.json (torch {rec['torch_version']})"


def mj(pj: float) -> str:
    return f"{pj * 1e-9:,.4f}"


def pct(ours: float, theirs: float) -> str:
    return f"{100 * compare.rel(ours, theirs):+.1e} %" if theirs or ours else "–"


def report(model: str, live: bool, all_layers: bool) -> None:
    graph = load_model(model, weights=False)
    nm = neuromc_costs(graph, load_arch("neuromc"), B, T)
    rec, source = oracle(model, live)
    print(f"## {model}: B = {B}, T = {T}, Adam; SpikingJelly: {source}\n")
    print("| engine | spikeforge mJ | SpikingJelly mJ | difference | spikeforge GMAC |")
    print("|---|---:|---:|---:|---:|")
    eng, macs = compare.engines(nm, rec), nm.engines()
    for e in ENGINES:
        print(f"| {e} | {mj(eng[e][0])} | {mj(eng[e][1])} | {pct(*eng[e])} | {macs[e]['macs'] / 1e9:,.3f} |")
    tot = sum(o for o, _ in eng.values()), sum(t for _, t in eng.values())
    print(f"| **total** | **{mj(tot[0])}** | **{mj(tot[1])}** | {pct(*tot)} | {nm.macs / 1e9:,.3f} |\n")
    s = rec["totals_module_fragments_only"]["summary"]
    print(f"TFLOPS/W (2 FLOPs per MAC of FP, BP and WG over the step's on-chip energy, optimizer included): "
          f"spikeforge **{nm.tflops_per_w:.4f}**, SpikingJelly's run {s['tflops_per_w_2mac']:.4f} "
          f"({s['tflops_per_w_2mac_plus_extra']:.4f} counting every other FP16 operation as a FLOP too); "
          f"the paper {PAPER_TFLOPS_PER_W} ({nm.tflops_per_w / PAPER_TFLOPS_PER_W:.3f}x).\n")
    rows = compare.layers(graph, nm, rec, B, T)
    print(f"Per layer ({'every layer' if all_layers else 'conv and linear layers'}; mJ; the difference is the "
          "largest of the three engines'):\n")
    print("| layer | SpikingJelly module | FP | FP (SJ) | BP | BP (SJ) | WG | WG (SJ) | max difference |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if all_layers or r["op"] in ("linear", "conv1d", "conv2d"):
            cells = " | ".join(f"{mj(r[e][0])} | {mj(r[e][1])}" for e in ("fp", "bp", "wg"))
            print(f"| {r['name']} | {r['module']} | {cells} | {100 * compare.max_layer_diff([r]):.1e} % |")
    print()
    for cat, label in (("weight", "conv and linear"), ("bn", "batch-norm"), ("neuron", "neuron")):
        n = sum(compare.category(r["op"]) == cat for r in rows)
        print(f"- {n} {label} layers: largest per-engine difference {100 * compare.max_layer_diff(rows, cat):.1e} %")
    print()


def walk(name: str, T: int) -> None:
    """The model beside the chip's own cost walk on real data (dense and sparse mode), B = 1."""
    from spikeforge.api import simulate_to_dir

    nm = neuromc_costs(load_model(name, weights=False), load_arch("neuromc"), 1, T)
    print(f"## {name}, B = 1, T = {T}, arch `neuromc`: the model beside the cost walk on real data\n")
    print("| run | FP ops | BP ops | WG ops | compute mJ | memory mJ | on-chip mJ | TFLOPS/W on chip |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    e = nm.engines()
    compute = sum(d["mac_pj"] + d["extra_pj"] for d in e.values())
    print(f"| NeuroMC model (Adam) | {e['fp']['macs']:,} | {e['bp']['macs']:,} | {e['wg']['macs']:,} | {mj(compute)} | "
          f"{mj(nm.energy_pj - compute)} | {mj(nm.energy_pj)} | {nm.tflops_per_w:.3f} |")
    for mode, dataflow in (("dense", "naive"), ("sparse", "naive"), ("dense", "search")):
        t = simulate_to_dir(name, arch="neuromc", training=True, timesteps=T, batch=1, mode=mode,
                            dataflow=dataflow)["totals"]
        ops, en = t["synaptic_ops_by_engine"], t["energy_breakdown_pj"]
        print(f"| cost walk (SGD), `--mode {mode} --dataflow {dataflow}` | {ops['fp']:,} | {ops['bp']:,} | "
              f"{ops['wg']:,} | {mj(en['compute'])} | {mj(en['sram'])} | {mj(en['compute'] + en['sram'])} | "
              f"{t['dense_tflops_per_w_onchip']:.3f} |")
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--live-resnet", action="store_true", help="run SpikingJelly on ResNet-18 too (1-2 min, 4.5 GB)")
    ap.add_argument("--all-layers", action="store_true", help="per-layer rows for batch-norm and neurons too")
    ap.add_argument("--walk", action="store_true", help="then ResNet-18 at B = 1 through the cost walk (~1 min)")
    a = ap.parse_args(argv)
    report("vgg11", True, a.all_layers)
    report("resnet18", a.live_resnet, a.all_layers)
    if a.walk:
        walk("resnet18", T)
    return 0


if __name__ == "__main__":
    sys.exit(main())
