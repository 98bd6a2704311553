"""What the terminal shows: simulate's per-layer table and verdict, compile's per-core table and
placement.png, train's line per epoch, one byte formatter, a closed pipe, renamed flags."""

import io
import json
import os
import subprocess
import sys
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

import spikeforge.training
from spikeforge.cli import main
from spikeforge.units import field_label, field_unit, format_bytes, format_count

DIGITS = str(Path(__file__).parents[2] / "examples" / "models" / "digits_mlp.yaml")


def _run(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _rows(text: str, first: str) -> list[list[str]]:
    """The cells of every rich table row whose first cell is `first`."""
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]
    return [c for c in cells if c and c[0] == first]


def _pct(part, whole) -> str:
    v = 100 * part / whole
    return f"{v:.0f} %" if v >= 10 else f"{v:.1f} %"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "s"
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["simulate", "mlp", "--train", "-T", "2", "-B", "2", "--layers", "-o", str(out)])
    assert rc == 0
    return buf.getvalue(), json.loads((out / "report.json").read_text())


def test_layers_table_holds_report_json_per_layer(simulated):
    text, rep = simulated
    energy = rep["totals"]["energy_pj"]
    for l in rep["layers"]:
        (row,) = _rows(text, l["name"])
        assert row == [l["name"], l["op"], *(format_count(l["ops"][k]) for k in ("fp", "bp", "wg")),
                       "" if l["spike_rate"] is None else f"{l['spike_rate']:.3f}", f"{l['energy_pj'] / 1e6:,.3f}",
                       _pct(l["energy_pj"], energy), f"{l['energy_breakdown_pj']['dram'] / 1e6:,.3f}",
                       format_bytes(l["dram_bytes"]), f"{l['cycles']:,}"]


def test_verdict_names_the_bound_dram_share_heaviest_layer_and_core_use(simulated):
    text, rep = simulated
    t = rep["totals"]
    bound = max(t["cycles_by_bound"], key=t["cycles_by_bound"].get)
    name = {"compute": "compute", "dram": "DRAM", "noc": "NoC", "barrier": "barrier"}[bound]
    heavy = max(rep["layers"], key=lambda l: l["energy_pj"])
    busy = sorted(max(c["utilisation"].values()) for c in rep["cores"])
    (line,) = [x for x in text.splitlines() if "-bound: " in x]
    assert line == (f"{name}-bound: {_pct(t['cycles_by_bound'][bound], t['cycles'])} of cycles; "
                    f"DRAM {_pct(t['energy_breakdown_pj']['dram'], t['energy_pj'])} of energy; "
                    f"heaviest layer {heavy['name']}, {_pct(heavy['energy_pj'], t['energy_pj'])} of energy; "
                    f"cores busy {_pct(busy[0], 1)[:-2]}-{_pct(busy[-1], 1)} of cycles (busiest engine)")
    assert text.index("totals") < text.index(line) and text.index("per layer") < text.index("totals")


def test_without_layers_there_is_no_layer_table(capsys):
    rc, out, _ = _run(capsys, "simulate", "mlp", "-T", "1")
    assert rc == 0 and "per layer" not in out and "-bound: " in out and not _rows(out, "fc1")


def test_compile_prints_a_row_per_core_and_writes_placement_png(capsys, tmp_path):
    out = tmp_path / "c"
    rc, text, err = _run(capsys, "compile", "mlp", "--train", "-T", "2", "-o", out)
    assert rc == 0, err
    stats = json.loads((out / "compile.json").read_text())
    place = yaml.safe_load((out / "placement.yaml").read_text())
    held = Counter((tuple(p["core"]), p["layer"]) for p in place["pieces"])
    order = list(dict.fromkeys(p["layer"] for p in place["pieces"]))
    for core in stats["cores"]:
        r, c = core["core"]
        (row,) = _rows(text, f"({r}, {c})")
        layers = ", ".join(f"{name} ({held[(r, c), name]})" for name in order if held[(r, c), name]) or "idle"
        role, use = max(core["sram"].items(), key=lambda kv: kv[1]["percent"])
        assert row == [f"({r}, {c})", layers, str(sum(held[(r, c), n] for n in order)),
                       format_count(stats["load_balance"]["work_ops"][f"{r},{c}"]), f"{core['instructions']:,}",
                       f"{role} {use['percent']:.0f} %"]
    assert (out / "placement.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{out}/placement.png" in text
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".spikeforge-")]


