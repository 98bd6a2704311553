"""The plots' choices, read off the matplotlib objects: colours per value or a colour bar, log
scales for wide ranges, labels with units, spread beside medians, axes that do not magnify a
fraction of a percent, the loss and the references in train.png, the placement picture."""

import math

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.collections import PolyCollection
from matplotlib.colors import LogNorm, to_rgba
from matplotlib.patches import Rectangle

from spikeforge.plots import MIN_SPAN, figure, fit_axis, placement_figure
from spikeforge.sweeps.report import _front, pareto_figure, sensitivity_figure
from spikeforge.training import EpochLog, TrainResult, train_figure


def _rows(param: str, values: list, models=("mlp",), energy=lambda v, i: 100 + 10 * i, latency=lambda v, i: 1 / (1 + i)):
    """Design points: three per value of `param`, energy and latency from (value, index)."""
    rows = []
    for m in models:
        for i, v in enumerate(values * 3):
            rows.append({"model": m, "status": "ok", param: v, "energy_pj": energy(v, i) * 1e6,
                         "latency_s": latency(v, i) * 1e-3})
    return rows


def _pareto(rows, param):
    models = sorted({r["model"] for r in rows})
    return pareto_figure(rows, {m: _front([r for r in rows if r["model"] == m]) for m in models}, param)


def test_few_numbers_get_one_colour_each_with_units_in_a_legend():
    rows = _rows("core.buffers.fp_weights.kib", [2.25, 64, 512])
    fig = _pareto(rows, "core.buffers.fp_weights.kib")
    assert len(fig.axes) == 1  # no colour bar
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "fp_weights buffer size (KiB)"
    assert [t.get_text() for t in legend.get_texts()] == ["2.25 KiB", "64 KiB", "512 KiB"]
    points = fig.axes[0].collections[0]
    tab10 = colormaps["tab10"].colors
    want = [to_rgba(tab10[[2.25, 64, 512].index(r["core.buffers.fp_weights.kib"])], 0.8) for r in rows]
    assert np.allclose(points.get_facecolors(), want)


def test_mesh_columns_are_categories_not_a_continuous_bar():
    fig = _pareto(_rows("mesh.cols", [1, 2, 5]), "mesh.cols")
    assert len(fig.axes) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == ["1", "2", "5"]
    assert fig.legends[0].get_title().get_text() == "mesh columns"


def test_many_numbers_get_a_colour_bar_log_when_wide():
    values = [float(v) for v in np.geomspace(1, 1000, 15)]
    fig = _pareto(_rows("dram.pj_per_bit", values), "dram.pj_per_bit")
    ax, bar = fig.axes
    assert bar.get_ylabel() == "DRAM energy (pJ/bit)" and isinstance(ax.collections[0].norm, LogNorm)
    fig = _pareto(_rows("clock_mhz", [float(v) for v in np.linspace(200, 1000, 15)]), "clock_mhz")
    assert not isinstance(fig.axes[0].collections[0].norm, LogNorm) and fig.axes[1].get_ylabel() == "clock (MHz)"


def test_models_get_shapes_and_the_front_its_own_legend():
    fig = _pareto(_rows("arithmetic", ["fp16", "fp32"], models=("mlp", "x/net.yaml")), "arithmetic")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mlp", "net.yaml", "Pareto front"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["fp16", "fp32"]
    assert ax.get_xlabel() == "latency (ms)" and ax.get_ylabel() == "energy (µJ)"


