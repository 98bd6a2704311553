"""Recurrence: what one training step of the zoo's SHD-sized recurrent SNN (`rsnn`, 700-256-20,
the hidden layer reading its own spikes of the previous step) costs on `default`, B = 16,
T = 100 (SHD's 1 s in 10 ms bins), SGD, sparse mode on random event input at rate 0.2.

One functional step per network; each candidate dataflow's program is walked with the measured
work. The reference, measured in the same run: the same network without its recurrent weights
(`rec`, its `add` and the delay removed; fc1 and fc2 keep their weights), whose hidden layer
fires at its own rate.

    .venv/bin/python benchmarks/recurrent.py [-T 100] [-B 16]
"""

from __future__ import annotations

import argparse
import time

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.yaml_reader import graph_from_doc, graph_to_doc
from spikeforge.hwsim.cost import run_costs
from spikeforge.hwsim.gpu import GpuConfig, gpu_dram_bytes
from spikeforge.hwsim.simulate import functional_step, make_input
from spikeforge.isa import Graph
from spikeforge.isa.activity import price


def feed_forward(rsnn: Graph) -> Graph:
    """rsnn without its recurrence, with rsnn's fc1 and fc2 weights."""
    doc = graph_to_doc(rsnn)
    doc["layers"] = [l for l in doc["layers"] if l["name"] not in ("rec", "add1", "prev1")]
    next(l for l in doc["layers"] if l["name"] == "lif1")["inputs"] = ["fc1"]
    doc["name"] = "rsnn_ff"
    g = graph_from_doc(doc, "rsnn_ff.yaml")
    for name in ("fc1", "fc2"):
        g[name].tensors.update({k: v.copy() for k, v in rsnn[name].tensors.items()})
    return g


def measure(g: Graph, T: int, B: int) -> dict:
    """Every candidate dataflow walked with one measured training step."""
    t0 = time.perf_counter()
    c = compile_model(g, "default", training=True, timesteps=T, batch=B)
    res = functional_step(g, make_input(g, T, B, 0.2, seed=0), True, c.arch.arithmetic)
    runs = {p.header.dataflow: run_costs(p, g, c.arch, res.stats) for p in c.programs}
    gpu = gpu_dram_bytes(g, B, T, GpuConfig(precision="fp16"))["total"]
    rates = {n: float(st.out_nonzero.sum()) / (st.size * T * B) for n, st in res.stats.items() if n == "lif1"}
    return {"compiled": c.dataflow.name, "arch": c.arch, "runs": runs, "gpu": gpu, "rate": rates["lif1"], "loss": res.loss,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-T", type=int, default=100)
    ap.add_argument("-B", type=int, default=16)
    a = ap.parse_args()
    rsnn = load_model("rsnn", seed=0)
    nets = {"rsnn": measure(rsnn, a.T, a.B), "rsnn without rec": measure(feed_forward(load_model("rsnn", seed=0)), a.T, a.B)}
    print(f"## One training step on `default`, B = {a.B}, T = {a.T}, SGD, sparse mode\n")
    print("| network | dataflow | energy mJ | latency ms | DRAM MB | NoC MB | bound by | lif1 spike rate |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for net, m in nets.items():
        for name, c in sorted(m["runs"].items(), key=lambda kv: sum(kv[1].energy.values())):
            mark = " (compiled)" if name == m["compiled"] else ""
            print(f"| {net} | {name}{mark} | {sum(c.energy.values()) / 1e9:.3f} | {c.timing.seconds * 1e3:.2f} | "
                  f"{c.activity.total.dram_bytes / 1e6:.3f} | {c.activity.total.noc_bits / 8e6:.2f} | "
                  f"{c.timing.bottleneck} | {m['rate']:.3f} |")
    r, f = (nets[n]["runs"][nets[n]["compiled"]] for n in nets)
    er, ef = sum(r.energy.values()), sum(f.energy.values())
    print(f"\nrsnn / without rec (compiled dataflows): energy {er / ef:.2f}x, latency "
          f"{r.timing.seconds / f.timing.seconds:.2f}x, DRAM {r.activity.total.dram_bytes / f.activity.total.dram_bytes:.2f}x")
    print(f"GPU model (H100, AMP) DRAM: rsnn {nets['rsnn']['gpu'] / 1e6:.1f} MB "
          f"(chip: {100 * (1 - r.activity.total.dram_bytes / nets['rsnn']['gpu']):.1f} % less), without rec "
          f"{nets['rsnn without rec']['gpu'] / 1e6:.1f} MB")
    print("\n### rsnn, compiled dataflow, by layer\n")
    print("| layer | FP ops | BP ops | WG ops | energy mJ | compute | SRAM | NoC | DRAM | static |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    static = r.energy["static"]
    cycles = sum(c.engine_cycles for c in r.activity.layers.values())
    for name, c in r.activity.layers.items():
        e = price(c, nets["rsnn"]["arch"])
        e["static"] = static * c.engine_cycles / cycles
        print(f"| {name} | {c.syn['fp']:,.0f} | {c.syn['bp']:,.0f} | {c.syn['wg']:,.0f} | {sum(e.values()) / 1e9:.3f} | "
              + " | ".join(f"{e[k] / 1e9:.3f}" for k in ("compute", "sram", "noc", "dram", "static")) + " |")
    print(f"\n(functional step and walks: {nets['rsnn']['seconds']:.1f} s and {nets['rsnn without rec']['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
