"""Spiking attention on the chip: what one training step of each zoo transformer's attention
blocks costs on `default` (sparse mode, SGD, seeded direct input, random labels), B = 4, T = 4 by
default (batch statistics need more than one sample: see docs/attention.md). One functional
step and one walk per model (the whole network, its dataflow searched); a block's row sums the
report's per-layer figures over the layers of that block: energy by term (static shared out by
engine cycles, as the report does), engine cycles, DRAM bytes, and the synaptic operations each
engine performed (matmul: non-zero products). `attn.matmul` rows are the two
activation-by-activation products alone. The reference in the same run: each model's whole step.

    .venv/bin/python benchmarks/attention.py [-T 4] [-B 4]
"""

from __future__ import annotations

import argparse

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends.zoo import build
from spikeforge.hwsim.simulate import make_input, simulate

BLOCKS = {  # model -> (row label, layer-name prefix of one attention block)
    "sdt": [("SDSA (block 0)", "blocks.0.attn.")],
    "spikformer": [("SSA (Q K^T) V (block 0)", "blocks.0.attn.")],
    "qkformer": [("QKTA, 1024 tokens (stage 1)", "stage1.0.attn."), ("QKTA, 256 tokens (stage 2)", "stage2.0.attn."),
                 ("SSA Q (K^T V) (stage 3, block 0)", "stage3.0.attn.")],
}


def _sum(layers: list[dict]) -> dict:
    out = {"energy_uj": sum(l["energy_pj"] for l in layers) / 1e6, "cycles": sum(l["cycles"] for l in layers),
           "dram_kb": sum(l["dram_bytes"] for l in layers) / 1e3}
    for e in ("fp", "bp", "wg"):
        out[e] = sum(l["ops"][e] for l in layers) / 1e6
    return out


def measure(name: str, T: int, B: int) -> list[tuple[str, dict]]:
    g = build(name, seed=0)
    c = compile_model(g, "default", training=True, timesteps=T, batch=B)
    rep = simulate(g, c.program, c.arch, make_input(g, T, B, rate=None, seed=0))
    rows = []
    for label, prefix in BLOCKS[name]:
        block = [l for l in rep["layers"] if l["name"].startswith(prefix)]
        rows.append((f"{name}: {label}", _sum(block)))
        mm = [l for l in block if l["op"] == "matmul"]
        if mm:
            rows.append((f"{name}:   of which attn.matmul x{len(mm)}", _sum(mm)))
    t = rep["totals"]
    rows.append((f"{name}: whole step (cycles: latency)", {"energy_uj": t["energy_pj"] / 1e6, "cycles": t["cycles"],
                                         "dram_kb": t["dram_bytes"] / 1e3,
                                         **{e: _sum(rep["layers"])[e] for e in ("fp", "bp", "wg")}}))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-T", type=int, default=4)
    ap.add_argument("-B", type=int, default=4)
    a = ap.parse_args()
    print(f"default preset, training step, sparse, B={a.B}, T={a.T}, seed 0")
    print(f"| {'block':<45} | energy µJ | engine cycles | DRAM kB | FP Mops | BP Mops | WG Mops |")
    print(f"|{'-' * 47}|----------:|--------------:|--------:|--------:|--------:|--------:|")
    for name in BLOCKS:
        for label, r in measure(name, a.T, a.B):
            print(f"| {label:<45} | {r['energy_uj']:9.2f} | {r['cycles']:13,} | {r['dram_kb']:7.1f} | "
                  f"{r['fp']:7.3f} | {r['bp']:7.3f} | {r['wg']:7.3f} |")


if __name__ == "__main__":
    main()
