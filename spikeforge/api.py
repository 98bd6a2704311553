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


def compile_to_dir(model: Graph | str, out: str, arch: str = "default", training: bool = False, timesteps: int = 4,
                   batch: int = 1, strategy: str = "metis", spike_rate: float = 0.1, seed: int = 0,
                   dt: float = 1e-4, reset: str = "subtract", dataflow: str = "search", objective: str = "energy",
                   progress: bool = False) -> dict:
    """Compile `model` onto `arch`, and the sequential baseline beside it; write
    OUTDIR/placement.yaml, OUTDIR/program.sasm and OUTDIR/compile.json (all or nothing).
    Returns the compile.json figures."""
    import json

    import yaml

    from compiler.driver import compile_model
    from compiler.stats import compile_stats, placement_doc
    from isa.sasm import disassemble
    from spikeforge.progress import steps

    graph = load_model(model, weights=False, dt=dt, reset=reset) if isinstance(model, str) else model
    kw = dict(arch=arch, training=training, timesteps=timesteps, batch=batch, spike_rate=spike_rate, seed=seed,
              dataflow=dataflow, objective=objective)
    with steps(progress, 3) as step:
        step("mapping (METIS + placement) and dataflow search")
        compiled = compile_model(graph, strategy=strategy, **kw)
        step("mapping the sequential baseline")
        baseline = compile_model(graph, strategy="sequential", **kw) if strategy != "sequential" else compiled
        step("writing outputs")
        stats = compile_stats(compiled, baseline)
        if isinstance(model, str):  # what `simulate OUTDIR` reloads
            stats["source"] = {"model": model, "arch": arch, "seed": seed, "dt": dt, "reset": reset}
        _atomic_write(out, {
            "placement.yaml": lambda p: p.write_text(yaml.safe_dump(placement_doc(compiled), sort_keys=False,
                                                                    default_flow_style=None, width=120)),
            "program.sasm": lambda p: p.write_text(disassemble(compiled.program)),
            "compile.json": lambda p: p.write_text(json.dumps(stats, indent=2) + "\n"),
        })
    return stats


def _atomic_write(out: str, files: dict[str, callable]) -> None:
    """Write files into OUTDIR all or nothing: into a temporary folder beside it, then moved in."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from isa import SpikeforgeError

    target = Path(out)
    if target.exists() and not target.is_dir():
        raise SpikeforgeError("exists and is not a directory", out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".spikeforge-", dir=target.parent))
    try:
        for name, write in files.items():
            write(tmp / name)
        target.mkdir(exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, target / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_compile_dir(path: str):
    """Model, arch and program of a directory written by `compile`."""
    import json
    from pathlib import Path

    from isa import SpikeforgeError
    from isa.arch import load_arch
    from isa.sasm import assemble

    d = Path(path)
    try:
        meta = json.loads((d / "compile.json").read_text())
        src = meta["source"]
        program = assemble((d / "program.sasm").read_text(), str(d / "program.sasm"))
    except (OSError, ValueError, KeyError) as e:
        raise SpikeforgeError(f"not a compile output directory with compile.json (and its source) and program.sasm ({e})",
                              path) from None
    graph = load_model(src["model"], seed=src["seed"], dt=src["dt"], reset=src["reset"])
    return graph, load_arch(src["arch"]), program


def simulate_to_dir(model: str, out: str | None = None, arch: str = "default", training: bool = False,
                    timesteps: int = 4, batch: int = 1, input_file: str | None = None, rate: float | None = None,
                    seed: int = 0, mode: str = "sparse", record_spikes: bool = False, dt: float = 1e-4,
                    reset: str = "subtract", dataflow: str = "search", objective: str = "energy",
                    progress: bool = False) -> dict:
    """Compile (unless MODEL is a `compile` output directory) and simulate one step on real data;
    write OUTDIR/report.json (and spikes.npz with `record_spikes`). Returns the report."""
    import json
    import os

    import numpy as np

    from compiler.driver import compile_model
    from hwsim.simulate import make_input, simulate
    from isa import SpikeforgeError
    from spikeforge.progress import bar

    if rate is not None and not 0 <= rate <= 1:
        raise SpikeforgeError(f"--rate: must be in [0, 1], got {rate}")
    if os.path.isdir(model):
        graph, chip, program = _from_compile_dir(model)
        timesteps, batch = program.header.timesteps, program.header.batch
    else:
        graph = load_model(model, seed=seed, dt=dt, reset=reset)
        c = compile_model(graph, arch, training=training, timesteps=timesteps, batch=batch, seed=seed,
                          dataflow=dataflow, objective=objective)
        chip, program = c.arch, c.program
    data = None
    if input_file is not None:
        try:
            with np.load(input_file) as f:
                data = f["x"]
        except (OSError, ValueError, KeyError) as e:
            raise SpikeforgeError(f"cannot read array 'x' from the .npz file ({e})", input_file) from None
    x = make_input(graph, timesteps, batch, rate, seed, data)
    with bar(progress, batch, "simulating") as advance:
        rep = simulate(graph, program, chip, x, mode=mode, seed=seed, record=record_spikes, progress=advance)
    values = rep.pop("_values", None)
    if out is not None:
        files = {"report.json": lambda p: p.write_text(json.dumps(rep, indent=2) + "\n")}
        if record_spikes:
            files["spikes.npz"] = lambda p: np.savez_compressed(p, **values)
        _atomic_write(out, files)
    return rep


def train_to_dir(model: str, out: str | None = None, dataset: str = "digits", arch: str = "default",
                 epochs: int = 5, batch: int = 32, timesteps: int = 8, lr: float = 0.1, seed: int = 0,
                 fp16: bool | None = None, progress: bool = False) -> dict:
    """Train MODEL on DATASET on the simulated chip (spikeforge.train); write OUTDIR/train.json and
    OUTDIR/train.png (all or nothing). Returns the train.json figures."""
    import json

    from spikeforge.progress import bar
    from spikeforge.train import load_dataset, plot, train

    data = load_dataset(dataset, seed)
    graph = load_model(model, seed=seed)
    with bar(progress, epochs * (len(data.x_train) // max(batch, 1)), "training") as advance:
        result = train(graph, data, arch, epochs=epochs, batch=batch, timesteps=timesteps, lr=lr, seed=seed,
                       fp16=fp16, progress=lambda e, i, n: advance((e - 1) * n + i))
    doc = result.to_dict()
    if out is not None:
        _atomic_write(out, {"train.json": lambda p: p.write_text(json.dumps(doc, indent=2) + "\n"),
                            "train.png": lambda p: plot(result, str(p))})
    return doc
