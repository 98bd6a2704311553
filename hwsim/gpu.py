"""Analytical model of the DRAM bytes one SNN training iteration moves on a GPU, run as plain
PyTorch runs it (see `gpu_dram_bytes` and docs/gpu_baseline.md)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from spikeforge.isa import Graph
from spikeforge.isa.ops import NEURON_KINDS, WEIGHT_KINDS

L2_SHARE = 0.1  # largest share of L2 a tensor may take and still hit on immediate reuse
CATEGORIES = ("weights", "activations", "bptt_state", "gradients", "optimizer")
_VIEWS = frozenset({"input", "flatten", "reshape", "output"})
# Kernels as (reads, write) over named tensors. Neuron step: x input, v- / v membrane before /
# after, s spike, h surrogate input (saved), b* booleans; backward: ds and dv+ (from step t+1)
# in, dx (= dv, passed on to x) and dv- (to step t-1) out.
_FWD = [("v-", "a1"), ("a1", "b1"), ("b1", "r0"), ("r0", "r"),    # reset = H(v - thr).clone()
        ("v-", "a2"), ("a2 x", "a3"), ("r", "a4"), ("a3 a4", "v"),  # v = beta*v + x - reset*thr
        ("v", "h"), ("h", "b2"), ("b2", "s0"), ("s0", "s")]         # s = H(v - thr) * factor
_BWD = [("ds", "g"), ("g", "g1"), ("h", "c1"), ("c1", "c2"),       # * factor; ATan: clone,
        ("c2", "c3"), ("c3", "c4"), ("c4 g1", "dh"),                # pi/2*a*h, pow, 1 +, a/2 / .
        ("dh dv+", "dx"), ("dx", "dv-")]                            # * g; dv = dh + dv+; beta*dv
# Update stages per parameter: dw summed weight grad, g fp32 grad, m momentum buffer (Adam: first
# moment), v Adam's second moment, s its sqrt(v)-based denominator (a temporary), W master.
_AMP = [("dw", "g"), ("g", "g")]  # cast to fp32, unscale
_OPT = {"sgd": [("W g", "W")], "momentum": [("m g", "m"), ("W m", "W")],
        # torch.optim.Adam's foreach path: lerp m; v *= b2; v += (1-b2) g g; s = sqrt(v); s /= .; s += eps; W -= m / s
        "adam": [("m g", "m"), ("v", "v"), ("v g", "v"), ("v", "s"), ("s", "s"), ("s", "s"), ("W m s", "W")]}


@dataclass(frozen=True)
class GpuConfig:
    l2_mb: float = 50.0  # L2 size (H100: 50 MB)
    precision: str = "fp32"  # "fp32" or "fp16" (AMP: fp16 compute, fp32 master weights)
    fused: bool = False  # fused neuron kernels instead of unfused elementwise ones
    optimizer: str = "sgd"  # "sgd", "momentum" or "adam"


@dataclass(frozen=True)
class _T:
    """A tensor of the trace: id, bytes, category."""
    id: str
    nbytes: int
    cat: str


def gpu_dram_bytes(graph: Graph, batch: int, timesteps: int, cfg: GpuConfig = GpuConfig()) -> dict:
    """Estimated DRAM bytes (read + write) of one training iteration: forward over T steps,
    BPTT backward, optimizer step. Returns {"total", "weights", "activations", "bptt_state",
    "gradients", "optimizer"} as ints (the categories sum to the total).

    Execution as plain PyTorch: a snnTorch-style loop over T (each layer's kernels launched per
    step, time not folded into the batch), BPTT through autograd. The iteration is a trace of
    kernels in launch order (forward t = 0..T-1 in topological order, backward t = T-1..0 in
    reverse, then the update stages), each reading and writing whole batch tensors.

    Cache rule, cap = L2_SHARE x L2 (5 MB on an H100): a read hits L2 iff the kernel just
    before touched the tensor and it fits the cap; a write reaches DRAM unless the tensor fits
    the cap and only the next kernel reads it (a temporary overwritten in L2, never evicted).

    Kernels per op and step: conv / linear forward reads x and W, writes y; backward dgrad
    reads dy, W, writes dx (none into the model input); wgrad reads dy, x, writes dW_t, summed
    over T by one kernel per step; bias grad re-reads dy. A conv (cuDNN: NHWC inside, NCHW
    tensors) transposes each activation operand before and an activation result after, and
    adds its bias in a kernel of its own. batchnorm: two passes over x forward, two over (dy,
    x) backward. Pool, add, mul, scale, sum: one kernel each way (max pool keeps int64
    indices). A value read by k ops has its k grads summed by k - 1 kernels; views are free.
    Unfused neurons (every kind costed as snnTorch Leaky: subtract reset, ATan surrogate) are
    the elementwise kernels of _FWD and _BWD, the membrane goes through DRAM between steps.
    Fused: per step one kernel reads x, writes s and the surrogate input h (membrane on chip);
    backward reads ds and h, writes dx. fp16 (AMP): activations, grads and a compute copy of
    each weight (cast once per iteration) are fp16; the summed weight grad is cast to fp32 and
    unscaled; master weights and momentum are fp32. Left out as negligible: the loss, neuron
    coefficients, batch-norm parameters and statistics.

    Categories: weights (W reads, AMP casts), activations (forward), bptt_state (saved forward
    tensors read back in backward), gradients, optimizer (update stages).
    """
    if cfg.precision not in ("fp32", "fp16") or cfg.optimizer not in _OPT:
        raise ValueError(f"unsupported {cfg}")
    return _dram(_trace(graph, batch, timesteps, cfg), cfg.l2_mb * 1e6 * L2_SHARE)


def _trace(graph: Graph, B: int, T: int, cfg: GpuConfig) -> list[tuple[str, list[_T], list[_T]]]:
    """The kernels (phase, reads, writes) of one iteration in launch order."""
    amp = cfg.precision == "fp16"
    a = 2 if amp else 4  # bytes per activation, grad, compute-copy weight
    layers = graph.layers()
    by_name = {li.name: li for li in layers}

    def source(name: str) -> tuple[str, int]:
        """The tensor a value is, and how many steps earlier: a view is its input's tensor, a
        delay its input's of the previous step."""
        li = by_name[name]
        if li.kind == "delay":
            src, back = source(li.inputs[0])
            return src, back + 1
        return source(li.inputs[0]) if li.kind in _VIEWS and li.inputs else (name, 0)

    alias = {li.name: source(li.name) for li in layers}
    numel = {li.name: B * li.out_type.size for li in layers}
    ops = [li for li in layers if li.kind not in _VIEWS and li.kind != "delay"]
    ks: list = []

    def k(phase, reads, writes):
        ks.append((phase, reads, writes))

    def act(name, t, cat="activations", tag="", elem=a):
        src, back = alias[name]
        return _T(f"{src}{tag}@{t - back}", numel[src] * elem, cat)

    def w(li, master=False):
        return _T(f"{li.name}/W{'32' if master else ''}", li.params * (4 if master else a), "weights")

    def chain(phase, kernels, loc, make):
        """Elementwise kernels over named tensors; `make(name)` creates a missing one."""
        for r, o in kernels:
            if o not in loc:
                loc[o] = make(o)
            k(phase, [loc[n] for n in r.split() if loc[n]], [loc[o]])

    def gemm(phase, li, acts, weight, out):
        """A conv / linear kernel reading `acts` and `weight` (None: a weight-grad kernel).
        A conv transposes its NCHW activation operands to NHWC first, its result back after."""
        conv = li.kind != "linear"
        nhwc = [_T(f"{x.id}/nhwc{len(ks)}", x.nbytes, x.cat) if conv else x for x in acts + [out]]
        for x, n in zip(acts, nhwc):
            if conv:
                k(phase, [x], [n])
        res = nhwc[-1] if weight else out  # a weight grad needs no transpose
        k(phase, nhwc[:-1] + ([weight] if weight else []), [res])
        if res is not out:
            k(phase, [res], [out])

    for t in range(T):
        for li in ops:
            xs, y = [act(i, t) for i in li.inputs], act(li.name, t)
            if li.kind in WEIGHT_KINDS:
                if amp and t == 0:
                    k("fwd", [w(li, True)], [w(li)])
                gemm("fwd", li, xs, w(li), y)
                if li.kind != "linear" and graph[li.name].params["bias"]:
                    k("fwd", [y], [y])
            elif li.kind == "batchnorm":
                k("fwd", xs, [])
                k("fwd", xs, [y])
            elif li.kind in NEURON_KINDS and cfg.fused:
                k("fwd", xs, [y, act(li.name, t, tag="/h")])
            elif li.kind in NEURON_KINDS:
                chain("fwd", _FWD, {"x": xs[0], "s": y, "v-": act(li.name, t - 1, tag="/v")},
                      lambda o: act(li.name, t, tag=f"/{o}", elem=1 if o[0] == "b" else a))
            else:
                k("fwd", xs, [y] + ([act(li.name, t, tag="/idx", elem=8)] if _is_max(graph, li) else []))

    grad: dict[str, _T] = {}

    def emit(key, g):
        """Add a grad contribution to `key`: the first is kept, later ones are summed."""
        if key in grad:
            s = _T(f"{key}/sum{len(ks)}", g.nbytes, g.cat)
            k("bwd", [grad[key], g], [s])
            g = s
        grad[key] = g

    for t in reversed(range(T)):
        for li in reversed(ops):
            dy = grad.pop(f"d{li.name}@{t}", None) or act(li.name, t, "gradients", "/d")
            xs = [act(i, t, "bptt_state") for i in li.inputs]
            dxs = [act(i, t, "gradients", f"/d-{li.name}") for i in li.inputs]
            if li.kind in WEIGHT_KINDS:
                src, back = alias[li.inputs[0]]
                if graph[src].kind == "input" or t < back:  # no error into the input or the initial state
                    dxs = []
                else:
                    gemm("bwd", li, [dy], w(li), dxs[0])
                dw = _T(f"{li.name}/dW@{t}", li.params * a, "gradients")
                gemm("bwd", li, [dy] + xs, None, dw)
                if graph[li.name].params["bias"]:
                    k("bwd", [dy], [])
                emit(f"{li.name}/dW", dw)
            elif li.kind == "batchnorm":
                k("bwd", [dy] + xs, [])
                k("bwd", [dy] + xs, dxs)
            elif li.kind in NEURON_KINDS and cfg.fused:
                k("bwd", [dy, act(li.name, t, "bptt_state", "/h")], dxs)
            elif li.kind in NEURON_KINDS:
                loc = {"ds": dy, "dx": dxs[0], "dv+": grad.pop(f"{li.name}/v@{t}", None),
                       "h": act(li.name, t, "bptt_state", "/h")}
                chain("bwd", _BWD, loc, lambda o: act(li.name, t, "gradients", f"/{o}"))
                emit(f"{li.name}/v@{t - 1}", loc["dv-"])
            elif li.kind == "add":
                dxs = [dy] * len(li.inputs)
            else:
                saved = [act(li.name, t, "bptt_state", "/idx", 8)] if _is_max(graph, li) else []
                k("bwd", [dy] + saved + (xs if li.kind in ("mul", "matmul") else []), dxs)
            for i, dx in zip(li.inputs, dxs):
                src, back = alias[i]
                if t >= back:
                    emit(f"d{src}@{t - back}", dx)

    for r, o in (_AMP if amp else []) + _OPT[cfg.optimizer]:
        for li in layers:
            if li.params:
                dw = grad.get(f"{li.name}/dW") or _T(f"{li.name}/dW", li.params * a, "gradients")
                g32 = _T(f"{li.name}/dW32", li.params * 4, "gradients") if amp else dw
                state = {n: _T(f"{li.name}/{n}", li.params * 4, "optimizer") for n in ("m", "v", "s")}
                chain("opt", [(r, o)], {"dw": dw, "g": g32, "W": w(li, amp), **state}, None)
    return ks


def _is_max(graph: Graph, li) -> bool:
    return li.kind == "pool2d" and graph[li.name].params["mode"] == "max"


def _dram(kernels, cap: float) -> dict:
    """Apply the cache rule to a kernel trace: DRAM bytes per category and in total."""
    readers = defaultdict(set)
    for i, (_, reads, _) in enumerate(kernels):
        for t in reads:
            readers[t.id].add(i)
    out = dict.fromkeys(CATEGORIES, 0)
    prev: set[str] = set()
    for i, (phase, reads, writes) in enumerate(kernels):
        for t in reads:
            if not (t.id in prev and t.nbytes <= cap):
                out["optimizer" if phase == "opt" else t.cat] += t.nbytes
        for t in writes:
            if not (readers[t.id] == {i + 1} and t.nbytes <= cap):
                out["optimizer" if phase == "opt" else t.cat] += t.nbytes
        prev = {t.id for t in reads + writes}
    out["total"] = sum(out.values())
    return out
