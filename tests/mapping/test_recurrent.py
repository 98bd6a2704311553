"""Mapping a recurrence: a recurrent set's groups run their steps in order in every dataflow, its
pieces share one round, its spikes of step t reach the cores that read them at t + 1, and the
cost walk counts the recurrent weights' work in FP, BP and WG. (That every dataflow gives the
same spikes, loss and update byte for byte: tests/mapping/test_dataflow.py.)"""

import math

import numpy as np
import pytest

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.yaml_reader import graph_from_doc
from spikeforge.compiler.stats import program_traffic
from spikeforge.hwsim.simulate import make_input, simulate
from spikeforge.isa import SpikeforgeError
from spikeforge.isa.arch import load_arch
from spikeforge.isa.program import Loop
from spikeforge.mapping.groups import build_groups
from spikeforge.mapping.plan import EVENT_BYTES

DATAFLOWS = ("naive", "ws_time", "ws_batch", "fused", "search")


def _loops_of(body, layer: str, opcode: str, loops=()) -> list[tuple]:
    """The loop nests (outermost first) around each `opcode` instruction on `layer`."""
    out = []
    for item in body:
        if isinstance(item, Loop):
            out += _loops_of(item.body, layer, opcode, loops + (item,))
        elif item.op == opcode and item.args[0] == layer:
            out.append(loops)
    return out


def test_the_recurrent_set_is_one_group_or_a_few_in_a_row():
    g = load_model("rsnn", weights=False)
    groups = build_groups(g)
    assert [(x.name, [o.name for o in x.ops], x.recurrence) for x in groups] == [
        ("fc1", ["fc1"], ""), ("rec", ["rec", "add1", "lif1"], "rec"), ("fc2", ["fc2", "readout"], "")]
    rec = groups[1]
    # rec's weights read every unit of lif1's previous step: a delayed edge of the group to itself
    assert [(e.src, e.src_op, e.aligned, e.delayed) for e in rec.in_edges] == [
        ("rec", "lif1", False, True), ("fc1", "fc1", True, False)]
    # with the add reading fc1 first, it fuses into fc1's group: two groups on the cycle, in a row
    doc = {"input": {"shape": [6]}, "layers": [
        {"linear": {"out_features": 4}, "name": "fc"}, {"linear": {"out_features": 5}, "name": "side"},
        {"add": None, "name": "sum", "inputs": ["fc", "rec"]}, {"lif": None, "name": "n"},
        {"delay": {"shape": [4]}, "name": "prev", "inputs": "n"},
        {"linear": {"out_features": 4}, "name": "rec", "inputs": "prev"},
        {"linear": {"out_features": 3}, "inputs": ["side"]}]}
    groups = build_groups(graph_from_doc(doc, "two.yaml"))
    order = [x.name for x in groups]
    assert order.index("rec") == order.index("sum") + 1 or order.index("sum") == order.index("rec") + 1
    assert {x.name for x in groups if x.recurrence} == {"rec", "sum"}


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_every_dataflow_runs_the_recurrence_step_by_step(dataflow):
    """rec reads lif1's last step: both run in one time loop, per (sample, step) or, in the batch
    order, with the samples inside the steps (a weight tile serves one step's samples)."""
    T, B = 5, 4
    c = compile_model("rsnn", "default", training=True, timesteps=T, batch=B, dataflow=dataflow)
    body = c.program.cores[c.plan.pieces_of("rec")[0].core]
    for phase, rec_op, lif_op in (("fp", "fp.integrate", "fp.fire"), ("bp", "bp.propagate", "bp.neuron")):
        nests = _loops_of(body, "rec", rec_op) + _loops_of(body, "lif1", lif_op)
        assert nests and all(n == nests[0] for n in nests), phase
        time = [i for i, l in enumerate(nests[0]) if l.var == "time"]
        assert len(time) == 1 and nests[0][time[0]].count == T
        assert nests[0][time[0]].reverse == (phase == "bp")
        if c.dataflow.flows["rec"].time_outer:
            assert [l.var for l in nests[0]] == ["time", "batch"] and c.dataflow.order == "batch"
    assert c.dataflow.flows["rec"].recurrent and c.dataflow.flows["rec"].window in (1, B)
    if dataflow == "ws_batch":
        assert c.dataflow.flows["rec"].time_outer and c.dataflow.flows["rec"].window == B
        assert c.dataflow.flows["fc1"].window == T * B  # the layers outside keep their windows


