"""The compile driver: model + architecture -> mapping plan, schedule, dataflow and per-core program.

The dataflow is searched: each candidate (a loop order with its memory homes, mapping/dataflow.py)
becomes a program, which is priced analytically: its dense counts (isa/activity.py, no spikes
simulated, the planned spike rate for the NoC) times the chip's energy table and timing. The best
candidate for the objective is kept; the others are recorded as runners-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from spikeforge.compiler.codegen import generate
from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.isa.activity import Activity, count, price, time
from spikeforge.isa.arch import Arch, load_arch, with_chips
from spikeforge.isa.program import OPTIMIZERS, Program
from spikeforge.mapping.dataflow import DATAFLOWS, FIXED, OBJECTIVES, Dataflow, assign, check_tiles
from spikeforge.mapping.plan import MapConfig, Plan, map_graph
from spikeforge.mapping.schedule import Schedule, build_schedule

# the candidates a search prices: name -> (loop order, whether the global buffers are used, layer fusion)
SEARCHED = {**FIXED, "step_global": ("step", True, False)}


@dataclass
class Estimate:
    """The analytic price of one candidate: dense counts x the chip's tables."""

    name: str
    order: str
    energy_pj: float
    seconds: float
    dram_bytes: float
    activity: Activity = field(repr=False, compare=False)
    arch: Arch = field(repr=False, compare=False)

    def layer(self, names: list[str]) -> tuple[float, float]:
        """Energy (pJ, without static) and DRAM bytes of the named layers."""
        counts = [self.activity.layers[n] for n in names if n in self.activity.layers]
        return sum(sum(price(c, self.arch).values()) for c in counts), sum(c.dram_bytes for c in counts)

    def score(self, objective: str) -> float:
        return {"energy": self.energy_pj, "latency": self.seconds, "edp": self.energy_pj * self.seconds}[objective]

    def to_dict(self) -> dict:
        return {"name": self.name, "order": self.order, "energy_pj": round(self.energy_pj, 3),
                "latency_s": self.seconds, "dram_bytes": int(self.dram_bytes)}


@dataclass
class Compiled:
    graph: Graph
    arch: Arch
    plan: Plan
    schedule: Schedule
    program: Program
    dataflow: Dataflow
    objective: str = "energy"
    estimate: Estimate | None = None
    candidates: list[Estimate] = field(default_factory=list)  # every candidate priced, the chosen one included
    programs: list[Program] = field(default_factory=list, repr=False)  # their programs, in the same order

    @property
    def alternatives(self) -> tuple[Program, ...]:
        """The other candidates' programs, for a profile-guided choice in `hwsim.simulate`."""
        return tuple(p for p in self.programs if p is not self.program)


@dataclass
class Candidate:
    """One dataflow candidate, counted: its homes, its program and the program's dense activity
    (what does not depend on prices, so a sweep can keep it and re-price it per design point)."""

    name: str
    dataflow: Dataflow
    program: Program
    activity: Activity

    def estimate(self, arch: Arch) -> Estimate:
        t = time(self.activity, arch)
        energy = sum(price(self.activity.total, arch, t.seconds, arch.n_cores * self.activity.chips).values())
        return Estimate(self.name, self.dataflow.order, energy, t.seconds, self.activity.total.dram_bytes,
                        self.activity, arch)


def candidates(graph: Graph, chip: Arch, plan: Plan, schedule: Schedule, dataflow: str = "search") -> list[Candidate]:
    """The named dataflow, or every searched one, as counted programs."""
    out = []
    for name in (list(SEARCHED) if dataflow == "search" else [dataflow]):
        df = assign(plan, name, *SEARCHED[name])
        program = generate(plan, schedule, df)
        out.append(Candidate(name, df, program, count(program, graph, chip)))
    return out


def pick(graph: Graph, chip: Arch, plan: Plan, schedule: Schedule, cands: list[Candidate],
         objective: str = "energy") -> Compiled:
    """The candidate that is best for `objective` under `chip`'s prices, with every estimate."""
    estimates = [c.estimate(chip) for c in cands]
    best = min(range(len(cands)), key=lambda i: estimates[i].score(objective))
    return Compiled(graph, chip, plan, schedule, cands[best].program, cands[best].dataflow, objective,
                    estimates[best], estimates, [c.program for c in cands])


def compile_model(model: Graph | str, arch: Arch | str = "default", training: bool = False, timesteps: int = 4,
                  batch: int = 1, strategy: str = "metis", spike_rate: float = 0.1, seed: int = 0,
                  dataflow: str = "search", objective: str = "energy", optimizer: str = "sgd",
                  chips: int | None = None) -> Compiled:
    """Map `model` (a Graph, zoo name or model file) onto `arch` (an Arch, preset name or YAML
    file) and generate the per-core programs for inference, or for a training step of `batch`
    samples when `training` (its update by `optimizer`), with the named `dataflow` or the best
    one for `objective`. The model is split over `chips` copies of the chip (default: the
    architecture's `system.chips`) on the system's links."""
    from spikeforge.compiler.frontends import load_model

    for name, v in (("timesteps", timesteps), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpikeforgeError(f"{name}: must be a positive int, got {v!r}")
    if not 0 < spike_rate <= 1:
        raise SpikeforgeError(f"spike_rate: must be in (0, 1], got {spike_rate!r}")
    if dataflow not in DATAFLOWS:
        raise SpikeforgeError(f"dataflow: must be one of {', '.join(DATAFLOWS)}, got {dataflow!r}")
    if objective not in OBJECTIVES:
        raise SpikeforgeError(f"objective: must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if optimizer not in OPTIMIZERS:
        raise SpikeforgeError(f"optimizer: must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if chips is not None and (isinstance(chips, bool) or not isinstance(chips, int) or chips < 1):
        raise SpikeforgeError(f"chips: must be a positive int, got {chips!r}")
    graph = load_model(model, weights=False) if isinstance(model, str) else model
    chip = load_arch(arch) if isinstance(arch, str) else arch
    chip = chip if chips is None else with_chips(chip, chips)
    cfg = MapConfig(training=training, timesteps=timesteps, batch=batch, spike_rate=spike_rate,
                    strategy=strategy, seed=seed, optimizer=optimizer, chips=chip.system.chips)
    plan = map_graph(graph, chip, cfg)
    check_tiles(plan)
    return choose_dataflow(graph, chip, plan, build_schedule(plan), dataflow, objective)


def choose_dataflow(graph: Graph, chip: Arch, plan: Plan, schedule: Schedule, dataflow: str = "search",
                    objective: str = "energy") -> Compiled:
    """The program of the named dataflow, or of the best candidate for `objective`, on a mapped
    plan. `chip` may differ from the plan's architecture in figures the mapper does not read
    (energies, clock, DRAM, NoC): the candidates are priced under `chip`."""
    return pick(graph, chip, plan, schedule, candidates(graph, chip, plan, schedule, dataflow), objective)
