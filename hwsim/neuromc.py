"""The authors' per-engine cost model ("NeuroMC"), ported from SpikingJelly 2.0.0
`activation_based.op_counter.neuromc` [NEUROMC]; its rules, with file:line references, are in
docs/neuromc_rules.md (section numbers below point there).

One step of B samples and T time steps is a list of fragments, each covering one (layer,
engine) call over the whole [T, B, ...] tensor (§1.5): FP (conv/linear forward, batch-norm
forward, neuron forward), BP (conv/linear input gradient, absent where the layer's input needs
no gradient; batch-norm and neuron backward), WG (weight gradient) and one optimizer fragment.
A fragment's energy is its MACs at the spike-gated (add + mux) or real (add + mul) price, its
other FP16 operations, its register bits and its bits in each SRAM. Counts are dense: a tensor
being spikes (1 bit, gated adds) matters, how many spikes it holds does not. Pooling, flatten,
reshape, residual add, other element-wise ops and the loss cost nothing, as in the model.
Counting needs no architecture; prices come from `arch` (the `neuromc` preset carries the
model's own). DRAM and NoC are outside the model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from spikeforge.isa import Graph
from spikeforge.isa.arch import Arch, Buffer
from spikeforge.isa.ops import KINDS, NEURON_KINDS, SPIKE

ENGINES = ("fp", "bp", "wg", "optimizer")
OPTIMIZERS = ("adam", "sgd")
PRIMITIVES = ("add", "mul", "mux", "comp", "sqrt")
PARTS = ("mac", "extra", "register", "sram")
CHUNK = 16  # channels per partial-sum chunk / reuse window of the model's 16-wide arrays (mapping.py:125-185)

# The buffer each model memory instance maps to (the preset's names), and its role for chips
# that name their buffers otherwise (§2.2, §4.1).
ROLES = {"fp_weights": "weights", "fp_input": "input", "fp_psum": "psum", "fp_membrane": "membrane",
         "fp_spikes": "spikes", "fp_mask": "mask", "bp_grad_in": "grad_in", "bp_weights": "weights",
         "bp_psum": "psum", "bp_potential": "bptt", "bp_spikes": "bptt", "bp_mask": "bptt",
         "bp_grad_out": "grad_out", "wg_spikes": "input", "wg_grads": "grad_in", "wg_wgrad": "wgrad",
         "bn": "bn", "optimizer": "optimizer"}


@dataclass
class Fragment:
    """The counts of one fragment: MACs, other FP16 operations, register bits, SRAM bits read
    and written per buffer."""

    layer: str
    kind: str  # the op's kind; "optimizer" for the update
    engine: str  # fp, bp, wg, optimizer
    what: str  # the model's op name: conv.forward, linear.backward.grad_input, bn.forward, soma.backward, adam...
    macs: int = 0
    spike: bool = False  # MACs gated by input spikes (add + mux), else add + mul
    ops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRIMITIVES, 0))
    reg_bits: int = 0
    read_bits: dict[str, int] = field(default_factory=dict)
    write_bits: dict[str, int] = field(default_factory=dict)

    def reg(self, *bits: int) -> None:
        """Register traffic; the model skips a term of <= 0 bits (mapping.py:43)."""
        self.reg_bits += sum(b for b in bits if b > 0)

    def read(self, buf: str, bits: int) -> None:
        if bits > 0:
            self.read_bits[buf] = self.read_bits.get(buf, 0) + bits

    def write(self, buf: str, bits: int) -> None:
        if bits > 0:
            self.write_bits[buf] = self.write_bits.get(buf, 0) + bits

    def var(self, n: int, bits: int, buf: str, reads: int, reg_write: bool, sram_write: bool) -> None:
        """One variable of the model's extra memory (§6): `reads` reads of n values at the register
        and at `buf`, and a write at each where flagged."""
        b = n * bits
        self.reg(b * reads, b if reg_write else 0)
        self.read(buf, b * reads)
        if sram_write:
            self.write(buf, b)

    def add_ops(self, **counts: int) -> None:
        for k, v in counts.items():
            self.ops[k] += v


def neuromc_fragments(graph: Graph, batch: int, timesteps: int, training: bool = True,
                      optimizer: str = "adam", momentum: bool = False, weight_decay: bool = False,
                      momentum_buffer: bool = False) -> list[Fragment]:
    """The model's fragments of one step of `graph` (inference: the FP fragments only). The
    optimizer is Adam/AdamW (the same cost) or SGD, whose momentum, weight decay and existing
    momentum buffer add work as in the model (§5, §6; its runtime entry point never steps, so a
    momentum buffer exists only from the second step on)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    bt = batch * timesteps
    frags: list[Fragment] = []
    needs_grad = _needs_grad(graph)
    vectors = matrices = 0  # trainable elements of <= 1-D and >= 2-D tensors (the optimizer's KT and FYFXKC)
    for op in graph:
        ins = [graph[i].type for i in op.inputs]
        tensors = KINDS[op.kind].tensors(op.params, ins, op.type)
        trainable = [s.shape for s in tensors.values() if s.trainable]
        vectors += sum(math.prod(s) for s in trainable if len(s) <= 1)
        matrices += sum(math.prod(s) for s in trainable if len(s) >= 2)
        out = bt * op.type.size
        if op.kind in ("linear", "conv1d", "conv2d"):
            frags += _weight_layer(op.name, op.kind, op.params, ins[0], op.type, tensors["weight"].shape, bt,
                                   training, needs_grad[op.inputs[0]])
        elif op.kind == "batchnorm":  # §5, §6: C channels, K = C, OY = the rest
            ct = op.type.shape[0] * timesteps
            f = Fragment(op.name, op.kind, "fp", "bn.forward")
            f.add_ops(add=3 * out + 2 * ct, mul=3 * out + 4 * ct, sqrt=ct)
            for n, reads, write in ((ct, 2, 1), (ct, 1, 1), (out, 1, 1), (ct, 1, 1), (out, 1, 1), (ct, 1, 0),
                                    (ct, 1, 0)):  # mean_v, variance, n, sqrt, xi_, y, b
                f.var(n, 16, "bn", reads, write, write)
            frags.append(f)
            if training:
                f = Fragment(op.name, op.kind, "bp", "bn.backward")
                f.add_ops(add=7 * out, mul=3 * out + 22 * ct)
                for n, reads, write in ((out, 2, 0), (ct, 2, 0), (ct, 2, 0), (out, 3, 1), (out, 3, 0), (ct, 1, 1),
                                        (ct, 1, 1), (ct, 2, 1), (ct, 0, 1), (ct, 0, 1), (out, 0, 1)):
                    # du_l_pre1, sqrt, y, m, n, sigma_m, sigma_n, sigma_mn, dy, db, du_l_pre2
                    f.var(n, 16, "bn", reads, write, write)
                frags.append(f)
        elif op.kind in NEURON_KINDS:  # §5, §6: any neuron, by its size only
            f = Fragment(op.name, op.kind, "fp", "soma.forward")
            f.add_ops(mux=out, add=out, mul=out, comp=3 * out)
            f.var(out, 16, "fp_psum", 1, True, True)  # fp_yi1, the conv result
            f.var(out, 16, "fp_membrane", 1, True, True)  # fp_u_l
            f.var(out, 1, "fp_spikes", 1, True, True)  # fp_s_l
            f.var(out, 1, "fp_mask", 0, True, True)  # fp_smask_l
            frags.append(f)
            if training and needs_grad[op.inputs[0]]:
                f = Fragment(op.name, op.kind, "bp", "soma.backward")
                f.add_ops(mux=out, add=2 * out, mul=4 * out)
                f.var(out, 16, "bp_psum", 1, False, False)  # bp_conv_res
                f.var(out, 16, "bp_potential", 1, False, True)  # bp_u_l_pre
                f.var(out, 1, "bp_spikes", 1, False, False)  # bp_s_l_pre
                f.var(out, 1, "bp_mask", 1, False, False)  # bp_smask_l_pre
                f.var(out, 16, "bp_grad_out", 1, True, False)  # bp_du_l_pre
                frags.append(f)
    if training and vectors + matrices:
        frags.append(_optimizer(optimizer, vectors, matrices, momentum, weight_decay, momentum_buffer))
    return frags


