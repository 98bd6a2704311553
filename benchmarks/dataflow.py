"""Dataflow: what the search buys, and how close it comes to the floor.

1. vgg11 (CIFAR) and resnet18 (ImageNet), one training step, B = 16, T = 4, on `default`: DRAM
   bytes of each dataflow (analytic, read off the compiled program) beside the lower bound
   (mapping/dataflow.py: dram_lower_bound) and the GPU's measured DRAM per iteration (H100,
   Nsight Compute, plain PyTorch, unfused LIF: issue 11 / docs/gpu_baseline.md); the weights'
   DRAM bytes at T = 8 against T = 4.
2. Every zoo model on default, edge4 and large64, training, B = 4, T = 4: simulated energy (sparse
   mode, one functional step per model, its measured work walked once per candidate dataflow);
   the candidate the compiler's analytic search picks, and the one `simulate` keeps after walking
   every candidate with the measured work (the profile-guided choice).
3. The knee: vgg11 training (B = 16, T = 4) with the engines' weight tile buffers and the global
   buffer swept: the searched dataflow's analytic energy and the chip's area (a PNG).

    .venv/bin/python benchmarks/dataflow.py [--part 1,2,3] [--png docs/dataflow_knee.png]
"""

from __future__ import annotations

import argparse
import time

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.zoo import ZOO
from spikeforge.compiler.stats import program_traffic
from spikeforge.hwsim.cost import run_costs
from spikeforge.hwsim.simulate import functional_step, make_input
from spikeforge.isa.arch import load_arch
from spikeforge.mapping.dataflow import FIXED, dram_lower_bound

# Measured GPU DRAM bytes per training iteration, B = 16, T = 4 (H100, Nsight Compute
# dram__bytes_read.sum + dram__bytes_write.sum, plain PyTorch, unfused LIF): issue 11.
GPU_GB = {"vgg11": {"fp32": 1.56, "amp": 0.84}, "resnet18": {"fp32": 42.9, "amp": 18.6}}
NAMES = ("search",) + tuple(FIXED)


def gb(n: float) -> str:
    return f"{n / 1e9:,.3f}"


def part1() -> None:
    print("## DRAM bytes of one training step, B = 16, T = 4, `default` (GB)\n")
    print("| model | params (FP16) | " + " | ".join(NAMES) + " | lower bound | search / bound | GPU AMP | "
          "reduction vs AMP | reduction vs FP32 | weights T=8 / T=4 |")
    print("|---|---:|" + "---:|" * len(NAMES) + "---:|---:|---:|---:|---:|---:|")
    for model in ("vgg11", "resnet18"):
        dram = {}
        for name in NAMES:
            c = compile_model(model, "default", training=True, timesteps=4, batch=16, dataflow=name)
            d, _ = program_traffic(c)
            dram[name] = d
            if name == "search":
                bound = sum(dram_lower_bound(c.plan).values())
                chosen, params = c.dataflow.name, c.graph.param_count() * 2
        t8, _ = program_traffic(compile_model(model, "default", training=True, timesteps=8, batch=16))
        total = {k: sum(v.values()) for k, v in dram.items()}
        amp, fp32 = GPU_GB[model]["amp"] * 1e9, GPU_GB[model]["fp32"] * 1e9
        print(f"| {model} | {gb(params)} | " + " | ".join(gb(total[n]) + (f" ({chosen})" if n == "search" else "")
                                                      for n in NAMES)
              + f" | {gb(bound)} | {total['search'] / bound:.2f} | {amp / 1e9:.2f} | {100 * (1 - total['search'] / amp):.1f} % "
              f"| {100 * (1 - total['search'] / fp32):.1f} % | {t8['weights'] / dram['search']['weights']:.3f} |")
        cats = dram["search"]
        wgo = cats["weights"] + cats["gradients"] + cats["optimizer"]
        print("|  | search by category: " + ", ".join(f"{k} {gb(v)}" for k, v in cats.items())
              + f"; weights + gradients + optimizer = {wgo / params:.2f} x params |" + " |" * (len(NAMES) + 6))
    print()


