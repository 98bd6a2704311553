"""Run a compiled program on real data: the functional simulation gives spikes, gradients and the
measured work; the cost walk turns them into cycles and energy; the result is report.json."""

from __future__ import annotations

import numpy as np

from spikeforge.hwsim.cost import Costs, run_costs
from spikeforge.hwsim.functional import RunResult, Simulator, output_name, run, set_running
from spikeforge.hwsim.gpu import GpuConfig, gpu_dram_bytes
from spikeforge.hwsim.neuromc import neuromc_costs
from spikeforge.hwsim.optim import make_optimizer, store_fp16
from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.isa.activity import ENGINES, Counts, price, stage_cycles
from spikeforge.isa.arch import Arch
from spikeforge.isa.limits import check_array
from spikeforge.isa.program import Program
from spikeforge.isa.safeio import load_npz

VERSION = "0.1"


def read_input(path: str, where: str, allow_nonfinite: bool = False) -> np.ndarray:
    """Array `x` of an .npz file (`simulate --input`, a sweep's `input`): real, and finite unless
    `allow_nonfinite`."""
    arrays = load_npz(path, where)
    if "x" not in arrays:
        raise SpikeforgeError(f"{path} has no array 'x' (it has: {', '.join(arrays) or 'none'})", where)
    check_array(f"{where}: array x", arrays["x"], allow_nonfinite)
    return arrays["x"]


def make_input(graph: Graph, timesteps: int, batch: int, rate: float | None, seed: int,
               data: np.ndarray | None = None) -> np.ndarray:
    """The input tensor [T, B, *shape]: given data (`[T, B, ...]` or `[B, ...]` repeated over T),
    or Poisson spikes at `rate` (spike inputs) / uniform [0, 1) values (direct inputs)."""
    inp = graph.inputs[0]
    shape = (timesteps, batch) + inp.type.shape
    if data is not None:
        data = np.asarray(data, dtype=np.float32)
        if data.shape == shape[1:]:
            return np.broadcast_to(data, shape).copy()
        if data.shape != shape:
            raise SpikeforgeError(f"input array x: expected shape {list(shape)} ([T, B, *input]) or "
                                  f"{list(shape[1:])} ([B, *input]), got {list(data.shape)}")
        return data
    rng = np.random.default_rng(seed)
    if inp.type.kind == "spike" or rate is not None:
        return (rng.random(shape) < (0.2 if rate is None else rate)).astype(np.float32)
    return rng.random(shape, dtype=np.float32)


OBJECTIVES = {"energy": lambda c: sum(c.energy.values()), "latency": lambda c: c.timing.seconds,
              "edp": lambda c: sum(c.energy.values()) * c.timing.seconds}


