"""report.html: one self-contained page per kind of output (a simulation's report.json, a
compilation's compile.json, a sweep), drawn as inline SVG with a few lines of inline JavaScript
for the hover panel: nothing is fetched when the page is viewed. Every number a page shows comes
from the JSON it is drawn from; tables tag each with `data-key` (its path in that JSON) and
`data-value` (the exact value), and every chart is a `<figure data-chart=NAME>`, so a test in a
browser can check both (tests/spikeforge/test_pages.py)."""

from __future__ import annotations

import html
import json
import math
from typing import Any, Iterable

from spikeforge.units import format_bytes

BOUND_COLOURS = {"compute": "#4c78a8", "dram": "#e45756", "noc": "#f58518", "link": "#b279a2", "barrier": "#bab0ac"}
ENERGY_COLOURS = {"compute": "#4c78a8", "sram": "#72b7b2", "noc": "#f58518", "dram": "#e45756", "static": "#bab0ac"}
ENGINE_COLOURS = {"fp": "#4c78a8", "bp": "#f58518", "wg": "#54a24b"}
PALETTE = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")

_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{padding:3px 8px;border-bottom:1px solid #eee;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:8px 0}
figcaption{font-size:12px;color:#555;margin-bottom:4px}svg text{font-size:11px;fill:#222}
.legend span{display:inline-block;margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px}#tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;
padding:4px 6px;font-size:12px;white-space:pre;display:none;box-shadow:1px 1px 4px #aaa}"""
_JS = """const tip=document.getElementById('tip');document.querySelectorAll('[data-tip]').forEach(e=>{
e.addEventListener('mousemove',ev=>{tip.textContent=e.dataset.tip;tip.style.display='block';
tip.style.left=(ev.clientX+12)+'px';tip.style.top=(ev.clientY+12)+'px';});
e.addEventListener('mouseleave',()=>{tip.style.display='none';});});"""


# ---- formatting ------------------------------------------------------------------------------

def fmt(v: Any, unit: str = "") -> str:
    """A number with an SI prefix and its unit; energies given in pJ are shown in joules."""
    if v is None:
        return "–"
    if isinstance(v, (str, bool)):
        return str(v)
    if unit == "pJ":
        v, unit = v * 1e-12, "J"
    if unit == "B":
        return format_bytes(v)
    a = abs(v)
    for div, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g} {prefix}{unit}"
    if unit and 0 < a < 1:
        for mul, prefix in ((1e3, "m"), (1e6, "µ"), (1e9, "n"), (1e12, "p")):
            if a * mul >= 1:
                return f"{v * mul:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}".strip() if isinstance(v, float) else f"{v} {unit}".strip()


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _attr_value(v: Any) -> str:
    return _e(json.dumps(v))


def table(rows: Iterable[tuple[str, str, Any, str]], head: tuple[str, ...] = ("", "")) -> str:
    """Rows of (label, data-key, value, unit): the value shown formatted, exact in data-value."""
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for label, key, value, unit in rows:
        out.append(f'<tr><td>{_e(label)}</td><td class="n" data-key="{_e(key)}" data-value="{_attr_value(value)}">'
                   f"{_e(fmt(value, unit))}</td></tr>")
    return "".join(out) + "</table>"


def _grid(rows: list[list[Any]], head: list[str]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="n">{_e(fmt(v))}</td>' if isinstance(v, (int, float))
                                     and not isinstance(v, bool) else f"<td>{_e(v)}</td>" for v in r) + "</tr>")
    return "".join(out) + "</table>"


def _legend(colours: dict[str, str]) -> str:
    return '<div class="legend">' + "".join(f'<span><i style="background:{c}"></i>{_e(k)}</span>'
                                             for k, c in colours.items()) + "</div>"


def _figure(name: str, caption: str, svg: str, legend: str = "") -> str:
    return f'<figure data-chart="{name}"><figcaption>{_e(caption)}</figcaption>{legend}{svg}</figure>'


def _svg(width: float, height: float, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}">' + "".join(body) + "</svg>")


def _rect(x, y, w, h, fill, tip: str, extra: str = "") -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.2f}" height="{max(h, 0):.1f}" fill="{fill}" '
            f'data-tip="{_e(tip)}" {extra}><title>{_e(tip)}</title></rect>')


def _heat(t: float) -> str:
    """Light yellow (0) to dark red (1)."""
    t = min(max(t, 0.0), 1.0)
    r, g, b = (255, 255 - 200 * t, 204 - 204 * t) if t < 0.5 else (255 - 120 * (t - 0.5) * 2, 155 - 155 * (t - 0.5) * 2, 0)
    return f"rgb({r:.0f},{g:.0f},{b:.0f})"


