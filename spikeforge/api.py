"""The public Python API: what the CLI does, as functions returning plain data."""

from __future__ import annotations

import copy
import hashlib
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.init import init_tensors
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


@dataclass
class Result:
    """What a run produced: its JSON document (`doc`), the files of its output directory and,
    where there is one, its report.html (`page`)."""

    doc: dict
    files: dict[str, Callable[[Path], object]] = field(repr=False)
    page: str | None = field(default=None, repr=False)

    def to_json(self) -> str:
        return json.dumps(self.doc, indent=2) + "\n"

    def save(self, out: str) -> Path:
        """Write the output directory OUT, all or nothing."""
        write_all(out, self.files)
        return Path(out)

    def _repr_html_(self) -> str:
        if self.page is None:
            return "<pre>" + html.escape(self.to_json()[:20000]) + "</pre>"
        return f'<iframe srcdoc="{html.escape(self.page, quote=True)}" style="width:100%;height:720px;border:0"></iframe>'


@dataclass
class CompileResult(Result):
    """`compile`: compile.json (`doc`) and the compiled program (`compiled.program`, its plan,
    dataflow and estimate)."""

    compiled: Any = field(default=None, repr=False)


@dataclass
class SimulateResult(Result):
    """`simulate`: report.json (`doc`, also `report`) and, when recorded, each op's outputs
    [T, B, *shape] (`values`)."""

    values: dict | None = field(default=None, repr=False)

    @property
    def report(self) -> dict:
        return self.doc


def _model_source(model: Graph | str, seed: int, dt, reset, exporter: str) -> tuple[dict, dict[str, str]]:
    """How a compiled directory reloads its model (`source` of compile.json) and the copy it
    keeps: none for a zoo model, the file for a model file, the IR text for an in-memory graph."""
    from spikeforge.compiler.frontends import zoo
    from spikeforge.isa.safeio import read_text
    from spikeforge.isa.text import to_text

    src = {"seed": seed, "dt": dt, "reset": reset, "exporter": exporter}
    if isinstance(model, Graph):
        return {**src, "kind": "graph", "model": model.name, "file": "model.sfir"}, {"model.sfir": to_text(model)}
    if model in zoo.ZOO and not Path(model).exists():
        return {**src, "kind": "zoo", "model": model, "file": None}, {}
    suffix = Path(model).suffix.lower()
    name = "model" + suffix
    if suffix == ".nir":  # binary (HDF5): copied as bytes
        return {**src, "kind": "file", "model": model, "file": name}, {name: Path(model).read_bytes()}
    return {**src, "kind": "file", "model": model, "file": name}, {name: read_text(model, model, "a model file")}


def _arch_text(arch: str) -> str:
    """The YAML text of an architecture preset or file, as compiled (kept in the directory)."""
    from spikeforge.isa.arch import preset_text, presets
    from spikeforge.isa.safeio import read_text

    if arch in presets():
        return preset_text(arch)
    return read_text(arch, arch, "an architecture YAML file")


