"""`spikeforge sweep`, `sweep export` and `report`: spec validation, caches that do not change a
number, a SIGKILLed sweep that resumes, Dask, failing points, CSV, Pareto front and plots."""

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends import load_model
from spikeforge.hwsim.simulate import make_input, simulate
from spikeforge.isa.arch import load_arch
from spikeforge.isa.sasm import disassemble
from spikeforge.cli import main
from spikeforge.sweeps.evaluate import evaluate, flatten
from spikeforge.sweeps.report import pareto_front
from spikeforge.sweeps.spec import base_doc, build_arch, cost_only, load_spec
from spikeforge.sweeps.store import read

ROOT = Path(__file__).resolve().parents[2]

# 2 membrane sizes (one too small for mlp: an error per point) x 6 weight SRAMs x 2 clocks = 24
# points, 12 compiles: long enough on one worker for a kill to land mid-run
GRID = {"models": ["mlp"], "timesteps": 2, "batch": 1, "rate": 0.3, "seed": 0, "params": [
    {"path": "core.buffers.fp_membrane.kib", "values": [0.001, 128]},
    {"path": "core.buffers.fp_weights.kib", "values": [2, 4, 8, 16, 32, 64]},
    {"path": "clock_mhz", "values": [250, 1000]},
]}
# a training step, grid x seeded samples: 2 compiles, 2 functional runs (fp16 / fp32), 12 points
SAMPLED = {"models": ["mlp"], "training": True, "timesteps": 2, "batch": 2, "seed": 0, "samples": 6,
           "sample_seed": 3, "params": [
               {"path": "core.buffers.fp_weights.kib", "values": [2.25, 64]},
               {"path": "clock_mhz", "uniform": [200.0, 1000.0]},
               {"path": "core.engines.fp.pe_rows", "uniform": [4, 32]},
               {"path": "dram.pj_per_bit", "log_uniform": [5.0, 40.0]},
               {"path": "arithmetic", "choice": ["fp16", "fp32"]},
           ]}


def _spec(folder: Path, doc: dict, name: str = "sweep.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _cli(*argv):
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def _rows(outdir: Path) -> dict[str, dict]:
    return {r["hash"]: r for r in read(outdir)[2]}


def _swept(tmp_path_factory, name: str, doc: dict) -> tuple[Path, Path]:
    """(spec, OUTDIR) of `doc` swept uninterrupted on two workers."""
    d = tmp_path_factory.mktemp(name)
    spec = _spec(d, doc)
    assert _cli("sweep", spec, "-o", d / "out", "--workers", 2) == 0
    return spec, d / "out"


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    return _swept(tmp_path_factory, "grid", GRID)


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory):
    return _swept(tmp_path_factory, "sampled", SAMPLED)


def test_spec_expands_grids_times_seeded_samples_and_keeps_ints(tmp_path):
    spec = load_spec(str(_spec(tmp_path, SAMPLED)))
    points = spec.points()
    assert len(points) == 2 * 6 and len({p.hash for p in points}) == 12
    assert [p.overrides for p in points] == [p.overrides for p in load_spec(str(_spec(tmp_path, SAMPLED))).points()]
    values = {path: [dict(p.overrides)[path] for p in points] for path in spec.settings()["params"]}
    assert sorted(set(values["core.buffers.fp_weights.kib"])) == [2.25, 64]
    assert all(isinstance(v, int) and 4 <= v <= 32 for v in values["core.engines.fp.pe_rows"])
    assert all(isinstance(v, float) and 200 <= v <= 1000 for v in values["clock_mhz"])
    assert all(5 <= v <= 40 for v in values["dram.pj_per_bit"]) and len(set(values["dram.pj_per_bit"])) == 6
    assert set(values["arithmetic"]) <= {"fp16", "fp32"}
    # the same 6 samples under each grid value; only the weight SRAM is read by the mapper
    drawn = {kib: [p.overrides[1:] for p in points if p.overrides[0][1] == kib] for kib in (2.25, 64)}
    assert drawn[2.25] == drawn[64] and len(set(drawn[64])) == 6
    assert len({p.compile_key for p in points}) == 2
    other = load_spec(str(_spec(tmp_path, {**SAMPLED, "sample_seed": 4}))).points()
    assert {p.hash for p in other}.isdisjoint({p.hash for p in points})


