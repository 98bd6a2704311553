"""One design point, in a worker: mapping, dataflow search, functional simulation, activity,
report totals.

Each worker process keeps these caches, so a point usually costs re-pricing only. Like
`simulate`, a point chooses among the dataflow candidates by their walks with the measured work
(a profile-guided choice):
- the mapping (plan and schedule) per `Point.compile_key` (model, seed, base arch, the overrides
  the mapper reads, training, T, B, optimizer): points that change only clock, energy, DRAM, NoC
  or engine figures share it;
- the functional result (spikes, gradients, measured work) per (model, seed, T, B, training,
  input, arithmetic): every point of a sweep over the hardware shares it;
- the dataflow candidates (programs and their dense activities) per mapping and the arch fields
  the counting reads (engine lanes, buffer ports, NoC link);
- the measured activity per (candidate, functional key, mode): each point re-prices every
  candidate's (`hwsim.cost.reprice`) and keeps the best for its objective;
- the model graph (with weights) per (model, seed), and the base architecture document.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from functools import lru_cache
from typing import Any

from spikeforge.compiler.driver import candidates
from spikeforge.compiler.frontends import load_model
from spikeforge.hwsim.cost import reprice, run_costs
from spikeforge.hwsim.functional import RunResult
from spikeforge.hwsim.simulate import OBJECTIVES, functional_step, make_input, read_input, report_from
from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.mapping.dataflow import check_tiles
from spikeforge.mapping.plan import MapConfig, map_graph
from spikeforge.mapping.schedule import build_schedule
from spikeforge.sweeps.spec import Point, base_doc, build_arch


@lru_cache(maxsize=8)
def _graph(model: str, seed: int) -> Graph:
    return load_model(model, seed=seed)


@lru_cache(maxsize=8)
def _base(arch: str) -> dict:
    return base_doc(arch)


@lru_cache(maxsize=32)
def _mapping(model: str, seed: int, arch: str, shape: tuple, training: bool, timesteps: int, batch: int,
             optimizer: str):
    """Plan and schedule for the base architecture with the mapper-relevant overrides `shape`."""
    chip = build_arch(_base(arch), dict(shape))
    plan = map_graph(_graph(model, seed), chip, MapConfig(training=training, timesteps=timesteps, batch=batch,
                                                          seed=seed, optimizer=optimizer, chips=chip.system.chips))
    check_tiles(plan)
    return plan, build_schedule(plan)


_CANDIDATES: dict = {}
_ACTIVITY: dict = {}
_LOCK = threading.Lock()  # Dask may run points in threads of one process


def _cached(cache: dict, key, make, size: int):
    """cache[key], made once; the oldest entries go beyond `size`."""
    with _LOCK:
        if key not in cache:
            cache[key] = make()
            while len(cache) > size:
                cache.pop(next(iter(cache)))
        return cache[key]


def _structure(arch) -> tuple:
    """The architecture fields the counting walk reads besides the mapping's."""
    return (tuple(arch.engines.items()), tuple((b.name, b.port_bits) for b in arch.buffers + arch.global_buffers),
            arch.noc.link_bits, arch.noc.hop_cycles)


@lru_cache(maxsize=8)
def _functional(model: str, seed: int, timesteps: int, batch: int, training: bool, rate: float | None,
                input_file: str | None, arithmetic: str) -> RunResult:
    graph = _graph(model, seed)
    data = None if input_file is None else read_input(input_file, input_file)
    x = make_input(graph, timesteps, batch, rate, seed, data)
    res = functional_step(graph, x, training, arithmetic, seed=seed)
    return replace(res, grads={})  # a sweep reports the step, it never applies the update


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Numeric leaves of nested dicts, keys joined by '_' (energy_breakdown_pj.dram -> energy_breakdown_pj_dram)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}_"))
        elif v is None or isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def evaluate(point: Point) -> dict[str, Any]:
    """Simulate one design point: `{"status": "ok", "error": None, **totals}` with the report's
    numeric totals flattened, or `{"status": "error", "error": message}`."""
    try:
        arch = build_arch(_base(point.arch), dict(point.overrides))
        graph = _graph(point.model, point.seed)
        plan, schedule = _mapping(*point.compile_key)
        ckey = (point.compile_key, point.dataflow, _structure(arch))
        cands = _cached(_CANDIDATES, ckey, lambda: candidates(graph, arch, plan, schedule, point.dataflow), 4)
        fkey = (point.model, point.seed, point.timesteps, point.batch, point.training, point.rate, point.input,
                arch.arithmetic)
        res = _functional(*fkey)
        walked = [(c.program, reprice(_cached(_ACTIVITY, (ckey, c.name, fkey, point.mode),
                                              lambda c=c: run_costs(c.program, graph, arch, res.stats, point.mode).activity,
                                              64), arch)) for c in cands]
        program, costs = min(walked, key=lambda pc: OBJECTIVES[point.objective](pc[1]))  # as `simulate` chooses
        report = report_from(graph, program, arch, res, costs, point.mode, point.seed)
    except SpikeforgeError as e:
        return {"status": "error", "error": str(e)}
    except Exception as e:  # noqa: BLE001 -- one broken point (a bug, out of memory) must not end the sweep
        return {"status": "error", "error": f"{type(e).__name__}: {e}"}
    return {"status": "ok", "error": None, **flatten(report["totals"])}
