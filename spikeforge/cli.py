"""The `spikeforge` command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from spikeforge.compiler.frontends.nir_conventions import EXPORTERS
from spikeforge.hwsim.optim import DEFAULT_LR
from spikeforge.isa import SpikeforgeError
from spikeforge.isa.limits import one_line, set_memory_limit
from spikeforge.isa.program import OPTIMIZERS
from spikeforge.mapping.dataflow import DATAFLOWS, OBJECTIVES
from spikeforge.sweeps.spec import MAX_POINTS
from spikeforge.units import format_bytes
from spikeforge.training import DATASETS

EXAMPLES = {
    "zoo": "example: spikeforge zoo list --json",
    "arch": "examples:\n  spikeforge arch list\n  spikeforge arch show default > my_chip.yaml",
    "compile": "examples:\n  spikeforge compile vgg11 -o out/vgg11\n"
               "  spikeforge compile resnet18 --arch large64 --train --timesteps 4 --batch 16 -o out/r18\n"
               "  spikeforge compile model.yaml --arch my_chip.yaml --strategy sequential -o out/base --json",
    "simulate": "examples:\n  spikeforge simulate vgg11 --train\n"
                "  spikeforge simulate vgg11 --train -B 16 --optimizer adam --json | jq .totals.dram_bytes_by_category\n"
                "  spikeforge simulate resnet18 --arch large64 --train -T 4 -B 2 --input-rate 0.2 -o out/r18 --json\n"
                "  spikeforge simulate vgg11 --train --layers          # + energy, DRAM and cycles per layer\n"
                "  spikeforge simulate out/vgg11 --input batch.npz --mode dense --record-spikes -o out/sim",
    "inspect": "examples:\n  spikeforge inspect vgg11\n  spikeforge inspect model.yaml --json\n"
               "  spikeforge inspect net.nir --dt 1e-4 --reset zero --timesteps 8\n"
               "  spikeforge inspect resnet18 --ir > resnet18.sfir",
    "sweep": "examples:\n  spikeforge sweep examples/sweep_mlp.yaml -o out/sweep_mlp\n"
             "  spikeforge sweep sweep.yaml -o out/sw --workers 8          # rerun: skips the points already stored\n"
             "  spikeforge sweep sweep.yaml -o out/sw --dask-scheduler tcp://10.0.0.5:8786\n"
             "  spikeforge sweep export out/sw --csv out/sw.csv\n"
             "the spec format: docs/sweeps.md",
    "train": "examples:\n  spikeforge train examples/models/digits_mlp.yaml --dataset digits -o out/digits\n"
             "  spikeforge train examples/models/digits_rsnn.yaml --dataset digits_rows -o out/rows\n"
             "  spikeforge train examples/models/digits_mlp.yaml --epochs 3 --fp16 --lr 0.1 -T 8 -B 32\n"
             "  spikeforge train examples/models/digits_mlp.yaml --optimizer adam --lr 0.003\n"
             "the same training beside snnTorch: examples/train_digits.py",
    "report": "examples:\n  spikeforge report out/sweep_mlp\n  spikeforge report out/sw --color-by arithmetic",
    "export": "examples:\n  spikeforge export mlp -o mlp.nir\n"
              "  spikeforge export out/digits -o digits.nir          # the trained weights of a `train` run\n"
              "  spikeforge export norse.nir --exporter norse -o same.nir\n"
              "the format and its conventions: docs/nir.md",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one `error:` line, exit 2."""

    def error(self, message):
        sys.stderr.write(f"error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


class _Renamed(argparse.Action):
    """An option's old spelling: still works, with a warning naming the new one."""

    def __init__(self, option_strings, dest, new: str, **kw):
        super().__init__(option_strings, dest, **kw)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stderr.write(f"warning: {option_string} is deprecated, use {self.new}\n")
        setattr(namespace, self.dest, values)


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="spikeforge", description="Compile spiking neural networks to multi-core "
                "training chips and estimate their energy and latency.",
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="example: spikeforge inspect vgg11")
    p.add_argument("--version", action="version", version=f"spikeforge {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    z = sub.add_parser("zoo", help="the built-in model zoo", epilog=EXAMPLES["zoo"],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    zsub = z.add_subparsers(dest="zoo_command", required=True, parser_class=_Parser)
    zl = zsub.add_parser("list", help="list the zoo models", epilog=EXAMPLES["zoo"])
    zl.add_argument("--json", action="store_true", help="print JSON")

    a = sub.add_parser("arch", help="chip architecture presets", epilog=EXAMPLES["arch"],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    asub = a.add_subparsers(dest="arch_command", required=True, parser_class=_Parser)
    al = asub.add_parser("list", help="list the presets")
    al.add_argument("--json", action="store_true", help="print JSON")
    ash = asub.add_parser("show", help="print a preset's YAML (or a summary of an architecture file)")
    ash.add_argument("name", metavar="NAME|FILE")
    ash.add_argument("--json", action="store_true", help="print the validated description as JSON")

    c = sub.add_parser("compile", help="map a model onto a chip and generate per-core programs",
                       epilog=EXAMPLES["compile"], formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_args(c)
    _run_args(c)
    c.add_argument("--strategy", choices=("metis", "sequential"), default="metis",
                   help="partitioner: metis (default, traffic-aware) or the sequential baseline")
    c.add_argument("--spike-rate", type=_finite, default=0.1,
                   help="expected spikes per neuron per step, weights the traffic (default 0.1)")
    c.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output directory")
    c.add_argument("--no-html", action="store_true", help="do not write OUTDIR/report.html (the interactive page; docs/report.md)")
    c.add_argument("--json", action="store_true", help="print compile.json to stdout")

    s = sub.add_parser("simulate", help="simulate one inference or training step on the chip: energy, latency, traffic",
                       epilog=EXAMPLES["simulate"], formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_args(s)
    _run_args(s, unset=True)
    s.add_argument("--recompile", action="store_true",
                   help="MODEL is a compiled directory: compile its model and arch again with the settings given "
                        "(without it, a setting that contradicts the compiled one is an error)")
    s.add_argument("--input", metavar="FILE.npz", help="array x: [T, B, *input] or [B, *input] (repeated over T)")
    s.add_argument("--input-rate", type=_finite, metavar="RATE", help="Poisson input spikes at this rate (default: "
                   "0.2 for spike inputs, uniform [0, 1) values for direct inputs)")
    s.add_argument("--rate", type=_finite, dest="input_rate", action=_Renamed, new="--input-rate",
                   help="deprecated spelling of --input-rate")
    s.add_argument("--mode", choices=("sparse", "dense"), default="sparse",
                   help="sparse: zero spikes/errors are skipped (default); dense: every loop iteration counts")
    s.add_argument("--record-spikes", action="store_true", help="write OUTDIR/spikes.npz, one [T, B, *shape] array per layer")
    s.add_argument("-o", "--out", metavar="OUTDIR", help="write OUTDIR/report.json and OUTDIR/report.html")
    s.add_argument("--no-html", action="store_true", help="do not write OUTDIR/report.html (the interactive page; docs/report.md)")
    s.add_argument("--json", action="store_true", help="print report.json to stdout")
    s.add_argument("--layers", action="store_true", help="also print a table of the layers: synaptic ops, spike "
                   "rate, energy and its DRAM part, DRAM bytes, cycles")
    s.add_argument("--allow-nonfinite", action="store_true",
                   help="run weights and inputs that hold NaN or inf (an error by default)")

    t = sub.add_parser("train", help="train a model on a dataset with the chip's FP/BP/WG engines: accuracy, energy per step",
                       epilog=EXAMPLES["train"], formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_args(t)
    t.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits: scikit-learn's 8x8 digits, split by --seed (default); digits_rows: the same "
                        "images, one row of 8 pixels per step (T = 8), for recurrent models")
    t.add_argument("--arch", default="default", metavar="NAME|FILE", help="architecture preset or YAML file")
    t.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    t.add_argument("--timesteps", "-T", type=int, default=8, help="time steps (default 8)")
    t.add_argument("--batch", "-B", type=int, default=32, help="samples per training step (default 32)")
    _optimizer_arg(t)
    t.add_argument("--lr", type=_finite, help="learning rate (default: "
                   + ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LR.items()) + ")")
    t.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                   help="FP16 arithmetic, weights included (default: the architecture's `arithmetic`)")
    t.add_argument("-o", "--out", metavar="OUTDIR", help="write OUTDIR/train.json and OUTDIR/train.png")
    t.add_argument("--json", action="store_true", help="print train.json to stdout")
    f = t.add_argument_group("federated training (FedAvg over simulated chips; docs/federated.md)")
    f.add_argument("--workers", type=int, metavar="N", help="train on N simulated chips with FedAvg instead of one")
    f.add_argument("--rounds", type=int, default=20, help="FedAvg rounds (default 20)")
    f.add_argument("--local-steps", type=int, default=10, help="training steps per worker and round (default 10)")
    f.add_argument("--partition", default="iid", metavar="iid|dirichlet:ALPHA",
                   help="how the training set is split over the workers (default iid)")
    f.add_argument("--dask-scheduler", metavar="ADDRESS", help="run the workers on this Dask scheduler "
                   "(default: a local Dask cluster)")
    f.add_argument("--in-process", action="store_true", help="run the workers in this process, one after another")

    i = sub.add_parser("inspect", help="per-layer shapes, parameters and synaptic work of a model",
                       epilog=EXAMPLES["inspect"], formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_args(i)
    i.add_argument("--timesteps", "-T", type=int, default=4, help="time steps for the totals (default 4)")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.add_argument("--ir", action="store_true", help="print the IR text form instead of the table")

    w = sub.add_parser("sweep", help="simulate every design point of a sweep spec into SQLite; or export a sweep as CSV",
                       usage="spikeforge sweep SPEC.yaml -o OUTDIR [--workers N] [--dask-scheduler ADDRESS]\n"
                             "       spikeforge sweep export OUTDIR --csv FILE",
                       epilog=EXAMPLES["sweep"], formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("spec", metavar="SPEC.yaml|export", help="the sweep spec (docs/sweeps.md), or `export`")
    w.add_argument("outdir", nargs="?", metavar="OUTDIR", help="export: the sweep's output directory")
    w.add_argument("-o", "--out", metavar="OUTDIR", help="output directory: results.sqlite, spec.yaml")
    w.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: the CPU count)")
    w.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="run the points on a Dask distributed cluster instead (e.g. tcp://host:8786)")
    w.add_argument("--csv", metavar="FILE", help="export: the CSV file to write")
    w.add_argument("--max-points", type=int, default=MAX_POINTS, metavar="N",
                   help=f"refuse a spec of more design points than this (default {MAX_POINTS})")
    _memory_arg(w)

    e = sub.add_parser("export", help="write a model as NIR, for snnTorch, Norse, Sinabs or another chip's toolchain",
                       epilog=EXAMPLES["export"], formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("model", metavar="MODEL", help="a zoo name, a .yaml, .nir or .sfir file, or a `train` output "
                   "directory (its trained weights)")
    _read_args(e)
    e.add_argument("-o", "--out", required=True, metavar="FILE.nir", help="the NIR file to write")
    e.add_argument("--json", action="store_true", help="print a summary as JSON")

    r = sub.add_parser("report", help="Pareto front, sensitivity plots and summary.md of a sweep",
                       epilog=EXAMPLES["report"], formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("outdir", metavar="OUTDIR", help="a directory written by `spikeforge sweep`")
    r.add_argument("--no-html", action="store_true", help="do not write OUTDIR/report.html (the interactive page; docs/report.md)")
    r.add_argument("--color-by", metavar="PARAM", help="colour the Pareto plot by this parameter "
                   "(default: the first varied one; `model` also works)")
    return p


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a zoo name, or a .yaml, .nir or .sfir file")
    _read_args(p)


def _read_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of generated weights (default 0)")
    p.add_argument("--exporter", choices=tuple(EXPORTERS), default="snntorch",
                   help="NIR only: the framework that wrote the file, whose conventions apply (default snntorch)")
    p.add_argument("--dt", type=_finite, help="NIR only: time step in seconds that discretises tau (default: the "
                   "exporter's: snntorch 1e-4, norse 1e-3, sinabs 1)")
    p.add_argument("--reset", choices=("subtract", "zero"),
                   help="NIR only: reset after a spike (default: as spikeforge wrote it, else the exporter's: "
                   "subtract, norse zero)")
    _memory_arg(p)


def _memory_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-memory", type=_finite, metavar="GIB",
                   help="refuse work estimated to need more memory than this (default: the machine's memory; "
                        "0: no limit)")


def _finite(text: str) -> float:
    """argparse type: a finite float."""
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(text)
    return v


_finite.__name__ = "finite number"  # argparse: "invalid finite number value: 'nan'"


def _run_args(p: argparse.ArgumentParser, unset: bool = False) -> None:
    """The settings of a compiled program; with `unset` they stay None when not given (simulate
    checks them against a compiled directory's, and applies the defaults otherwise)."""
    def default(v):
        return None if unset else v

    p.add_argument("--arch", default=default("default"), metavar="NAME|FILE",
                   help="architecture preset or YAML file (default: default)")
    p.add_argument("--train", action="store_true", default=default(False),
                   help="a training step (FP + BP + WG + update) instead of inference")
    p.add_argument("--timesteps", "-T", type=int, default=default(4), help="time steps (default 4)")
    p.add_argument("--batch", "-B", type=int, default=default(1), help="samples per step (default 1)")
    p.add_argument("--dataflow", choices=DATAFLOWS, default=default("search"),
                   help="loop order and memory residency: search (default: the best for --objective), "
                        "naive (weights per sample and step), ws_time (time inside a weight tile), "
                        "ws_batch (batch and time inside a weight tile); docs/dataflow.md")
    p.add_argument("--objective", choices=OBJECTIVES, default="energy",
                   help="what the dataflow search minimises (default energy)")
    p.add_argument("--chips", type=int, metavar="N", default=None,
                   help="split the model over a system of N copies of the chip on the architecture's link "
                        "(default: its system.chips, else 1); docs/multichip.md")
    _optimizer_arg(p, default("sgd"))


def _optimizer_arg(p: argparse.ArgumentParser, default: str | None = "sgd") -> None:
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=default,
                   help="the training step's weight update: sgd (default) or adam (its FP32 state m, v in a "
                        "global buffer or DRAM, as the dataflow decides)")


def _version() -> str:
    from spikeforge import __version__
    return __version__


def _cmd_zoo(args) -> None:
    from spikeforge.compiler.frontends.zoo import ZOO
    from spikeforge.render import print_zoo

    rows = [{"name": m.name, "description": m.description, "input_shape": list(m.input_shape),
             "classes": m.num_classes, "source": m.source} for m in ZOO.values()]
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
    else:
        print_zoo(rows)


def _cmd_inspect(args) -> None:
    from spikeforge.compiler.frontends import load_model
    from spikeforge.api import inspect_model
    from spikeforge.render import print_inspect

    if args.timesteps < 1:
        raise SpikeforgeError(f"--timesteps: must be a positive int, got {args.timesteps}")
    graph = load_model(args.model, seed=args.seed, weights=False, dt=args.dt, reset=args.reset,
                       exporter=args.exporter)
    if args.ir:
        from spikeforge.isa.text import to_text
        sys.stdout.write(to_text(graph, weights=False))
        return
    report = inspect_model(graph, args.timesteps)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_inspect(report)


def _cmd_arch(args) -> None:
    from dataclasses import asdict

    from spikeforge.isa.arch import load_arch, preset_text, presets

    if args.arch_command == "list":
        rows = []
        for name in presets():
            a = load_arch(name)
            rows.append({"name": name, "description": a.description, "cores": a.n_cores, "mesh": [a.rows, a.cols],
                         "precision": a.precision, "clock_mhz": a.clock_mhz})
        if args.json:
            print(json.dumps({"presets": rows}, indent=2))
        else:
            from spikeforge.render import print_arch_list
            print_arch_list(rows)
        return
    arch = load_arch(args.name)
    if args.json:
        print(json.dumps(asdict(arch), indent=2))
    elif args.name in presets():
        sys.stdout.write(preset_text(args.name))
    else:
        from pathlib import Path
        sys.stdout.write(Path(args.name).read_text())


def _cmd_compile(args) -> None:
    from spikeforge.api import compile_to_dir
    from spikeforge.render import print_compile

    stats = compile_to_dir(args.model, args.out, arch=args.arch, training=args.train, timesteps=args.timesteps,
                           batch=args.batch, strategy=args.strategy, spike_rate=args.spike_rate, seed=args.seed,
                           dt=args.dt, reset=args.reset, exporter=args.exporter, dataflow=args.dataflow,
                           objective=args.objective, optimizer=args.optimizer, chips=args.chips,
                           progress=not args.json, html=not args.no_html)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        copy = stats["source"].get("file")
        print_compile(stats, args.out, ["placement.yaml", "placement.png", "program.sasm", "compile.json", "arch.yaml"]
                      + ([copy] if copy else []) + ([] if args.no_html else ["report.html"]))


def _cmd_simulate(args) -> None:
    from spikeforge.api import simulate_to_dir
    from spikeforge.render import print_report

    if args.record_spikes and not args.out:
        raise SpikeforgeError("--record-spikes needs -o OUTDIR")
    if args.input and args.input_rate is not None:
        raise SpikeforgeError("give --input or --input-rate, not both")
    rep = simulate_to_dir(args.model, args.out, recompile=args.recompile, arch=args.arch, training=args.train,
                          timesteps=args.timesteps,
                          batch=args.batch, input_file=args.input, rate=args.input_rate, seed=args.seed, mode=args.mode,
                          record_spikes=args.record_spikes, dt=args.dt, reset=args.reset, exporter=args.exporter,
                          dataflow=args.dataflow, objective=args.objective, optimizer=args.optimizer,
                          chips=args.chips, progress=not args.json, allow_nonfinite=args.allow_nonfinite,
                          html=not args.no_html)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep, args.out, layers=args.layers)


def _cmd_train(args) -> None:
    if args.workers is not None:
        return _cmd_federated(args)
    fed = [o for o, v in (("--dask-scheduler", args.dask_scheduler), ("--in-process", args.in_process)) if v]
    if fed:
        raise SpikeforgeError(f"{fed[0]} needs --workers N (federated training)")
    from spikeforge.api import train_to_dir

    doc = train_to_dir(args.model, args.out, dataset=args.dataset, arch=args.arch, epochs=args.epochs,
                       batch=args.batch, timesteps=args.timesteps, lr=args.lr, seed=args.seed, fp16=args.fp16,
                       optimizer=args.optimizer, progress=not args.json, on_epoch=None if args.json else _print_epoch)
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.out:
        print(f"wrote {args.out}/model.sfir (the trained model), {args.out}/train.json, {args.out}/train.png")


def _print_epoch(r) -> None:
    """One line per epoch as it ends (after a heading at the first)."""
    if len(r.epochs) == 1:
        print(f"{r.model} on {r.dataset}, arch {r.arch} ({r.arithmetic}), B={r.batch} T={r.timesteps} {r.optimizer} "
              f"lr={r.lr}, {r.steps_per_epoch} steps per epoch")
        print("epoch   loss  train   test  energy/step  latency/step  DRAM/step  spike rate  skipped ops")
    e = r.epochs[-1]
    print(f"{e.epoch:5d}  {e.loss:.3f}  {e.train_acc:.3f}  {e.test_acc:.3f}  {e.energy_pj * 1e-6:8.1f} µJ  "
          f"{e.latency_s * 1e6:9.1f} µs  {format_bytes(e.dram_bytes):>9}  {e.spike_rate:10.3f}  {e.op_sparsity:11.3f}",
          flush=True)


def _cmd_federated(args) -> None:
    from spikeforge.api import federated_to_dir

    if args.epochs != 5 or args.fp16 is not None:
        raise SpikeforgeError("--epochs and --fp16 are for single-chip training; federated training takes "
                              "--rounds and --local-steps, and the architecture's arithmetic")
    doc = federated_to_dir(args.model, args.out, dataset=args.dataset, arch=args.arch, workers=args.workers,
                           rounds=args.rounds, local_steps=args.local_steps, partition=args.partition,
                           batch=args.batch, timesteps=args.timesteps, lr=args.lr, seed=args.seed,
                           optimizer=args.optimizer, scheduler=args.dask_scheduler, in_process=args.in_process,
                           progress=not args.json, on_round=None if args.json else _print_round)
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.out:
        print(f"wrote {args.out}/federated.json, {args.out}/federated.png")


def _print_round(r) -> None:
    """One line per FedAvg round as it ends (after a heading at the first)."""
    if len(r.rounds) == 1:
        print(f"{r.model} on {r.dataset}: {r.workers} workers ({r.partition}, shards "
              f"{', '.join(map(str, r.shard_sizes))}), {r.local_steps} local steps of B={r.batch} T={r.timesteps} "
              f"per round, arch {r.arch} ({r.arithmetic}), {r.topology} link")
        print("round   loss   test  compute/round  comm/round  comm bytes  latency/round")
    x = r.rounds[-1]
    print(f"{x.round:5d}  {x.loss:.3f}  {x.test_acc:.3f}  {x.compute_energy_pj * 1e-6:10.1f} µJ  "
          f"{x.comm_energy_pj * 1e-6:7.2f} µJ  {format_bytes(x.comm_bytes):>10}  {x.latency_s * 1e3:10.2f} ms",
          flush=True)


def _cmd_sweep(args) -> None:
    if args.spec == "export":
        if args.outdir is None or args.csv is None or args.out or args.workers or args.dask_scheduler:
            raise SpikeforgeError("usage: spikeforge sweep export OUTDIR --csv FILE")
        from spikeforge.sweeps.store import export_csv

        n = export_csv(args.outdir, args.csv)
        print(f"wrote {args.csv} ({n} design points)")
        return
    if args.outdir is not None or args.csv is not None:
        raise SpikeforgeError(f"unexpected {args.outdir or '--csv'!r}: give the output directory as -o OUTDIR "
                              "(or export with `spikeforge sweep export OUTDIR --csv FILE`)")
    if args.out is None:
        raise SpikeforgeError("-o OUTDIR is required")
    if args.workers is not None and args.dask_scheduler:
        raise SpikeforgeError("give --workers or --dask-scheduler, not both")
    from spikeforge.sweeps.run import run_sweep

    run = run_sweep(args.spec, args.out, workers=args.workers, scheduler=args.dask_scheduler, progress=True,
                    max_points=args.max_points)
    rate = f" ({60 * run.ran / run.seconds:.0f} points/min)" if run.ran and run.seconds else ""
    print(f"sweep: {run.points} design points: {run.stored} already in {args.out}, {run.ran} run in "
          f"{run.seconds:.1f} s{rate}, {len(run.errors)} error{'' if len(run.errors) == 1 else 's'}")
    for point, error in run.errors[:5]:
        shown = ", ".join(f"{p}={v}" for p, v in point.overrides)
        print(f"  error: {point.model}, {shown}: {error}")
    print(f"wrote {args.out}/results.sqlite; next: spikeforge report {args.out}")


def _cmd_export(args) -> None:
    from spikeforge.api import export_nir

    doc = export_nir(args.model, args.out, seed=args.seed, dt=args.dt, reset=args.reset, exporter=args.exporter)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"wrote {args.out}: {doc['model']}, {doc['nodes']} NIR nodes, {doc['params']} parameters"
              + (" (trained weights)" if doc["trained"] else ""))


def _cmd_report(args) -> None:
    from spikeforge.sweeps.report import write_report

    rep = write_report(args.outdir, args.color_by, html=not args.no_html)
    for model, front in rep["pareto"].items():
        print(f"{model}: {len(front)} Pareto-optimal design{'' if len(front) == 1 else 's'}")
    print("wrote " + ", ".join(rep["files"]))


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if getattr(args, "max_memory", None) is not None:
        set_memory_limit(int(args.max_memory * 2**30) if args.max_memory > 0 else 2**63)
    handlers = {"zoo": _cmd_zoo, "inspect": _cmd_inspect, "arch": _cmd_arch, "compile": _cmd_compile,
                "simulate": _cmd_simulate, "train": _cmd_train, "sweep": _cmd_sweep, "report": _cmd_report,
                "export": _cmd_export}
    try:
        handlers[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except SpikeforgeError as e:
        sys.stderr.write(f"error: {one_line(str(e))}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except BrokenPipeError:  # `spikeforge ... | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush finds no closed pipe."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (captured)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