def test_the_optimizer_setting_reaches_every_point(tmp_path):
    doc = {**GRID, "training": True, "dataflow": "naive", "params": [{"path": "clock_mhz", "values": [500]}]}
    rows = {}
    for opt in ("sgd", "adam"):
        spec = load_spec(str(_spec(tmp_path, {**doc, "optimizer": opt} if opt == "adam" else doc)))
        (point,) = spec.points()
        assert spec.settings()["optimizer"] == point.optimizer == point.columns()["optimizer"] == opt
        rows[opt] = evaluate(point)
        assert rows[opt]["status"] == "ok", rows[opt]["error"]
    params = sum(li.params for li in load_model("mlp", weights=False).layers() if li.kind == "linear")
    key = "dram_bytes_by_category_optimizer"
    assert rows["adam"][key] - rows["sgd"][key] == 2 * 2 * 4 * params  # m and v in DRAM, FP32, in and out


def test_a_directory_of_an_older_spikeforge_is_refused(tmp_path):
    from spikeforge.isa import SpikeforgeError
    from spikeforge.sweeps.store import Store

    settings = load_spec(str(_spec(tmp_path, GRID))).settings()
    store = Store(tmp_path)
    store.claim({k: v for k, v in settings.items() if k != "optimizer"}, {}, "out")  # as version 2 wrote it
    with pytest.raises(SpikeforgeError, match="an older spikeforge, without the setting 'optimizer'"):
        store.claim(settings, {}, "out")
    store.close()


def test_fields_the_mapper_does_not_read_leave_the_program_unchanged():
    """The mapping cache's premise: every cost-only field perturbed, the same placement, and the
    same program for a fixed dataflow (the search may pick another candidate under other prices)."""
    doc = base_doc("default")

    def leaves(d, prefix=""):
        for k, v in d.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(prefix + k, v)]

    changed = {p: v * 3 + 1 for p, v in leaves(doc) if cost_only(p) and isinstance(v, (int, float))}
    changed["arithmetic"] = "fp16"
    assert {"clock_mhz", "noc.link_bits", "dram.gb_per_s", "core.engines.fp.pe_rows",
            "sram.pj_base", "dram.pj_per_bit", "arithmetic"} <= set(changed)
    assert not cost_only("core.buffers.fp_weights.kib") and not cost_only("mesh.rows") and not cost_only("precision")
    g = load_model("mlp", weights=False)
    for dataflow in ("naive", "ws_batch"):
        compiled = [compile_model(g, build_arch(doc, o), training=True, timesteps=2, batch=2, dataflow=dataflow)
                    for o in ({}, changed)]
        assert disassemble(compiled[0].program) == disassemble(compiled[1].program)
        assert [(p.group, p.lo, p.hi, p.core) for p in compiled[0].plan.pieces] == \
               [(p.group, p.lo, p.hi, p.core) for p in compiled[1].plan.pieces]


def test_sweep_rows_equal_a_direct_simulation_of_each_point(sampled_run):
    spec_file, out = sampled_run
    rows = _rows(out)
    points = load_spec(str(spec_file)).points()
    assert set(rows) == {p.hash for p in points} and all(r["status"] == "ok" for r in rows.values())
    for p in points[::4]:  # fp16 and fp32, both weight SRAMs
        graph = load_model("mlp", seed=0)
        chip = load_arch("default", dict(p.overrides))
        c = compile_model(graph, chip, training=True, timesteps=2, batch=2, seed=0)
        rep = simulate(graph, c.program, chip, make_input(graph, 2, 2, None, 0), seed=0)
        row = rows[p.hash]
        assert {k: row[k] for k in flatten(rep["totals"])} == flatten(rep["totals"])
        assert row["clock_mhz"] == dict(p.overrides)["clock_mhz"] and row["training"] == 1
    energies = sorted(r["energy_pj"] for r in rows.values())
    assert energies[0] < 0.6 * energies[-1]  # the parameters matter (DRAM pJ 5-40: a fifth to a half of the energy)
    reseeded = evaluate(replace(points[0], seed=1))
    assert reseeded["status"] == "ok" and reseeded["loss"] != rows[points[0].hash]["loss"]


