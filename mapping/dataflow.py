"""The dataflow of a mapped model: the loop order of the step, and where every tensor lives.

A loop order says which (sample, step) iterations run inside a weight tile once it is fetched
into an engine's tile buffer (docs/dataflow.md):
- `step`: samples, then steps, then every layer: a tile serves one (sample, step); the layers of
  a step pass their spikes core to core over the NoC;
- `sample`: per sample, layer by layer, each layer's T steps inside its tiles (time inside the
  tile): a tile serves T iterations; a layer's input over the T steps waits in a buffer;
- `batch`: layer by layer, each layer's B x T iterations inside its tiles: a tile is fetched
  once per pass; a layer's input over the whole batch waits in a buffer, and BPTT state of
  every sample lives until the backward pass.
- `fused` (the batch order with layer fusion): runs of consecutive layers execute together per
  (sample, step), as in `step`, so the spikes and errors between them stay on the NoC, while the
  runs follow each other layer-major, as in `batch`; where to cut the runs is chosen by dynamic
  programming over an analytic DRAM estimate (`_segments`).
A recurrent set (mapping/groups.py) runs its steps in order: its groups share one loop nest, with
whatever is fused to them, and a weight tile serves at most the B samples of one step: in the
`batch` order the nest's time loop runs outside its batch loop (when the B samples' membranes
fit the cores), otherwise the tile is fetched per (sample, step) (`_recurrent_segments`).
For an order, `assign` decides the homes: weights and weight gradients that fit the engines'
tile buffers stay there for the whole step; BPTT state fills the cores' BPTT banks; what is left
competes for the chip's global buffers by DRAM bytes saved per byte held (greedy), and the rest
lives in DRAM. The compiler prices each candidate's program and keeps the best (compiler/driver.py).
On a system of several chips each chip's global buffers hold its own groups' tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from spikeforge.isa import SpikeforgeError
from spikeforge.isa.arch import Arch
from spikeforge.isa.program import ORDERS, core_key
from spikeforge.mapping.groups import Group
from spikeforge.mapping.plan import Plan, bptt_bytes, state_bytes, weight_bytes

# named dataflows: name -> (loop order, whether the global buffers are used, layer fusion)
FIXED = {"naive": ("step", False, False), "ws_time": ("sample", True, False), "ws_batch": ("batch", True, False),
         "fused": ("batch", True, True)}
DATAFLOWS = ("search",) + tuple(FIXED)
OBJECTIVES = ("energy", "latency", "edp")
DRAM = "dram"
CORE = "core"


@dataclass
class Flow:
    """Where a group's tensors live: `dram`, `core` (its cores' banks), `tile` (the engines' tile
    buffers, for the whole step) or a global buffer's name."""

    group: str
    weights: str = DRAM
    wgrad: str = DRAM
    bptt: str = DRAM  # of the pieces whose state does not fit their core's BPTT banks
    inputs: str = CORE  # sample/batch orders: where the group's input window waits
    errors: str = CORE  # sample/batch orders, training: where the errors it sends back wait
    inputs_share: float = 1.0  # the part of the input window held at `inputs` (a global buffer); the rest in DRAM
    errors_share: float = 1.0  # the same for the errors
    optimizer: str = DRAM  # training with a stateful optimizer (Adam): where its state lives
    tiles: int = 1  # weight tiles of its largest piece in one engine tile buffer
    window: int = 1  # (sample, step) iterations one fetched weight tile serves
    segment: int = 0  # groups of one segment run in one loop nest (fused when it holds several)
    recurrent: bool = False  # its segment holds a recurrent set: steps in order, values passed per (sample, step)
    time_outer: bool = False  # its segment's time loop runs outside its batch loop (a window of one step's samples)


@dataclass
class Dataflow:
    name: str
    order: str
    flows: dict[str, Flow]
    resident_weights: set[int] = field(default_factory=set)  # piece ids whose weights stay in tile buffers
    resident_wgrad: set[int] = field(default_factory=set)
    spilled_bptt: set[int] = field(default_factory=set)  # piece ids whose BPTT state leaves the core
    sram: dict[tuple, dict[str, int]] = field(default_factory=dict)  # peak bytes per role per core (program key)
    global_used: dict[str, int] = field(default_factory=dict)  # bytes per global buffer (the most on any chip)
    global_by_chip: list[dict[str, int]] = field(default_factory=list)  # bytes per global buffer of each chip

    def together(self, a: str, b: str) -> bool:
        """Do groups a and b exchange values per (sample, step), over the NoC?"""
        if self.order == "step":
            return True
        fa, fb = self.flows.get(a), self.flows.get(b)
        return fa is not None and fb is not None and fa.segment == fb.segment and (fa.window == 1 or fa.recurrent)