def test_sensitivity_shows_median_and_range_with_units_on_a_log_axis_for_sizes():
    values = [2.25, 64, 512]
    rows = _rows("core.buffers.fp_weights.kib", values, energy=lambda v, i: 100 + i)
    fig = sensitivity_figure(rows, ["mlp"], "core.buffers.fp_weights.kib")
    ea, la = fig.axes
    assert ea.get_xlabel() == la.get_xlabel() == "fp_weights buffer size (KiB)"
    assert ea.get_xscale() == "log" and [t.get_text() for t in ea.get_xticklabels()] == ["2.25", "64", "512"]
    assert ea.get_ylabel() == "energy (µJ)" and la.get_ylabel() == "latency (ms)"
    (band,) = [c for c in ea.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    # points i = k, k + 3, k + 6 have value k: energies 100 + k .. 106 + k
    assert min(ys) == 100 and max(ys) == 108
    (median,) = ea.get_lines()
    assert list(median.get_xdata()) == values and list(median.get_ydata()) == [103, 104, 105]
    assert [t.get_text() for t in ea.get_legend().get_texts()] == ["min to max", "median"]


def test_a_sub_percent_change_stays_flat_and_is_written_down():
    rows = _rows("noc.hop_pj_per_bit", [0.05, 0.1, 0.2], energy=lambda v, i: 1000 + v)  # 0.015 %
    fig = sensitivity_figure(rows, ["mlp"], "noc.hop_pj_per_bit")
    ea = fig.axes[0]
    lo, hi = ea.get_ylim()
    assert (hi - lo) >= MIN_SPAN * 1000 * 0.999 and lo < 1000.05 < 1000.2 < hi
    assert [t.get_text() for t in ea.texts] == ["varies by 0.015 %"]
    assert ea.get_xlabel() == "NoC hop energy (pJ/bit)"


@pytest.mark.parametrize("values, scale, text", [([1.0, 1.3], "linear", False), ([1.0, 1.002], "linear", True),
                                                 ([1.0, 50.0], "log", False)])
def test_fit_axis(values, scale, text):
    fig, ((ax,),) = figure(4, 3)
    ax.plot([0, 1], values)
    fit_axis(ax, "y", values)
    assert ax.get_yscale() == scale and bool(ax.texts) == text
    lo, hi = ax.get_ylim()
    if text:
        assert hi - lo == pytest.approx(MIN_SPAN * 1.001)
    elif scale == "linear":
        assert hi - lo < 0.5  # the matplotlib autoscale, about the data


def _result(energies) -> TrainResult:
    r = TrainResult("m", "default", "fp32", "digits", 4, 32, "sgd", 0.1, 0, 10, 10)
    for k, e in enumerate(energies, 1):
        r.epochs.append(EpochLog(k, 2.0 / k, 0.5 + 0.1 * k, 0.4 + 0.1 * k, e, 1e-4, 1e5, 0.2, 0.3, 0.6, 1.0))
    return r


def test_train_png_has_loss_accuracy_references_and_chance():
    refs = {"snnTorch (fp32)": {"test_acc": [0.55, 0.65, 0.75], "loss": [1.9, 1.1, 0.7]}}
    fig = train_figure(_result([5e6, 5.001e6, 5.002e6]), refs)
    loss, acc, energy = fig.axes
    assert loss.get_ylabel() == "cross-entropy loss" and acc.get_ylabel() == "accuracy"
    lines = {l.get_label(): l for l in loss.get_lines()}
    assert list(lines["chip (fp32), training batches"].get_ydata()) == [2.0, 1.0, 2 / 3]
    assert list(lines["snnTorch (fp32)"].get_ydata()) == [1.9, 1.1, 0.7]
    assert list(lines["chance (ln 10)"].get_ydata()) == [math.log(10)] * 2
    acc_lines = {l.get_label(): l for l in acc.get_lines()}
    assert list(acc_lines["snnTorch (fp32)"].get_ydata()) == [0.55, 0.65, 0.75]
    assert list(acc_lines["chance (1/10)"].get_ydata()) == [0.1] * 2
    lo, hi = energy.get_ylim()  # a 0.04 % change on an axis 10 % wide, and said
    assert hi - lo == pytest.approx(MIN_SPAN * 5.001) and energy.texts[0].get_text() == "varies by 0.04 %"


def _doc(pieces, mesh=(2, 2), rounds=1):
    return {"model": "net", "arch": "default", "mesh": list(mesh), "rounds": rounds, "pieces": [
        {"layer": layer, "round": rnd, "core": list(core), "elements": list(el)} for layer, rnd, core, el in pieces]}


def test_placement_draws_a_band_per_layer_and_core_numbered_and_named():
    doc = _doc([("a", 0, (0, 0), (0, 30)), ("a", 0, (0, 0), (30, 40)), ("b", 0, (0, 0), (0, 60)),
                ("b", 0, (1, 1), (60, 100)), ("c", 1, (0, 1), (0, 5))], rounds=2)
    fig = placement_figure(doc)
    first, second = fig.axes
    rects = [p for p in first.patches if isinstance(p, Rectangle)]
    bands = [(p.get_xy(), round(p.get_height(), 6)) for p in rects if p.get_facecolor() != to_rgba("whitesmoke")]
    # core (0, 0): a holds 40 of 100 elements, b 60, in a 0.9-high cell; core (1, 1): b alone
    assert bands == [((0.05, 0.05), 0.36), ((0.05, 0.41), 0.54), ((1.05, 1.05), 0.9)]
    assert sum(p.get_facecolor() == to_rgba("whitesmoke") for p in rects) == 2  # two idle cores
    assert [t.get_text() for t in first.texts] == ["1", "2", "2"]
    assert [t.get_text() for t in second.texts] == ["3"] and first.get_title() == "round 1"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["1  a", "2  b", "3  c", "idle"]
    assert rects[1].get_facecolor() == rects[4].get_facecolor() != rects[0].get_facecolor()  # b, b, a
