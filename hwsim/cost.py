"""Timing and energy of a run: the program's activity counted with the work the functional
simulation measured (isa/activity.py), then priced and timed under the architecture. `reprice`
gives the costs of the same activity under another architecture's tables without walking again.
The rules are in docs/simulation.md; every constant comes from the architecture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.hwsim.functional import OpStats
from spikeforge.isa import Graph
from spikeforge.isa.activity import Activity, Timing, count, price, time
from spikeforge.isa.arch import Arch
from spikeforge.isa.program import Program


@dataclass
class Costs:
    activity: Activity
    timing: Timing
    energy: dict[str, float]  # pJ per term: compute, sram, noc, dram, static, link

    @property
    def cycles(self) -> int:
        return self.timing.cycles

    @property
    def dram_bytes(self) -> dict[str, float]:
        return self.activity.total.dram_by_category()

    @property
    def syn_ops(self) -> dict[str, float]:
        return self.activity.total.syn

    @property
    def dense_syn_ops(self) -> dict[str, float]:
        return self.activity.total.dense_syn


def _measured(graph: Graph, stats: dict[str, OpStats], mode: str, planned_rate: float, batch: int):
    """The work and spike-traffic callbacks of `count` from the functional simulation's stats."""
    sizes = {op.name: op.type.size for op in graph}
    cum = {}
    for name, st in stats.items():
        for key in ("fp_ops", "bp_ops", "wg_ops"):
            arr = getattr(st, key)
            if arr is not None:
                cum[(name, key)] = np.concatenate([np.zeros(arr.shape[:2] + (1,), np.int64), arr.cumsum(2)], 2)

    def work(layer, key, lo, hi, b, t):
        """Ops of elements [lo, hi): whole units as measured, a part of a unit (a row band of a
        channel) pro rata to its elements."""
        c = cum.get((layer, key))
        if c is None:
            return None
        per = sizes[layer] // stats[layer].units
        return _upto(c, b, t, hi, per) - _upto(c, b, t, lo, per)

    rates = {}
    for name, st in stats.items():
        if planned_rate:
            rates[name] = st.out_nonzero / (st.size * batch) / planned_rate

    def spike_scale(layer, t):
        r = rates.get(layer)
        return np.ones(len(t)) if r is None else r[t]

    return (work if mode == "sparse" else None), spike_scale


def _upto(cum: np.ndarray, b, t, x: int, per: int) -> np.ndarray:
    """Ops of the elements before x, from the cumulative ops per unit (integers, so the parts of
    a unit sum to the unit's ops exactly)."""
    i, r = divmod(x, per)
    base = cum[b, t, i]
    return base if r == 0 else base + (cum[b, t, i + 1] - base) * r // per


def run_costs(program: Program, graph: Graph, arch: Arch, stats: dict[str, OpStats], mode: str = "sparse") -> Costs:
    """Cycles, energy terms, traffic and per-layer / per-core figures of one run of `program`."""
    h = program.header
    work, scale = _measured(graph, stats, mode, h.spike_rate, h.batch)
    return reprice(count(program, graph, arch, work, scale), arch)


def reprice(activity: Activity, arch: Arch) -> Costs:
    """The costs of an activity under `arch`'s energy tables, clock, DRAM and NoC figures."""
    t = time(activity, arch)
    return Costs(activity, t, price(activity.total, arch, t.seconds, arch.n_cores * activity.chips))