def check_tiles(plan: Plan) -> None:
    """Refuse a chip whose weight tile buffer cannot hold the smallest legal tile (one output
    unit's weights for one input channel) of some layer."""
    arch = plan.arch
    for eng in ("fp", "bp") if plan.config.training else ("fp",):
        buf = arch.buffer_for("weights", eng)
        for g in plan.groups:
            if not g.weights:
                continue
            k = g.root.params.get("kernel", 1)
            smallest = (k if isinstance(k, int) else math.prod(k)) * arch.value_bytes
            if buf.bytes < smallest:
                raise SpikeforgeError(f"layer '{g.name}': the smallest weight tile ({smallest} B, one kernel "
                                      f"slice) does not fit buffer '{buf.name}' ({buf.bytes} B)")


def _step_bytes(g: Group, arch: Arch, spike: bool, elements: float) -> int:
    return math.ceil(elements / 8) if spike else math.ceil(elements) * arch.value_bytes


def assign(plan: Plan, name: str, order: str, use_global: bool = True, fuse: bool = False) -> Dataflow:
    """The homes of every tensor for loop `order` (with layer fusion: `batch` only), under the
    chip's capacities."""
    if order not in ORDERS:
        raise SpikeforgeError(f"loop order: must be one of {', '.join(ORDERS)}, got {order!r}")
    arch, cfg = plan.arch, plan.config
    T, B, training = cfg.timesteps, cfg.batch, cfg.training
    df = Dataflow(name, order, {g.name: Flow(g.name) for g in plan.groups})
    window = {"step": 1, "sample": T, "batch": T * B}[order]
    for i, g in enumerate(plan.groups):
        df.flows[g.name].window, df.flows[g.name].segment = window, i
    if fuse and order == "batch":
        for k, seg in enumerate(_segments(plan)):
            for gname in seg:
                df.flows[gname].segment = k
                df.flows[gname].window = 1 if len(seg) > 1 else window
    _recurrent_segments(plan, df)
    gmap = {g.name: g for g in plan.groups}
    live_samples = B if order == "batch" else 1  # samples whose BPTT state is alive at once
    chips = cfg.chips
    peak: dict[tuple, dict[str, int]] = {core_key(k, c, chips): {} for k in range(chips) for c in arch.cores}
    wtile = arch.capacity("weights", "tile")
    gtile = arch.capacity("wgrad", "tile")
    spilled_bptt: dict[str, int] = {}  # group -> live bytes that leave the cores
    for r in range(plan.rounds):
        membrane = {c: 0 for c in arch.cores}
        for p in sorted((p for p in plan.pieces if p.round == r), key=lambda p: (p.core, p.id)):
            g, u, role = gmap[p.group], p.hi - p.lo, peak[core_key(p.chip, p.core, chips)]
            membrane[p.core] += _membrane(g, u, arch) * (B if df.flows[g.name].time_outer else 1)
            w = weight_bytes(g, u, arch) * (2 if training else 1)  # FP and BP engine copies
            if w and role.get("weights", 0) + w <= wtile:
                role["weights"] = role.get("weights", 0) + w
                df.resident_weights.add(p.id)
            wg = weight_bytes(g, u, arch)
            # a band's gradient is a partial sum of its channel's: it lives where the bands meet
            if training and wg and g.bands == 1 and role.get("wgrad", 0) + wg <= gtile:
                role["wgrad"] = role.get("wgrad", 0) + wg
                df.resident_wgrad.add(p.id)
            b = bptt_bytes(g, u, arch, T) * live_samples if training else 0
            if b:
                if role.get("bptt", 0) + b <= arch.capacity("bptt"):
                    role["bptt"] = role.get("bptt", 0) + b
                else:
                    df.spilled_bptt.add(p.id)
                    spilled_bptt[g.name] = spilled_bptt.get(g.name, 0) + b
        for c in arch.cores:
            role = peak[core_key(plan.round_chip[r], c, chips)]
            if membrane[c]:
                role["membrane"] = max(role.get("membrane", 0), membrane[c])
    df.sram = peak
    for g in plan.groups:
        if g.weights:
            piece = max((p.hi - p.lo for p in plan.pieces_of(g.name)), default=g.units)
            df.flows[g.name].tiles = max(1, math.ceil(weight_bytes(g, piece, arch) / arch.buffer_for("weights", "fp").bytes))
    _window_homes(plan, df)
    if use_global and arch.global_buffers:
        _allocate_global(plan, df, spilled_bptt)
    return df