def test_dask_cluster_gives_the_rows_of_the_local_pool(sampled_run, tmp_path):
    from distributed import LocalCluster

    spec_file, local = sampled_run
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster:
        assert _cli("sweep", spec_file, "-o", tmp_path / "dask", "--dask-scheduler", cluster.scheduler_address) == 0
    assert _rows(tmp_path / "dask") == _rows(local)


def test_a_killed_sweep_resumes_to_the_rows_of_an_uninterrupted_run(grid_run, tmp_path):
    spec_file, reference = grid_run
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "spikeforge.cli", "sweep", str(spec_file), "-o", str(out),
                             "--workers", "1"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stored, deadline = 0, time.monotonic() + 60
    while stored == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            with sqlite3.connect(out / "results.sqlite") as db:
                stored = db.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            pass
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    kept = len(_rows(out))
    assert 1 <= kept < 24
    assert _cli("sweep", spec_file, "-o", out, "--workers", 1) == 0
    rows, ref = _rows(out), _rows(reference)
    assert len(rows) == 24 and rows == ref
    with sqlite3.connect(out / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(DISTINCT hash), COUNT(*) FROM points").fetchone() == (24, 24)


def test_a_failing_point_is_recorded_and_the_others_succeed(grid_run):
    rows = list(_rows(grid_run[1]).values())
    bad = [r for r in rows if r["core.buffers.fp_membrane.kib"] == 0.001]
    good = [r for r in rows if r["core.buffers.fp_membrane.kib"] == 128]
    assert len(bad) == len(good) == 12
    assert all(r["status"] == "error" and "membrane SRAM" in r["error"] and r["energy_pj"] is None for r in bad)
    assert all(r["status"] == "ok" and r["error"] is None and r["energy_pj"] > 0 for r in good)
    # a bigger weight tile buffer: more area and dearer SRAM bits; a faster clock: a shorter step
    by = {(r["core.buffers.fp_weights.kib"], r["clock_mhz"]): r for r in good}
    assert by[(64, 250)]["area_mm2"] > by[(2, 250)]["area_mm2"]
    assert by[(64, 250)]["energy_breakdown_pj_sram"] > by[(2, 250)]["energy_breakdown_pj_sram"]
    assert by[(8, 1000)]["latency_s"] < by[(8, 250)]["latency_s"] and by[(8, 1000)]["cycles"] > by[(8, 250)]["cycles"]


def test_rerun_skips_stored_points_adds_new_ones_and_refuses_other_settings(grid_run, tmp_path, capsys):
    import shutil

    spec_file, reference = grid_run
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    more = {**GRID, "params": [*GRID["params"][:2], {"path": "clock_mhz", "values": [250, 1000, 500]}]}
    assert _cli("sweep", _spec(tmp_path, more), "-o", out, "--workers", 1) == 0
    assert "36 design points: 24 already in" in capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 36 and all(rows[h] == r for h, r in _rows(reference).items())
    assert _cli("sweep", _spec(tmp_path, {**GRID, "timesteps": 3}), "-o", out) == 2
    err = capsys.readouterr().err
    assert "timesteps = 2, this spec has 3" in err and err.count("\n") == 1


@pytest.mark.parametrize("change, needle", [
    ({"params": [{"path": "core.buffers.nope.kib", "values": [1]}]},
     "params[0].path: unknown architecture field 'core.buffers.nope.kib'"),
    ({"params": [{"path": "clock_mhz", "values": [500]}, {"path": "mesh.rows", "values": [2, -4]}]},
     "params[1].values[1]: mesh.rows: must be a positive int, got -4"),
    ({"params": [{"path": "core.buffers", "values": [1]}]}, "params[0].path: 'core.buffers' is a section"),
    ({"params": [{"path": "clock_mhz", "uniform": [100, 200]}]}, "samples: needed"),
    ({"params": [{"path": "dram.pj_per_bit", "log_uniform": [0, 2]}], "samples": 3}, "params[0].log_uniform"),
    ({"models": ["mlp", "nosuchnet"]}, "models[1]: 'nosuchnet' is neither a zoo model"),
    ({"input": "x.npz"}, "rate: give rate or input, not both"),
    ({"timesteps": 0}, "timesteps: must be an int in [1, 100000], got 0"),
    ({"mdoe": "dense"}, "mdoe: unknown field"),
    ({"optimizer": "rmsprop"}, "optimizer: must be one of sgd, adam, got 'rmsprop'"),
])
def test_spec_errors_name_the_path_and_exit_2_before_any_output(tmp_path, capsys, change, needle):
    spec = _spec(tmp_path, {**GRID, **change}, "bad.yaml")
    rc = _cli("sweep", spec, "-o", tmp_path / "out")
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {spec}: {needle}")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_export_writes_a_header_and_one_line_per_point(grid_run, tmp_path, capsys):
    _, out = grid_run
    assert _cli("sweep", "export", out, "--csv", tmp_path / "r.csv") == 0
    assert "24 design points" in capsys.readouterr().out
    with open(tmp_path / "r.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 24
    assert {"hash", "status", "error", "model", "core.buffers.fp_weights.kib", "clock_mhz", "energy_pj", "latency_s",
            "energy_breakdown_pj_dram", "dram_bytes_by_category_weights", "synaptic_ops_by_engine_fp"} <= set(lines[0])
    rows = _rows(out)
    for line in lines:
        row = rows[line["hash"]]
        assert line["status"] == row["status"]
        assert line["energy_pj"] == ("" if row["energy_pj"] is None else str(row["energy_pj"]))
    assert _cli("sweep", "export", out) == 2


def test_pareto_front_of_a_hand_made_table():
    energy = [5, 3, 4, 1, 3, 6, 1, 2]
    latency = [1, 3, 2, 9, 3, 0.5, 9, 10]
    # (3, 3) twice: equal, neither dominates; (1, 9) twice; (4, 2) and (5, 1) trade off;
    # (2, 10) is dominated by (1, 9); (6, 0.5) is the fastest
    assert sorted(pareto_front(energy, latency)) == [0, 1, 2, 3, 4, 5, 6]
    assert pareto_front([2, 1], [2, 1]) == [1] and pareto_front([], []) == []
    assert sorted(pareto_front([1, 1, 2], [2, 1, 1])) == [1]


def test_report_writes_the_pareto_plot_sensitivity_plots_and_summary(sampled_run, capsys):
    _, out = sampled_run
    assert _cli("report", out, "--color-by", "arithmetic") == 0
    assert "Pareto-optimal" in capsys.readouterr().out
    params = ["core.buffers.fp_weights.kib", "clock_mhz", "core.engines.fp.pe_rows", "dram.pj_per_bit", "arithmetic"]
    for name in ["pareto.png"] + [f"sensitivity_{p}.png" for p in params]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 10_000
    rows = [r for r in _rows(out).values()]
    front = [rows[i] for i in pareto_front([r["energy_pj"] for r in rows], [r["latency_s"] for r in rows])]
    summary = (out / "summary.md").read_text()
    assert f"## mlp: {len(front)} Pareto-optimal design" in summary
    table = [line for line in summary.splitlines() if line.startswith("| ") and "energy" not in line]
    assert len(table) == len(front)
    for r in front:
        assert any(f"| {r['clock_mhz']:.4g} |" in line and f"| {r['energy_pj'] * 1e-6:.4g} |" in line for line in table)
    assert _cli("report", out, "--color-by", "nope") == 2
