"""Human-readable rendering of CLI results (rich tables)."""

from __future__ import annotations

import os

from rich.console import Console
from rich.table import Table

from spikeforge.units import format_bytes, format_count


class _Console(Console):
    """A console that lets a closed pipe (`spikeforge ... | head`) reach the CLI's handler."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def _console() -> Console:
    return _Console(width=200, soft_wrap=False)


def _shape(s: list[int]) -> str:
    return "×".join(map(str, s))


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
    c.print(f"[bold]totals[/bold]: {tot['layers']} layers, {tot['params']:,} parameters ({format_count(tot['params'])}), "
            f"{tot['neurons']:,} neurons; per step {format_count(tot['mac_per_step'])} MAC + {format_count(tot['ac_per_step'])} AC "
            f"dense synaptic ops; over T={rep['timesteps']}: {format_count(tot['syn_ops'])} (s: spike, r: real)")


def print_arch_list(rows: list[dict]) -> None:
    t = Table(title="architecture presets")
    for col in ("name", "cores", "mesh", "precision", "clock MHz", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], str(r["cores"]), f"{r['mesh'][0]}×{r['mesh'][1]}", r["precision"],
                  f"{r['clock_mhz']:g}", r["description"])
    _console().print(t)


BOUNDS = {"compute": "compute", "dram": "DRAM", "noc": "NoC", "barrier": "barrier", "link": "chip-link"}


def _share(part: float, whole: float) -> str:
    v = 100 * part / whole if whole else 0.0
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def percent(part: float, whole: float) -> str:
    """A share as "74 %", "8.3 %" or "0.4 %"."""
    return f"{_share(part, whole)} %"


def print_compile(s: dict, out: str, files: list[str]) -> None:
    """The compile summary: dataflow, mapper against the baseline, DRAM, and one row per core."""
    c = _console()
    kind = f"training step, {s['optimizer']} update" if s["training"] else "inference"
    c.print(f"[bold]{s['model']}[/bold] on [bold]{s['arch']}[/bold] ({kind}, T={s['timesteps']}, B={s['batch']}): "
            f"{s['pieces']} pieces in {s['rounds']} round(s), mapped in {s['map_seconds']:.2f} s")
    d = s["dataflow"]
    c.print(f"dataflow {d['name']} (loop order {d['order']}, best {d['objective']} of {len(d['runners_up']) + 1}): "
            f"estimated {d['estimate']['energy_pj'] / 1e6:,.1f} µJ, {d['estimate']['latency_s'] * 1e3:,.3f} ms, "
            f"DRAM {format_bytes(d['estimate']['dram_bytes'])}; runners-up: "
            + ", ".join(f"{r['name']} {r['energy_pj'] / 1e6:,.1f} µJ" for r in d["runners_up"]))
    c.print(core_table(s))
    c.print(_baseline_table(s))
    c.print("DRAM by category: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in s["dram_bytes"].items()
                                             if k != "total"))
    if "chips" in s:
        x = s["chips"]
        c.print(f"{x['count']} chips ({x['topology']}, {x['link']['gb_per_s']:g} GB/s links): "
                + "; ".join(f"chip {k['chip']} {len(k['groups'])} group(s) in {k['rounds']} round(s)" for k in x["chips"]))
        c.print(f"{len(x['cut_tensors'])} cut tensor(s): " + ", ".join(
                    f"{t['tensor']} chip {t['from_chip']}->{t['to_chip']}" for t in x["cut_tensors"])
                + f"; chip-to-chip {format_bytes(x['link_bytes']['program'])} per step "
                  f"(analytic {format_bytes(x['link_bytes']['analytic'])})")
    c.print("wrote " + ", ".join(f"{out}/{f}" for f in files))


def core_table(s: dict) -> Table:
    """compile.json's cores: the layers each holds, its pieces, work, instructions and fullest SRAM."""
    t = Table(title="per core")
    for col, just in (("core", "left"), ("layers (pieces)", "left"), ("pieces", "right"), ("work ops", "right"),
                      ("instructions", "right"), ("fullest SRAM", "right")):
        t.add_column(col, justify=just)
    work = s["load_balance"]["work_ops"]
    for core in s["cores"]:
        role, use = max(core["sram"].items(), key=lambda kv: kv[1]["percent"], default=("", {"percent": 0}))
        t.add_row(f"({', '.join(map(str, core['core']))})", ", ".join(f"{k} ({n})" for k, n in core["layers"].items()) or "idle",
                  str(core["pieces"]), format_count(work[",".join(map(str, core["core"]))]), f"{core['instructions']:,}",
                  f"{role} {use['percent']:.0f} %" if use["percent"] else "")
    return t


def _baseline_table(s: dict) -> Table:
    t = Table(title="mapper vs sequential baseline")
    for col in ("", "mapper", "baseline", "ratio"):
        t.add_column(col, justify="right")
    b = s.get("baseline", {})
    bn = b.get("noc", {})
    rows = [("NoC bytes", s["noc"]["bytes"], bn.get("bytes"), format_bytes),
            ("NoC hop-bytes", s["noc"]["hop_bytes"], bn.get("hop_bytes"), format_bytes),
            ("busiest link bytes", s["noc"]["busiest_link"]["bytes"], bn.get("busiest_link", {}).get("bytes"),
             format_bytes),
            ("multicast packets/step", s["noc"]["multicast_packets_per_step"], bn.get("multicast_packets_per_step"),
             "{:,}".format),
            ("load max/mean", s["load_balance"]["max_over_mean"], b.get("load_balance", {}).get("max_over_mean"),
             "{:g}".format),
            ("DRAM bytes", s["dram_bytes"]["total"], b.get("dram_bytes", {}).get("total"), format_bytes)]
    for name, m, base, fmt in rows:
        t.add_row(name, fmt(m), "" if base is None else fmt(base), f"{m / base:.3f}" if base else "")
    return t


