"""`spikeforge report OUTDIR`: the energy-latency Pareto front of a sweep (pareto.png), one
sensitivity plot per parameter (sensitivity_<param>.png) and summary.md naming the
Pareto-optimal designs. Plots use matplotlib's object API (Agg), no pyplot state."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spikeforge.isa import SpikeforgeError
from spikeforge.outdir import check_writable, write_all
from spikeforge.sweeps.store import read

MAX_LEVELS = 12  # a parameter with more distinct values is binned (random samples)
BINS = 8
MARKERS = "os^Dv<>P*X"


def pareto_front(energy: Sequence[float], latency: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (both figures <=, one <), by energy."""
    order = sorted(range(len(energy)), key=lambda i: (energy[i], latency[i]))
    front: list[int] = []
    for i in order:
        last = front[-1] if front else None
        if last is None or latency[i] < latency[last] or (energy[i], latency[i]) == (energy[last], latency[last]):
            front.append(i)
    return front


def write_report(outdir: str, color_by: str | None = None, html: bool = True) -> dict[str, Any]:
    """Write pareto.png, sensitivity_<param>.png, summary.md and (with `html`) report.html into
    OUTDIR; returns the files written and the Pareto-optimal rows per model."""
    meta, _, rows = read(outdir)
    check_writable(outdir)
    params = meta.get("settings", {}).get("params", [])
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        raise SpikeforgeError(f"no successful design point to report ({len(rows)} stored)", outdir)
    color_by = color_by or params[0]
    if color_by not in params + ["model"]:
        raise SpikeforgeError(f"--color-by: '{color_by}' is not a parameter of this sweep ({', '.join(params)})")
    models = sorted({r["model"] for r in ok})
    fronts = {m: _front([r for r in ok if r["model"] == m]) for m in models}
    writers = {"pareto.png": lambda path: _pareto_plot(ok, fronts, color_by, path)}
    for p in params:
        writers[_sensitivity_file(p)] = lambda path, p=p: _sensitivity_plot(ok, models, p, path)
    writers["summary.md"] = lambda path: path.write_text(_summary(meta, rows, params, fronts))
    if html:
        from spikeforge.pages import sweep_page

        title = f"sweep {Path(outdir).name}: {len(ok)} designs of {', '.join(_label(m) for m in models)}"
        writers["report.html"] = lambda path: path.write_text(sweep_page(title, ok, fronts, params))
    write_all(outdir, writers)  # all or nothing
    return {"files": [str(Path(outdir) / name) for name in writers], "pareto": fronts}


def _sensitivity_file(param: str) -> str:
    return f"sensitivity_{re.sub(r'[^A-Za-z0-9._-]', '_', param)}.png"


def _front(rows: list[dict]) -> list[dict]:
    idx = pareto_front([r["energy_pj"] for r in rows], [r["latency_s"] for r in rows])
    return sorted((rows[i] for i in idx), key=lambda r: (r["latency_s"], r["energy_pj"]))


def _label(model: str) -> str:
    """A model's short name: the zoo name, or the file name of a model file."""
    return Path(model).name


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _figure(ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * ncols, 4.8), layout="constrained")
    return fig, fig.subplots(1, ncols)


def _pareto_plot(rows: list[dict], fronts: dict[str, list[dict]], color_by: str, path: Path) -> None:
    fig, ax = _figure()
    values = [r[color_by] for r in rows]
    numeric = _numeric(values)
    levels = sorted(set(values), key=str)
    for k, (model, front) in enumerate(fronts.items()):
        mine = [r for r in rows if r["model"] == model]
        x = [r["latency_s"] * 1e3 for r in mine]
        y = [r["energy_pj"] * 1e-6 for r in mine]
        marker = MARKERS[k % len(MARKERS)]
        if numeric:
            sc = ax.scatter(x, y, c=[r[color_by] for r in mine], cmap="viridis", marker=marker, s=28,
                            vmin=min(values), vmax=max(values), label=_label(model) if len(fronts) > 1 else None)
        else:
            for j, level in enumerate(levels):
                sel = [i for i, r in enumerate(mine) if r[color_by] == level]
                ax.scatter([x[i] for i in sel], [y[i] for i in sel], marker=marker, s=28, color=f"C{j}",
                           label=f"{_label(model)}: {level}" if len(fronts) > 1 else str(level))
        fx = [r["latency_s"] * 1e3 for r in front]
        fy = [r["energy_pj"] * 1e-6 for r in front]
        ax.step(fx, fy, where="post", color="crimson", lw=1, zorder=1)
        ax.scatter(fx, fy, facecolors="none", edgecolors="crimson", s=90, lw=1.5, marker=marker,
                   label="Pareto front" if k == 0 else None)
    if numeric:
        fig.colorbar(sc, ax=ax, label=color_by)
    ax.legend(fontsize=8, title=None if numeric else color_by)
    _log_if_wide(ax, "x", [r["latency_s"] for r in rows])
    _log_if_wide(ax, "y", [r["energy_pj"] for r in rows])
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("energy (µJ)")
    ax.set_title(f"energy vs latency, {_plural(len(rows), 'design point')}")
    fig.savefig(path, dpi=120)


