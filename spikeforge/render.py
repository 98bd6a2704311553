"""Human-readable rendering of CLI results (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _console() -> Console:
    return Console(width=200, soft_wrap=False)


def _shape(s: list[int]) -> str:
    return "×".join(map(str, s))


def _si(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:g}"


def print_zoo(rows: list[dict]) -> None:
    t = Table(title="spikeforge model zoo")
    for col in ("name", "input", "classes", "description", "source"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], _shape(r["input_shape"]), str(r["classes"]), r["description"], r["source"])
    _console().print(t)


def print_inspect(rep: dict) -> None:
    t = Table(title=f"{rep['model']}: dense synaptic work per sample and time step")
    for col, just in (("layer", "left"), ("op", "left"), ("input", "left"), ("output", "left"),
                      ("params", "right"), ("syn ops/step", "right"), ("type", "left")):
        t.add_column(col, justify=just)
    for l in rep["layers"]:
        ins = ", ".join(f"{k[0]}:{_shape(s)}" for k, s in zip(l["input_kinds"], l["input_shapes"]))
        t.add_row(l["name"], l["op"], ins, f"{l['output_kind'][0]}:{_shape(l['output_shape'])}",
                  f"{l['params']:,}" if l["params"] else "", f"{l['syn_ops_per_step']:,}" if l["syn_ops_per_step"] else "",
                  l["arith"])
    tot = rep["totals"]
    c = _console()
    c.print(t)
    c.print(f"[bold]totals[/bold]: {tot['layers']} layers, {tot['params']:,} parameters ({_si(tot['params'])}), "
            f"{tot['neurons']:,} neurons; per step {_si(tot['mac_per_step'])} MAC + {_si(tot['ac_per_step'])} AC "
            f"dense synaptic ops; over T={rep['timesteps']}: {_si(tot['syn_ops'])} (s: spike, r: real)")
