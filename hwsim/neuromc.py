"""The authors' per-engine cost model (NeuroMC, as re-implemented in SpikingJelly's
op_counter/neuromc [NEUROMC]; see ../shared/background.md), counted layer by layer from the graph.

A training step of B samples and T steps is split into B x T fragments (one sample, one step).
Per fragment every engine performs the dense loop operations of its layer (spikes save energy
through the cheaper spike-gated add and 1-bit storage, not through skipped zeros), and reads or
writes each operand once, at the pJ/bit of the engine's SRAM that holds it. Weights are written
into an engine's weight SRAM once per step when they fit it (reused across B and T), else once
per fragment. With `spill`, partial sums leave the PE array every `pe_rows` reduction terms (the
16x16 C x K array variant) and are written to and read back from the psum SRAM each time.
Energy is on-chip (compute + SRAM), as in the paper's TFLOPS/W; DRAM is left out of it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from isa import Graph
from isa.arch import Arch
from isa.ops import KINDS, SPIKE, WEIGHT_KINDS

ENGINES = ("fp", "bp", "wg")


@dataclass
class LayerCost:
    """One op's step: energy per engine (pJ), its dense synaptic ops per engine, and what the
    energy is made of (compute / sram, pJ)."""

    name: str
    kind: str
    energy_pj: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ENGINES, 0.0))
    syn_ops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENGINES, 0))
    compute_pj: float = 0.0
    sram_pj: float = 0.0


@dataclass
class NeuroMC:
    """A whole step: per-op costs, the optimizer update, and the totals."""

    layers: list[LayerCost]
    update_pj: float
    weight_dram_bytes: int

    @property
    def energy_pj(self) -> dict[str, float]:
        return {e: sum(c.energy_pj[e] for c in self.layers) for e in ENGINES}

    @property
    def onchip_pj(self) -> float:
        return sum(self.energy_pj.values()) + self.update_pj

    @property
    def syn_ops(self) -> dict[str, int]:
        return {e: sum(c.syn_ops[e] for c in self.layers) for e in ENGINES}

    @property
    def flops(self) -> int:
        """2 FLOPs per dense synaptic operation, FP + BP + WG."""
        return 2 * sum(self.syn_ops.values())

    @property
    def tflops_per_w(self) -> float:
        return self.flops / self.onchip_pj if self.onchip_pj else 0.0

    def to_dict(self) -> dict:
        return {
            "layers": [{"name": c.name, "op": c.kind, "energy_pj": {k: round(v, 3) for k, v in c.energy_pj.items()},
                        "syn_ops": c.syn_ops} for c in self.layers if any(c.energy_pj.values())],
            "totals": {"energy_pj": {k: round(v, 3) for k, v in self.energy_pj.items()},
                       "update_pj": round(self.update_pj, 3), "onchip_pj": round(self.onchip_pj, 3),
                       "flops": self.flops, "tflops_per_w_onchip": round(self.tflops_per_w, 6),
                       "weight_dram_bytes": self.weight_dram_bytes},
        }


def neuromc_costs(graph: Graph, arch: Arch, batch: int, timesteps: int, training: bool = True,
                  spill: bool = False, optimizer: str = "sgd") -> NeuroMC:
    """The NeuroMC energy of one step of `graph` (inference: FP only) on `arch`'s engines, its
    update by `optimizer` (sgd or adam)."""
    e, vb = arch.energy, arch.value_bytes * 8
    frags = batch * timesteps
    pj = {(role, eng): arch.buffer_for(role, eng).read_pj_per_bit for role in
          ("weights", "input", "psum", "membrane", "spikes", "mask", "grad_in", "bptt", "grad_out", "wgrad", "bn")
          for eng in ENGINES}
    opt = arch.buffer_for("optimizer", "").read_pj_per_bit
    layers, update, wdram = [], 0.0, 0
    kinds = {op.name: op.type.kind for op in graph}
    inputs = {op.name for op in graph.inputs}
    for li in graph.layers():
        c = LayerCost(li.name, li.kind)
        n = li.out_type.size
        if li.kind in WEIGHT_KINDS:
            s = li.work.syn_ops
            spike_in = kinds[li.inputs[0]] == SPIKE
            in_bits = li.in_types[0].size * (1 if spike_in else vb)
            w_bits = li.params * vb
            n_in = li.in_types[0].size
            engines = ("fp",)
            if training:  # no input errors are needed where the layer reads the graph's input
                engines = ("fp", "wg") if li.inputs[0] in inputs else ENGINES
            for eng in engines:
                fits = li.params * arch.value_bytes <= arch.buffer_for("weights", eng).bytes
                if eng == "fp":  # input spikes gate the weights into output currents
                    compute = s * (e.ac if spike_in else e.mac)
                    bits = [("input", in_bits), ("weights", w_bits), ("psum", _psum(n, s, vb, arch, eng, spill))]
                elif eng == "bp":  # output errors x weights -> input errors (FP16 MACs)
                    compute = s * e.mac
                    bits = [("grad_in", n * vb), ("weights", w_bits), ("psum", _psum(n_in, s, vb, arch, eng, spill))]
                else:  # input spikes gate the accumulation of output errors into weight gradients
                    compute = s * (e.ac if spike_in else e.mac)
                    bits = [("input", in_bits), ("grad_in", n * vb),
                            ("wgrad", w_bits + _psum(li.params, s, vb, arch, eng, spill))]
                sram = sum(b * pj[(role, eng)] for role, b in bits) * frags
                if eng != "wg":  # loading the weight SRAM: once per step when the weights fit
                    loads = 1 if fits else frags
                    sram += loads * w_bits * pj[("weights", eng)]
                    wdram += loads * li.params * arch.value_bytes
                c.energy_pj[eng] = compute * frags + sram
                c.syn_ops[eng] = s * frags
                c.compute_pj += compute * frags
                c.sram_pj += sram
            if training and optimizer == "adam":
                update += _adam(graph[li.name].params, li, arch)
            elif training:  # SGD: read weight and gradient, write the weight, in the optimizer SRAM
                update += li.params * (e.sgd + 3 * vb * opt)
        elif li.kind in ("lif", "li"):
            fwd = e.neuron_fwd + pj[("psum", "fp")] * vb + 2 * vb * pj[("membrane", "fp")]
            if li.kind == "lif":
                fwd += pj[("spikes", "fp")] + (pj[("mask", "fp")] + vb * pj[("bptt", "bp")] if training else 0)
            c.energy_pj["fp"] = n * frags * fwd
            c.compute_pj += n * frags * e.neuron_fwd
            if training:
                bwd = e.neuron_bwd + (vb + 2) * pj[("bptt", "bp")] + 2 * vb * pj[("grad_out", "bp")]
                c.energy_pj["bp"] = n * frags * bwd
                c.compute_pj += n * frags * e.neuron_bwd
            c.sram_pj = sum(c.energy_pj.values()) - c.compute_pj
        elif li.work.elem_ops:  # batch-norm, residual add, pooling: one add per element op, in and out
            buf = pj[("bn", "fp")] if li.kind == "batchnorm" else pj[("psum", "fp")]
            per = li.work.elem_ops * e.elem + 2 * n * vb * buf
            c.energy_pj["fp"] = per * frags
            if training:
                c.energy_pj["bp"] = per * frags
            c.compute_pj = li.work.elem_ops * e.elem * frags * (2 if training else 1)
            c.sram_pj = sum(c.energy_pj.values()) - c.compute_pj
        layers.append(c)
    return NeuroMC(layers, update, wdram)


def _psum(outputs: int, syn_ops: int, vb: int, arch: Arch, eng: str, spill: bool) -> int:
    """Bits of partial sums an engine writes and reads for `outputs` results of `syn_ops` terms:
    each written once; with `spill`, also written and read back every `pe_rows` terms."""
    chunks = math.ceil(syn_ops / max(outputs, 1) / arch.engines[eng].pe_rows) if spill else 1
    return outputs * vb * (2 * chunks - 1)


def _adam(params: dict, li, arch: Arch) -> float:
    """NeuroMC's Adam (docs/neuromc_rules.md sections 5-6) for a weight layer's tensors: per
    element of a >= 2-D tensor the `adam` ops, 6 FP32 words read and 5 written at the optimizer
    SRAM and at the registers; an element of a <= 1-D tensor (a bias) counts twice. `params`:
    the op's parameters."""
    buf = arch.buffer_for("optimizer", "")
    per = arch.energy.adam + 32 * (6 * buf.read_pj_per_bit + 5 * buf.write_pj_per_bit + 11 * arch.energy.register_bit)
    specs = KINDS[li.kind].tensors(params, list(li.in_types), li.out_type)
    return sum(math.prod(t.shape) * (2 if len(t.shape) <= 1 else 1) * per for t in specs.values() if t.trainable)
