"""The public Python API: what the CLI does, as functions returning plain data."""

from __future__ import annotations

from compiler.frontends import load_model
from isa import Graph


def inspect_model(model: Graph | str, timesteps: int = 4) -> dict:
    """Per-layer shapes, parameters and dense synaptic work per time step, plus totals
    (per sample: per step and over `timesteps` steps). JSON-ready."""
    graph = load_model(model, weights=False) if isinstance(model, str) else model
    layers = []
    for li in graph.layers():
        layers.append({
            "name": li.name, "op": li.kind, "inputs": list(li.inputs),
            "input_shapes": [list(t.shape) for t in li.in_types],
            "input_kinds": [t.kind for t in li.in_types],
            "output_shape": list(li.out_type.shape), "output_kind": li.out_type.kind,
            "params": li.params, "syn_ops_per_step": li.work.syn_ops, "arith": li.work.arith,
            "elem_ops_per_step": li.work.elem_ops, "neurons": li.work.neurons,
        })
    mac = sum(l["syn_ops_per_step"] for l in layers if l["arith"] == "MAC")
    ac = sum(l["syn_ops_per_step"] for l in layers if l["arith"] == "AC")
    totals = {
        "layers": len(layers), "params": sum(l["params"] for l in layers),
        "neurons": sum(l["neurons"] for l in layers),
        "syn_ops_per_step": mac + ac, "mac_per_step": mac, "ac_per_step": ac,
        "elem_ops_per_step": sum(l["elem_ops_per_step"] for l in layers),
        "syn_ops": (mac + ac) * timesteps,
    }
    return {"model": graph.name, "timesteps": timesteps,
            "inputs": [{"name": op.name, "shape": list(op.type.shape), "kind": op.type.kind} for op in graph.inputs],
            "outputs": [{"name": op.name, "shape": list(op.type.shape), "kind": op.type.kind} for op in graph.outputs],
            "layers": layers, "totals": totals}