def _membrane(g: Group, units: int, arch: Arch) -> int:
    """Bytes of the state of `units` of g for one sample."""
    return math.ceil(g.states * units / g.units) * arch.value_bytes


def _recurrent_segments(plan: Plan, df: Dataflow) -> None:
    """Each recurrent set runs in one segment (the segment of its first group, with every group
    fused to it) whose steps run in order. In the batch order the time loop goes outside: a tile
    serves the B samples of one step, whose membranes are then all alive (if they fit the
    cores' membrane SRAM); otherwise a tile serves one (sample, step)."""
    flows = df.flows
    for g in plan.groups:
        if g.recurrence:
            flows[g.name].segment = flows[g.recurrence].segment
    segments = {flows[g.name].segment for g in plan.groups if g.recurrence}
    members = [g for g in plan.groups if flows[g.name].segment in segments]
    if not members:
        return
    B, arch = plan.config.batch, plan.arch
    outer = df.order == "batch" and B > 1
    if outer:
        gmap = {g.name: g for g in plan.groups}
        need: dict[tuple[int, tuple[int, int]], int] = {}
        for p in plan.pieces:
            g = gmap[p.group]
            k = B if flows[g.name].segment in segments else 1
            need[(p.round, p.core)] = need.get((p.round, p.core), 0) + _membrane(g, p.hi - p.lo, arch) * k
        outer = max(need.values()) <= arch.capacity("membrane")
    for g in members:
        f = flows[g.name]
        f.recurrent, f.time_outer, f.window = True, outer, B if outer else 1


def _segments(plan: Plan) -> list[list[str]]:
    """Cut the groups (in order) into runs that execute together per (sample, step): dynamic
    programming over an analytic DRAM byte count. A run of several groups refetches their weights
    (and flushes their weight gradients) at every (sample, step) but passes spikes and errors over
    the NoC; a cut between runs makes the values crossing it wait in memory for the whole batch
    (free when they fit the cores' banks). Runs stay within one round."""
    arch, cfg = plan.arch, plan.config
    n_iter = cfg.timesteps * cfg.batch
    passes = 2 if cfg.training else 1
    spikes_cap, grad_cap = arch.capacity("spikes", "core"), arch.capacity("grad_out", "core")
    groups = plan.groups
    index = {g.name: i for i, g in enumerate(groups)}
    rounds = [frozenset(p.round for p in plan.pieces_of(g.name)) for g in groups]
    # a run holds all of a recurrent set or none of it; its tiles serve one step's samples
    first = [index[g.recurrence] if g.recurrence else i for i, g in enumerate(groups)]
    last = [max(k for k in range(len(groups)) if first[k] == first[i]) if groups[i].recurrence else i
            for i in range(len(groups))]

    def refetch(g: Group, fetches: int) -> float:  # extra DRAM bytes of g's weights fetched `fetches` times
        w = weight_bytes(g, g.units, arch)
        return (fetches - 1) * w * (passes + (2 if cfg.training else 0))

    def cut(g: Group, first: int) -> float:  # DRAM bytes of g's inputs from groups before index `first`
        cost = 0.0
        for e in g.in_edges:
            if e.src in index and index[e.src] >= first:
                continue
            held = _step_bytes(g, arch, e.spike, e.elements) * n_iter
            cost += 0 if held <= spikes_cap else 2 * held
            if cfg.training and e.src in index:
                err = math.ceil(e.elements) * arch.value_bytes * n_iter
                cost += 0 if err <= grad_cap else 2 * err
        return cost

    best = [0.0] + [math.inf] * len(groups)
    start = [0] * (len(groups) + 1)
    for j in range(1, len(groups) + 1):
        for i in range(j - 1, max(-1, min(j - 17, first[j - 1] - 1)), -1):  # groups[i:j], at most 16 but whole sets
            if i < j - 1 and (len(rounds[i]) > 1 or rounds[i] != rounds[j - 1]):
                break
            if any(first[k] < i or last[k] >= j for k in range(i, j)):
                continue
            run = groups[i:j]
            recurrent = any(g.recurrence for g in run)
            fetches = cfg.timesteps if recurrent else n_iter
            cost = best[i] + sum(cut(g, i) for g in run)
            cost += sum(refetch(g, fetches) for g in run) if len(run) > 1 or recurrent else 0
            if cost < best[j]:
                best[j], start[j] = cost, i
    runs, j = [], len(groups)
    while j > 0:
        runs.append([g.name for g in groups[start[j]:j]])
        j = start[j]
    return runs[::-1]