def verdict(rep: dict) -> str:
    """One line: what bounds the step's cycles, DRAM's share of the energy, the heaviest layer and
    how busy the cores' engines are."""
    t = rep["totals"]
    bound, energy = t["bottleneck"], t["energy_pj"]
    parts = [f"{BOUNDS[bound]}-bound: {percent(t['cycles_by_bound'][bound], t['cycles'])} of cycles",
             f"DRAM {percent(t['energy_breakdown_pj']['dram'], energy)} of energy"]
    if rep["layers"]:
        heavy = max(rep["layers"], key=lambda l: l["energy_pj"])
        parts.append(f"heaviest layer {heavy['name']}, {percent(heavy['energy_pj'], energy)} of energy")
    busy = [max(c["utilisation"].values()) for c in rep["cores"]]
    if busy:
        parts.append(f"cores busy {_share(min(busy), 1)}-{percent(max(busy), 1)} of cycles (busiest engine)")
    return "; ".join(parts)


def layer_table(rep: dict) -> Table:
    """report.json's layers: synaptic ops per engine, spike rate, energy (and its DRAM part), DRAM
    bytes and engine cycles."""
    t = Table(title="per layer")
    for col, just in (("layer", "left"), ("op", "left"), ("FP ops", "right"), ("BP ops", "right"),
                      ("WG ops", "right"), ("spike rate", "right"), ("energy µJ", "right"), ("share", "right"),
                      ("DRAM µJ", "right"), ("DRAM bytes", "right"), ("cycles", "right")):
        t.add_column(col, justify=just)
    energy = rep["totals"]["energy_pj"]
    for l in rep["layers"]:
        rate = "" if l["spike_rate"] is None else f"{l['spike_rate']:.3f}"
        t.add_row(l["name"], l["op"], *(format_count(l["ops"][k]) for k in ("fp", "bp", "wg")), rate,
                  f"{l['energy_pj'] / 1e6:,.3f}", percent(l["energy_pj"], energy),
                  f"{l['energy_breakdown_pj']['dram'] / 1e6:,.3f}", format_bytes(l["dram_bytes"]),
                  f"{l['cycles']:,}")
    return t


def print_report(rep: dict, out: str | None, layers: bool = False) -> None:
    """The simulate summary: the per-layer table (with `layers`), totals and the verdict, energy
    breakdown, DRAM by category, cycles by bound."""
    t, c = rep["totals"], rep["config"]
    con = _console()
    step = f"training step, {c['optimizer']} update" if c["training"] else "inference"
    con.print(f"{c['model']} on {c['arch']} ({step}, T={c['timesteps']}, B={c['batch']}, mode {c['mode']}, "
              f"{c['arithmetic']} arithmetic, dataflow {c['dataflow']}: loop order {c['order']})")
    if layers:
        con.print(layer_table(rep))
    tab = Table(title="totals")
    tab.add_column("figure")
    tab.add_column("value", justify="right")
    rows = [("energy", f"{t['energy_pj'] / 1e6:,.3f} µJ"), ("latency", f"{t['latency_s'] * 1e3:,.3f} ms"),
            ("cycles", f"{t['cycles']:,}"), ("synaptic ops (sparse)", format_count(t["synaptic_ops"])),
            ("dense synaptic ops", format_count(t["dense_synaptic_ops"])), ("DRAM bytes", format_bytes(t["dram_bytes"])),
            ("NoC bytes / hop-bytes", f"{format_bytes(t['noc_bytes'])} / {format_bytes(t['noc_hop_bytes'])}"),
            ("TFLOPS/W on chip, dense / effective",
             f"{t['dense_tflops_per_w_onchip']} / {t['effective_tflops_per_w_onchip']}"),
            ("TFLOPS/W with DRAM, NoC, static", f"{t['dense_tflops_per_w_total']} / {t['effective_tflops_per_w_total']}"),
            ("area", f"{t['area_mm2']:,.2f} mm²")]
    if t["gpu_baseline_dram_bytes"]:
        rows.append(("GPU baseline DRAM bytes", format_bytes(t["gpu_baseline_dram_bytes"])))
        rows.append(("DRAM reduction vs GPU", f"{100 * t['dram_reduction_vs_gpu']:.1f} %"))
    for k, v in rows:
        tab.add_row(k, v)
    con.print(tab)
    con.print(f"[bold]{verdict(rep)}[/bold]")
    con.print("energy: " + ", ".join(f"{k} {percent(v, t['energy_pj'])}" for k, v in t["energy_breakdown_pj"].items()))
    con.print("DRAM: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in t["dram_bytes_by_category"].items()))
    if "chip_link_bytes" in t:
        con.print(f"chip-to-chip links ({rep['config'].get('chips')} chips): {format_bytes(t['chip_link_bytes'])}, "
                  f"{t['chip_link_energy_pj'] / 1e6:,.3f} µJ")
    con.print("cycles by bound: " + ", ".join(f"{BOUNDS[k]} {percent(v, t['cycles'])}"
                                              for k, v in t["cycles_by_bound"].items()))
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
        con.print("wrote " + ", ".join(f"{out}/{f}" for f in sorted(os.listdir(out))))