def part2() -> None:
    print("## Simulated energy of one training step, B = 4, T = 4 (sparse mode, mJ)\n")
    print("| model | arch | " + " | ".join(NAMES) + " | compile picks | simulate picks | search <= every fixed |")
    print("|---|---|" + "---:|" * len(NAMES) + "---|---|---|")
    for model in ZOO:
        g = load_model(model, seed=0)
        try:
            res = functional_step(g, make_input(g, 4, 4, None, 0), True)
        except MemoryError:
            print(f"| {model} | | out of memory |")
            continue
        for arch in ("default", "edge4", "large64"):
            try:
                c = compile_model(g, arch, training=True, timesteps=4, batch=4)
            except Exception as e:  # noqa: BLE001 -- a model that does not fit a chip is a row, not a crash
                print(f"| {model} | {arch} | {str(e)[:80]} |")
                continue
            energy = {p.header.dataflow: sum(run_costs(p, g, c.arch, res.stats).energy.values()) for p in c.programs}
            measured = min(energy, key=energy.get)  # what `simulate` keeps (hwsim.simulate: alternatives)
            energy["search"] = energy[measured]
            ok = energy["search"] <= min(energy[n] for n in FIXED) * (1 + 1e-9)
            print(f"| {model} | {arch} | " + " | ".join(f"{energy[n] * 1e-9:,.3f}" for n in NAMES)
                  + f" | {c.dataflow.name} | {measured} | {'yes' if ok else 'NO'} |")
    print()


def part3(png: str | None) -> None:
    g = load_model("vgg11", weights=False)
    tiles = (0.25, 0.5, 1, 2.25, 4, 8, 16, 32, 64)
    gbs = (0.25, 0.5, 1, 2, 4, 6, 8, 16, 32)
    rows = {}
    print("## The knee: vgg11 training, B = 16, T = 4, searched dataflow (analytic energy, mJ; area mm^2)\n")
    for label, key, values in (("weight tile buffers (KiB, FP and BP)", "tile", tiles),
                               ("global buffer (MiB)", "gb", gbs)):
        print(f"| {label} | energy | DRAM GB | area | dataflow |")
        print("|---:|---:|---:|---:|---|")
        rows[key] = []
        for v in values:
            over = ({"core.buffers.fp_weights.kib": v, "core.buffers.bp_weights.kib": v} if key == "tile"
                    else {"global_buffers.gb.kib": v * 1024})
            chip = load_arch("default", over)
            c = compile_model(g, chip, training=True, timesteps=4, batch=16)
            e = c.estimate
            rows[key].append((v, e.energy_pj * 1e-9, chip.area_mm2))
            print(f"| {v:g} | {e.energy_pj * 1e-9:,.2f} | {gb(e.dram_bytes)} | {chip.area_mm2:,.2f} | {e.name} |")
        print()
    if png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, key, xlabel in ((axes[0], "tile", "weight tile buffer per engine (KiB)"),
                                (axes[1], "gb", "global buffer (MiB)")):
            x, e, a = zip(*rows[key])
            ax.plot(x, e, "o-", color="tab:blue")
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("energy per training step (mJ)", color="tab:blue")
            ax.set_ylim(0, max(e) * 1.1)
            ax2 = ax.twinx()
            ax2.plot(x, a, "s--", color="tab:red")
            ax2.set_ylabel("chip area (mm²)", color="tab:red")
            ax2.set_ylim(0, max(a) * 1.1)
        fig.suptitle("vgg11 training step (B=16, T=4) on default: searched dataflow, analytic energy vs area")
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        print(f"wrote {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="1,2,3")
    ap.add_argument("--png", default=None, help="write the knee plot here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    parts = set(args.part.split(","))
    if "1" in parts:
        part1()
    if "2" in parts:
        part2()
    if "3" in parts:
        part3(args.png)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
