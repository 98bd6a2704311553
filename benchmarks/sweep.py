"""Sweep throughput: design points per minute of a 100-point sweep of vgg11 inference (T = 4,
B = 1) on the default chip -- DRAM pJ/bit x clock x NoC link width x FP weight SRAM, 5 x 5 x 2 x 2,
2 compiles -- with 1 and 2 local worker processes, each run from cold (worker start-up, compiles
and the functional run included). References measured in the same run: the same points simulated
one by one without the sweep's caches (compile + functional simulation + cost walk per point, as
`spikeforge simulate` does), and a warm worker's time per point (the cost walk), the rate a long
sweep approaches per worker. `--scale 2` sweeps 10 x 10 x 2 x 2 = 400 points.

    .venv/bin/python benchmarks/sweep.py [--workers 1,2] [--scale 1] [--reference 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.hwsim.simulate import make_input, simulate
from spikeforge.sweeps.evaluate import evaluate
from spikeforge.sweeps.run import run_sweep
from spikeforge.isa.arch import load_arch
from spikeforge.sweeps.spec import load_spec



def sweep_spec(scale: int) -> dict:
    n = 5 * scale
    return {"arch": "default", "models": ["vgg11"], "training": False, "timesteps": 4, "batch": 1, "seed": 0,
            "params": [
                {"path": "dram.pj_per_bit", "values": [round(float(v), 2) for v in np.linspace(5, 40, n)]},
                {"path": "clock_mhz", "values": [round(float(v)) for v in np.linspace(200, 1000, n)]},
                {"path": "noc.link_bits", "values": [64, 128]},
                {"path": "core.buffers.fp_weights.kib", "values": [2.25, 64]},
            ]}


def uncached(points) -> float:
    """Seconds per point, each compiled and simulated from scratch."""
    t0 = time.perf_counter()
    for p in points:
        graph = load_model(p.model, seed=p.seed)
        chip = load_arch(p.arch, dict(p.overrides))
        c = compile_model(graph, chip, training=p.training, timesteps=p.timesteps, batch=p.batch, seed=p.seed)
        simulate(graph, c.program, chip, make_input(graph, p.timesteps, p.batch, p.rate, p.seed), seed=p.seed)
    return (time.perf_counter() - t0) / len(points)


def warm(points) -> float:
    """Seconds per point in a worker whose caches hold the compile and the functional run."""
    same = [p for p in points if p.compile_key == points[0].compile_key][:21]
    evaluate(same[0])
    t0 = time.perf_counter()
    for p in same[1:]:
        evaluate(p)
    return (time.perf_counter() - t0) / (len(same) - 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2", help="worker counts to time (default 1,2)")
    ap.add_argument("--scale", type=int, default=1, help="100 x scale^2 design points (default 1)")
    ap.add_argument("--reference", type=int, default=3, help="points simulated without caches (default 3)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "sweep.yaml"
        spec.write_text(yaml.safe_dump(sweep_spec(args.scale), sort_keys=False))
        points = load_spec(str(spec)).points()
        print(f"vgg11 inference, T = 4, B = 1, {len(points)} design points, "
              f"{len({p.compile_key for p in points})} compiles; {os.cpu_count()} CPUs")
        ref = uncached(points[:: max(1, len(points) // args.reference)][:args.reference])
        print(f"  without caches:   {ref:.3f} s per point, {60 / ref:7.1f} points/min (reference)")
        per = warm(points)
        print(f"  a warm worker:    {per:.3f} s per point, {60 / per:7.1f} points/min per worker")
        base = None
        for n in (int(w) for w in args.workers.split(",")):
            run = run_sweep(str(spec), f"{tmp}/out{n}", workers=n)
            assert run.ran == len(points) and not run.errors, run.errors[:1]
            rate = 60 * run.ran / run.seconds
            base = base or rate
            print(f"  sweep, {n} worker{'s' if n > 1 else ' '}: {run.seconds:5.1f} s, {rate:7.1f} points/min, "
                  f"{rate * ref / 60:5.1f}x the reference, {rate / base:.2f}x one worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