def test_train_prints_each_epoch_when_it_ends(capsys, monkeypatch, tmp_path):
    """capsys is not a terminal: each epoch's line is out before the next epoch's test pass."""
    seen = []
    evaluate = spikeforge.training.evaluate

    def spy(*a, **kw):
        seen.append(capsys.readouterr().out)
        return evaluate(*a, **kw)

    monkeypatch.setattr(spikeforge.training, "evaluate", spy)
    rc = main(["train", DIGITS, "--epochs", "2", "-B", "256", "-T", "2", "-o", str(tmp_path / "t")])
    rest = capsys.readouterr().out
    assert rc == 0
    doc = json.loads((tmp_path / "t" / "train.json").read_text())
    lines = [next(x for x in (seen[1] + rest).splitlines() if x.lstrip().startswith(f"{e['epoch']}  "))
             for e in doc["epochs"]]
    assert "steps per epoch" in seen[1] and lines[0] in seen[1]  # epoch 1, before epoch 2's test pass
    for e, line in zip(doc["epochs"], lines):
        assert line.split()[:4] == [str(e["epoch"]), f"{e['loss']:.3f}", f"{e['train_acc']:.3f}", f"{e['test_acc']:.3f}"]
        assert format_bytes(e["dram_bytes"]) in line
    assert lines[1] in rest and "wrote" in rest


@pytest.mark.parametrize("n, text", [(0, "0 B"), (512, "512 B"), (999, "999 B"), (1000, "1.00 kB"),
                                     (1_234_567, "1.23 MB"), (36_730_000, "36.7 MB"), (102_280_000, "102 MB"),
                                     (4.79e9, "4.79 GB"), (2e12, "2.00 TB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_format_count():
    assert [format_count(n) for n in (0, 512, 960_000, 1.11e9)] == ["0", "512", "960 k", "1.11 G"]


@pytest.mark.parametrize("path, label, unit", [
    ("dram.pj_per_bit", "DRAM energy (pJ/bit)", "pJ/bit"),
    ("core.buffers.fp_weights.kib", "fp_weights buffer size (KiB)", "KiB"),
    ("clock_mhz", "clock (MHz)", "MHz"), ("mesh.cols", "mesh columns", ""),
    ("noc.link_bits", "NoC link width (bits)", "bits"), ("dram.gb_per_s", "DRAM bandwidth (GB/s)", "GB/s"),
    ("core.engines.fp.pe_rows", "FP engine PE rows", ""), ("global_buffers.gb.kib", "gb global buffer size (KiB)", "KiB"),
    ("energy_pj.ac", "ac op energy (pJ)", "pJ"), ("arithmetic", "arithmetic", ""),
    ("core.static_mw", "core static power (mW)", "mW"), ("no.such", "no.such", ""),
])
def test_field_labels_and_units(path, label, unit):
    assert field_label(path) == label and field_unit(path) == unit


@pytest.mark.parametrize("argv", [["zoo", "list"], ["zoo", "list", "--json"], ["arch", "show", "default"]])
def test_a_closed_pipe_exits_0_quietly(argv):
    """`spikeforge zoo list | head -1`: the reader is gone before the output is written."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "spikeforge", *argv], stdout=w, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(w)
    assert p.returncode == 0 and p.stderr == b""


def test_rate_is_a_deprecated_spelling_of_input_rate(capsys):
    rc, new, err = _run(capsys, "simulate", "mlp", "-T", "1", "--input-rate", "0.5", "--json")
    assert rc == 0 and err == ""
    rc, old, err = _run(capsys, "simulate", "mlp", "-T", "1", "--rate", "0.5", "--json")
    assert rc == 0 and err == "warning: --rate is deprecated, use --input-rate\n"
    rc, default, _ = _run(capsys, "simulate", "mlp", "-T", "1", "--json")
    assert json.loads(old)["totals"] == json.loads(new)["totals"] != json.loads(default)["totals"]
    rc, _, err = _run(capsys, "simulate", "mlp", "--rate", "2")
    assert rc == 2 and err.splitlines()[-1] == "error: --input-rate: must be in [0, 1], got 2.0"
