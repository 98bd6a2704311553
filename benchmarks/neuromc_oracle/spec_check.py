#!/usr/bin/env python
"""Independent re-implementation of docs/neuromc_rules.md (no spikingjelly import), checked fragment by
fragment against the oracle JSONs written by run_oracle.py.

    python spec_check.py [vgg11 vgg11_nobn resnet18]

Only the fragment *descriptions* (loop dims, numels, precisions, core type, process key,
op name, b/t type, conv_type) are read from the JSON; every energy number is recomputed
here from the SPEC formulas and compared with the oracle's per-part numbers.
"""
from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- constants (SPEC section 2) -----------------------------------------------------
REG = 0.00901 / 7.1 * 2                      # pJ/bit, all register files
S1 = 0.44854798                              # 1-bit SRAMs (spikes / masks)
S_W = 5.302477904 / 16                       # weight / dW SRAMs
S_A = 5.792676768 / 16                       # 16-bit activation / gradient SRAMs (== 92.68282828/256)
SRAM = {  # name -> (read pJ/bit, write pJ/bit, size_bits)
    "sram_fp_conv_in_s": (S1, S1, 18496 * 16),
    "sram_fp_conv_in_w": (S_W, S_W, 18432 * 256),
    "sram_fp_conv_out_xi": (S_A, S_A, 65536 * 16),
    "sram_fp_soma_u": (92.68282828 / 256,) * 2 + (1048576,),
    "sram_fp_soma_s": (7.176767677 / 16,) * 2 + (262144,),
    "sram_fp_soma_smask": (7.176767677 / 16,) * 2 + (65536,),
    "sram_bp_conv_in_du": (S_A, S_A, 73984 * 16),
    "sram_bp_conv_in_w": (S_W, S_W, 18432 * 256),
    "sram_bp_conv_out_res": (S_A, S_A, 65536 * 16),
    "sram_bp_grad_in_u": (92.68282828 / 256,) * 2 + (1048576,),
    "sram_bp_grad_in_s": (7.176767677 / 16,) * 2 + (65536,),
    "sram_bp_grad_in_smask": (7.176767677 / 16,) * 2 + (65536,),
    "sram_bp_grad_out_du": (92.68282828 / 256,) * 2 + (1048576,),
    "sram_wg_conv_in_s": (S1, S1, 4624 * 16),
    "sram_wg_conv_in_du": (S_A, S_A, 65536 * 16),
    "sram_wg_conv_out_dw": (S_W, S_W, 18432 * 256),
    "sram_2MB": (46.976 / 256, 45.96 / 256, 1048576 * 16),
    "sram_6MB": (458.1830181 / 256, 375.0422185 / 256, 50331648),
}
MAC = {"fp_soma": 0.548 * 17 / 16, "wg": 0.548 * 17 / 16,
       "bp_grad": 1.36, "ann_fe": 1.36, "ann_be": 1.36, "ann_we": 1.36}
OP = {"mux": 0.548 / 16, "add": 0.548, "mul": 0.812, "comp": 0.056, "sqrt": 0.514}

SRAM_OF = {  # core type -> (input, weight, output) SRAM
    "fp_soma": ("sram_fp_conv_in_s", "sram_fp_conv_in_w", "sram_fp_conv_out_xi"),
    "ann_fe": ("sram_fp_conv_in_w", "sram_fp_conv_in_w", "sram_fp_conv_out_xi"),
    "bp_grad": ("sram_bp_conv_in_du", "sram_bp_conv_in_w", "sram_bp_conv_out_res"),
    "ann_be": ("sram_bp_conv_in_du", "sram_bp_conv_in_w", "sram_bp_conv_out_res"),
    "wg": ("sram_wg_conv_in_s", "sram_wg_conv_in_du", "sram_wg_conv_out_dw"),
    "ann_we": ("sram_wg_conv_in_du", "sram_wg_conv_in_du", "sram_wg_conv_out_dw"),
}