def simulate(graph: Graph, program: Program, arch: Arch, x: np.ndarray, labels: np.ndarray | None = None,
             mode: str = "sparse", seed: int = 0, lr: float | None = None, record: bool = False,
             progress=None, alternatives: tuple[Program, ...] = (), objective: str = "energy") -> dict:
    """Simulate one inference or training step (`program.header.training`) of `graph` on `x`
    [T, B, *input]; returns the report (report.json) and, with `record`, the outputs per op
    under the key `_values` (not part of the JSON). A training step updates the graph's weights
    with the program's optimizer (from a zero state) at `lr` (default: its DEFAULT_LR) and its
    batch-norms' running statistics.
    With `alternatives` (the other candidates of a dataflow search), every program is walked with
    the measured work and spikes and the best for `objective` is reported: a profile-guided choice
    (the functional result does not depend on it)."""
    if mode not in ("sparse", "dense"):
        raise SpikeforgeError(f"mode: must be sparse or dense, got {mode!r}")
    training = program.header.training
    T, B = x.shape[:2]
    if (T, B) != (program.header.timesteps, program.header.batch):
        raise SpikeforgeError(f"input has T={T}, B={B} but the program was compiled for "
                              f"T={program.header.timesteps}, B={program.header.batch}")
    if objective not in OBJECTIVES:
        raise SpikeforgeError(f"objective: must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    optimizer = make_optimizer(program.header.optimizer, lr)
    res = functional_step(graph, x, training, arch.arithmetic, labels, seed, record, progress)
    if training:
        optimizer.step(graph, res.grads)
        set_running(graph, res.running)
    walked = [(p, run_costs(p, graph, arch, res.stats, mode)) for p in (program, *alternatives)]
    best, costs = min(walked, key=lambda pc: OBJECTIVES[objective](pc[1]))
    rep = report_from(graph, best, arch, res, costs, mode, seed)
    if alternatives:
        rep["dataflow"] = {"compiled": program.header.dataflow, "chosen": best.header.dataflow,
                           "objective": objective,
                           "measured": [{"name": p.header.dataflow, "energy_pj": round(sum(c.energy.values()), 3),
                                         "latency_s": c.timing.seconds, "dram_bytes": int(c.activity.total.dram_bytes)}
                                        for p, c in walked]}
    return rep


class OnChip:
    """On-chip training, step after step: a graph on a chip with its compiled training program
    and an optimizer whose state persists. Each `step` runs the functional FP, BP and WG on a
    batch, applies the update (and FP16 storage on an FP16 chip) and walks the program with the
    measured work. `spikeforge.training` and `spikeforge.federated` train with it."""

    def __init__(self, graph: Graph, program: Program, arch: Arch, optimizer):
        self.graph, self.program, self.arch, self.optimizer = graph, program, arch, optimizer
        self.fp16 = arch.arithmetic == "fp16"
        if self.fp16:
            store_fp16(graph)
        self.sim = Simulator(graph, fp16=self.fp16)

    def step(self, x: np.ndarray, labels: np.ndarray) -> tuple[RunResult, Costs]:
        """One training step on x [T, B, *input]: the functional result and the step's costs."""
        res = run(self.sim, {self.graph.inputs[0].name: x}, labels, True)
        costs = run_costs(self.program, self.graph, self.arch, res.stats, "sparse")
        self.optimizer.step(self.graph, res.grads)
        set_running(self.graph, res.running)
        if self.fp16:
            store_fp16(self.graph)
        self.sim.refresh()
        return res, costs


def functional_step(graph: Graph, x: np.ndarray, training: bool, arithmetic: str = "fp32",
                    labels: np.ndarray | None = None, seed: int = 0, record: bool = False, progress=None) -> RunResult:
    """The functional half of `simulate`: spikes, gradients and measured work of one step on `x`
    (labels drawn from `seed` when not given). Leaves the graph's weights as they are."""
    if labels is None:
        n_out = int(np.prod(graph[output_name(graph)].type.shape))
        labels = np.random.default_rng(seed + 1).integers(0, n_out, x.shape[1])
    sim = Simulator(graph, fp16=arithmetic == "fp16")
    return run(sim, {graph.inputs[0].name: x}, labels, training, chunk=1, record=record, progress=progress)


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 6) if den else None


def _terms(by_kind: dict, chips: int) -> dict:
    """Energy terms or cycle bounds as a report shows them: without the chip-to-chip links on one chip."""
    return by_kind if chips > 1 else {k: v for k, v in by_kind.items() if k != "link"}