def _log_if_wide(ax, axis: str, values: list[float]) -> None:
    v = [x for x in values if x > 0]
    if v and max(v) > 10 * min(v):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _levels(values: list) -> tuple[list, list[int]]:
    """(levels, each row's level): the distinct values, or the medians of quantile bins when
    there are many numbers (random samples)."""
    numeric = _numeric(values)
    distinct = sorted(set(values), key=None if numeric else str)
    if not numeric or len(distinct) <= MAX_LEVELS:
        return distinct, [distinct.index(v) for v in values]
    edges = np.quantile(values, np.linspace(0, 1, BINS + 1))
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, BINS - 1).tolist()
    present = sorted(set(which))
    levels = [float(np.median([v for v, w in zip(values, which) if w == b])) for b in present]
    return levels, [present.index(w) for w in which]


def _sensitivity_plot(rows: list[dict], models: list[str], param: str, path: Path) -> None:
    """Median energy and latency over the other parameters, against one parameter."""
    fig, (ea, la) = _figure(2)
    for k, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model]
        levels, which = _levels([r[param] for r in mine])
        numeric = _numeric(levels)
        for ax, key, scale in ((ea, "energy_pj", 1e-6), (la, "latency_s", 1e3)):
            med = [np.median([r[key] for r, w in zip(mine, which) if w == b]) * scale for b in range(len(levels))]
            ax.plot(levels if numeric else range(len(levels)), med, marker=MARKERS[k % len(MARKERS)],
                    label=_label(model))
            if not numeric:
                ax.set_xticks(range(len(levels)), [str(v) for v in levels])
            elif min(levels) > 0 and max(levels) > 10 * min(levels):
                ax.set_xscale("log")
            ax.set_xlabel(param)
    ea.set_ylabel("energy (µJ), median")
    la.set_ylabel("latency (ms), median")
    for ax in (ea, la):
        ax.grid(alpha=0.3)
        if len(models) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(f"sensitivity to {param} (median over the other parameters)")
    fig.savefig(path, dpi=120)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _shown(row: dict, params: list[str]) -> str:
    return ", ".join(f"{p} = {_fmt(row[p])}" for p in params)


def _summary(meta: dict, rows: list[dict], params: list[str], fronts: dict[str, list[dict]]) -> str:
    s = meta.get("settings", {})
    errors = [r for r in rows if r["status"] != "ok"]
    plots = ", ".join(f"[{f}]({f})" for f in ["pareto.png"] + [_sensitivity_file(p) for p in params])
    lines = ["# Sweep summary", "",
             f"{_plural(len(rows), 'design point')} ({len(rows) - len(errors)} ok, {len(errors)} errors) of "
             f"{', '.join(f'`{m}`' for m in fronts)} on `{s.get('arch')}`, "
             f"{'training' if s.get('training') else 'inference'}, T = {s.get('timesteps')}, B = {s.get('batch')}, "
             f"mode {s.get('mode')}, seed {s.get('seed')}; varied: {', '.join(f'`{p}`' for p in params)}.", "",
             f"Plots: {plots}."]
    head = params + ["energy (µJ)", "latency (ms)", "EDP (µJ·ms)", "cycles", "DRAM bytes"]
    for model, front in fronts.items():
        lines += ["", f"## {_label(model)}: {_plural(len(front), 'Pareto-optimal design')} (energy vs latency)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in front:
            e, t = r["energy_pj"] * 1e-6, r["latency_s"] * 1e3
            cells = [_fmt(r[p]) for p in params] + [_fmt(e), _fmt(t), _fmt(e * t), str(r["cycles"]), str(r["dram_bytes"])]
            lines.append("| " + " | ".join(cells) + " |")
        fast, frugal = front[0], front[-1]  # the front is sorted by latency
        lines += ["", f"Lowest energy: {_fmt(frugal['energy_pj'] * 1e-6)} µJ ({_shown(frugal, params)}); "
                  f"lowest latency: {_fmt(fast['latency_s'] * 1e3)} ms ({_shown(fast, params)})."]
    if errors:
        lines += ["", f"## Errors ({len(errors)})", ""]
        lines += [f"- {_label(r['model'])}, {_shown(r, params)}: {r['error']}" for r in errors]
    return "\n".join(lines) + "\n"
