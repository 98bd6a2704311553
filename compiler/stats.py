"""What `compile` reports: the dataflow chosen and its runners-up, SRAM use, DRAM bytes per
category, NoC traffic and load balance, read off the generated program (DMA and NoC
instructions times their loop counts); on several chips, which groups run on which chip and
the tensors that cross between them."""

from __future__ import annotations

import math

import numpy as np

from spikeforge.compiler.driver import Compiled
from spikeforge.isa.program import CATEGORIES, chip_of, coord_of
from spikeforge.mapping.plan import _work, state_bytes
from spikeforge.isa.arch import xy_route
from spikeforge.mapping.placement import hops_matrix


def program_traffic(c: Compiled) -> tuple[dict[str, int], np.ndarray]:
    """DRAM bytes per category and the NoC byte matrix [source core, destination core] (summed
    over the chips) for one run of the program (a training step of B samples, or B inferences)."""
    arch = c.arch
    dram = {k: 0 for k in CATEGORIES}
    noc = np.zeros((arch.n_cores, arch.n_cores))
    for core in c.program.cores:
        src = coord_of(core)[0] * arch.cols + coord_of(core)[1]
        for ins, loops in c.program.walk(core):
            n = math.prod(l.count for l in loops)
            if ins.op in ("dma.load", "dma.store") and ins.operands["level"] == "dram":
                dram[ins.args[2]] += ins.args[1] * n
            elif ins.op == "noc.send":
                r, col = ins.args[1]
                noc[src, r * arch.cols + col] += ins.args[2] * n
    return dram, noc


def _noc_figures(c: Compiled, noc: np.ndarray) -> dict:
    arch = c.arch
    hops = hops_matrix(arch.rows, arch.cols)
    links: dict = {}
    for a in range(arch.n_cores):
        for b in np.flatnonzero(noc[a]):
            for link in xy_route(divmod(a, arch.cols), divmod(int(b), arch.cols)):
                links[link] = links.get(link, 0.0) + noc[a, b]
    busiest = max(links.items(), key=lambda kv: kv[1], default=(((0, 0), (0, 0)), 0.0))
    total = float(noc.sum())
    link_list = [{"from": list(a), "to": list(b), "bytes": int(v)} for (a, b), v in sorted(links.items()) if v]
    return {
        "bytes": int(total),
        "hop_bytes": int((noc * hops).sum()),
        "avg_hops": round(float((noc * hops).sum() / total), 4) if total else 0.0,
        "multicast_packets_per_step": c.plan.packets,
        "busiest_link": {"from": list(busiest[0][0]), "to": list(busiest[0][1]), "bytes": int(busiest[1])},
        "links": link_list,
        "matrix": noc.astype(np.int64).tolist(),
    }


def _key(c: Compiled, chip: int, core: tuple[int, int]) -> tuple:
    return core if c.plan.config.chips == 1 else (chip, *core)


def _balance(c: Compiled) -> dict:
    work = {core: 0.0 for core in c.program.cores}
    gmap = {g.name: g for g in c.plan.groups}
    for p in c.plan.pieces:
        g = gmap[p.group]
        work[_key(c, p.chip, p.core)] += _work(g, c.plan.config.training) * (p.hi - p.lo) / g.units
    w = np.array(list(work.values()))
    mean = float(w.mean()) if len(w) else 0.0
    return {"max_over_mean": round(float(w.max()) / mean, 4) if mean else 0.0,
            "idle_cores": int((w == 0).sum()), "work_ops": {",".join(map(str, k)): int(v) for k, v in work.items()}}


def link_bytes(c: Compiled) -> float:
    """Bytes the program's link.send instructions carry between chips in one run (1 bit per spike element)."""
    vb, total = c.arch.value_bytes, 0.0
    for core in c.program.cores:
        for ins, loops in c.program.walk(core):
            if ins.op == "link.send":
                kind, _, _, elements, _ = ins.args
                total += (elements / 8 if kind == "spike" else elements * vb) * math.prod(l.count for l in loops)
    return total


def chips_doc(c: Compiled) -> dict:
    """compile.json's `chips`: the system, each chip's groups, rounds and global buffer use, and
    the cut tensors with their bytes per sample and step, against what the program sends."""
    plan, arch, cfg = c.plan, c.arch, c.plan.config
    vb, steps = arch.value_bytes, cfg.timesteps * cfg.batch
    per_chip = []
    for k in range(cfg.chips):
        rounds = [r for r, chip in enumerate(plan.round_chip) if chip == k]
        per_chip.append({"chip": k, "groups": [g.name for g in plan.groups if plan.chip_of[g.name] == k],
                         "rounds": len(rounds), "global_buffer_bytes": c.dataflow.global_by_chip[k]})
    cut = [{"tensor": x.tensor, "group": x.src, "from_chip": x.a, "to_chip": x.b, "consumers": list(x.consumers),
            "elements": x.elements, "spike": x.spike, "fwd_bytes_per_step": x.fwd_bytes(vb),
            "bwd_bytes_per_step": x.bwd_bytes(vb) if cfg.training else 0,
            "links_crossed": arch.system.hops(x.a, x.b)} for x in plan.cuts]
    analytic = sum(x["fwd_bytes_per_step"] + x["bwd_bytes_per_step"] for x in cut) * steps
    return {"count": cfg.chips, "topology": arch.system.topology,
            "link": {"gb_per_s": arch.system.link.gb_per_s, "pj_per_bit": arch.system.link.pj_per_bit,
                     "latency_ns": arch.system.link.latency_ns},
            "chips": per_chip, "cut_tensors": cut,
            "link_bytes": {"analytic": analytic, "program": link_bytes(c)}}