# ---- charts ----------------------------------------------------------------------------------

def mesh_chart(cores: list[dict], rows: int, cols: int, value: str, unit: str, tip) -> str:
    """Cores as cells coloured by `value` (a key of each core's dict), labelled with their first
    layer, three engine bars when the core has utilisation figures; `tip(core)` is the hover text."""
    cw, ch, pad = 150, 78, 6
    vals = [c.get(value, 0) or 0 for c in cores]
    top = max(vals, default=0) or 1
    chips = 1 + max((c["core"][0] for c in cores if len(c["core"]) == 3), default=0)  # [chip, row, col]: stacked
    body = []
    for c, v in zip(cores, vals):
        *chip, r, col = c["core"]
        x, y = pad + col * cw, pad + (r + (chip[0] if chip else 0) * rows) * ch
        body.append(_rect(x, y, cw - pad, ch - pad, _heat(v / top), tip(c), 'stroke="#999"'))
        layers = list(c.get("layers") or [])  # compile.json: name -> pieces; report.json: names
        label = (layers[0] if layers else "idle") + (f" +{len(layers) - 1}" if len(layers) > 1 else "")
        ink = ' style="fill:#fff"' if v / top > 0.6 else ""
        body.append(f'<text x="{x + 4}" y="{y + 14}"{ink}>({",".join(map(str, c["core"]))}) {_e(label[:22])}</text>')
        body.append(f'<text x="{x + 4}" y="{y + 28}"{ink}>{_e(fmt(v, unit))}</text>')
        for i, (eng, u) in enumerate((c.get("utilisation") or {}).items()):
            w = (cw - pad - 8) * min(u, 1.0)
            body.append(_rect(x + 4, y + 36 + i * 11, w, 8, ENGINE_COLOURS.get(eng, "#888"),
                              f"core ({r},{col}) {eng} engine busy {100 * u:.1f} % of the cycles"))
    return _svg(pad + cols * cw, pad + chips * rows * ch, body)


def links_chart(links: list[dict], rows: int, cols: int) -> str:
    """The mesh's routers and the bytes on each directed link (width and colour by load)."""
    sp, pad = 110, 30
    top = max((l["bytes"] for l in links), default=0) or 1
    body = []
    for lk in links:
        (r1, c1), (r2, c2) = lk["from"], lk["to"]
        off = 5 if (r2, c2) > (r1, c1) else -5  # the two directions side by side
        x1, y1 = pad + c1 * sp + (off if r1 != r2 else 0), pad + r1 * sp + (off if c1 != c2 else 0)
        x2, y2 = pad + c2 * sp + (off if r1 != r2 else 0), pad + r2 * sp + (off if c1 != c2 else 0)
        t = lk["bytes"] / top
        tip = f"link ({r1},{c1}) -> ({r2},{c2}): {fmt(lk['bytes'], 'B')}"
        body.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{_heat(t)}" '
                    f'stroke-width="{1 + 7 * t:.1f}" data-tip="{_e(tip)}"><title>{_e(tip)}</title></line>')
    for r in range(rows):
        for c in range(cols):
            body.append(f'<circle cx="{pad + c * sp}" cy="{pad + r * sp}" r="9" fill="#fff" stroke="#555"/>'
                        f'<text x="{pad + c * sp - 9}" y="{pad + r * sp - 13}">{r},{c}</text>')
    return _svg(2 * pad + (cols - 1) * sp, 2 * pad + (rows - 1) * sp, body)


def stacked_bars(items: list[tuple[str, dict[str, float]]], colours: dict[str, str], unit: str) -> str:
    """One horizontal bar per item, its parts stacked in `colours` order."""
    label_w, bar_w, h = 190, 620, 16
    top = max((sum(parts.values()) for _, parts in items), default=0) or 1
    body = []
    for i, (name, parts) in enumerate(items):
        y, x = i * (h + 3), label_w
        body.append(f'<text x="0" y="{y + 12}">{_e(name[:30])}</text>')
        for k, colour in colours.items():
            v = parts.get(k, 0) or 0
            w = bar_w * v / top
            if w > 0:
                body.append(_rect(x, y, w, h, colour, f"{name} {k}: {fmt(v, unit)}"))
                x += w
        body.append(f'<text x="{x + 4}" y="{y + 12}">{_e(fmt(sum(parts.values()), unit))}</text>')
    return _svg(label_w + bar_w + 90, max(len(items), 1) * (h + 3), body)


