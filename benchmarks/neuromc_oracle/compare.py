"""spikeforge's NeuroMC port (hwsim/neuromc.py) beside SpikingJelly's own profiler run (a record
of run_oracle.py: live, or a committed <model>.json), per engine and per layer. SpikingJelly's
figures are its module fragments only: the trace fallback's double count of Linear backward is
left out (docs/neuromc_rules.md §8). No torch or spikingjelly import here."""

from __future__ import annotations

import json
import math
import os

from spikeforge.hwsim.neuromc import ENGINES, NeuroMC
from spikeforge.isa import Graph
from spikeforge.isa.ops import NEURON_KINDS

HERE = os.path.dirname(os.path.abspath(__file__))
ORACLE_ENGINE = {"fp": "fp", "bp": "bp", "wg": "wg", "optimizer": "opt"}  # run_oracle.engine_of's names


def load(model: str) -> dict:
    """The committed record of `model` (vgg11, vgg11_nobn, resnet18, vgg11_sj)."""
    with open(os.path.join(HERE, f"{model}.json")) as f:
        return json.load(f)


def rel(ours: float, theirs: float) -> float:
    """Relative difference ours / theirs - 1 (0 where both are 0)."""
    return ours / theirs - 1 if theirs else (0.0 if not ours else math.inf)


def engines(nm: NeuroMC, rec: dict) -> dict[str, tuple[float, float]]:
    """Per engine (fp, bp, wg, optimizer): (ours, SpikingJelly's) energy in pJ."""
    theirs = rec["totals_module_fragments_only"]["by_engine"]
    ours = nm.engines()
    return {e: (ours[e]["energy_pj"], theirs.get(ORACLE_ENGINE[e], {}).get("energy_pj", {}).get("total", 0.0))
            for e in ENGINES}


def category(kind: str) -> str | None:
    """weight, bn or neuron: the kinds of layer the model charges, by spikeforge op kind or torch module type."""
    if kind in ("linear", "conv1d", "conv2d", "Linear", "Conv1d", "Conv2d"):
        return "weight"
    if kind == "batchnorm" or kind.startswith("BatchNorm"):
        return "bn"
    if kind in NEURON_KINDS or kind.endswith("Node"):
        return "neuron"
    return None


def layers(graph: Graph, nm: NeuroMC, rec: dict, batch: int, timesteps: int) -> list[dict]:
    """Our layers paired with SpikingJelly's modules, in execution order within each category
    (weight layers, batch-norms, neurons); a pair must agree in size (MACs, or elements), else
    the structures differ and ValueError names the first pair that does. Each row: name,
    module, op, and per engine (fp, bp, wg) (ours, theirs) in pJ."""
    ours = {c: [(n, d) for n, d in nm.layers().items() if category(d["op"]) == c] for c in ("weight", "bn", "neuron")}
    theirs = {c: [m for m in rec["modules"] if "in_shape" in m and category(m["type"]) == c] for c in ours}
    rows = []
    for c in ours:
        if len(ours[c]) != len(theirs[c]):
            raise ValueError(f"{graph.name}: {len(ours[c])} {c} layers, SpikingJelly's model has {len(theirs[c])}")
        for (name, d), m in zip(ours[c], theirs[c]):
            eng = {e: m["engines"].get(e, {}) for e in ("fp", "bp", "wg")}
            if c == "weight":
                same = d["macs"]["fp"] == eng["fp"].get("mac_count")
            else:
                same = batch * timesteps * graph[name].type.size == math.prod(m["out_shape"])
            if not same:
                raise ValueError(f"{graph.name}: layer {name} does not match SpikingJelly's {m['name']} ({m['type']})")
            rows.append({"name": name, "module": m["name"], "op": d["op"],
                         **{e: (d["energy_pj"][e], eng[e].get("energy_pj", {}).get("total", 0.0)) for e in eng}})
    order = {n: i for i, n in enumerate(nm.layers())}
    return sorted(rows, key=lambda r: order[r["name"]])


def max_layer_diff(rows: list[dict], kind: str | None = None) -> float:
    """The largest |relative difference| over the rows' engines (of one `category`'s layers)."""
    return max((abs(rel(*r[e])) for r in rows if kind in (None, category(r["op"])) for e in ("fp", "bp", "wg")
                if r[e] != (0.0, 0.0)), default=0.0)
