"""The YAML model format (docs/models.md): a list of layers, each one op kind with its
parameters, fed by the previous layer unless `inputs` names others. Every mistake raises one
SpikeforgeError line with the file and the path in it (`m.yaml: layers[3].conv2d.kernel: ...`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spikeforge.compiler.frontends.init import init_tensors
from spikeforge.isa import Graph, Op, SpikeforgeError
from spikeforge.isa.ops import KINDS, canonical_value
from spikeforge.isa.limits import MAX_SEED, show
from spikeforge.isa.params import normalize_all
from spikeforge.isa.safeio import load_npz, load_yaml, read_text

TOP_KEYS = ("name", "input", "seed", "weights", "layers")
LAYER_KEYS = ("name", "inputs")


def read_yaml(path: str | Path, seed: int = 0) -> Graph:
    """Read a YAML model file; `seed` initialises tensors unless the file sets `seed` or `weights`."""
    path = Path(path)
    return graph_from_doc(_load(path, str(path)), str(path), seed, base_dir=path.parent)


def graph_from_doc(doc: Any, where: str, seed: int = 0, base_dir: str | Path | None = None) -> Graph:
    """Build a graph from a parsed YAML document. `where` (the file name) prefixes errors and
    gives the default model name; `base_dir` is where a relative `weights` path is found."""
    if doc is None:
        raise SpikeforgeError("model file is empty (expected a mapping with a `layers` list)", where)
    if not isinstance(doc, dict):
        raise SpikeforgeError(f"must be a mapping with a `layers` list, got {_got(doc)}", where)
    for key in doc:
        if key not in TOP_KEYS:
            raise SpikeforgeError(f"unknown key (allowed: {', '.join(TOP_KEYS)})", f"{where}: {key}")
    name = _string(doc.get("name", Path(where).stem), f"{where}: name")
    seed = doc.get("seed", seed)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise SpikeforgeError(f"must be an int in [0, {MAX_SEED}], got {_got(seed)}", f"{where}: seed")
    ops = []
    if "input" in doc:
        ops.append(Op("input", "input", (), _params("input", doc["input"], f"{where}: input")))
    ops = _layers(doc.get("layers"), ops, where)
    graph = Graph.build(name, ops, where)
    if "weights" in doc:
        return _with_weights(graph, doc["weights"], where, Path(base_dir or "."))
    return init_tensors(graph, seed)


def graph_to_doc(graph: Graph) -> dict:
    """The YAML document of a graph's structure: parameters that differ from their defaults,
    every name, and `inputs` where they differ from the previous layer. No tensors."""
    layers, prev = [], None
    for op in graph:
        params = {p.name: canonical_value(op.params[p.name]) for p in KINDS[op.kind].params
                  if p.required or op.params[p.name] != p.default}
        entry: dict[str, Any] = {op.kind: params, "name": op.name}
        if tuple(op.inputs) != _default_inputs(op.kind, prev):
            entry["inputs"] = list(op.inputs)
        layers.append(entry)
        prev = op.name
    return {"name": graph.name, "layers": layers}


# ---- reading the file ----------------------------------------------------------------------

def _load(path: Path, where: str) -> Any:
    return load_yaml(read_text(path, where, "a YAML model"), where, "a YAML model")


# ---- layers --------------------------------------------------------------------------------

def _layers(entries: Any, head: list[Op], where: str) -> list[Op]:
    """`head` (the top-level input, if any) followed by the ops of the `layers` list."""
    if not isinstance(entries, list) or not entries:
        got = "nothing" if entries is None else _got(entries)
        raise SpikeforgeError(f"must be a non-empty list of layers, got {got}", f"{where}: layers")
    ops = list(head)
    for i, entry in enumerate(entries):
        ops.append(_layer(entry, i, ops[-1].name if ops else None, f"{where}: layers[{i}]"))
    _check_edges(ops, len(head), where)
    return ops


def _layer(entry: Any, index: int, prev: str | None, at: str) -> Op:
    """One layer entry: exactly one op-kind key, plus optional `name` and `inputs`."""
    if not isinstance(entry, dict):
        raise SpikeforgeError(f"must be a mapping with one op-kind key, got {_got(entry)}", at)
    kinds = [k for k in entry if k in KINDS]
    others = [k for k in entry if k not in KINDS and k not in LAYER_KEYS]
    if len(kinds) > 1:
        raise SpikeforgeError(f"has {len(kinds)} op kinds ({', '.join(kinds)}); give one per layer", at)
    if others:
        raise SpikeforgeError(_unknown_key(others[0], kinds), f"{at}.{others[0]}")
    if not kinds:
        raise SpikeforgeError(f"has no op kind (one of: {', '.join(KINDS)})", at)
    kind = kinds[0]
    params = _params(kind, entry[kind], f"{at}.{kind}")
    name = _string(entry.get("name", f"{kind}_{index}"), f"{at}.name")
    inputs = _inputs(entry["inputs"], f"{at}.inputs") if "inputs" in entry else _default_inputs(kind, prev)
    return Op(name, kind, inputs, params)


def _unknown_key(key: Any, kinds: list[str]) -> str:
    if not kinds:
        return f"unknown op kind (known: {', '.join(KINDS)})"
    if key in {p.name for p in KINDS[kinds[0]].params}:
        return f"unknown key (a parameter of {kinds[0]}? indent it under `{kinds[0]}:`)"
    return "unknown key (allowed: one op kind, name, inputs)"


def _params(kind: str, given: Any, at: str) -> dict:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise SpikeforgeError(f"must be a mapping of parameters (or empty), got {_got(given)}", at)
    return normalize_all(KINDS[kind].params, given, at)


def _inputs(given: Any, at: str) -> tuple[str, ...]:
    names = [given] if isinstance(given, str) else given
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise SpikeforgeError(f"must be a layer name or a list of layer names, got {_got(given)}", at)
    return tuple(names)


def _default_inputs(kind: str, prev: str | None) -> tuple[str, ...]:
    """A layer reads the previous one, unless it is first or takes no inputs."""
    return (prev,) if prev is not None and KINDS[kind].n_inputs[1] != 0 else ()


def _check_edges(ops: list[Op], n_head: int, where: str) -> None:
    """Names are unique, `inputs` name layers, and the model has an input. The first `n_head`
    ops (the top-level input) precede the `layers` list."""
    names = {op.name for op in ops[:n_head]}
    for i, op in enumerate(ops[n_head:]):
        if op.name in names:
            raise SpikeforgeError(f"duplicate layer name {op.name!r}", f"{where}: layers[{i}].name")
        names.add(op.name)
    for i, op in enumerate(ops[n_head:]):
        for name in op.inputs:
            if name not in names:
                raise SpikeforgeError(f"unknown layer {name!r}", f"{where}: layers[{i}].inputs")
    if not any(op.kind == "input" for op in ops):
        raise SpikeforgeError("model has no input (give a top-level `input` or an `input` layer)", where)


# ---- weights -------------------------------------------------------------------------------

def _with_weights(graph: Graph, spec: Any, where: str, base_dir: Path) -> Graph:
    """The graph with every tensor from the `weights` .npz (keys `layer.tensor`)."""
    at = f"{where}: weights"
    path = base_dir / _string(spec, at)
    tensors: dict[str, dict[str, np.ndarray]] = {op.name: {} for op in graph}
    for key, array in _read_npz(path, at).items():
        layer, _, tensor = key.rpartition(".")
        if layer not in tensors:
            raise SpikeforgeError(f"key {key!r} names no layer (keys are 'layer.tensor')", at)
        tensors[layer][tensor] = array
    for op in graph:
        ins = [graph[i].type for i in op.inputs]
        for t, s in KINDS[op.kind].tensors(op.params, ins, op.type).items():
            if s.required and t not in tensors[op.name]:
                raise SpikeforgeError(f"missing key '{op.name}.{t}' (shape {list(s.shape)})", at)
    ops = [Op(op.name, op.kind, op.inputs, op.params, tensors[op.name]) for op in graph]
    return Graph.build(graph.name, ops, at)


def _read_npz(path: Path, at: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive (pickled object arrays are refused)."""
    return load_npz(path, at)


# ---- values --------------------------------------------------------------------------------

def _string(v: Any, at: str) -> str:
    if not isinstance(v, str) or not v:
        raise SpikeforgeError(f"must be a non-empty string, got {_got(v)}", at)
    return v


def _got(v: Any) -> str:
    """A wrong value as a message shows it (long ones abbreviated)."""
    return show(v)
