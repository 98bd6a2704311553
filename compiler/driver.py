"""The compile driver: model + architecture -> mapping plan, schedule and per-core program."""

from __future__ import annotations

from dataclasses import dataclass

from compiler.codegen import generate
from isa import Graph, SpikeforgeError
from isa.arch import Arch, load_arch
from isa.program import Program
from mapping.plan import MapConfig, Plan, map_graph
from mapping.schedule import Schedule, build_schedule


@dataclass
class Compiled:
    graph: Graph
    arch: Arch
    plan: Plan
    schedule: Schedule
    program: Program


def compile_model(model: Graph | str, arch: Arch | str = "default", training: bool = False, timesteps: int = 4,
                  batch: int = 1, strategy: str = "metis", spike_rate: float = 0.1, seed: int = 0) -> Compiled:
    """Map `model` (a Graph, zoo name or model file) onto `arch` (an Arch, preset name or YAML
    file) and generate the per-core programs for inference, or for a training step of `batch`
    samples when `training`."""
    from compiler.frontends import load_model

    for name, v in (("timesteps", timesteps), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpikeforgeError(f"{name}: must be a positive int, got {v!r}")
    if not 0 < spike_rate <= 1:
        raise SpikeforgeError(f"spike_rate: must be in (0, 1], got {spike_rate!r}")
    graph = load_model(model, weights=False) if isinstance(model, str) else model
    chip = load_arch(arch) if isinstance(arch, str) else arch
    cfg = MapConfig(training=training, timesteps=timesteps, batch=batch, spike_rate=spike_rate,
                    strategy=strategy, seed=seed)
    plan = map_graph(graph, chip, cfg)
    schedule = build_schedule(plan)
    return Compiled(graph, chip, plan, schedule, generate(plan, schedule))