def _digest(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def compile(model: Graph | str, arch: str = "default", train: bool = False, timesteps: int = 4, batch: int = 1,  # noqa: A001
            strategy: str = "metis", spike_rate: float = 0.1, seed: int = 0, dt: float | None = None,
            reset: str | None = None, exporter: str = "snntorch", dataflow: str = "search",
            objective: str = "energy", optimizer: str = "sgd", chips: int | None = None, progress: bool = False,
            html: bool = True, baseline: bool = True) -> CompileResult:
    """Compile MODEL (a zoo name, a model file or an in-memory Graph) onto ARCH (a preset or an
    architecture YAML file), with the sequential baseline beside it when `baseline`. The
    result's `save(OUTDIR)` writes placement.yaml, program.sasm, compile.json, report.html (with
    `html`), a copy of the architecture (arch.yaml) and of the model (unless it is a zoo model):
    a directory `simulate` runs as it is, whatever happens to the files it came from."""
    import yaml

    from spikeforge.compiler.driver import compile_model
    from spikeforge.compiler.stats import compile_stats, placement_doc
    from spikeforge.isa.sasm import disassemble
    from spikeforge.progress import steps

    _check_run(timesteps, batch, seed, chips)
    if not isinstance(model, (Graph, str)):
        raise SpikeforgeError(f"model: expected a zoo name, a model file or a Graph, got {type(model).__name__}")
    graph = load_model(model, weights=False, dt=dt, reset=reset, exporter=exporter) if isinstance(model, str) else model
    arch_text = _arch_text(arch)
    kw = dict(arch=arch, training=train, timesteps=timesteps, batch=batch, spike_rate=spike_rate, seed=seed,
              dataflow=dataflow, objective=objective, optimizer=optimizer, chips=chips)
    with steps(progress, 3) as step:
        step("mapping (METIS + placement) and dataflow search")
        compiled = compile_model(graph, strategy=strategy, **kw)
        step("mapping the sequential baseline")
        base = compile_model(graph, strategy="sequential", **kw) if baseline and strategy != "sequential" else compiled
        step("writing outputs")
        stats = compile_stats(compiled, base if baseline else None)
        source, copies = _model_source(model, seed, dt, reset, exporter)
        stats["source"] = {**source, "arch": arch}
        texts: dict[str, str | bytes] = {
            "placement.yaml": yaml.safe_dump(placement_doc(compiled), sort_keys=False, default_flow_style=None,
                                             width=120),
            "program.sasm": disassemble(compiled.program), "arch.yaml": arch_text, **copies}
        stats["files"] = {name: _digest(data) for name, data in texts.items()}  # checked by `simulate OUTDIR`
        texts["compile.json"] = json.dumps(stats, indent=2) + "\n"
        page = None
        if html:
            from spikeforge.pages import compile_page

            page = texts["report.html"] = compile_page(stats, compiled.arch.rows, compiled.arch.cols)
    files = {name: (lambda p, t=data: p.write_bytes(t) if isinstance(t, bytes) else p.write_text(t))
             for name, data in texts.items()}
    placement = placement_doc(compiled)

    def picture(p: Path) -> None:
        from spikeforge.plots import write_placement

        write_placement(placement, p)
    files["placement.png"] = picture
    return CompileResult(stats, files, page, compiled)


def compile_to_dir(model: Graph | str, out: str, arch: str = "default", training: bool = False, **kw) -> dict:
    """`compile(...)` saved into OUT; returns compile.json's figures."""
    check_writable(out)
    r = compile(model, arch, train=training, **kw)
    r.save(out)
    return r.doc


def _check_run(timesteps: int, batch: int, seed: int, chips: int | None = None) -> None:
    check_int("--timesteps", timesteps, 1, MAX_TIMESTEPS)
    check_int("--batch", batch, 1, MAX_BATCH)
    check_int("--seed", seed, 0, MAX_SEED)
    if chips is not None:
        check_int("--chips", chips, 1, MAX_CHIPS)


@dataclass
class _Compiled:
    """A compiled directory, loaded: its model, chip, program and settings."""

    graph: Graph
    arch_doc: dict
    chip: Any
    program: Any
    settings: dict  # the compiled values of the flags `simulate` must not contradict


def _from_compile_dir(path: str, allow_nonfinite: bool = False) -> _Compiled:
    """Model, arch and program of a directory written by `compile`, its files checked against
    the hashes compile.json holds."""
    from spikeforge.isa.arch import arch_from_doc, with_chips
    from spikeforge.isa.safeio import load_yaml, read_text
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
             "exporter": str, "kind": str, "file": (str, type(None))}
    if (not isinstance(src, dict) or not kinds.keys() <= src.keys()
            or any(not isinstance(src[k], t) for k, t in kinds.items()) or src["kind"] not in ("zoo", "file", "graph")
            or src["file"] not in (None, "model.sfir", "model.yaml", "model.yml", "model.nir")):
        raise SpikeforgeError("needs `source` with the model, its kind and copy, arch, seed, dt, reset and "
                              "exporter (written by this version's `spikeforge compile`; compile again)", where)
    files = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    texts = {}
    for name in ("program.sasm", "arch.yaml") + ((src["file"],) if src["file"] else ()):
        f = d / name
        if not f.is_file():
            raise SpikeforgeError(f"{name} not found (a compiled directory holds it): compile again", path)
        data = f.read_bytes()
        if files.get(name) != _digest(data):
            raise SpikeforgeError(f"{name} does not match the hash in compile.json (changed since `compile`): "
                                  "compile again", path)
        texts[name] = data
    program = assemble(texts["program.sasm"].decode(), str(d / "program.sasm"))
    arch_doc = load_yaml(texts["arch.yaml"].decode(), str(d / "arch.yaml"))
    spec = src["model"] if src["kind"] == "zoo" else str(d / src["file"])
    graph = load_model(spec, seed=src["seed"], dt=src["dt"], reset=src["reset"], exporter=src["exporter"],
                       allow_nonfinite=allow_nonfinite)
    chip = with_chips(arch_from_doc(arch_doc, str(d / "arch.yaml")), program.header.chips)
    return _Compiled(graph, arch_doc, chip, program, _settings(program.header, src))