def _held(plan: Plan, df: Dataflow, g: Group) -> tuple[int, int]:
    """Bytes of g's inputs, and of the errors it returns, that wait between loop nests: from
    producers outside its (fused) segment, over the window its producers wrote them in."""
    arch, cfg = plan.arch, plan.config
    wait = cfg.timesteps if df.order == "sample" else cfg.timesteps * cfg.batch
    outside = [e for e in g.in_edges if not df.together(e.src, g.name)]
    inputs = sum(_step_bytes(g, arch, e.spike, e.elements) for e in outside) * wait
    errors = sum(math.ceil(e.elements) * arch.value_bytes for e in outside if e.src in df.flows) * wait
    return inputs, errors


def _window_homes(plan: Plan, df: Dataflow) -> None:
    """In sample and batch orders a group's input (and, in training, the errors it returns) from
    outside its segment waits for a whole window: in its cores' banks when it fits them, else in
    DRAM for now."""
    if df.order == "step":
        return
    arch = plan.arch
    spikes_cap, grad_cap = arch.capacity("spikes", "core"), arch.capacity("grad_out", "core")
    for g in plan.groups:
        f = df.flows[g.name]
        inputs, errors = _held(plan, df, g)
        f.inputs = CORE if inputs <= spikes_cap else DRAM
        if plan.config.training:
            f.errors = CORE if errors <= grad_cap else DRAM