def timeline_chart(stages: list[dict]) -> str:
    """The step's stages in order, each as wide as its cycles, split by what bounds it."""
    width, h = 1000, 40
    total = sum(sum(s["cycles"].values()) for s in stages) or 1
    body, x = [], 0.0
    for i, s in enumerate(stages):
        layers = ", ".join(s["layers"][:4]) + (" ..." if len(s["layers"]) > 4 else "")
        for bound, colour in BOUND_COLOURS.items():
            v = s["cycles"].get(bound, 0)
            if v:
                w = width * v / total
                body.append(_rect(x, 0, w, h, colour, f"stage {i} ({layers}; {s['instances']} iterations): "
                                                      f"{bound}-bound {fmt(v, 'cycles')}"))
                x += w
    return _svg(width, h, body)


def ratio_bars(items: list[tuple[str, dict[str, tuple[float, float]]]]) -> str:
    """Per item, per engine, performed / dense operations as a bar of the dense length."""
    label_w, bar_w, h = 190, 300, 7
    body = []
    row = 3 * (h + 1) + 6
    for i, (name, engines) in enumerate(items):
        y = i * row
        body.append(f'<text x="0" y="{y + 14}">{_e(name[:30])}</text>')
        for j, (eng, (done, dense)) in enumerate(engines.items()):
            yy = y + j * (h + 1)
            body.append(_rect(label_w, yy, bar_w, h, "#eee", f"{name} {eng}: dense {fmt(dense)} ops"))
            frac = done / dense if dense else 0.0
            body.append(_rect(label_w, yy, bar_w * frac, h, ENGINE_COLOURS[eng],
                              f"{name} {eng}: {fmt(done)} of {fmt(dense)} ops performed ({100 * frac:.1f} %)"))
    return _svg(label_w + bar_w + 10, max(len(items), 1) * row, body)


def scatter_chart(points: list[dict], x: str, y: str, xunit: str, yunit: str, front: set[int], tip,
                  labels: tuple[str, str] = ("", "")) -> str:
    """Points (x, y) on log axes when they span more than a decade; those in `front` in colour;
    `labels` name the axes (default: the keys)."""
    xlabel, ylabel = labels[0] or x, labels[1] or y
    w, h, pad = 700, 420, 60
    xs = [p[x] for p in points]
    ys = [p[y] for p in points]

    def scale(vals, lo_px, hi_px):
        lo, hi = min(vals), max(vals)
        log = lo > 0 and hi / lo > 10
        f = (lambda v: math.log10(v)) if log else (lambda v: v)
        a, b = f(lo), f(hi)
        span = (b - a) or 1.0
        return (lambda v: lo_px + (f(v) - a) / span * (hi_px - lo_px)), log, lo, hi

    sx, xlog, x0, x1 = scale(xs, pad, w - 20)
    sy, ylog, y0, y1 = scale(ys, h - pad, 20)
    body = [f'<line x1="{pad}" y1="{h - pad}" x2="{w - 20}" y2="{h - pad}" stroke="#555"/>',
            f'<line x1="{pad}" y1="{h - pad}" x2="{pad}" y2="20" stroke="#555"/>',
            f'<text x="{pad}" y="{h - pad + 16}">{_e(fmt(x0, xunit))}</text>',
            f'<text x="{w - 90}" y="{h - pad + 16}">{_e(fmt(x1, xunit))}</text>',
            f'<text x="{w / 2 - 60}" y="{h - 12}">{_e(xlabel)}{" (log)" if xlog else ""}</text>',
            f'<text x="4" y="{h - pad}">{_e(fmt(y0, yunit))}</text><text x="4" y="26">{_e(fmt(y1, yunit))}</text>',
            f'<text x="4" y="{h / 2}" transform="rotate(-90 12 {h / 2})">{_e(ylabel)}{" (log)" if ylog else ""}</text>']
    for i, p in enumerate(points):
        on = i in front
        t = tip(p)
        body.append(f'<circle cx="{sx(p[x]):.1f}" cy="{sy(p[y]):.1f}" r="{5 if on else 3}" '
                    f'fill="{"#e45756" if on else "#9aa"}" opacity="{1 if on else 0.6}" data-tip="{_e(t)}" '
                    f'data-front="{int(on)}"><title>{_e(t)}</title></circle>')
    return _svg(w, h, body)


def page(title: str, sections: list[str]) -> str:
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + _e(title) + "</title><style>"
            + _CSS + "</style></head><body><h1>" + _e(title) + "</h1>" + "".join(sections)
            + '<div id="tip"></div><script>' + _JS + "</script></body></html>\n")


# ---- the pages -------------------------------------------------------------------------------