def _settings(h, src: dict) -> dict:
    """The compiled values of the flags `simulate` must not contradict: the program's header and
    compile.json's `source`."""
    return {"arch": src["arch"], "train": h.training, "timesteps": h.timesteps, "batch": h.batch,
            "optimizer": h.optimizer, "dataflow": h.dataflow, "chips": h.chips, "seed": src["seed"]}


_FLAGS = {"arch": "--arch", "train": "--train", "timesteps": "--timesteps", "batch": "--batch",
          "optimizer": "--optimizer", "dataflow": "--dataflow", "chips": "--chips"}


def _contradictions(given: dict, comp: _Compiled) -> list[str]:
    """The flags given to `simulate DIR` that contradict the directory's compiled settings."""
    from spikeforge.isa.arch import arch_doc

    out = []
    for key, value in given.items():
        if value is None:
            continue
        have = comp.settings[key]
        if key == "arch":
            same = value == have or arch_doc(value)[0] == comp.arch_doc
        elif key == "dataflow":
            same = value in (have, "search")  # the directory holds the searched candidate
        else:
            same = value == have
        if not same:
            out.append(f"{_FLAGS[key]} {value} contradicts the compiled {key} {have}")
    return out


def simulate(model: Graph | str | CompileResult, arch: str | None = None, train: bool | None = None,
             timesteps: int | None = None, batch: int | None = None, input: str | Any = None,  # noqa: A002
             rate: float | None = None, seed: int | None = None, mode: str = "sparse", record_spikes: bool = False,
             dt: float | None = None, reset: str | None = None, exporter: str = "snntorch",
             dataflow: str | None = None, objective: str = "energy", optimizer: str | None = None,
             chips: int | None = None, progress: bool = False, allow_nonfinite: bool = False, html: bool = True,
             recompile: bool = False) -> SimulateResult:
    """Simulate one inference or training step on real data. MODEL: a zoo name, a model file or
    an in-memory Graph (compiled here: defaults arch `default`, inference, T = 4, B = 1, SGD,
    the searched dataflow, seed 0), a `compile` output directory or a CompileResult (run as
    compiled: a flag that contradicts its settings is an error naming both values, unless
    `recompile`, which compiles its model and arch again with the flags given). `input`: an
    .npz file or an array [T, B, *input] or [B, *input]. The result's `save(OUTDIR)` writes
    report.json, report.html (with `html`) and spikes.npz (with `record_spikes`). An in-memory
    model is not changed (a training step updates a copy)."""
    import os

    import numpy as np

    from spikeforge.compiler.driver import compile_model
    from spikeforge.hwsim.simulate import make_input, read_input, simulate as run_step
    from spikeforge.isa.arch import load_arch
    from spikeforge.isa.limits import check_array
    from spikeforge.progress import bar

    given = {"arch": arch, "train": train, "timesteps": timesteps, "batch": batch, "optimizer": optimizer,
             "dataflow": dataflow, "chips": chips}
    if rate is not None and not 0 <= rate <= 1:
        raise SpikeforgeError(f"--input-rate: must be in [0, 1], got {rate}")
    for name, v, hi in (("--seed", seed, MAX_SEED), ("--timesteps", timesteps, MAX_TIMESTEPS),
                        ("--batch", batch, MAX_BATCH), ("--chips", chips, MAX_CHIPS)):
        if v is not None:
            check_int(name, v, 0 if name == "--seed" else 1, hi)
    comp = None
    if isinstance(model, CompileResult):
        c = model.compiled
        src = model.doc["source"]
        graph = (init_tensors(copy.deepcopy(c.graph), src["seed"]) if src["kind"] == "graph" else
                 load_model(src["model"], seed=src["seed"], dt=src["dt"], reset=src["reset"],
                            exporter=src["exporter"], allow_nonfinite=allow_nonfinite))
        comp = _Compiled(graph, {}, c.arch, c.program, _settings(c.program.header, src))
    elif isinstance(model, str) and os.path.isdir(model):
        comp = _from_compile_dir(model, allow_nonfinite)
    elif not isinstance(model, (Graph, str)):
        raise SpikeforgeError(f"model: expected a zoo name, a model file, a Graph, a compile output directory or a "
                              f"CompileResult, got {type(model).__name__}")
    wrong = _contradictions(given, comp) if comp is not None else []
    if comp is not None:
        if wrong and not recompile:
            raise SpikeforgeError("; ".join(wrong) + " (compile again, or pass --recompile)",
                                  model if isinstance(model, str) else "the compiled model")
        settings = {**comp.settings, **{k: v for k, v in given.items() if v is not None}}
        graph = comp.graph
    else:
        settings = {"arch": "default", "train": False, "timesteps": 4, "batch": 1, "optimizer": "sgd",
                    "dataflow": "search", "chips": None, "seed": 0 if seed is None else seed,
                    **{k: v for k, v in given.items() if v is not None}}
        graph = model if isinstance(model, Graph) else load_model(
            model, seed=settings["seed"], dt=dt, reset=reset, exporter=exporter, allow_nonfinite=allow_nonfinite)
        if isinstance(model, Graph):  # a training step updates weights: the caller's graph stays as it is
            graph = init_tensors(copy.deepcopy(graph), settings["seed"])
    T, B, training = settings["timesteps"], settings["batch"], settings["train"]
    seed_ = settings["seed"] if seed is None else seed  # the input's and labels' (the weights': the compiled one)
    _check_run(T, B, seed_)
    data = None
    if isinstance(input, str):
        data = read_input(input, "--input", allow_nonfinite)
    elif input is not None:
        data = np.asarray(input, dtype=np.float32)
        check_array("input", data, allow_nonfinite)
    check_memory(f"a step of {graph.name} (T = {T}, B = {B})", graph.footprint(T, B, training))
    alternatives = ()
    if comp is not None and not wrong:  # run as compiled
        chip, program = comp.chip, comp.program
    else:  # compile (again, with `recompile`: on the directory's own copy of its arch unless another is named)
        same = comp is not None and settings["arch"] == comp.settings["arch"]
        chip = comp.chip if same else load_arch(settings["arch"])
        c = compile_model(graph, chip, training=training, timesteps=T, batch=B, seed=settings["seed"],
                          dataflow=settings["dataflow"], objective=objective, optimizer=settings["optimizer"],
                          chips=settings["chips"])
        chip, program, alternatives = c.arch, c.program, c.alternatives
    x = make_input(graph, T, B, rate, seed_, data)
    with bar(progress, B, "simulating") as advance:
        rep = run_step(graph, program, chip, x, mode=mode, seed=seed_, record=record_spikes, progress=advance,
                       alternatives=alternatives, objective=objective)
    values = rep.pop("_values", None)
    files = {"report.json": lambda p: p.write_text(json.dumps(rep, indent=2) + "\n")}
    if record_spikes:
        files["spikes.npz"] = lambda p: np.savez_compressed(p, **_entry_names(values))
    page = None
    if html:
        from spikeforge.pages import simulate_page

        page = simulate_page(rep, chip.rows, chip.cols, {b.name: b.bytes for b in chip.buffers})
        files["report.html"] = lambda p: p.write_text(page)
    return SimulateResult(rep, files, page, values)


