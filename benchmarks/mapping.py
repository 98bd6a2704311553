"""Mapping quality and speed: for each zoo model on `default` and `large64` (a training step),
the hop-weighted NoC traffic of the METIS mapper against the layer-sequential baseline, both
mapped in this process, and the mapping time; then a synthetic >= 1 M-neuron, >= 100 M-synapse
spiking conv net on `large64`, which must map in under 60 s.

    .venv/bin/python benchmarks/mapping.py [--models mlp,vgg11] [--archs default,large64]
"""

from __future__ import annotations

import argparse
import sys
import time

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import zoo
from spikeforge.compiler.frontends.yaml_reader import graph_from_doc
from spikeforge.compiler.stats import program_traffic
from spikeforge.isa import SpikeforgeError
from spikeforge.api import inspect_model

SYNTH_LIMIT_S = 60.0


def synthetic_doc() -> dict:
    """Event input 2x128x128, five 3x3 conv + LIF layers (12, 32 | pool, 16, 48 | pool, 32
    channels), a linear readout: 1.02 M neurons, 121 M synapses (dense connections per step)."""
    layers = []
    for ch, pool in ((12, False), (32, True), (16, False), (48, True), (32, False)):
        layers += [{"conv2d": {"out_channels": ch, "kernel": 3, "padding": 1}}, {"lif": None}]
        if pool:
            layers.append({"pool2d": {"kernel": 2, "mode": "max"}})
    layers += [{"flatten": None}, {"linear": {"out_features": 10}}, {"li": None}]
    return {"name": "synthetic_1m", "input": {"shape": [2, 128, 128], "encoding": "events"}, "layers": layers}


def measure(model, arch: str) -> dict:
    t0 = time.perf_counter()
    c = compile_model(model, arch, training=True)
    t_map = time.perf_counter() - t0
    b = compile_model(model, arch, training=True, strategy="sequential")
    return {"rounds": c.plan.rounds, "pieces": len(c.plan.pieces), "hop": c.plan.hop_bytes, "base": b.plan.hop_bytes,
            "seconds": t_map, "dram": sum(program_traffic(c)[0].values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(zoo.ZOO))
    ap.add_argument("--archs", default="default,large64")
    args = ap.parse_args(argv)
    print(f"{'model':14} {'arch':8} {'rounds':>6} {'pieces':>6} {'mapper hop-B':>14} {'baseline hop-B':>14} "
          f"{'ratio':>6} {'map s':>6}")
    worse = []
    for arch in args.archs.split(","):
        for name in args.models.split(","):
            try:
                m = measure(name, arch)
            except SpikeforgeError as e:
                print(f"{name:14} {arch:8} does not map: {e}")
                continue
            ratio = m["hop"] / m["base"] if m["base"] else float("nan")
            if not ratio < 1:
                worse.append(f"{name}@{arch}")
            print(f"{name:14} {arch:8} {m['rounds']:6d} {m['pieces']:6d} {m['hop']:14,.0f} {m['base']:14,.0f} "
                  f"{ratio:6.3f} {m['seconds']:6.2f}", flush=True)
    g = graph_from_doc(synthetic_doc(), "synthetic_1m")
    tot = inspect_model(g)["totals"]
    m = measure(g, "large64")
    print(f"\nsynthetic: {tot['neurons'] / 1e6:.2f} M neurons, {tot['syn_ops_per_step'] / 1e6:.0f} M synapses, "
          f"training step on large64: {m['rounds']} round(s), {m['pieces']} pieces, mapped in {m['seconds']:.2f} s "
          f"(limit {SYNTH_LIMIT_S:.0f} s), hop ratio vs baseline {m['hop'] / m['base']:.3f}")
    ok = m["seconds"] < SYNTH_LIMIT_S and not worse
    if worse:
        print("mapper not below the baseline for: " + ", ".join(worse))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