def _allocate_global(plan: Plan, df: Dataflow, spilled_bptt: dict[str, int]) -> None:
    """Give the global buffers to the tensors that save the most DRAM bytes per byte and per unit
    of time they hold them (greedy). Time runs over the loop nests of the step: the segments' FP,
    then their BP in reverse, then the update. Weights and weight gradients hold their space for
    the whole step; BPTT state from its group's FP to its BP; a waiting input window from its
    first producer's FP to its consumer's FP; returned errors from the consumer's BP to the
    first producer's BP. So windows of different layers, and the FP's inputs and the BP's errors,
    share the same bytes. A window may be held in part, the rest waiting in DRAM. In the `step`
    order every layer runs in every loop nest: everything holds its space for the whole step.
    A group's tensors compete for its chip's global buffers; the errors it returns wait on its
    producers' chip (its own when they are on several)."""
    arch, cfg = plan.arch, plan.config
    T, B, training = cfg.timesteps, cfg.batch, cfg.training
    resident = {p.group for p in plan.pieces if p.id in df.resident_weights}
    rewrites = B if df.order == "sample" else 1  # a waiting window is written per sample, or once
    n = max(f.segment for f in df.flows.values()) + 1
    end = 2 * n  # the update
    segment = {name: f.segment for name, f in df.flows.items()}

    def span(lo: int, hi: int) -> tuple[int, int]:
        return (0, end) if df.order == "step" else (lo, hi)

    items = []  # (saved DRAM bytes, bytes held, (first, last) time held, tensor kind, group, may be held in part, chip)
    for g in plan.groups:
        f, s, chip = df.flows[g.name], segment[g.name], plan.chip_of[g.name]
        producers = {plan.chip_of[e.src] for e in g.in_edges if e.src in segment}
        errors_chip = producers.pop() if len(producers) == 1 else chip
        fetches = T * B // f.window  # tile fetches per pass
        w = weight_bytes(g, g.units, arch)
        if w and g.name not in resident:
            from_dram = fetches * (2 if training else 1) * w + (2 * w if training else 0)  # passes, update
            from_global = w * (2 if training else 1)  # loaded once, written back once after the update
            items.append((from_dram - from_global, w, (0, end), "weights", g.name, False, chip))
        if training and w and not any(p.id in df.resident_wgrad for p in plan.pieces_of(g.name)):
            items.append((2 * fetches * w, w, span(end - 1 - s, end), "wgrad", g.name, False, chip))
        if spilled_bptt.get(g.name):
            held = spilled_bptt[g.name]
            items.append((2 * held * (B if df.order != "batch" else 1), held, span(s, end - 1 - s), "bptt", g.name,
                          False, chip))
        inputs, errors = _held(plan, df, g)
        first = min((segment[e.src] for e in g.in_edges if e.src in segment and not df.together(e.src, g.name)),
                    default=s)
        if f.inputs == DRAM:  # written once, read once per weight tile (once when fetched per step)
            items.append(((1 + (f.tiles if f.window > 1 else 1)) * inputs * rewrites, inputs, span(first, s),
                          "inputs", g.name, True, chip))
        if training and f.errors == DRAM:
            items.append((2 * errors * rewrites, errors, span(end - 1 - s, end - 1 - first), "errors", g.name, True,
                          errors_chip))
        state = state_bytes(g, g.units, arch, cfg.optimizer) if training else 0
        if state:  # in DRAM: loaded and stored by every update; on chip it stays between steps
            items.append((2 * state, state, (0, end), "optimizer", g.name, False, chip))
    chips = range(cfg.chips)
    free = {(k, b.name): [b.bytes] * (end + 1) for k in chips for b in arch.global_buffers}
    roles = {"weights": "weights", "wgrad": "wgrad", "bptt": "bptt", "inputs": "spikes", "errors": "psum",
             "optimizer": "optimizer"}

    def density(i) -> float:
        saved, held, (lo, hi) = i[:3]
        return saved / max(held, 1) / (hi - lo + 1)

    for saved, held, (lo, hi), kind, name, partial, chip in sorted(items, key=lambda i: (-density(i), i[4], i[3])):
        if saved <= 0 or held <= 0:
            continue
        for buf in arch.global_buffers:
            room = min(free[(chip, buf.name)][lo:hi + 1])
            take = min(held, room) if partial else (held if room >= held else 0)
            if roles[kind] in buf.roles and take >= min(held, 1024):
                break
        else:
            continue
        for t in range(lo, hi + 1):
            free[(chip, buf.name)][t] -= take
        setattr(df.flows[name], kind, buf.name)
        if partial:
            setattr(df.flows[name], f"{kind}_share", take / held)
    df.global_by_chip = [{b.name: b.bytes - min(free[(k, b.name)]) for b in arch.global_buffers} for k in chips]
    df.global_used = {b.name: max(used[b.name] for used in df.global_by_chip) for b in arch.global_buffers}


def dram_lower_bound(plan: Plan) -> dict[str, int]:
    """A floor on one training step's DRAM bytes on this chip (docs/dataflow.md): each weight read
    once per pass that needs it (FP; BP for every layer that propagates an error), the update's
    read and write, each weight gradient written and read once, the optimizer state beyond the
    global buffers that may hold it read and written once, the BPTT state of all B samples beyond
    the chips' total SRAM written once and read once, and the network input read once."""
    arch, cfg = plan.arch, plan.config
    T, B = cfg.timesteps, cfg.batch
    inputs = {op.name for op in plan.graph.inputs}
    w = {g.name: weight_bytes(g, g.units, arch) for g in plan.groups}
    propagating = sum(w[g.name] for g in plan.groups if not any(e.src_op in inputs for e in g.in_edges))
    total_w = sum(w.values())
    chips = cfg.chips
    sram = chips * (arch.n_cores * sum(b.bytes for b in arch.buffers) + sum(b.bytes for b in arch.global_buffers))
    bptt = B * sum(bptt_bytes(g, g.units, arch, T) for g in plan.groups)
    first = plan.graph.inputs[0].type
    x = B * T * (math.ceil(first.size / 8) if first.kind == "spike" else first.size * arch.value_bytes)
    state = sum(state_bytes(g, g.units, arch, cfg.optimizer) for g in plan.groups)
    opt = 2 * total_w + 2 * max(0, state - chips * arch.global_capacity("optimizer"))
    return {"weights": total_w + propagating, "optimizer": opt, "gradients": 2 * total_w,
            "bptt_state": 2 * max(0, bptt - sram), "activations": x}
