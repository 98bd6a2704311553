"""Run a compiled program on real data: the functional simulation gives spikes, gradients and the
measured work; the cost walk turns them into cycles and energy; the result is report.json."""

from __future__ import annotations

import numpy as np

from hwsim.cost import ENGINES, Costs, run_costs
from hwsim.functional import RunResult, Simulator, output_name, run, sgd_update
from hwsim.gpu import GpuConfig, gpu_dram_bytes
from hwsim.neuromc import neuromc_costs
from isa import Graph, SpikeforgeError
from isa.arch import Arch
from isa.program import Program

VERSION = "0.1"


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


def simulate(graph: Graph, program: Program, arch: Arch, x: np.ndarray, labels: np.ndarray | None = None,
             mode: str = "sparse", seed: int = 0, lr: float = 0.01, record: bool = False, progress=None) -> dict:
    """Simulate one inference or training step (`program.meta["training"]`) of `graph` on `x`
    [T, B, *input]; returns the report (report.json) and, with `record`, the outputs per op
    under the key `_values` (not part of the JSON). A training step updates the graph's weights."""
    if mode not in ("sparse", "dense"):
        raise SpikeforgeError(f"mode: must be sparse or dense, got {mode!r}")
    training = bool(program.meta.get("training"))
    T, B = x.shape[:2]
    if (T, B) != (program.meta.get("timesteps"), program.meta.get("batch")):
        raise SpikeforgeError(f"input has T={T}, B={B} but the program was compiled for "
                              f"T={program.meta.get('timesteps')}, B={program.meta.get('batch')}")
    res = functional_step(graph, x, training, arch.arithmetic, labels, seed, record, progress)
    if training:
        sgd_update(graph, res.grads, lr)
    costs = run_costs(program, graph, arch, res.stats, mode)
    return report_from(graph, program, arch, res, costs, mode, seed)


def functional_step(graph: Graph, x: np.ndarray, training: bool, arithmetic: str = "fp32",
                    labels: np.ndarray | None = None, seed: int = 0, record: bool = False, progress=None) -> RunResult:
    """The functional half of `simulate`: spikes, gradients and measured work of one step on `x`
    (labels drawn from `seed` when not given). Leaves the graph's weights as they are."""
    if labels is None:
        n_out = int(np.prod(graph[output_name(graph)].type.shape))
        labels = np.random.default_rng(seed + 1).integers(0, n_out, x.shape[1])
    sim = Simulator(graph, fp16=arithmetic == "fp16")
    return run(sim, {graph.inputs[0].name: x}, labels, training, chunk=1, record=record, progress=progress)


def report_from(graph: Graph, program: Program, arch: Arch, res: RunResult, costs: Costs, mode: str,
                seed: int) -> dict:
    """The report of a functional result `res` and the cost walk `costs` of `program` on `arch`."""
    training = bool(program.meta.get("training"))
    T, B = int(program.meta["timesteps"]), int(program.meta["batch"])
    seconds = costs.cycles / (arch.clock_mhz * 1e6)
    e = costs.energy
    energy = sum(e.values())
    dense_flops = 2 * sum(costs.dense_syn_ops.values())
    onchip = e["compute"] + e["sram"]
    dram_total = sum(costs.dram_bytes.values())
    gpu = None
    if training:
        gpu = gpu_dram_bytes(graph, B, T, GpuConfig(precision=arch.precision))["total"]
    layers = []
    for op in graph:
        st = res.stats.get(op.name)
        if st is None or op.kind == "input":
            continue
        c = costs.layers.get(op.name, {"ops": dict.fromkeys(ENGINES, 0), "energy_pj": 0.0, "cycles": 0})
        layers.append({
            "name": op.name, "op": op.kind,
            "spike_rate": round(float(st.out_nonzero.sum()) / (st.size * T * B), 6) if op.type.kind == "spike" else None,
            "grad_nonzero": round(float(st.grad_nonzero.sum()) / (st.size * T * B), 6) if training else None,
            "ops": c["ops"], "energy_pj": round(c["energy_pj"], 3), "cycles": int(c["cycles"]),
        })
    totals = {
        "energy_pj": round(energy, 3),
        "energy_breakdown_pj": {k: round(v, 3) for k, v in e.items()},
        "cycles": int(costs.cycles), "latency_s": seconds,
        "dram_bytes": int(dram_total), "dram_bytes_by_category": {k: int(v) for k, v in costs.dram_bytes.items()},
        "noc_bytes": round(costs.noc_bytes, 3), "noc_hop_bytes": round(costs.noc_hop_bytes, 3),
        "synaptic_ops": int(sum(costs.syn_ops.values())), "synaptic_ops_by_engine": costs.syn_ops,
        "dense_synaptic_ops": int(sum(costs.dense_syn_ops.values())),
        "tflops_per_w_onchip": round(dense_flops / onchip, 6) if onchip else None,
        "tflops_per_w_total": round(dense_flops / energy, 6) if energy else None,
        "gpu_baseline_dram_bytes": gpu,
        "dram_reduction_vs_gpu": round(1 - dram_total / gpu, 6) if gpu else None,
        "loss": round(res.loss, 6) if res.loss is not None else None,
    }
    cores = [{"core": list(c), "utilisation": v["utilisation"], "energy_pj": round(float(v["energy_pj"]), 3),
              "sram_peak_bytes": {k: int(n) for k, n in v["sram_peak_bytes"].items()}} for c, v in costs.cores.items()]
    rep = {"totals": totals, "layers": layers, "cores": cores,
           "config": {"model": graph.name, "arch": arch.name, "mode": mode, "timesteps": T, "batch": B,
                      "seed": seed, "training": training, "arithmetic": arch.arithmetic, "version": VERSION}}
    if mode == "dense":  # the authors' read-once accounting of the same step, beside the walk
        rep["neuromc"] = neuromc_costs(graph, arch, B, T, training).to_dict()
    if res.values:
        rep["_values"] = res.values
    return rep
