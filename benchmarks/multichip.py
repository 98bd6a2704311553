"""VGG-16 (ImageNet 224) training step split over a system of `edge4` chips, beside the same step
on one `edge4` chip measured in this run: compile time, the split (groups, rounds per chip),
the cut tensors, chip-to-chip bytes read off the program and counted by the simulator against
an analytic count of the cut tensors, energy, latency and what bounds it.

    .venv/bin/python benchmarks/multichip.py [--chips 4] [--batch 1] [--timesteps 2]
"""

from __future__ import annotations

import argparse
import time

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.stats import chips_doc
from spikeforge.hwsim.simulate import make_input, simulate


def run(chips: int, batch: int, timesteps: int) -> dict:
    graph = load_model("vgg16", seed=0)
    t0 = time.perf_counter()
    c = compile_model(graph, "edge4", training=True, timesteps=timesteps, batch=batch, chips=chips)
    compile_s = time.perf_counter() - t0
    x = make_input(graph, timesteps, batch, None, 0)
    t0 = time.perf_counter()
    rep = simulate(graph, c.program, c.arch, x, alternatives=c.alternatives)
    return {"c": c, "rep": rep, "compile_s": compile_s, "simulate_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--timesteps", type=int, default=2)
    a = ap.parse_args(argv)
    one, many = run(1, a.batch, a.timesteps), run(a.chips, a.batch, a.timesteps)
    doc = chips_doc(many["c"])
    for chip in doc["chips"]:
        print(f"chip {chip['chip']}: {chip['rounds']} rounds, groups {chip['groups'][0]} .. {chip['groups'][-1]}")
    for t in doc["cut_tensors"]:
        print(f"cut {t['tensor']} chip {t['from_chip']} -> {t['to_chip']}: {t['elements']:,} elements, "
              f"{t['fwd_bytes_per_step']:,.0f} B forward + {t['bwd_bytes_per_step']:,} B errors per sample and step")
    t1, tn = one["rep"]["totals"], many["rep"]["totals"]
    print(f"chip-to-chip bytes: analytic {doc['link_bytes']['analytic']:,.0f}, program {doc['link_bytes']['program']:,.0f}, "
          f"simulated {tn['chip_link_bytes']:,.0f}; link energy {tn['chip_link_energy_pj'] / 1e6:,.3f} uJ, "
          f"link cycles {tn['cycles_by_bound']['link']:,}")
    rows = [("compile s", one["compile_s"], many["compile_s"]), ("simulate s", one["simulate_s"], many["simulate_s"]),
            ("rounds", one["c"].plan.rounds, many["c"].plan.rounds),
            ("energy mJ", t1["energy_pj"] / 1e9, tn["energy_pj"] / 1e9),
            ("latency ms", t1["latency_s"] * 1e3, tn["latency_s"] * 1e3),
            ("DRAM MB", t1["dram_bytes"] / 1e6, tn["dram_bytes"] / 1e6),
            ("static mJ", t1["energy_breakdown_pj"]["static"] / 1e9, tn["energy_breakdown_pj"]["static"] / 1e9)]
    print(f"{'':12} {'1 chip':>12} {f'{a.chips} chips':>12} {'ratio':>7}")
    for name, x, y in rows:
        print(f"{name:12} {x:12,.3f} {y:12,.3f} {y / x:7.3f}")
    for name, r in (("1 chip", one), (f"{a.chips} chips", many)):
        t = r["rep"]["totals"]
        print(f"{name}: dataflow {r['rep']['dataflow']['chosen']}, bottleneck {t['bottleneck']}, cycles by bound "
              + ", ".join(f"{k} {v:,}" for k, v in t["cycles_by_bound"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
