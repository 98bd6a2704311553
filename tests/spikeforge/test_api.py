"""The Python API (`import spikeforge as sf`) and the compiled directory as a contract: it runs
as compiled wherever it is moved and whatever happens to the files it came from, and a setting
that contradicts it is an error naming both values unless `--recompile`."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import spikeforge as sf
from spikeforge.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_api_tour_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("api_tour", EXAMPLES / "api_tour.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    docs = mod.main(str(tmp_path / "tour"))
    assert docs["simulated"]["config"]["training"] and docs["swept"]["points"] == 4 and not docs["swept"]["errors"]
    assert "contradicts the compiled timesteps 4" in capsys.readouterr().out
    for name in ("compile.json", "arch.yaml", "model.sfir", "report.html", "program.sasm"):
        assert (tmp_path / "tour" / "compiled" / name).is_file()
    assert (tmp_path / "tour" / "sweep" / "report.html").is_file()


def test_the_package_exposes_the_api_lazily():
    assert {"compile", "simulate", "train", "sweep", "load_model"} <= set(sf.__all__)
    assert callable(sf.compile) and callable(sf.load_model)
    with pytest.raises(AttributeError):
        sf.no_such_thing  # noqa: B018


def test_results_serialise_save_and_show_in_a_notebook(tmp_path):
    g = sf.load_model("mlp")
    before = {(op.name, k): w.copy() for op in g for k, w in op.tensors.items()}
    r = sf.simulate(g, train=True, timesteps=2, batch=2)
    assert all((g[n].tensors[k] == w).all() for (n, k), w in before.items())  # the caller's graph is unchanged
    assert json.loads(r.to_json()) == r.doc == r.report
    assert r._repr_html_().startswith("<iframe srcdoc=")
    r.save(str(tmp_path / "s"))
    assert json.loads((tmp_path / "s" / "report.json").read_text()) == r.doc
    with pytest.raises(sf.SpikeforgeError, match="expected a zoo name"):
        sf.simulate(42)


def test_a_compiled_directory_runs_as_compiled_after_its_sources_change(tmp_path):
    model = tmp_path / "net.yaml"
    shutil.copy(EXAMPLES / "models" / "tiny_resnet.yaml", model)
    arch = tmp_path / "chip.yaml"
    arch.write_text(sf.load_arch.__globals__["preset_text"]("edge4"))
    assert main(["compile", str(model), "--arch", str(arch), "--train", "-B", "2", "-T", "2",
                 "-o", str(tmp_path / "c"), "--no-html"]) == 0
    assert main(["simulate", str(tmp_path / "c"), "-o", str(tmp_path / "s1"), "--no-html"]) == 0
    shutil.move(tmp_path / "c", tmp_path / "moved")  # moved, and the sources edited or gone
    model.unlink()
    arch.write_text(arch.read_text().replace("clock_mhz: 500", "clock_mhz: 100"))
    assert main(["simulate", str(tmp_path / "moved"), "-o", str(tmp_path / "s2"), "--no-html"]) == 0
    r1, r2 = (json.loads((tmp_path / s / "report.json").read_text()) for s in ("s1", "s2"))
    assert r1["totals"] == r2["totals"] and r2["config"]["timesteps"] == 2 and r2["config"]["training"]


def test_a_setting_that_contradicts_the_compiled_one_is_an_error_unless_recompile(tmp_path, capsys):
    assert main(["compile", "mlp", "-T", "4", "-o", str(tmp_path / "c"), "--no-html"]) == 0
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "c"), "--train", "--arch", "edge4", "-T", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    for part in ("--arch edge4 contradicts the compiled arch default", "--train True contradicts the compiled train False",
                 "--timesteps 8 contradicts the compiled timesteps 4", "--recompile"):
        assert part in err, err
    assert main(["simulate", str(tmp_path / "c"), "-T", "4", "--arch", "default", "--json"]) == 0  # agreeing flags
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "c"), "--train", "--arch", "edge4", "-T", "8", "--recompile", "--json"]) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert (cfg["arch"], cfg["timesteps"], cfg["training"]) == ("edge4", 8, True)