def compile_stats(c: Compiled, baseline: Compiled | None = None) -> dict:
    """compile.json: the mapping's figures, and the same for the baseline when given."""
    arch, plan = c.arch, c.plan
    dram, noc = program_traffic(c)
    cores = []
    for core in c.program.cores:
        use = c.dataflow.sram[core]
        roles = sorted({r for b in arch.buffers for r in b.roles})
        held = [p.group for p in plan.pieces if p.core == coord_of(core) and p.chip == chip_of(core)]
        cores.append({
            "core": list(core),
            "pieces": len(held),
            "layers": {g.name: held.count(g.name) for g in plan.groups if g.name in held},
            "instructions": c.program.instruction_count(core),
            "sram": {role: {"used": use.get(role, 0), "capacity": arch.capacity(role),
                            "percent": round(100 * use.get(role, 0) / arch.capacity(role), 2)} for role in roles
                     if arch.capacity(role)},
        })
    out = {
        "model": c.graph.name, "arch": arch.name, "training": plan.config.training,
        "timesteps": plan.config.timesteps, "batch": plan.config.batch, "strategy": plan.config.strategy,
        "spike_rate": plan.config.spike_rate, "optimizer": plan.config.optimizer,
        "rounds": plan.rounds, "pieces": len(plan.pieces), "map_seconds": round(plan.map_seconds, 3),
        "area_mm2": round(arch.area_mm2, 3),
        "dataflow": dataflow_doc(c),
        "dram_bytes": {**dram, "total": sum(dram.values())},
        "noc": _noc_figures(c, noc),
        "load_balance": _balance(c),
        "cores": cores,
    }
    if plan.config.chips > 1:
        out["chips"] = chips_doc(c)
    if baseline is not None:
        b = compile_stats(baseline)
        out["baseline"] = {k: b[k] for k in ("strategy", "dram_bytes", "noc", "load_balance")}
        out["baseline"]["noc"] = {k: v for k, v in b["noc"].items() if k not in ("matrix", "links")}
        base_hops = b["noc"]["hop_bytes"]
        out["hop_bytes_vs_baseline"] = round(out["noc"]["hop_bytes"] / base_hops, 4) if base_hops else None
    return out


def dataflow_doc(c: Compiled) -> dict:
    """The chosen dataflow, its analytic estimate and the runners-up, overall and per group."""
    df, est = c.dataflow, c.estimate
    others = [e for e in c.candidates if e is not est]
    groups = []
    for g in c.plan.groups:
        f = df.flows[g.name]
        names = [o.name for o in g.ops]

        def cost(e):
            energy, dram = e.layer(names)
            return {"energy_pj": round(energy, 3), "dram_bytes": int(dram)}

        stateful = c.plan.config.training and state_bytes(g, g.units, c.arch, c.plan.config.optimizer)
        groups.append({
            "group": g.name, "weights": f.weights if g.weights else None, "wgrad": f.wgrad if g.weights else None,
            "bptt": f.bptt, "inputs": f.inputs, "errors": f.errors, "optimizer_state": f.optimizer if stateful else None,
            "tiles": f.tiles, "inputs_share": round(f.inputs_share, 4), "errors_share": round(f.errors_share, 4),
            "recurrence": g.recurrence or None, "window": f.window, "time_outer": f.time_outer,
            "estimate": cost(est), "runners_up": [{"name": e.name, **cost(e)} for e in others],
        })
    return {"name": df.name, "order": df.order, "objective": c.objective, "estimate": est.to_dict(),
            "runners_up": [e.to_dict() for e in sorted(others, key=lambda e: e.score(c.objective))],
            "global_buffer_bytes": df.global_used, "groups": groups}


def placement_doc(c: Compiled) -> dict:
    """placement.yaml: every piece of every layer, its range, core and engine work."""
    tasks: dict[int, list[str]] = {}
    stages = [s for r in c.schedule.fp for s in r] + [s for r in c.schedule.bp for s in r]
    if c.schedule.update:
        stages.append(c.schedule.update)
    for st in stages:
        for t in st.tasks:
            tasks.setdefault(t.piece, []).append(f"{t.opcode} {t.layer}[{t.lo}:{t.hi}]")
    gmap = {g.name: g for g in c.plan.groups}
    pieces = []
    for p in c.plan.pieces:
        g = gmap[p.group]
        per = g.root.type.size // g.units
        unit = "channels" if g.root.kind in ("conv1d", "conv2d") else "neurons"
        pieces.append({
            "layer": p.group, "ops": [o.name for o in g.ops], "units": [p.lo, p.hi],
            "unit": f"row bands ({g.bands} per channel)" if g.bands > 1 else unit,
            "elements": [p.lo * per, p.hi * per], "round": p.round,
            **({"chip": p.chip} if c.plan.config.chips > 1 else {}), "core": list(p.core),
            "weights": "resident" if p.id in c.dataflow.resident_weights else ("streamed" if g.weights else "none"),
            "bptt_state": "spilled" if p.id in c.dataflow.spilled_bptt else "on-chip",
            "work": list(dict.fromkeys(tasks.get(p.id, []))),
        })
    chips = c.plan.config.chips
    return {"model": c.graph.name, "arch": c.arch.name, "mesh": [c.arch.rows, c.arch.cols],
            **({"chips": chips} if chips > 1 else {}), "rounds": c.plan.rounds, "pieces": pieces}
