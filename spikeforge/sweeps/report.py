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
from spikeforge.plots import figure, fit_axis, wide
from spikeforge.sweeps.store import read
from spikeforge.units import field_label, field_unit, format_bytes

MAX_LEVELS = 12  # a parameter with more distinct values is binned (random samples)
MAX_COLORS = 10  # a parameter with more distinct numbers is coloured on a colour bar
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
    writers = {"pareto.png": lambda path: pareto_figure(ok, fronts, color_by).savefig(path, dpi=120)}
    for p in params:
        writers[_sensitivity_file(p)] = lambda path, p=p: sensitivity_figure(ok, models, p).savefig(path, dpi=120)
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


def _axis_label(param: str) -> str:
    return "model" if param == "model" else field_label(param)


def _value_text(param: str, v: Any) -> str:
    """A parameter's value as a legend or tick shows it: with its unit, a model by its short name."""
    if param == "model":
        return _label(v)
    return f"{_fmt(v)} {field_unit(param)}".strip()


def _categories(values: list) -> list | None:
    """The distinct values, in order, when they are names or at most MAX_COLORS numbers (one
    colour each, in a legend), else None (a colour bar)."""
    distinct = sorted(set(values), key=None if _numeric(values) else str)
    return distinct if not _numeric(values) or len(distinct) <= MAX_COLORS else None


def _category_colors(n: int) -> list:
    """tab10's colours, then tab20's light shades (names may be more than ten), repeating."""
    from matplotlib import colormaps

    pool = list(colormaps["tab10"].colors) + list(colormaps["tab20"].colors[1::2])
    return [pool[i % len(pool)] for i in range(n)]


def pareto_figure(rows: list[dict], fronts: dict[str, list[dict]], color_by: str):
    """Energy against latency, coloured by `color_by`: one colour per value when the values are few
    or names (a legend), a colour bar otherwise (logarithmic when they span more than 10x); one
    marker shape per model; the Pareto front circled and joined."""
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.lines import Line2D

    fig, ((ax,),) = figure(8, 5)
    values = [r[color_by] for r in rows]
    levels = _categories(values)
    if levels is None:
        norm = (LogNorm if wide(values) else Normalize)(min(values), max(values))
    else:
        colors = dict(zip(levels, _category_colors(len(levels))))
    for k, (model, front) in enumerate(fronts.items()):
        mine = [r for r in rows if r["model"] == model]
        marker = MARKERS[k % len(MARKERS)]
        shade = ({"c": [r[color_by] for r in mine], "cmap": "viridis", "norm": norm} if levels is None
                 else {"color": [colors[r[color_by]] for r in mine]})
        sc = ax.scatter([r["latency_s"] * 1e3 for r in mine], [r["energy_pj"] * 1e-6 for r in mine], marker=marker,
                        s=32, alpha=0.8, edgecolors="white", linewidths=0.5, zorder=2, **shade)
        fx, fy = [r["latency_s"] * 1e3 for r in front], [r["energy_pj"] * 1e-6 for r in front]
        ax.step(fx, fy, where="post", color="crimson", lw=1, zorder=3)
        ax.scatter(fx, fy, facecolors="none", edgecolors="crimson", s=100, lw=1.5, marker=marker, zorder=3)
    if levels is None:
        fig.colorbar(sc, ax=ax, label=_axis_label(color_by))
    else:
        fig.legend(handles=[Line2D([], [], ls="", marker="o", color=colors[v], label=_value_text(color_by, v))
                            for v in levels], title=_axis_label(color_by), loc="outside right upper", fontsize=8)
    shapes = [Line2D([], [], ls="", marker=MARKERS[k % len(MARKERS)], color="grey", label=_label(m))
              for k, m in enumerate(fronts)] if len(fronts) > 1 else []
    shapes.append(Line2D([], [], ls="-", marker="o", mfc="none", color="crimson", label="Pareto front"))
    ax.legend(handles=shapes, fontsize=8)
    fit_axis(ax, "x", [r["latency_s"] * 1e3 for r in rows])
    fit_axis(ax, "y", [r["energy_pj"] * 1e-6 for r in rows])
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("energy (µJ)")
    ax.grid(alpha=0.3)
    ax.set_title(f"energy vs latency, {_plural(len(rows), 'design point')}")
    return fig


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