def report_from(graph: Graph, program: Program, arch: Arch, res: RunResult, costs: Costs, mode: str,
                seed: int) -> dict:
    """The report of a functional result `res` and the costs `costs` of `program` on `arch`."""
    h = program.header
    training, T, B = h.training, h.timesteps, h.batch
    act, timing = costs.activity, costs.timing
    e = _terms(costs.energy, h.chips)
    energy = sum(e.values())
    onchip = e["compute"] + e["sram"]
    dense_flops = 2 * sum(act.total.dense_syn.values())
    flops = 2 * sum(act.total.syn.values())
    dram_total = act.total.dram_bytes
    gpu = gpu_dram_bytes(graph, B, T, GpuConfig(precision=arch.precision, optimizer=h.optimizer))["total"] \
        if training else None
    engine_cycles = sum(c.engine_cycles for c in act.layers.values())
    layers = []
    for op in graph:
        st, c = res.stats.get(op.name), act.layers.get(op.name)
        if op.kind in ("input", "output") or (st is None and c is None):
            continue
        c = c or Counts()
        terms = _terms(price(c, arch), h.chips)  # no static: that follows
        terms["static"] = e["static"] * c.engine_cycles / engine_cycles if engine_cycles else 0.0
        layers.append({
            "name": op.name, "op": op.kind,
            "spike_rate": round(float(st.out_nonzero.sum()) / (st.size * T * B), 6) if st and op.type.kind == "spike" else None,
            "grad_nonzero": round(float(st.grad_nonzero.sum()) / (st.size * T * B), 6) if st and training else None,
            "ops": {k: int(v) for k, v in c.syn.items()},
            "dense_ops": {k: int(v) for k, v in c.dense_syn.items()},
            "energy_pj": round(sum(terms.values()), 3), "energy_breakdown_pj": {k: round(v, 3) for k, v in terms.items()},
            "dram_bytes": int(c.dram_bytes), "cycles": int(c.engine_cycles),
        })
    totals = {
        "energy_pj": round(energy, 3),
        "energy_breakdown_pj": {k: round(v, 3) for k, v in e.items()},
        "cycles": int(timing.cycles), "latency_s": timing.seconds,
        "cycles_by_bound": {k: int(v) for k, v in _terms(timing.by_bound, h.chips).items()},
        "bottleneck": timing.bottleneck,
        "dram_bytes": int(dram_total),
        "dram_bytes_by_category": {k: int(v) for k, v in act.total.dram_by_category().items()},
        "dram_read_bytes": int(sum(act.total.dram_read.values())),
        "dram_write_bytes": int(sum(act.total.dram_write.values())),
        "noc_bytes": round(act.total.noc_bits / 8, 3), "noc_hop_bytes": round(act.total.noc_bit_hops / 8, 3),
        "synaptic_ops": int(flops // 2), "synaptic_ops_by_engine": {k: int(v) for k, v in act.total.syn.items()},
        "dense_synaptic_ops": int(dense_flops // 2),
        "dense_tflops_per_w_onchip": _ratio(dense_flops, onchip),
        "effective_tflops_per_w_onchip": _ratio(flops, onchip),
        "dense_tflops_per_w_total": _ratio(dense_flops, energy),
        "effective_tflops_per_w_total": _ratio(flops, energy),
        "area_mm2": round(arch.area_mm2, 3),
        "gpu_baseline_dram_bytes": gpu,
        "dram_reduction_vs_gpu": round(1 - dram_total / gpu, 6) if gpu else None,
        "loss": round(res.loss, 6) if res.loss is not None else None,
    }
    if h.chips > 1:
        totals.update(chip_link_bytes=round(act.total.link_bits / 8, 3),
                      chip_link_hop_bytes=round(act.total.link_bit_hops / 8, 3), chip_link_energy_pj=round(e["link"], 3))
    static_core = e["static"] / (arch.n_cores * h.chips)
    engine_units = set(ENGINES)
    cores = [{"core": list(c), "layers": list(dict.fromkeys(i.args[0] for i, _ in program.walk(c) if i.unit in engine_units)),
              "utilisation": {k: round(act.busy[c][k] / timing.cycles, 4) if timing.cycles else 0.0
                                               for k in ENGINES},
              "energy_pj": round(sum(_terms(price(act.cores[c], arch), h.chips).values()) + static_core, 3),
              "sram_peak_bytes": {k: int(n) for k, n in sorted(act.peak[c].items())}} for c in program.cores]
    stages = [{"layers": list(st.layers), "instances": st.instances, "cycles": cyc}
              for st, cyc in zip(act.stages, stage_cycles(act, arch))]
    links = [{"from": list(a), "to": list(b), "bytes": round(f * arch.noc.link_bits / 8, 1),
              **({"chip": key[0]} if len(key) == 2 and isinstance(key[0], int) else {})}
             for key, f in sorted(act.link_flits.items()) if f
             for a, b in [key[1] if len(key) == 2 and isinstance(key[0], int) else key]]
    rep = {"totals": totals, "layers": layers, "cores": cores, "stages": stages, "noc_links": links,
           "config": {"model": graph.name, "arch": arch.name, "mode": mode, "timesteps": T, "batch": B,
                      "seed": seed, "training": training, "arithmetic": arch.arithmetic,
                      "dataflow": h.dataflow, "order": h.order, "optimizer": h.optimizer if training else None,
                      "version": VERSION, **({"chips": h.chips} if h.chips > 1 else {})}}
    if mode == "dense":  # the same step under the authors' cost model (its counting rules, arch's prices)
        rep["neuromc"] = neuromc_costs(graph, arch, B, T, training, optimizer=h.optimizer).to_dict()
    if res.values:
        rep["_values"] = res.values
    return rep
