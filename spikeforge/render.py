"""Human-readable rendering of CLI results (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _console() -> Console:
    return Console(width=200, soft_wrap=False)


def _shape(s: list[int]) -> str:
    return "×".join(map(str, s))


def _si(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:g}"


def print_zoo(rows: list[dict]) -> None:
    t = Table(title="spikeforge model zoo")
    for col in ("name", "input", "classes", "description", "source"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], _shape(r["input_shape"]), str(r["classes"]), r["description"], r["source"])
    _console().print(t)


def print_inspect(rep: dict) -> None:
    t = Table(title=f"{rep['model']}: dense synaptic work per sample and time step")
    for col, just in (("layer", "left"), ("op", "left"), ("input", "left"), ("output", "left"),
                      ("params", "right"), ("syn ops/step", "right"), ("type", "left")):
        t.add_column(col, justify=just)
    for l in rep["layers"]:
        ins = ", ".join(f"{k[0]}:{_shape(s)}" for k, s in zip(l["input_kinds"], l["input_shapes"]))
        t.add_row(l["name"], l["op"], ins, f"{l['output_kind'][0]}:{_shape(l['output_shape'])}",
                  f"{l['params']:,}" if l["params"] else "", f"{l['syn_ops_per_step']:,}" if l["syn_ops_per_step"] else "",
                  l["arith"])
    tot = rep["totals"]
    c = _console()
    c.print(t)
    c.print(f"[bold]totals[/bold]: {tot['layers']} layers, {tot['params']:,} parameters ({_si(tot['params'])}), "
            f"{tot['neurons']:,} neurons; per step {_si(tot['mac_per_step'])} MAC + {_si(tot['ac_per_step'])} AC "
            f"dense synaptic ops; over T={rep['timesteps']}: {_si(tot['syn_ops'])} (s: spike, r: real)")


def print_arch_list(rows: list[dict]) -> None:
    t = Table(title="architecture presets")
    for col in ("name", "cores", "mesh", "precision", "clock MHz", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], str(r["cores"]), f"{r['mesh'][0]}×{r['mesh'][1]}", r["precision"],
                  f"{r['clock_mhz']:g}", r["description"])
    _console().print(t)


def _bytes(n: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:g} B"


def print_compile(s: dict, out: str) -> None:
    c = _console()
    kind = f"training step, {s['optimizer']} update" if s["training"] else "inference"
    c.print(f"[bold]{s['model']}[/bold] on [bold]{s['arch']}[/bold] ({kind}, T={s['timesteps']}, B={s['batch']}): "
            f"{s['pieces']} pieces in {s['rounds']} round(s), mapped in {s['map_seconds']:.2f} s")
    d = s["dataflow"]
    c.print(f"dataflow {d['name']} (loop order {d['order']}, best {d['objective']} of {len(d['runners_up']) + 1}): "
            f"estimated {d['estimate']['energy_pj'] / 1e6:,.1f} µJ, {d['estimate']['latency_s'] * 1e3:,.3f} ms, "
            f"DRAM {_bytes(d['estimate']['dram_bytes'])}; runners-up: "
            + ", ".join(f"{r['name']} {r['energy_pj'] / 1e6:,.1f} µJ" for r in d["runners_up"]))
    t = Table(title="mapper vs sequential baseline")
    for col in ("", "mapper", "baseline", "ratio"):
        t.add_column(col, justify="right")
    b = s.get("baseline", {})
    rows = [("NoC bytes", s["noc"]["bytes"], b.get("noc", {}).get("bytes")),
            ("NoC hop-bytes", s["noc"]["hop_bytes"], b.get("noc", {}).get("hop_bytes")),
            ("busiest link bytes", s["noc"]["busiest_link"]["bytes"], b.get("noc", {}).get("busiest_link", {}).get("bytes")),
            ("multicast packets/step", s["noc"]["multicast_packets_per_step"], b.get("noc", {}).get("multicast_packets_per_step")),
            ("load max/mean", s["load_balance"]["max_over_mean"], b.get("load_balance", {}).get("max_over_mean")),
            ("DRAM bytes", s["dram_bytes"]["total"], b.get("dram_bytes", {}).get("total"))]
    for name, m, base in rows:
        ratio = f"{m / base:.3f}" if base else ""
        fmt = (lambda v: f"{v:,}" if isinstance(v, int) else (f"{v:g}" if v is not None else ""))
        t.add_row(name, fmt(m), fmt(base), ratio)
    c.print(t)
    d = s["dram_bytes"]
    c.print("DRAM by category: " + ", ".join(f"{k} {_bytes(v)}" for k, v in d.items() if k != "total"))
    peak = {}
    for core in s["cores"]:
        for role, u in core["sram"].items():
            peak[role] = max(peak.get(role, 0), u["percent"])
    c.print("peak SRAM use per buffer role: " + ", ".join(f"{k} {v:.0f}%" for k, v in sorted(peak.items()) if v))
    if "chips" in s:
        x = s["chips"]
        c.print(f"{x['count']} chips ({x['topology']}, {x['link']['gb_per_s']:g} GB/s links): "
                + "; ".join(f"chip {k['chip']} {len(k['groups'])} group(s) in {k['rounds']} round(s)" for k in x["chips"]))
        c.print(f"{len(x['cut_tensors'])} cut tensor(s): " + ", ".join(
                    f"{t['tensor']} chip {t['from_chip']}->{t['to_chip']}" for t in x["cut_tensors"])
                + f"; chip-to-chip {_bytes(x['link_bytes']['program'])} per step (analytic {_bytes(x['link_bytes']['analytic'])})")
    c.print(f"wrote {out}/placement.yaml, {out}/program.sasm, {out}/compile.json")


def print_report(rep: dict, out: str | None) -> None:
    """The simulate summary: totals, energy breakdown, DRAM by category, busiest layers."""
    t, c = rep["totals"], rep["config"]
    con = _console()
    step = f"training step, {c['optimizer']} update" if c["training"] else "inference"
    con.print(f"{c['model']} on {c['arch']} ({step}, T={c['timesteps']}, B={c['batch']}, mode {c['mode']}, "
              f"{c['arithmetic']} arithmetic, dataflow {c['dataflow']}: loop order {c['order']})")
    tab = Table(title="totals")
    tab.add_column("figure")
    tab.add_column("value", justify="right")
    rows = [("energy", f"{t['energy_pj'] / 1e6:,.3f} µJ"), ("latency", f"{t['latency_s'] * 1e3:,.3f} ms"),
            ("cycles", f"{t['cycles']:,}"), ("synaptic ops (sparse)", _si(t["synaptic_ops"])),
            ("dense synaptic ops", _si(t["dense_synaptic_ops"])), ("DRAM bytes", _si(t["dram_bytes"]) + "B"),
            ("NoC bytes / hop-bytes", f"{_si(t['noc_bytes'])}B / {_si(t['noc_hop_bytes'])}B"),
            ("TFLOPS/W on chip, dense / effective",
             f"{t['dense_tflops_per_w_onchip']} / {t['effective_tflops_per_w_onchip']}"),
            ("TFLOPS/W with DRAM, NoC, static", f"{t['dense_tflops_per_w_total']} / {t['effective_tflops_per_w_total']}"),
            ("area", f"{t['area_mm2']:,.2f} mm²")]
    if t["gpu_baseline_dram_bytes"]:
        rows.append(("GPU baseline DRAM bytes", _si(t["gpu_baseline_dram_bytes"]) + "B"))
        rows.append(("DRAM reduction vs GPU", f"{100 * t['dram_reduction_vs_gpu']:.1f} %"))
    for k, v in rows:
        tab.add_row(k, v)
    con.print(tab)
    e = t["energy_breakdown_pj"]
    total = t["energy_pj"] or 1
    con.print("energy: " + ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in e.items()))
    con.print("DRAM: " + ", ".join(f"{k} {_si(v)}B" for k, v in t["dram_bytes_by_category"].items()))
    if "chip_link_bytes" in t:
        con.print(f"chip-to-chip links ({c['chips']} chips): {_si(t['chip_link_bytes'])}B, "
                  f"{t['chip_link_energy_pj'] / 1e6:,.3f} µJ")
    cyc = t["cycles_by_bound"]
    con.print(f"bottleneck: {t['bottleneck']} ({100 * cyc[t['bottleneck']] / max(t['cycles'], 1):.0f} % of cycles; "
              + ", ".join(f"{k} {100 * v / max(t['cycles'], 1):.0f} %" for k, v in cyc.items()) + ")")
    spiking = [l for l in rep["layers"] if l["spike_rate"] is not None]
    if spiking:
        rate = sum(l["spike_rate"] for l in spiking) / len(spiking)
        con.print(f"mean spike rate over {len(spiking)} spiking layers: {rate:.3f}")
    if "neuromc" in rep:
        n = rep["neuromc"]
        con.print("NeuroMC cost model: " + ", ".join(f"{k} {v['energy_pj'] / 1e6:,.3f} µJ" for k, v in n["engines"].items()
                                                     if v["energy_pj"]) +
                  f"; {n['totals']['tflops_per_w']} TFLOPS/W (2 FLOPs per MAC, on chip)")
    if out:
        con.print(f"wrote {out}/report.json")