def sensitivity_figure(rows: list[dict], models: list[str], param: str):
    """Energy and latency against one parameter: per model the median over the other parameters,
    and their range (min to max) shaded."""
    fig, ((ea, la),) = figure(12.8, 4.8, 1, 2)
    values = [r[param] for r in rows]
    binned = _numeric(values) and len(set(values)) > MAX_LEVELS
    for ax, key, scale, what in ((ea, "energy_pj", 1e-6, "energy (µJ)"), (la, "latency_s", 1e3, "latency (ms)")):
        shown = []
        for k, model in enumerate(models):
            mine = [r for r in rows if r["model"] == model]
            levels, which = _levels([r[param] for r in mine])
            xs = levels if _numeric(levels) else list(range(len(levels)))
            groups = [[r[key] * scale for r, w in zip(mine, which) if w == b] for b in range(len(levels))]
            color, prefix = f"C{k}", f"{_label(model)}: " if len(models) > 1 else ""
            ax.fill_between(xs, [min(g) for g in groups], [max(g) for g in groups], color=color, alpha=0.18, lw=0,
                            label=f"{prefix}min to max")
            ax.plot(xs, [float(np.median(g)) for g in groups], marker=MARKERS[k % len(MARKERS)], color=color,
                    label=f"{prefix}median")
            shown += [v for g in groups for v in g]
        _parameter_axis(ax, param, sorted(set(values), key=None if _numeric(values) else str), binned)
        ax.set_ylabel(what)
        fit_axis(ax, "y", shown)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"sensitivity to {_axis_label(param)}: over the other parameters"
                 + (f" (values in {BINS} quantile bins)" if binned else ""))
    return fig


def _parameter_axis(ax, param: str, levels: list, binned: bool) -> None:
    """The x axis of a sensitivity plot: its label with the unit; ticks at the values unless they
    are binned; logarithmic when they span more than 10x; names as categories."""
    ax.set_xlabel(_axis_label(param))
    if not _numeric(levels):
        ax.set_xticks(range(len(levels)), [_value_text(param, v) for v in levels])
        return
    if wide(levels):
        ax.set_xscale("log")
    if not binned:
        ax.set_xticks(levels, [_fmt(v) for v in levels])
        ax.minorticks_off()


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
    head = params + ["energy (µJ)", "latency (ms)", "EDP (µJ·ms)", "cycles", "DRAM"]
    for model, front in fronts.items():
        lines += ["", f"## {_label(model)}: {_plural(len(front), 'Pareto-optimal design')} (energy vs latency)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in front:
            e, t = r["energy_pj"] * 1e-6, r["latency_s"] * 1e3
            cells = [_fmt(r[p]) for p in params] + [_fmt(e), _fmt(t), _fmt(e * t), str(r["cycles"]), format_bytes(r["dram_bytes"])]
            lines.append("| " + " | ".join(cells) + " |")
        fast, frugal = front[0], front[-1]  # the front is sorted by latency
        lines += ["", f"Lowest energy: {_fmt(frugal['energy_pj'] * 1e-6)} µJ ({_shown(frugal, params)}); "
                  f"lowest latency: {_fmt(fast['latency_s'] * 1e3)} ms ({_shown(fast, params)})."]
    if errors:
        lines += ["", f"## Errors ({len(errors)})", ""]
        lines += [f"- {_label(r['model'])}, {_shown(r, params)}: {r['error']}" for r in errors]
    return "\n".join(lines) + "\n"