def _core_tip(c: dict, capacities: dict[str, int]) -> str:
    lines = [f"core ({','.join(map(str, c['core']))})", "layers: " + (", ".join(list(c.get("layers") or [])) or "none")]
    if "energy_pj" in c:
        lines.append(f"energy {fmt(c['energy_pj'], 'pJ')}")
    for eng, u in (c.get("utilisation") or {}).items():
        lines.append(f"{eng} busy {100 * u:.1f} %")
    for buf, used in (c.get("sram_peak_bytes") or {}).items():
        cap = capacities.get(buf)
        lines.append(f"{buf}: {fmt(used, 'B')}" + (f" of {fmt(cap, 'B')} ({100 * used / cap:.0f} %)" if cap else ""))
    for role, u in (c.get("sram") or {}).items():
        lines.append(f"{role}: {fmt(u['used'], 'B')} of {fmt(u['capacity'], 'B')} ({u['percent']:.0f} %)")
    return "\n".join(lines)


def simulate_page(rep: dict, rows: int, cols: int, capacities: dict[str, int] | None = None) -> str:
    """The page of a simulation's report.json on a rows x cols mesh (`capacities`: bytes per
    core buffer, for the fill of each)."""
    t, cfg = rep["totals"], rep["config"]
    title = (f"{cfg['model']} on {cfg['arch']}: {'training step' if cfg['training'] else 'inference'}, "
             f"B={cfg['batch']}, T={cfg['timesteps']}, {cfg['mode']} mode, dataflow {cfg['dataflow']}")
    totals = table([("energy", "totals.energy_pj", t["energy_pj"], "pJ"),
                    ("latency", "totals.latency_s", t["latency_s"], "s"),
                    ("cycles", "totals.cycles", t["cycles"], ""),
                    ("bottleneck", "totals.bottleneck", t["bottleneck"], ""),
                    ("DRAM", "totals.dram_bytes", t["dram_bytes"], "B"),
                    ("NoC", "totals.noc_bytes", t["noc_bytes"], "B"),
                    ("synaptic ops performed", "totals.synaptic_ops", t["synaptic_ops"], ""),
                    ("dense synaptic ops", "totals.dense_synaptic_ops", t["dense_synaptic_ops"], ""),
                    ("TFLOPS/W (effective, on chip)", "totals.effective_tflops_per_w_onchip",
                     t["effective_tflops_per_w_onchip"], ""),
                    ("area", "totals.area_mm2", t["area_mm2"], "mm²")], ("total", "value"))
    bounds = table([(b, f"totals.cycles_by_bound.{b}", v, "cycles") for b, v in t["cycles_by_bound"].items()],
                   ("bound", "cycles"))
    caps = capacities or {}
    layers = [l for l in rep["layers"] if l["energy_pj"]]
    sections = [
        "<h2>Totals</h2>" + totals + bounds,
        "<h2>The mesh</h2>" + _figure("mesh", "energy per core (colour), its layers, engine utilisation (bars: "
                                      "fp, bp, wg); hover for buffer fills",
                                      mesh_chart(rep["cores"], rows, cols, "energy_pj", "pJ",
                                                 lambda c: _core_tip(c, caps)), _legend(ENGINE_COLOURS)),
        _figure("noc", "NoC: bytes on each directed link", links_chart(rep.get("noc_links", []), rows, cols)),
        "<h2>Energy and DRAM by layer</h2>" + _figure(
            "layer_energy", "energy per layer by term (pJ)",
            stacked_bars([(l["name"], l["energy_breakdown_pj"]) for l in layers], ENERGY_COLOURS, "pJ"),
            _legend(ENERGY_COLOURS)),
        _figure("dram", "DRAM bytes by category",
                stacked_bars([(k, {"dram": v}) for k, v in t["dram_bytes_by_category"].items()],
                             {"dram": ENERGY_COLOURS["dram"]}, "B")),
        "<h2>Where the cycles go</h2>" + _figure(
            "timeline", "the step's stages in order, each as wide as its cycles, coloured by what bounds it",
            timeline_chart(rep.get("stages", [])), _legend(BOUND_COLOURS)),
        "<h2>Sparsity</h2>" + _figure(
            "sparsity", "synaptic operations performed against dense, per layer and engine (fp, bp, wg)",
            ratio_bars([(l["name"], {e: (l["ops"].get(e, 0), l["dense_ops"].get(e, 0)) for e in ENGINE_COLOURS
                                     if l["dense_ops"].get(e)}) for l in rep["layers"] if any(l.get("dense_ops", {}).values())]),
            _legend(ENGINE_COLOURS)),
    ]
    if "dataflow" in rep:
        d = rep["dataflow"]
        sections.append("<h2>Dataflow</h2>" + _grid(
            [[m["name"] + (" (kept)" if m["name"] == d["chosen"] else ""), m["energy_pj"], m["latency_s"], m["dram_bytes"]]
             for m in d["measured"]], ["candidate", "energy (pJ)", "latency (s)", "DRAM (B)"]))
    return page(title, sections)