def test_recurrent_spikes_cross_the_noc_every_step():
    """Hand count, naive order: each piece of rec multicasts its spikes (4-byte events at the planned
    rate) to every other core that holds rec or fc2, every (sample, step)."""
    T, B, rate = 3, 2, 0.1
    c = compile_model("rsnn", "default", training=True, timesteps=T, batch=B, dataflow="naive", spike_rate=rate)
    readers = {p.core for p in c.plan.pieces if p.group in ("rec", "fc2")}
    want = sum(math.ceil((p.hi - p.lo) * rate) * EVENT_BYTES * len(readers - {p.core})
               for p in c.plan.pieces_of("rec"))
    sent = sum(i.args[2] * math.prod(l.count for l in loops) for core in c.program.cores
               for i, loops in c.program.walk(core) if i.op == "noc.send" and i.args[0] == "spike" and i.args[3] == "lif1")
    assert len(c.plan.pieces_of("rec")) > 1 and sent == want * T * B
    _, noc = program_traffic(c)
    assert noc.sum() >= sent


def test_the_walk_counts_the_recurrent_weights_in_fp_bp_and_wg():
    """rec's dense work: 256 x 256 per (sample, step) in each engine; measured, its FP and WG skip
    the previous step's zero spikes (none at step 0), BP the zero errors."""
    T, B = 4, 2
    g = load_model("rsnn", seed=0)
    c = compile_model(g, "default", training=True, timesteps=T, batch=B)
    dense = simulate(g, c.program, c.arch, make_input(g, T, B, None, seed=1), mode="dense", seed=1)
    layer = {l["name"]: l for l in dense["layers"]}
    assert layer["rec"]["ops"] == {"fp": 256 * 256 * T * B, "bp": 256 * 256 * T * B, "wg": 256 * 256 * T * B}
    g = load_model("rsnn", seed=0)
    sparse = simulate(g, c.program, c.arch, make_input(g, T, B, None, seed=1), seed=1, record=True)
    spikes = sparse["_values"]["lif1"]
    previous = spikes[:-1].sum()  # rec reads steps 0 .. T-2 of lif1, each spike 256 synapses
    ops = {l["name"]: l["ops"] for l in sparse["layers"]}["rec"]
    assert ops["fp"] == ops["wg"] == 256 * previous > 0
    assert 0 < ops["bp"] <= 256 * 256 * T * B


def _two_layer(hidden: int = 256) -> dict:
    return {"name": "two", "input": {"shape": [40], "encoding": "events"}, "layers": [
        {"linear": {"out_features": hidden}, "name": "fc0"}, {"lif": None, "name": "lif0"},
        {"linear": {"out_features": hidden}, "name": "fc1"},
        {"add": None, "name": "sum", "inputs": ["rec", "fc1"]}, {"lif": None, "name": "lif1"},
        {"delay": {"shape": [hidden]}, "name": "prev", "inputs": "lif1"},
        {"linear": {"out_features": hidden, "bias": False}, "name": "rec", "inputs": "prev"},
        {"linear": {"out_features": 5}, "name": "fc2", "inputs": "lif1"}, {"li": None, "name": "out"}]}


