"""A tour of the Python API (docs/api.md): build a model in memory, compile it, simulate a
training step, keep the outputs, and sweep two chip parameters over it.

    .venv/bin/python examples/api_tour.py out/api_tour      # about 20 s on 2 cores
"""

from __future__ import annotations

import sys
from pathlib import Path

import spikeforge as sf
from spikeforge.compiler.frontends.yaml_reader import graph_from_doc


def main(out: str = "out/api_tour") -> dict:
    out = Path(out)
    # 1. A model: a zoo name or a file works too (sf.load_model("vgg11")); here, built in memory.
    graph = graph_from_doc({
        "name": "tour_mlp", "input": {"shape": [64], "encoding": "direct"},
        "layers": [{"linear": {"out_features": 96}}, {"lif": {"beta": 0.9}},
                   {"linear": {"out_features": 10}}, {"li": {"beta": 0.9}}]}, "api_tour", seed=0)
    print(f"{graph.name}: {graph.param_count():,} parameters")

    # 2. Compile for the default chip: a training step, T = 4, B = 2 (keywords as the CLI's flags).
    compiled = sf.compile(graph, arch="default", train=True, timesteps=4, batch=2)
    d = compiled.doc["dataflow"]
    print(f"compiled: dataflow {d['name']}, estimated {d['estimate']['energy_pj'] * 1e-6:.1f} µJ, "
          f"{compiled.doc['pieces']} pieces on {len(compiled.doc['cores'])} cores")
    compiled.save(out / "compiled")  # placement.yaml, program.sasm, compile.json, arch.yaml, model.sfir, report.html

    # 3. Simulate the compiled program on real data; a contradicting setting is an error.
    result = sf.simulate(compiled)
    t = result.doc["totals"]
    print(f"simulated: {t['energy_pj'] * 1e-6:.1f} µJ, {t['latency_s'] * 1e6:.1f} µs, {t['bottleneck']}-bound, "
          f"DRAM {t['dram_bytes']:,} B")
    result.save(out / "simulated")  # report.json, report.html
    try:
        sf.simulate(compiled, timesteps=8)
    except sf.SpikeforgeError as e:
        print(f"as expected: {e}")
    again = sf.simulate(str(out / "compiled"))  # the saved directory runs the same program
    assert again.doc["totals"]["energy_pj"] == t["energy_pj"]

    # 4. Sweep the clock and the DRAM energy over the in-memory model.
    swept = sf.sweep({"arch": "default", "models": [graph], "timesteps": 4, "batch": 2, "training": True,
                      "params": [{"path": "clock_mhz", "values": [250, 500]},
                                 {"path": "dram.pj_per_bit", "values": [5.0, 20.0]}]},
                     str(out / "sweep"), workers=1)
    front = next(iter(swept.pareto.values()))  # per model (here, the file the graph was written to)
    print(f"swept: {swept.doc['points']} designs, {len(front)} Pareto-optimal; report: {out / 'sweep' / 'report.html'}")
    return {"compiled": compiled.doc, "simulated": result.doc, "swept": swept.doc}


if __name__ == "__main__":
    main(*sys.argv[1:2])
