"""Plot helpers shared by spikeforge's pictures (matplotlib's object API on Agg, no pyplot state),
and the placement picture `compile -o OUTDIR` writes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

MIN_SPAN = 0.1  # a linear axis spans at least this fraction of its values' middle
WIDE = 10  # values spanning more than this factor get a log axis
PANELS_PER_ROW = 3
LEGEND_COLUMN_IN = 2.4  # inches a legend column of layer names takes


def figure(width: float, height: float, nrows: int = 1, ncols: int = 1):
    """A figure and its axes grid (always 2-D), laid out by matplotlib's constrained layout."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def wide(values: Sequence[float]) -> bool:
    """Whether positive values span more than WIDE x (a log axis shows them better)."""
    v = [x for x in values if x > 0]
    return len(v) == len(values) and bool(v) and max(v) > WIDE * min(v)


def relative_change(values: Sequence[float]) -> float:
    """(max - min) / |middle| of the values, 0 when they are all 0."""
    lo, hi = min(values), max(values)
    mid = (lo + hi) / 2
    return (hi - lo) / abs(mid) if mid else 0.0


def fit_axis(ax, axis: str, values: Sequence[float]) -> None:
    """Scale one axis to its values: log when they span more than WIDE x; otherwise linear, without
    an offset, and at least MIN_SPAN of their middle wide, so that a change of a fraction of a
    percent stays flat (the change is then written in the corner)."""
    if wide(values):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        return
    ax.ticklabel_format(axis=axis, style="plain", useOffset=False)
    change = relative_change(values)
    if change >= MIN_SPAN or not any(values):
        return
    mid = (min(values) + max(values)) / 2
    half = abs(mid) * MIN_SPAN / 2
    (ax.set_xlim if axis == "x" else ax.set_ylim)(mid - half, mid + half)
    ax.text(0.02 if axis == "y" else 0.98, 0.96, f"varies by {100 * change:.2g} %", transform=ax.transAxes,
            ha="left" if axis == "y" else "right", va="top", fontsize=8, color="dimgray")


def layer_colors(n: int) -> list:
    """n colours, neighbours distinct: tab20's ten dark shades, its ten light ones, then tab20b's
    and tab20c's, repeating after 60."""
    from matplotlib import colormaps

    pool = [c for name in ("tab20", "tab20b", "tab20c") for c in colormaps[name].colors[::2]]
    pool[10:10] = colormaps["tab20"].colors[1::2]
    return [pool[i % len(pool)] for i in range(n)]


def _ink(color) -> str:
    """Black or white text, whichever reads on `color`."""
    r, g, b = color[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def placement_figure(doc: dict):
    """The mesh once per round, each core a cell split into bands, one per layer it holds in that
    round (height: its share of the core's neurons), coloured and numbered by layer; a legend
    names the layers. `doc` is placement.yaml's content."""
    from matplotlib.patches import Patch, Rectangle

    rows, cols = doc["mesh"]
    layers = list(dict.fromkeys(p["layer"] for p in doc["pieces"]))
    colors = dict(zip(layers, layer_colors(len(layers))))
    number = {name: i + 1 for i, name in enumerate(layers)}
    rounds = max(doc["rounds"], 1)
    ncols = min(rounds, PANELS_PER_ROW)
    nrows = math.ceil(rounds / ncols)
    width = max(ncols * (cols * 0.8 + 0.4), 6.0)
    legend_cols = min(4, int(width // LEGEND_COLUMN_IN))
    fig, axes = figure(width, nrows * (rows * 0.8 + 0.6) + 0.2 * math.ceil((len(layers) + 1) / legend_cols) + 0.8,
                       nrows, ncols)
    held, idle = _held(doc), False
    for k, ax in enumerate(axes.flat):
        if k >= rounds:
            ax.set_axis_off()
            continue
        for r in range(rows):
            for c in range(cols):
                bands = held.get((k, r, c), {})
                if not bands:
                    idle = True
                    ax.add_patch(Rectangle((c + 0.05, r + 0.05), 0.9, 0.9, facecolor="whitesmoke", edgecolor="silver",
                                         hatch="//", lw=0.5))
                    continue
                y, total = r + 0.05, sum(bands.values())
                for name, elements in bands.items():
                    h = 0.9 * elements / total
                    ax.add_patch(Rectangle((c + 0.05, y), 0.9, h, facecolor=colors[name], edgecolor="white", lw=0.6))
                    if h >= 0.14:
                        ax.text(c + 0.5, y + h / 2, str(number[name]), ha="center", va="center", fontsize=9,
                                color=_ink(colors[name]))
                    y += h
        ax.set(xlim=(0, cols), ylim=(rows, 0), aspect="equal")
        ax.set_xticks([c + 0.5 for c in range(cols)], [str(c) for c in range(cols)], fontsize=8)
        ax.set_yticks([r + 0.5 for r in range(rows)], [str(r) for r in range(rows)], fontsize=8)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(f"round {k + 1}" if rounds > 1 else "", fontsize=10)
        ax.set_xlabel("column", fontsize=8)
        ax.set_ylabel("row", fontsize=8)
    handles = [Patch(facecolor=colors[n], label=f"{number[n]}  {n}") for n in layers]
    if idle:
        handles.append(Patch(facecolor="whitesmoke", edgecolor="silver", hatch="//", label="idle"))
    fig.legend(handles=handles, loc="outside lower center", ncols=legend_cols, fontsize=8, frameon=False,
               title="layers (a band's height: the layer's share of the core's neurons)", title_fontsize=8)
    fig.suptitle(f"{doc['model']} on {doc['arch']}: {len(doc['pieces'])} pieces on a {rows}×{cols} mesh"
                 + (f", in {rounds} rounds" if rounds > 1 else ""), fontsize=11)
    return fig


def _held(doc: dict) -> dict[tuple[int, int, int], dict[str, int]]:
    """(round, row, col) -> {layer: elements it holds there}, layers in graph order."""
    held: dict = {}
    for p in doc["pieces"]:
        bands = held.setdefault((p["round"], *p["core"]), {})
        bands[p["layer"]] = bands.get(p["layer"], 0) + p["elements"][1] - p["elements"][0]
    return held


def write_placement(doc: dict, path: Path) -> None:
    """Write placement.png: the picture of `placement_figure`."""
    placement_figure(doc).savefig(path, dpi=110)
