"""The published cost model reproduced: per-layer and total FP / BP / WG energy of one training
step of the official NeuroMC workloads (spiking ResNet-18, ResNet-50, VGG-16 on ImageNet, B = 16,
T = 4) on the `neuromc` preset, and the on-chip TFLOPS/W beside the paper's 1.05, under the
model's read-once accounting and under its 16x16-array variant with partial sums spilled to SRAM
(hwsim/neuromc.py). Then, for ResNet-18 at B = 1 (a step the simulator runs on real data in
seconds), the same preset through the cost walk in dense and in sparse mode, to show where the
sparse mode differs. Output is Markdown (docs/validation.md is made of it).

    .venv/bin/python benchmarks/neuromc.py [--models resnet18,resnet50,vgg16] [--layers] [--no-sim]
"""

from __future__ import annotations

import argparse
import os
import sys

# run as a script, this folder comes first on sys.path and benchmarks/mapping.py would shadow `mapping`
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from compiler.frontends import load_model  # noqa: E402
from hwsim.neuromc import neuromc_costs  # noqa: E402
from isa.arch import load_arch  # noqa: E402
from isa.ops import WEIGHT_KINDS  # noqa: E402

PAPER_TFLOPS_PER_W = 1.05  # [LI2024], FP16, 28 nm, on-chip


def mj(pj: float) -> str:
    return f"{pj * 1e-9:,.2f}"


def totals(models, arch, B, T) -> None:
    print(f"## Totals: one training step, B = {B}, T = {T}, arch `{arch.name}` (energy in mJ)\n")
    print("| model | accounting | FP | BP | WG | SGD update | on-chip total | GFLOP | TFLOPS/W | / paper 1.05 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in models:
        g = load_model(name, weights=False)
        for spill, label in ((False, "read-once"), (True, "16x16 psum spill")):
            r = neuromc_costs(g, arch, B, T, training=True, spill=spill)
            e = r.energy_pj
            print(f"| {name} | {label} | {mj(e['fp'])} | {mj(e['bp'])} | {mj(e['wg'])} | {mj(r.update_pj)} | "
                  f"{mj(r.onchip_pj)} | {r.flops / 1e9:,.0f} | {r.tflops_per_w:.3f} | "
                  f"{r.tflops_per_w / PAPER_TFLOPS_PER_W:.2f} |")
    print()


def per_layer(name, arch, B, T) -> None:
    g = load_model(name, weights=False)
    r = neuromc_costs(g, arch, B, T, training=True)
    print(f"## {name}: per layer, read-once, B = {B}, T = {T} (energy in mJ; neurons, batch-norm and "
          "element-wise ops summed in the last row)\n")
    print("| layer | op | FP | BP | WG | dense synaptic ops (FP) |")
    print("|---|---|---:|---:|---:|---:|")
    rest = dict.fromkeys(("fp", "bp", "wg"), 0.0)
    for c in r.layers:
        if c.kind in WEIGHT_KINDS:
            print(f"| {c.name} | {c.kind} | {mj(c.energy_pj['fp'])} | {mj(c.energy_pj['bp'])} | "
                  f"{mj(c.energy_pj['wg'])} | {c.syn_ops['fp']:,} |")
        else:
            for k in rest:
                rest[k] += c.energy_pj[k]
    print(f"| (neurons, BN, add, pool) | | {mj(rest['fp'])} | {mj(rest['bp'])} | {mj(rest['wg'])} | |")
    e = r.energy_pj
    print(f"| **total** | | **{mj(e['fp'])}** | **{mj(e['bp'])}** | **{mj(e['wg'])}** | |\n")


def sparse_vs_dense(name, arch_name, T) -> None:
    from spikeforge.api import simulate_to_dir

    arch = load_arch(arch_name)
    print(f"## {name}, B = 1, T = {T}, arch `{arch_name}`: the cost walk on real data, dense and sparse mode\n")
    print("| run | FP ops | BP ops | WG ops | compute mJ | SRAM mJ | on-chip mJ | TFLOPS/W on-chip |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    r = neuromc_costs(load_model(name, weights=False), arch, 1, T, training=True)
    ops = r.syn_ops
    print(f"| cost model (read-once) | {ops['fp']:,} | {ops['bp']:,} | {ops['wg']:,} | "
          f"{mj(sum(c.compute_pj for c in r.layers) + r.update_pj)} | {mj(sum(c.sram_pj for c in r.layers))} | "
          f"{mj(r.onchip_pj)} | {r.tflops_per_w:.3f} |")
    # the naive dataflow reloads weights per (sample, step) fragment, as the model does; the search
    # (default) may keep a tile for the whole batch
    for mode, dataflow in (("dense", "naive"), ("sparse", "naive"), ("dense", "search")):
        t = simulate_to_dir(name, arch=arch_name, training=True, timesteps=T, batch=1, mode=mode,
                            dataflow=dataflow)["totals"]
        ops, e = t["synaptic_ops_by_engine"], t["energy_breakdown_pj"]
        print(f"| cost walk, `--mode {mode} --dataflow {dataflow}` | {ops['fp']:,} | {ops['bp']:,} | {ops['wg']:,} | "
              f"{mj(e['compute'])} | {mj(e['sram'])} | {mj(e['compute'] + e['sram'])} | "
              f"{t['dense_tflops_per_w_onchip']:.3f} |")
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet18,resnet50,vgg16")
    ap.add_argument("--arch", default="neuromc")
    ap.add_argument("-B", "--batch", type=int, default=16)
    ap.add_argument("-T", "--timesteps", type=int, default=4)
    ap.add_argument("--layers", action="store_true", help="per-layer tables of every model")
    ap.add_argument("--no-sim", action="store_true", help="skip the dense/sparse cost-walk comparison")
    a = ap.parse_args(argv)
    models = a.models.split(",")
    arch = load_arch(a.arch)
    totals(models, arch, a.batch, a.timesteps)
    for name in (models if a.layers else models[:1]):
        per_layer(name, arch, a.batch, a.timesteps)
    if not a.no_sim:
        sparse_vs_dense(models[0], a.arch, a.timesteps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