def compile_page(stats: dict, rows: int, cols: int) -> str:
    """The page of a compilation's compile.json on a rows x cols mesh."""
    d = stats["dataflow"]
    title = (f"{stats['model']} compiled for {stats['arch']}: {'training' if stats['training'] else 'inference'}, "
             f"B={stats['batch']}, T={stats['timesteps']}, {stats['pieces']} pieces, {stats['rounds']} round(s)")
    work = stats["load_balance"]["work_ops"]
    cores = [{**c, "work": work.get(",".join(map(str, c["core"])), 0)} for c in stats["cores"]]
    layers = sorted({name for c in cores for name in c.get("layers", [])})
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(layers)}
    summary = table([("dataflow", "dataflow.name", d["name"], ""),
                     ("estimated energy", "dataflow.estimate.energy_pj", d["estimate"]["energy_pj"], "pJ"),
                     ("estimated latency", "dataflow.estimate.latency_s", d["estimate"]["latency_s"], "s"),
                     ("DRAM", "dram_bytes.total", stats["dram_bytes"]["total"], "B"),
                     ("NoC", "noc.bytes", stats["noc"]["bytes"], "B"),
                     ("load balance (max / mean)", "load_balance.max_over_mean", stats["load_balance"]["max_over_mean"], ""),
                     ("area", "area_mm2", stats["area_mm2"], "mm²")], ("figure", "value"))
    sections = [
        "<h2>Summary</h2>" + summary,
        "<h2>Placement</h2>" + _figure("mesh", "work per core (colour) and the layers it holds; hover for SRAM use",
                                       mesh_chart(cores, rows, cols, "work", "ops", lambda c: _core_tip(c, {}))),
        _figure("placement", "the layers on each core (colour per layer)",
                stacked_bars([(f"core ({','.join(map(str, c['core']))})", {n: 1 for n in c.get("layers", [])})
                              for c in cores], colour, "layers")),
        _figure("noc", "NoC: bytes on each directed link per step (planned spike rate)",
                links_chart(stats["noc"].get("links", []), rows, cols)),
        _figure("dram", "DRAM bytes by category",
                stacked_bars([(k, {"dram": v}) for k, v in stats["dram_bytes"].items() if k != "total"],
                             {"dram": ENERGY_COLOURS["dram"]}, "B")),
        "<h2>Dataflow candidates</h2>" + _grid(
            [[d["name"] + " (chosen)", d["estimate"]["energy_pj"], d["estimate"]["latency_s"], d["estimate"]["dram_bytes"]]]
            + [[r["name"], r["energy_pj"], r["latency_s"], r["dram_bytes"]] for r in d["runners_up"]],
            ["candidate", "energy (pJ)", "latency (s)", "DRAM (B)"]),
        "<h2>Homes per layer group</h2>" + _grid(
            [[g["group"], g["weights"] or "–", g["wgrad"] or "–", g["bptt"], g["inputs"], g["errors"], g["tiles"]]
             for g in d["groups"]], ["group", "weights", "wgrad", "bptt", "inputs", "errors", "tiles"]),
    ]
    return page(title, sections)


def sweep_page(title: str, rows: list[dict], fronts: dict[str, list[dict]], params: list[str]) -> str:
    """The page of a sweep: per model, every design's energy against latency, the Pareto front
    in colour; hover names the design."""
    sections = []
    for model, front in fronts.items():
        pts = [r for r in rows if r["model"] == model and r.get("status") == "ok"]
        if not pts:
            continue
        on = {id(r) for r in front}
        idx = {i for i, r in enumerate(pts) if id(r) in on}
        tip = lambda r: "\n".join([f"{p} = {r.get(p)}" for p in params]  # noqa: E731
                                  + [f"energy {fmt(r['energy_pj'], 'pJ')}", f"latency {fmt(r['latency_s'], 's')}"])
        sections.append(f"<h2>{_e(model)}</h2>" + _figure(
            "pareto", f"{len(pts)} designs, {len(front)} Pareto-optimal (red): energy against latency",
            scatter_chart(pts, "latency_s", "energy_pj", "s", "pJ", idx, tip,
                          ("latency per step", "energy per step"))))
        sections.append(_grid([[*(r.get(p) for p in params), r["energy_pj"], r["latency_s"]] for r in front],
                              [*params, "energy (pJ)", "latency (s)"]))
    return page(title, sections)