def fragment_energy(f):
    """-> dict(mac, extra_compute, reg, sram_by_instance{name: pJ})"""
    ld, core, pk, ph = f["loop_dims"], f["core_type"], f["process_key"], f["phase"]
    B, T, C, K, OY, OX, FY, FX = (ld[k] for k in ("B", "T", "C", "K", "OY", "OX", "FY", "FX"))
    pi, pw, po = (f["precision_bits"][k] for k in ("input", "weight", "output"))
    M, O, W = f["mac_count"], f["numel"]["output"], f["numel"]["weight"]
    reg_bits = 0
    sram = defaultdict(float)

    def rd(name, bits):
        if bits > 0:
            sram[name] += bits * SRAM[name][0]

    def wr(name, bits):
        if bits > 0:
            sram[name] += bits * SRAM[name][1]

    def rg(bits):
        nonlocal reg_bits
        if bits > 0:
            reg_bits += bits

    # ---- base memory (SPEC 4) --------------------------------------------------------
    if M > 0 and core in SRAM_OF:
        si, sw, so = SRAM_OF[core]
        if core in ("wg", "ann_we"):
            rg(2 * M * pi); rg(2 * M * pw)
            rg(O * po); rg((M - O) * po); rg(M * po)
            rd(si, -(-M // min(K, 16)) * pi)
            rd(sw, -(-M // min(C, 16)) * pw)
            wr(so, O * po)
        else:
            R = K if core in ("bp_grad", "ann_be") else C
            n = math.ceil(R / 16) * FY * FX
            P, S = O * (n - 1), O * n
            rg(2 * M * pi)
            reuse = bool(f["b_type"] or f["t_type"]) and W * pw <= SRAM[sw][2]
            if not reuse:
                rg(2 * W * pw); rd(sw, W * pw)
            rg(M * po); rg((M - O) * po); rg(M * po); rg(P * po)
            rd(si, S * pi); rd(so, P * po); wr(so, S * po)

    # ---- extra op counts (SPEC 5) ----------------------------------------------------
    cnt = dict(mux=0, add=0, mul=0, comp=0, sqrt=0)
    Nk, Nc, CT = OY * OX * K * B * T, OY * OX * C * B * T, C * T
    KT = K if pk == "with_opt" else K * T
    FK = FY * FX * C if pk == "with_opt" else FY * FX * K * C
    if pk == "with_sg" and ph == "forward":
        cnt.update(mux=Nk, add=Nk, mul=Nk, comp=3 * Nk)
    elif pk == "with_sg":
        cnt.update(mux=Nc, add=2 * Nc, mul=4 * Nc)
    elif pk == "with_bn" and ph == "forward":
        cnt.update(add=3 * Nk + 2 * KT, mul=3 * Nk + 4 * KT, sqrt=KT)
    elif pk == "with_bn":
        if f["conv_type"] != "without_bp_bn":
            cnt.update(add=7 * Nc, mul=3 * Nc + 22 * CT)
    elif pk == "with_opt" and f["op_name"] in ("adam", "adamw"):
        cnt.update(add=8 * KT + 4 * FK, mul=22 * KT + 11 * FK, sqrt=2 * KT + FK)

    # ---- extra memory (SPEC 6): (elements, bits, sram, reads, reg_write, sram_write) --
    V = []
    if pk == "with_sg" and ph == "forward":
        V = [(Nk, 16, "sram_fp_conv_out_xi", 1, 1, 1), (Nk, 16, "sram_fp_soma_u", 1, 1, 1),
             (Nk, 1, "sram_fp_soma_s", 1, 1, 1), (Nk, 1, "sram_fp_soma_smask", 0, 1, 1)]
    elif pk == "with_sg":
        V = [(Nc, 16, "sram_bp_conv_out_res", 1, 0, 0), (Nc, 16, "sram_bp_grad_in_u", 1, 0, 1),
             (Nc, 1, "sram_bp_grad_in_s", 1, 0, 0), (Nc, 1, "sram_bp_grad_in_smask", 1, 0, 0),
             (Nc, 16, "sram_bp_grad_out_du", 1, 1, 0)]
    elif pk == "with_bn" and ph == "forward":
        V = [(KT, 16, "sram_2MB", 2, 1, 1), (KT, 16, "sram_2MB", 1, 1, 1), (Nk, 16, "sram_2MB", 1, 1, 1),
             (KT, 16, "sram_2MB", 1, 1, 1), (Nk, 16, "sram_2MB", 1, 1, 1), (KT, 16, "sram_2MB", 1, 0, 0),
             (KT, 16, "sram_2MB", 1, 0, 0)]
    elif pk == "with_bn":
        V = [(Nc, 16, "sram_2MB", 2, 0, 0), (CT, 16, "sram_2MB", 2, 0, 0), (CT, 16, "sram_2MB", 2, 0, 0),
             (Nc, 16, "sram_2MB", 3, 1, 1), (Nc, 16, "sram_2MB", 3, 0, 0), (CT, 16, "sram_2MB", 1, 1, 1),
             (CT, 16, "sram_2MB", 1, 1, 1), (CT, 16, "sram_2MB", 2, 1, 1), (CT, 16, "sram_2MB", 0, 1, 1),
             (CT, 16, "sram_2MB", 0, 1, 1), (Nc, 16, "sram_2MB", 0, 1, 1)]
    elif pk == "with_opt" and f["op_name"] in ("adam", "adamw"):
        # y, b (KT each) and w (FK): param, grad read; v, s, vbc, sbc read+write; updated write
        for n in (KT, KT, FK):
            V += [(n, 32, "sram_6MB", 1, 0, 0)] * 2 + [(n, 32, "sram_6MB", 1, 1, 1)] * 4 + \
                 [(n, 32, "sram_6MB", 0, 1, 1)]
    for n, b, s, r, wreg, wsram in V:
        rg(n * b * r); rd(s, n * b * r)
        if wreg:
            rg(n * b)
        if wsram:
            wr(s, n * b)

    return {"mac": M * MAC.get(core, 0.0), "extra_compute": sum(cnt[k] * OP[k] for k in cnt),
            "reg": reg_bits * REG, "sram_by_instance": dict(sram), "counts": cnt}


def check(model):
    r = json.load(open(os.path.join(HERE, f"{model}.json")))
    worst = 0.0
    n = 0
    tot = 0.0
    for m in r["modules"]:
        for e in m["engines"].values():
            for f in e["fragments"]:
                mine = fragment_energy(f)
                ref = f["energy_pj"]
                pairs = [("mac", mine["mac"], ref["mac"]),
                         ("extra_compute", mine["extra_compute"], ref["extra_compute"]),
                         ("reg", mine["reg"], ref["reg"])]
                names = set(mine["sram_by_instance"]) | {k for k, v in ref["memory_by_instance"].items()
                                                       if v["level"] == "sram"}
                for s in names:
                    pairs.append((s, mine["sram_by_instance"].get(s, 0.0),
                                  ref["memory_by_instance"].get(s, {}).get("pj_total", 0.0)))
                assert mine["counts"] == f["extra_op_counts"], (m["name"], f["op_name"])
                for k, a, b in pairs:
                    err = abs(a - b) / max(abs(b), 1e-9)
                    if err > worst:
                        worst = err
                    if err > 1e-9:
                        print(f"  MISMATCH {model} {m['name']} {f['op_name']} {k}: spec {a} oracle {b}")
                tot += mine["mac"] + mine["extra_compute"] + mine["reg"] + sum(mine["sram_by_instance"].values())
                n += 1
    ref_tot = r["profiler_report"]["energy_total_pj"]
    print(f"{model}: {n} fragments, worst per-part rel err {worst:.2e}, total spec {tot/1e9:.6f} mJ "
          f"vs profiler {ref_tot/1e9:.6f} mJ")


if __name__ == "__main__":
    for m in sys.argv[1:] or ["vgg11", "vgg11_nobn", "resnet18"]:
        if os.path.exists(os.path.join(HERE, f"{m}.json")):
            check(m)


# ---- fragment formation check (SPEC 1): rebuild each module fragment from its shapes --
def _prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def expected_fragments(m, first):
    """Module record (type, shapes, in_is_spike) -> list of fragment descriptions."""
    t = m["type"]
    ins, outs = m["in_shape"], m["out_shape"]
    T, B = ins[0], ins[1]
    spk = m["in_is_spike"]
    fr = []
    if t in ("Conv2d", "Linear"):
        C, K = m["C"], m["K"]
        FY, FX = (m["FY"], m["FX"])
        OY, OX = (outs[3], outs[4]) if t == "Conv2d" else (1, 1)
        ld = dict(B=B, T=T, C=C, K=K, OY=OY, OX=OX, FY=FY, FX=FX)
        M = B * T * C * K * OY * OX * FY * FX
        W = C * K * FY * FX // m.get("groups", 1)
        kind = "conv" if t == "Conv2d" else "linear"
        fr.append(dict(op_name=f"{kind}.forward", core_type="fp_soma" if spk else "ann_fe", loop_dims=ld,
                       precision_bits=dict(input=1 if spk else 16, weight=16, output=16),
                       numel=dict(input=_prod(ins), weight=W, output=_prod(outs)), mac_count=M))
        if not first:
            fr.append(dict(op_name=f"{kind}.backward.grad_input", core_type="bp_grad" if spk else "ann_be",
                           loop_dims=ld, precision_bits=dict(input=16, weight=16, output=16),
                           numel=dict(input=_prod(outs), weight=W, output=_prod(ins)), mac_count=M))
        fr.append(dict(op_name=f"{kind}.backward.grad_weight", core_type="wg" if spk else "ann_we",
                       loop_dims=ld, precision_bits=dict(input=1 if spk else 16, weight=16, output=16),
                       numel=dict(input=_prod(ins), weight=_prod(outs), output=W), mac_count=M))
    elif t == "BatchNorm2d" or t.endswith("Node"):
        c = outs[2]
        ld = dict(B=B, T=T, C=c, K=c, OY=_prod(outs[3:]) or 1, OX=1, FY=1, FX=1)
        if t == "BatchNorm2d":
            fr.append(dict(op_name="bn.forward", core_type="fp_bn" if spk else "ann_bn", loop_dims=ld,
                           mac_count=0, precision_bits=dict(input=16, weight=16, output=16)))
            fr.append(dict(op_name="bn.backward", core_type="bp_bn" if spk else "ann_bn_bp", loop_dims=ld,
                           mac_count=0))
        else:
            fr.append(dict(op_name="soma.forward", core_type="fp_soma", loop_dims=ld, mac_count=0,
                           precision_bits=dict(input=16, weight=16, output=1)))
            fr.append(dict(op_name="soma.backward", core_type="bp_grad", loop_dims=ld, mac_count=0,
                           precision_bits=dict(input=16, weight=16, output=16)))
    return fr


def check_formation(model):
    r = json.load(open(os.path.join(HERE, f"{model}.json")))
    bad = 0
    first_done = False
    for m in r["modules"]:
        if "in_shape" not in m:
            continue
        first = not first_done
        first_done = True
        got = {f["op_name"]: f for e in m["engines"].values() for f in e["fragments"]}
        exp = expected_fragments(m, first)
        if set(got) != {f["op_name"] for f in exp}:
            print(f"  {model} {m['name']}: fragments {sorted(got)} vs expected {[f['op_name'] for f in exp]}")
            bad += 1
            continue
        for f in exp:
            g = got[f["op_name"]]
            for k, v in f.items():
                if g[k] != v:
                    print(f"  {model} {m['name']} {f['op_name']} {k}: oracle {g[k]} vs spec {v}")
                    bad += 1
    print(f"{model}: fragment formation check, {bad} mismatches")


if __name__ == "__main__":
    for m in sys.argv[1:] or ["vgg11", "vgg11_nobn", "resnet18"]:
        if os.path.exists(os.path.join(HERE, f"{m}.json")):
            check_formation(m)
