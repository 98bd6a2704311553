"""Simulator speed: for vgg11 (CIFAR, T = 4, B = 1, a training step) and resnet18 (ImageNet), the
wall time of the simulator's functional step (event-driven Numba engines: forward, BPTT, weight
gradients) against a NumPy dense implementation of the same forward and backward
(hwsim.reference, im2col + BLAS) measured in the same process, and the synaptic events per
second the simulator processes. Also the time of the whole `simulate` (functional + cost walk).

    .venv/bin/python benchmarks/sim_speed.py [--models vgg11,resnet18] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.hwsim.functional import Simulator, run
from spikeforge.hwsim.reference import run_dense
from spikeforge.hwsim.simulate import make_input, simulate

TARGET = 3.0  # the functional step should cost at most 3x the NumPy dense step


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vgg11,resnet18")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    T, B = 4, 1
    print(f"{'model':10} {'numpy dense s':>13} {'sim step s':>10} {'ratio':>6} {'sim events/s':>13} "
          f"{'sparse ops':>11} {'dense ops':>11} {'simulate s':>10}")
    worst = 0.0
    for name in args.models.split(","):
        g = load_model(name, seed=0)
        x = make_input(g, T, B, None, seed=0)
        labels = np.array([1])
        sim = Simulator(g)
        feed = {g.inputs[0].name: x}
        run(sim, feed, labels, True)  # compile / load the kernels
        t_ref = best(lambda: run_dense(g, x, labels, True), args.repeat)
        t_sim = best(lambda: run(sim, feed, labels, True), args.repeat)
        res = run(sim, feed, labels, True)
        events = sum(int(a.sum()) for st in res.stats.values() for a in (st.fp_ops, st.bp_ops, st.wg_ops) if a is not None)
        dense = sum(li.work.syn_ops for li in g.layers()) * T * B * 3
        c = compile_model(g, "default", training=True, timesteps=T, batch=B)
        t0 = time.perf_counter()
        simulate(g, c.program, c.arch, x)
        t_full = time.perf_counter() - t0
        ratio = t_sim / t_ref
        worst = max(worst, ratio if name == "vgg11" else 0.0)
        print(f"{name:10} {t_ref:13.3f} {t_sim:10.3f} {ratio:6.2f} {events / t_sim:13.3e} "
              f"{events:11.3e} {dense:11.3e} {t_full:10.2f}", flush=True)
    print(f"\nvgg11 training step: simulator / NumPy dense = {worst:.2f} (target <= {TARGET})")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