def _needs_grad(graph: Graph) -> dict[str, bool]:
    """Does each op's value depend on a trainable tensor (autograd's requires_grad)? A `delay`
    reads a later op, so the ops are swept until nothing changes."""
    needs = dict.fromkeys((op.name for op in graph), False)
    changed = True
    while changed:
        changed = False
        for op in graph:
            ins = [graph[i].type for i in op.inputs]
            own = any(s.trainable for s in KINDS[op.kind].tensors(op.params, ins, op.type).values())
            if not needs[op.name] and (own or any(needs[i] for i in op.inputs)):
                needs[op.name] = changed = True
    return needs


def _weight_layer(name, kind, p, x, y, wshape, bt, training, grad_in) -> list[Fragment]:
    """Forward, input-gradient and weight-gradient fragments of a linear or conv layer (§1.5,
    §4). C is the input channels even for grouped convs (the model ignores `groups` in MACs);
    a linear layer counts only its last axis, as the model's multi-step layout does."""
    if kind == "linear":
        C, K, oy, ox, fy, fx = x.shape[-1], y.shape[-1], 1, 1, 1, 1
    else:
        C, K = x.shape[0], y.shape[0]
        oy, ox = (y.shape[1], y.shape[2]) if kind == "conv2d" else (y.shape[1], 1)
        fy, fx = p["kernel"] if kind == "conv2d" else (p["kernel"], 1)
    M = bt * C * K * oy * ox * fy * fx
    W, n_in, n_out = math.prod(wshape), bt * x.size, bt * y.size
    spike = x.kind == SPIKE
    pi = 1 if spike else 16
    tag = "linear" if kind == "linear" else "conv"
    fe = Fragment(name, kind, "fp", f"{tag}.forward", M, spike)  # fp_soma / ann_fe
    _chunked(fe, M, n_out, W, pi, math.ceil(C / CHUNK) * fy * fx,
             "fp_input" if spike else "fp_weights", "fp_weights", "fp_psum")  # ann_fe: input at the weight SRAM
    frags = [fe]
    if not training:
        return frags
    if grad_in:  # bp_grad / ann_be: output errors through the weights, O = the input's size
        be = Fragment(name, kind, "bp", f"{tag}.backward.grad_input", M, False)
        _chunked(be, M, n_in, W, 16, math.ceil(K / CHUNK) * fy * fx, "bp_grad_in", "bp_weights", "bp_psum")
        frags.append(be)
    # wg / ann_we (mapping.py:123-163): the output errors are the "weights", dW the output
    wg = Fragment(name, kind, "wg", f"{tag}.backward.grad_weight", M, spike)
    wg.reg(2 * M * pi, 2 * M * 16, W * 16, (M - W) * 16, M * 16)
    wg.read("wg_spikes" if spike else "wg_grads", -(-M // min(K, CHUNK)) * pi)
    wg.read("wg_grads", -(-M // min(C, CHUNK)) * 16)
    wg.write("wg_wgrad", W * 16)
    frags.append(wg)
    return frags


def _chunked(f: Fragment, M: int, O: int, W: int, pi: int, n: int, inp: str, wts: str, psum: str) -> None:
    """Weight-stationary FE / BE (mapping.py:165-228): weights read once per fragment, the
    reduction cut into n chunks (16 channels x one kernel tap); the input is streamed once per
    chunk and partial sums are written and read back between chunks."""
    partial, streamed = O * (n - 1), O * n
    f.reg(2 * M * pi, 2 * W * 16, M * 16, (M - O) * 16, M * 16, partial * 16)
    f.read(inp, streamed * pi)
    f.read(wts, W * 16)
    f.read(psum, partial * 16)
    f.write(psum, streamed * 16)


def _optimizer(kind, vectors, matrices, momentum, weight_decay, momentum_buffer) -> Fragment:
    """The update of every trainable tensor (§5, §6), 32-bit, in the optimizer SRAM."""
    f = Fragment("<optimizer>", "optimizer", "optimizer", kind)
    if kind == "adam":  # each <= 1-D element is charged as a (gamma, beta) pair: twice
        f.add_ops(add=8 * vectors + 4 * matrices, mul=22 * vectors + 11 * matrices, sqrt=2 * vectors + matrices)
        for n in (vectors, vectors, matrices):
            for reads, write in ((1, 0), (1, 0), (1, 1), (1, 1), (1, 1), (1, 1), (0, 1)):
                # param, grad; v, s, vbc, sbc; updated
                f.var(n, 32, "optimizer", reads, write, write)
        return f
    n = vectors + matrices  # SGD: SRAM only, no register traffic
    passes = 1 + weight_decay + (momentum and momentum_buffer)
    f.add_ops(add=n * passes, mul=n * passes)
    f.read("optimizer", 32 * n * (2 + (momentum and momentum_buffer)))
    f.write("optimizer", 32 * n * (1 + momentum))
    return f


@dataclass
class NeuroMC:
    """The fragments of a step and the energy parts of each (pJ): mac, extra, register, sram."""

    fragments: list[Fragment]
    parts: list[dict[str, float]]
    sram: list[dict[str, float]]  # per fragment: pJ per buffer name
    optimizer: str

    def engines(self) -> dict[str, dict]:
        """Per engine: MACs, energy and its parts, SRAM energy per buffer."""
        out = {e: {"macs": 0, "energy_pj": 0.0, **{f"{k}_pj": 0.0 for k in PARTS}, "sram_pj_by_buffer": {}}
               for e in ENGINES}
        for f, parts, sram in zip(self.fragments, self.parts, self.sram):
            d = out[f.engine]
            d["macs"] += f.macs
            d["energy_pj"] += sum(parts.values())
            for k in PARTS:
                d[f"{k}_pj"] += parts[k]
            for b, v in sram.items():
                d["sram_pj_by_buffer"][b] = d["sram_pj_by_buffer"].get(b, 0.0) + v
        return out

    def layers(self) -> dict[str, dict]:
        """Per layer (in graph order): its op, MACs and energy per engine."""
        out: dict[str, dict] = {}
        for f, parts in zip(self.fragments, self.parts):
            if f.engine == "optimizer":
                continue
            d = out.setdefault(f.layer, {"op": f.kind, "macs": dict.fromkeys(ENGINES[:3], 0),
                                         "energy_pj": dict.fromkeys(ENGINES[:3], 0.0)})
            d["macs"][f.engine] += f.macs
            d["energy_pj"][f.engine] += sum(parts.values())
        return out

    @property
    def energy_pj(self) -> float:
        return sum(sum(p.values()) for p in self.parts)

    @property
    def macs(self) -> int:
        return sum(f.macs for f in self.fragments)

    @property
    def flops(self) -> int:
        """2 FLOPs per MAC of FP, BP and WG (the model reports no FLOPs; docs/neuromc_rules.md §9)."""
        return 2 * self.macs

    @property
    def tflops_per_w(self) -> float:
        """FLOPs per pJ = TFLOPS/W, on chip (the model charges no DRAM or NoC)."""
        return self.flops / self.energy_pj if self.energy_pj else 0.0

    def to_dict(self) -> dict:
        def r(v):
            return {k: r(x) for k, x in v.items()} if isinstance(v, dict) else round(v, 3) if isinstance(v, float) else v

        return {
            "optimizer": self.optimizer,
            "engines": r(self.engines()),
            "layers": [{"name": n, **r(d)} for n, d in self.layers().items()],
            "totals": {"energy_pj": r(self.energy_pj), "macs": self.macs, "flops": self.flops,
                       "tflops_per_w": round(self.tflops_per_w, 6)},
        }


def buffer_of(arch: Arch, name: str) -> Buffer:
    """The buffer `name` of `arch`, else its buffer of the same role for the same engine."""
    try:
        return arch.buffer(name)
    except KeyError:
        return arch.buffer_for(ROLES[name], name.split("_")[0])


def neuromc_costs(graph: Graph, arch: Arch, batch: int, timesteps: int, training: bool = True,
                  optimizer: str = "adam", **sgd) -> NeuroMC:
    """The model's energy of one step of `graph` under `arch`'s prices (§2): MACs at add + mux
    (spike input) or add + mul, primitives at their pJ, registers at `register_bit`, SRAM bits at
    each buffer's read / write pJ per bit. `sgd`: momentum, weight_decay, momentum_buffer."""
    e = arch.energy
    frags = neuromc_fragments(graph, batch, timesteps, training, optimizer, **sgd)
    bufs = {n: buffer_of(arch, n) for n in ROLES}
    parts, srams = [], []
    for f in frags:
        sram: dict[str, float] = {}
        for bits, attr in ((f.read_bits, "read_pj_per_bit"), (f.write_bits, "write_pj_per_bit")):
            for n, b in bits.items():
                buf = bufs[n]
                sram[buf.name] = sram.get(buf.name, 0.0) + b * getattr(buf, attr)
        parts.append({"mac": f.macs * (e.add + (e.mux if f.spike else e.mul)),
                      "extra": sum(c * getattr(e, k) for k, c in f.ops.items()),
                      "register": f.reg_bits * e.register_bit, "sram": sum(sram.values())})
        srams.append(sram)
    return NeuroMC(frags, parts, srams, optimizer)
