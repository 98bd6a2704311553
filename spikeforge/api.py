"""The public Python API: what the CLI does, as functions returning plain data."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from spikeforge.compiler.frontends import load_model
from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.isa.limits import MAX_BATCH, MAX_CHIPS, MAX_SEED, MAX_TIMESTEPS, check_int, check_memory
from spikeforge.outdir import check_writable, write_all, write_file

TRAINED = "model.sfir"  # what `train -o OUTDIR` writes: the model with its trained weights (IR text)


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
                   dt: float | None = None, reset: str | None = None, exporter: str = "snntorch",
                   dataflow: str = "search", objective: str = "energy", optimizer: str = "sgd",
                   chips: int | None = None, progress: bool = False) -> dict:
    """Compile `model` onto `arch` (split over `chips` copies of it, default its system's), and
    the sequential baseline beside it; write OUTDIR/placement.yaml, OUTDIR/program.sasm and
    OUTDIR/compile.json (all or nothing). Returns the compile.json figures."""
    import yaml

    from spikeforge.compiler.driver import compile_model
    from spikeforge.compiler.stats import compile_stats, placement_doc
    from spikeforge.isa.sasm import disassemble
    from spikeforge.progress import steps

    _check_run(timesteps, batch, seed, chips)
    check_writable(out)
    graph = load_model(model, weights=False, dt=dt, reset=reset, exporter=exporter) if isinstance(model, str) else model
    kw = dict(arch=arch, training=training, timesteps=timesteps, batch=batch, spike_rate=spike_rate, seed=seed,
              dataflow=dataflow, objective=objective, optimizer=optimizer, chips=chips)
    with steps(progress, 3) as step:
        step("mapping (METIS + placement) and dataflow search")
        compiled = compile_model(graph, strategy=strategy, **kw)
        step("mapping the sequential baseline")
        baseline = compile_model(graph, strategy="sequential", **kw) if strategy != "sequential" else compiled
        step("writing outputs")
        stats = compile_stats(compiled, baseline)
        if isinstance(model, str):  # what `simulate OUTDIR` reloads
            stats["source"] = {"model": model, "arch": arch, "seed": seed, "dt": dt, "reset": reset,
                               "exporter": exporter}
        texts = {"placement.yaml": yaml.safe_dump(placement_doc(compiled), sort_keys=False, default_flow_style=None,
                                                  width=120),
                 "program.sasm": disassemble(compiled.program)}
        stats["files"] = {name: _sha256(text) for name, text in texts.items()}  # checked by `simulate OUTDIR`
        texts["compile.json"] = json.dumps(stats, indent=2) + "\n"
        write_all(out, {name: lambda p, t=text: p.write_text(t) for name, text in texts.items()})
    return stats


def _check_run(timesteps: int, batch: int, seed: int, chips: int | None = None) -> None:
    check_int("--timesteps", timesteps, 1, MAX_TIMESTEPS)
    check_int("--batch", batch, 1, MAX_BATCH)
    check_int("--seed", seed, 0, MAX_SEED)
    if chips is not None:
        check_int("--chips", chips, 1, MAX_CHIPS)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _from_compile_dir(path: str, allow_nonfinite: bool = False):
    """Model, arch and program of a directory written by `compile`, its files checked against
    the hashes compile.json holds."""
    from spikeforge.isa.arch import load_arch, with_chips
    from spikeforge.isa.safeio import read_text
    from spikeforge.isa.sasm import assemble

    d = Path(path)
    where = str(d / "compile.json")
    if not (d / "compile.json").is_file():
        raise SpikeforgeError("not a compile output directory (no compile.json)", path)
    try:
        meta = json.loads(read_text(d / "compile.json", where, "JSON"))
    except (ValueError, RecursionError):
        raise SpikeforgeError("not valid JSON", where) from None
    src = meta.get("source") if isinstance(meta, dict) else None
    kinds = {"model": str, "arch": str, "seed": int, "dt": (int, float, type(None)), "reset": (str, type(None)),
             "exporter": str}
    if (not isinstance(src, dict) or not {"model", "arch", "seed"} <= src.keys()
            or any(k in src and not isinstance(src[k], t) for k, t in kinds.items())):
        raise SpikeforgeError("needs `source` with model, arch, seed, dt, reset and exporter (written by "
                              "`spikeforge compile MODEL`)", where)
    files = meta.get("files")
    text = read_text(d / "program.sasm", str(d / "program.sasm"), "a .sasm program")
    if not isinstance(files, dict) or files.get("program.sasm") != _sha256(text):
        raise SpikeforgeError("program.sasm does not match the hash in compile.json (changed or copied in since "
                              "`compile`): compile again", path)
    program = assemble(text, str(d / "program.sasm"))
    graph = load_model(src["model"], seed=src["seed"], dt=src.get("dt"), reset=src.get("reset"),
                       exporter=src.get("exporter", "snntorch"), allow_nonfinite=allow_nonfinite)
    return graph, with_chips(load_arch(src["arch"]), program.header.chips), program


def simulate_to_dir(model: str, out: str | None = None, arch: str = "default", training: bool = False,
                    timesteps: int = 4, batch: int = 1, input_file: str | None = None, rate: float | None = None,
                    seed: int = 0, mode: str = "sparse", record_spikes: bool = False, dt: float | None = None,
                    reset: str | None = None, exporter: str = "snntorch", dataflow: str = "search",
                    objective: str = "energy", optimizer: str = "sgd", chips: int | None = None,
                    progress: bool = False, allow_nonfinite: bool = False) -> dict:
    """Compile (over `chips` copies of the chip, default its system's; unless MODEL is a
    `compile` output directory, whose header gives T, B, training, the optimizer and the chips)
    and simulate one step on real data; write OUTDIR/report.json (and spikes.npz with
    `record_spikes`). Returns the report. Weights and inputs must be finite unless
    `allow_nonfinite`."""
    import os

    import numpy as np

    from spikeforge.compiler.driver import compile_model
    from spikeforge.hwsim.simulate import make_input, read_input, simulate
    from spikeforge.progress import bar

    _check_run(timesteps, batch, seed, chips)
    if rate is not None and not 0 <= rate <= 1:
        raise SpikeforgeError(f"--rate: must be in [0, 1], got {rate}")
    if out is not None:
        check_writable(out)
    data = None if input_file is None else read_input(input_file, "--input", allow_nonfinite)
    program, alternatives = None, ()
    if os.path.isdir(model):
        graph, chip, program = _from_compile_dir(model, allow_nonfinite)
        timesteps, batch, training = program.header.timesteps, program.header.batch, program.header.training
    else:
        graph = load_model(model, seed=seed, dt=dt, reset=reset, exporter=exporter, allow_nonfinite=allow_nonfinite)
    check_memory(f"a step of {graph.name} (T = {timesteps}, B = {batch})", graph.footprint(timesteps, batch, training))
    if program is None:
        c = compile_model(graph, arch, training=training, timesteps=timesteps, batch=batch, seed=seed,
                          dataflow=dataflow, objective=objective, optimizer=optimizer, chips=chips)
        chip, program, alternatives = c.arch, c.program, c.alternatives
    x = make_input(graph, timesteps, batch, rate, seed, data)
    with bar(progress, batch, "simulating") as advance:
        rep = simulate(graph, program, chip, x, mode=mode, seed=seed, record=record_spikes, progress=advance,
                       alternatives=alternatives, objective=objective)
    values = rep.pop("_values", None)
    if out is not None:
        files = {"report.json": lambda p: p.write_text(json.dumps(rep, indent=2) + "\n")}
        if record_spikes:
            files["spikes.npz"] = lambda p: np.savez_compressed(p, **_entry_names(values))
        write_all(out, files)
    return rep


def _entry_names(values: dict) -> dict:
    """Layer names as safe archive entry names: characters other than letters, digits, `_`, `.`
    and `-` become `_`, a leading `.` too, and a name taken twice gets a suffix `_2`, `_3`, ..."""
    out: dict = {}
    for name, v in values.items():
        key = re.sub(r"[^A-Za-z0-9_.\-]|^\.", "_", name)
        base, n = key, 1
        while key in out:
            n += 1
            key = f"{base}_{n}"
        out[key] = v
    return out


def train_to_dir(model: str, out: str | None = None, dataset: str = "digits", arch: str = "default",
                 epochs: int = 5, batch: int = 32, timesteps: int = 8, lr: float | None = None, seed: int = 0,
                 fp16: bool | None = None, optimizer: str = "sgd", progress: bool = False) -> dict:
    """Train MODEL on DATASET on the simulated chip (spikeforge.train) with `optimizer` at `lr`
    (default: hwsim.optim.DEFAULT_LR); write OUTDIR/train.json and OUTDIR/train.png (all or
    nothing). Returns the train.json figures."""
    from spikeforge.progress import bar
    from spikeforge.train import load_dataset, plot, train

    _check_run(timesteps, batch, seed)
    check_int("--epochs", epochs, 1, 1_000_000)
    if lr is not None and not math.isfinite(lr):
        raise SpikeforgeError(f"--lr: must be a finite number, got {lr}")
    if out is not None:
        check_writable(out)
    graph = load_model(model, seed=seed)
    check_memory(f"a training step of {graph.name} (T = {timesteps}, B = {batch})",
                 graph.footprint(timesteps, batch, True))
    data = load_dataset(dataset, seed)
    with bar(progress, epochs * (len(data.x_train) // max(batch, 1)), "training") as advance:
        result = train(graph, data, arch, epochs=epochs, batch=batch, timesteps=timesteps, lr=lr, seed=seed,
                       fp16=fp16, optimizer=optimizer, progress=lambda e, i, n: advance((e - 1) * n + i))
    doc = result.to_dict()
    if out is not None:
        from spikeforge.isa.text import to_text

        write_all(out, {TRAINED: lambda p: p.write_text(to_text(graph)),
                        "train.json": lambda p: p.write_text(json.dumps(doc, indent=2) + "\n"),
                        "train.png": lambda p: plot(result, str(p))})
    return doc


def federated_to_dir(model: str, out: str | None = None, dataset: str = "digits", arch: str = "default",
                     workers: int = 5, rounds: int = 20, local_steps: int = 10, partition: str = "iid",
                     batch: int = 32, timesteps: int = 8, lr: float | None = None, seed: int = 0,
                     optimizer: str = "sgd", scheduler: str | None = None, in_process: bool = False,
                     progress: bool = False) -> dict:
    """FedAvg training of MODEL on DATASET over `workers` simulated copies of the chip
    (spikeforge.federated): on a local Dask cluster, on the Dask scheduler at `scheduler`, or,
    with `in_process`, here; the same results either way. Writes OUTDIR/federated.json,
    OUTDIR/federated.png and the global model OUTDIR/model.sfir (all or nothing). Returns the
    federated.json figures."""
    from spikeforge.isa.arch import load_arch, with_chips
    from spikeforge.federated import FedConfig, federated, plot
    from spikeforge.progress import bar
    from spikeforge.train import load_dataset

    cfg = FedConfig(workers, rounds, local_steps, partition, batch, timesteps, lr, seed, optimizer)
    cfg.check()
    _check_run(timesteps, batch, seed)
    check_int("--workers", workers, 1, 1024)
    if scheduler and in_process:
        raise SpikeforgeError("give --dask-scheduler or --in-process, not both")
    if out is not None:
        check_writable(out)
    graph = load_model(model, seed=seed)
    check_memory(f"a training step of {graph.name} (T = {timesteps}, B = {batch})",
                 graph.footprint(timesteps, batch, True))
    chip = with_chips(load_arch(arch), workers)
    data = load_dataset(dataset, seed)
    client = cluster = None
    try:
        if scheduler:
            from spikeforge.sweep.pool import connect

            client = connect(scheduler)
        elif not in_process:
            import os

            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=min(workers, os.cpu_count() or 1), threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        with bar(progress, rounds, "federated rounds") as advance:
            result = federated(graph, data, chip, cfg, client, progress=advance)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    doc = result.to_dict()
    if out is not None:
        from spikeforge.isa.text import to_text

        write_all(out, {TRAINED: lambda p: p.write_text(to_text(graph)),
                        "federated.json": lambda p: p.write_text(json.dumps(doc, indent=2) + "\n"),
                        "federated.png": lambda p: plot({partition: result}, str(p))})
    return doc


def export_nir(model: str, out: str, seed: int = 0, dt: float | None = None, reset: str | None = None,
               exporter: str = "snntorch") -> dict:
    """Write MODEL (a zoo name or model file, or a `train` output directory: its trained weights)
    as the NIR file OUT, whole or not at all. Returns a summary."""
    import os

    import nir

    from spikeforge.compiler.frontends.nir_writer import to_nir

    check_writable(out, "file")
    trained = os.path.isdir(model)
    if trained:
        if not os.path.isfile(os.path.join(model, TRAINED)):
            raise SpikeforgeError(f"not a `train` output directory (no {TRAINED})", model)
        model = os.path.join(model, TRAINED)
    graph = load_model(model, seed=seed, dt=dt, reset=reset, exporter=exporter)
    written = to_nir(graph)  # an op NIR cannot express fails here, before any file is touched
    write_file(out, lambda p: nir.write(p, written))
    return {"model": graph.name, "file": out, "nodes": len(written.nodes), "params": graph.param_count(),
            "trained": trained}