def test_a_recurrent_set_takes_no_turns_on_the_cores():
    """With 40 B of membrane SRAM per core (680 B a round), lif0's 512 B fill most of round 0:
    the recurrent set starts round 1 whole instead of splitting across the two."""
    g = graph_from_doc(_two_layer(), "two.yaml")
    small = load_arch("default", {"core.buffers.fp_membrane.kib": 40 / 1024})
    c = compile_model(g, small, training=True, timesteps=3, batch=2)
    rounds = {x.name: {p.round for p in c.plan.pieces_of(x.name)} for x in c.plan.groups}
    assert rounds["fc0"] == {0} and rounds["rec"] == {1} and c.plan.rounds == 2
    g = graph_from_doc(_two_layer(), "two.yaml", seed=1)
    rep = simulate(g, c.program, c.arch, make_input(g, 3, 2, None, seed=0), seed=0)
    assert np.isfinite(rep["totals"]["energy_pj"])
    tiny = load_arch("default", {"core.buffers.fp_membrane.kib": 20 / 1024})
    with pytest.raises(SpikeforgeError, match=r"layer 'rec': its recurrent set \(rec\) needs more membrane SRAM "
                                              r"than the chip's cores hold at once"):
        compile_model(g, tiny, training=True, timesteps=3, batch=2)


def test_steps_outside_the_samples_only_when_their_membranes_fit():
    """In the batch order the recurrent set's B samples share a weight tile per step, which keeps
    B membranes alive: 16 x 512 B of lif1 on 20 cores of 102 B each do not fit, so the tile
    serves one (sample, step) there (the samples outside, as in the other orders)."""
    small = load_arch("default", {"core.buffers.fp_membrane.kib": 0.1})
    for arch, outer in (("default", True), (small, False)):
        c = compile_model("rsnn", arch, training=True, timesteps=3, batch=16, dataflow="ws_batch")
        f = c.dataflow.flows["rec"]
        assert (f.time_outer, f.window) == ((True, 16) if outer else (False, 1))
        nest = _loops_of(c.program.cores[c.plan.pieces_of("rec")[0].core], "rec", "fp.integrate")[0]
        assert [l.var for l in nest] == (["time", "batch"] if outer else ["batch", "time"])
        mem = max(use.get("membrane", 0) for use in c.dataflow.sram.values())
        assert mem <= c.arch.capacity("membrane")


def test_a_convolutional_recurrence_maps_and_simulates_in_every_dataflow():
    """A 3x3 conv of the previous step's spike map: every piece (output channels) reads every
    channel of it, from every core of the group."""
    doc = {"name": "crnn", "input": {"shape": [2, 8, 8]}, "layers": [
        {"conv2d": {"out_channels": 8, "kernel": 3, "padding": 1}, "name": "conv"},
        {"add": None, "name": "sum", "inputs": ["rec", "conv"]}, {"lif": None, "name": "lif"},
        {"delay": {"shape": [8, 8, 8]}, "name": "prev", "inputs": "lif"},
        {"conv2d": {"out_channels": 8, "kernel": 3, "padding": 1}, "name": "rec", "inputs": "prev"},
        {"flatten": None, "inputs": "lif"}, {"linear": {"out_features": 4}}]}
    losses = set()
    for dataflow in DATAFLOWS:
        g = graph_from_doc(doc, "crnn.yaml", seed=1)
        c = compile_model(g, "default", training=True, timesteps=3, batch=2, dataflow=dataflow)
        rec = next(x for x in c.plan.groups if x.name == "rec")
        assert rec.recurrence == "rec" and [o.name for o in rec.ops][:3] == ["rec", "sum", "lif"]
        assert any(e.delayed and e.src == "rec" and not e.aligned for e in rec.in_edges)
        rep = simulate(g, c.program, c.arch, make_input(g, 3, 2, None, seed=0), seed=0)
        losses.add(rep["totals"]["loss"])
        assert {l["name"]: l for l in rep["layers"]}["rec"]["ops"]["wg"] > 0
    assert len(losses) == 1