def simulate_to_dir(model: str, out: str | None = None, *, training: bool | None = None, input_file: str | None = None,
                    **kw) -> dict:
    """`simulate(...)` saved into OUT (when given); returns report.json's figures."""
    if out is not None:
        check_writable(out)
    r = simulate(model, train=training, input=input_file, **kw)
    if out is not None:
        r.save(out)
    return r.doc


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


@dataclass
class TrainRun(Result):
    """`train`: train.json (`doc`) and the trained model (`graph`)."""

    graph: Graph | None = field(default=None, repr=False)


def train(model: Graph | str, dataset: str = "digits", arch: str = "default", epochs: int = 5, batch: int = 32,
          timesteps: int = 8, lr: float | None = None, seed: int = 0, fp16: bool | None = None,
          optimizer: str = "sgd", progress: bool = False, on_epoch=None) -> TrainRun:
    """Train MODEL (a zoo name, a model file or an in-memory Graph, trained in place) on DATASET
    on the simulated chip (spikeforge.training) with `optimizer` at `lr` (default:
    hwsim.optim.DEFAULT_LR), calling `on_epoch(epoch log)` after each epoch. The result's `save(OUTDIR)` writes train.json, train.png and the
    trained model (model.sfir)."""
    from spikeforge.isa.text import to_text
    from spikeforge.progress import bar
    from spikeforge.training import load_dataset, plot, train as run_training

    _check_run(timesteps, batch, seed)
    check_int("--epochs", epochs, 1, 1_000_000)
    if lr is not None and not math.isfinite(lr):
        raise SpikeforgeError(f"--lr: must be a finite number, got {lr}")
    graph = init_tensors(model, seed) if isinstance(model, Graph) else load_model(model, seed=seed)
    check_memory(f"a training step of {graph.name} (T = {timesteps}, B = {batch})",
                 graph.footprint(timesteps, batch, True))
    data = load_dataset(dataset, seed)
    with bar(progress, epochs * (len(data.x_train) // max(batch, 1)), "training") as advance:
        result = run_training(graph, data, arch, epochs=epochs, batch=batch, timesteps=timesteps, lr=lr, seed=seed,
                              fp16=fp16, optimizer=optimizer, progress=lambda e, i, n: advance((e - 1) * n + i),
                              on_epoch=on_epoch)
    doc = result.to_dict()
    files = {TRAINED: lambda p: p.write_text(to_text(graph)),
             "train.json": lambda p: p.write_text(json.dumps(doc, indent=2) + "\n"),
             "train.png": lambda p: plot(result, str(p))}
    return TrainRun(doc, files, None, graph)


def train_to_dir(model: str, out: str | None = None, **kw) -> dict:
    """`train(...)` saved into OUT (when given); returns train.json's figures."""
    if out is not None:
        check_writable(out)
    r = train(model, **kw)
    if out is not None:
        r.save(out)
    return r.doc


@dataclass
class SweepResult(Result):
    """`sweep`: what ran (`doc`: points, stored, ran, seconds, errors), every stored row
    (`rows`) and the Pareto-optimal rows per model (`pareto`)."""

    rows: list[dict] = field(default_factory=list, repr=False)
    pareto: dict[str, list[dict]] = field(default_factory=dict, repr=False)


def sweep(spec: str | dict, out: str, workers: int | None = None, scheduler: str | None = None,
          progress: bool = False, report: bool = True) -> SweepResult:
    """Run the sweep SPEC (a spec file, or the same as a dict whose `models` may hold in-memory
    Graphs) into OUT (results.sqlite, resumable: docs/sweeps.md) and, with `report`, write its
    report (pareto.png, summary.md, report.html). A dict spec and its graphs are written to
    OUT.inputs/ first (spec.yaml and one IR text file per graph), since workers load models
    from files."""
    import yaml

    from spikeforge.isa.text import to_text
    from spikeforge.sweeps.report import write_report
    from spikeforge.sweeps.run import run_sweep
    from spikeforge.sweeps.store import read

    if isinstance(spec, dict):
        inputs = Path(str(out) + ".inputs")
        doc, texts = dict(spec), {}
        models = doc.get("models")
        if isinstance(models, (list, tuple)):
            names = []
            for m in models:
                if isinstance(m, Graph):
                    texts[f"{m.name}.sfir"] = to_text(m)  # its tensors, if it has any; the rest from the seed
                    names.append(f"{m.name}.sfir")
                else:
                    names.append(m)
            doc["models"] = names
        texts["spec.yaml"] = yaml.safe_dump(doc, sort_keys=False)
        write_all(str(inputs), {n: (lambda p, t=t: p.write_text(t)) for n, t in texts.items()})
        spec = str(inputs / "spec.yaml")
    elif not isinstance(spec, str):
        raise SpikeforgeError(f"spec: expected a spec file or a dict, got {type(spec).__name__}")
    run = run_sweep(spec, out, workers=workers, scheduler=scheduler, progress=progress)
    summary = {"outdir": str(out), "points": run.points, "stored": run.stored, "ran": run.ran,
               "seconds": round(run.seconds, 3), "errors": [e for _, e in run.errors]}
    pareto = write_report(out)["pareto"] if report and run.points > len(run.errors) else {}
    _, _, rows = read(out)
    page = (Path(out) / "report.html").read_text() if (Path(out) / "report.html").is_file() else None
    return SweepResult(summary, {}, page, rows, pareto)


def federated_to_dir(model: str, out: str | None = None, dataset: str = "digits", arch: str = "default",
                     workers: int = 5, rounds: int = 20, local_steps: int = 10, partition: str = "iid",
                     batch: int = 32, timesteps: int = 8, lr: float | None = None, seed: int = 0,
                     optimizer: str = "sgd", scheduler: str | None = None, in_process: bool = False,
                     progress: bool = False, on_round=None) -> dict:
    """FedAvg training of MODEL on DATASET over `workers` simulated copies of the chip
    (spikeforge.federated): on a local Dask cluster, on the Dask scheduler at `scheduler`, or,
    with `in_process`, here; the same results either way. `on_round(result)` follows each round. Writes OUTDIR/federated.json,
    OUTDIR/federated.png and the global model OUTDIR/model.sfir (all or nothing). Returns the
    federated.json figures."""
    from spikeforge.isa.arch import load_arch, with_chips
    from spikeforge.federated import FedConfig, federated, plot
    from spikeforge.progress import bar
    from spikeforge.training import load_dataset

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
            from spikeforge.sweeps.pool import connect

            client = connect(scheduler)
        elif not in_process:
            import os

            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=min(workers, os.cpu_count() or 1), threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        with bar(progress, rounds, "federated rounds") as advance:
            result = federated(graph, data, chip, cfg, client, progress=advance, on_round=on_round)
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
