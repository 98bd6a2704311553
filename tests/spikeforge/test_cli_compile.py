"""`spikeforge compile` and `spikeforge arch`: outputs, figures, and one-line errors (exit 2)."""

import json

import pytest
import yaml

from spikeforge.isa.arch import presets
from spikeforge.isa.sasm import assemble
from spikeforge.cli import main

ZOO = ["mlp", "vgg11", "vgg16", "resnet18", "sew_resnet18", "resnet19", "sdt"]


def _run(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_compile_writes_placement_program_and_figures(capsys, tmp_path):
    out = tmp_path / "vgg11"
    rc, stdout, err = _run(capsys, "compile", "vgg11", "--train", "-T", "2", "-B", "2", "-o", out)
    assert rc == 0, err
    assert "mapper vs sequential baseline" in stdout and "wrote" in stdout
    stats = json.loads((out / "compile.json").read_text())
    assert {"dram_bytes", "noc", "load_balance", "cores", "baseline", "hop_bytes_vs_baseline"} <= set(stats)
    assert set(stats["dram_bytes"]) == {"weights", "activations", "errors", "bptt_state", "gradients", "optimizer", "total"}
    assert stats["timesteps"] == 2 and stats["batch"] == 2 and stats["training"] is True
    assert len(stats["cores"]) == 20 and len(stats["noc"]["matrix"]) == 20
    assert stats["noc"]["hop_bytes"] < stats["baseline"]["noc"]["hop_bytes"]
    for core in stats["cores"]:
        assert all(v["used"] <= v["capacity"] for v in core["sram"].values())
    place = yaml.safe_load((out / "placement.yaml").read_text())
    assert place["mesh"] == [4, 5] and len(place["pieces"]) == stats["pieces"]
    p = place["pieces"][0]
    assert {"layer", "units", "core", "round", "weights", "work"} <= set(p)
    prog = assemble((out / "program.sasm").read_text())
    assert prog.header.timesteps == 2 and len(prog.cores) == 20
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".spikeforge-")]


def test_compile_json_goes_to_stdout(capsys, tmp_path):
    rc, stdout, _ = _run(capsys, "compile", "mlp", "-o", tmp_path / "o", "--json")
    stats = json.loads(stdout)
    assert rc == 0 and stats["training"] is False and stats["dram_bytes"]["bptt_state"] == 0


def test_unmappable_model_names_layer_and_limit_and_leaves_nothing(capsys, tmp_path):
    model = tmp_path / "huge.yaml"
    model.write_text("name: huge\ninput: {shape: [1, 2, 70000]}\nlayers:\n"  # one row is 137 KiB of membrane
                     "  - conv2d: {out_channels: 4, kernel: 1}\n    name: big\n  - lif:\n")
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "compile", model, "-o", out)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "layer 'big'" in err and "membrane" in err and "Traceback" not in err
    assert not out.exists() and [f.name for f in tmp_path.iterdir()] == ["huge.yaml"]


@pytest.mark.parametrize("argv, needle", [
    (["compile", "mlp", "--arch", "nosuch", "-o", "{o}"], "nosuch"),
    (["compile", "mlp", "-T", "0", "-o", "{o}"], "timesteps"),
    (["compile", "mlp", "--spike-rate", "2", "-o", "{o}"], "spike_rate"),
    (["compile", "nosuch.yaml", "-o", "{o}"], "nosuch.yaml"),
    (["compile", "mlp"], "-o"),
    (["arch", "show", "nosuch"], "nosuch"),
])
def test_compile_and_arch_usage_errors_are_one_line(capsys, tmp_path, argv, needle):
    argv = [a.replace("{o}", str(tmp_path / "o")) for a in argv]
    rc, _, err = _run(capsys, *argv)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err
    assert not (tmp_path / "o").exists()


def test_bad_arch_file_names_the_field(capsys, tmp_path):
    bad = tmp_path / "chip.yaml"
    rc, out, _ = _run(capsys, "arch", "show", "default")
    bad.write_text(out.replace("mesh: {rows: 4, cols: 5}", "mesh: {rows: -4, cols: 5}"))
    rc, _, err = _run(capsys, "compile", "mlp", "--arch", bad, "-o", tmp_path / "o")
    assert rc == 2 and "mesh.rows" in err and err.count("\n") == 1


def test_arch_list_and_show(capsys):
    rc, out, _ = _run(capsys, "arch", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)["presets"]}
    assert rc == 0 and {"default", "edge4", "large64"} <= set(rows)
    assert rows["default"]["cores"] == 20 and rows["large64"]["mesh"] == [8, 8] and rows["edge4"]["cores"] == 4
    rc, out, _ = _run(capsys, "arch", "show", "default")
    assert rc == 0 and "[LI2024]" in out and "pj_per_bit" in out


@pytest.mark.parametrize("arch", sorted(presets()))
def test_every_zoo_model_compiles_or_gives_the_capacity_error(capsys, tmp_path, arch):
    for model in ZOO:
        out = tmp_path / model
        rc, stdout, err = _run(capsys, "compile", model, "--arch", arch, "--train", "--json", "-o", out)
        if rc == 0:
            stats = json.loads(stdout)
            assert stats["pieces"] > 0 and (out / "program.sasm").exists()
        else:
            assert rc == 2 and err.startswith("error: layer '") and err.count("\n") == 1, err
            assert "SRAM" in err and not out.exists()
