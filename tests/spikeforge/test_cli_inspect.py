"""`spikeforge zoo list` and `spikeforge inspect`: tables, JSON, and one-line errors (exit 2)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeforge.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_zoo_list_json_names_every_model(capsys):
    rc, out, _ = _run(capsys, "zoo", "list", "--json")
    names = [m["name"] for m in json.loads(out)["models"]]
    assert rc == 0 and {"mlp", "vgg11", "vgg16", "resnet18", "resnet19", "sdt"} <= set(names)


def test_inspect_json_counts_layers_params_and_synaptic_ops(capsys):
    rc, out, _ = _run(capsys, "inspect", "mlp", "--json", "--timesteps", "8")
    rep = json.loads(out)
    assert rc == 0 and rep["timesteps"] == 8
    fc = [l for l in rep["layers"] if l["op"] == "linear"]
    assert [l["output_shape"] for l in fc] == [[512], [512], [10]]
    assert [l["arith"] for l in fc] == ["AC", "AC", "AC"]  # rate-coded input: every layer reads spikes
    dense = 784 * 512 + 512 * 512 + 512 * 10
    assert rep["totals"]["syn_ops_per_step"] == dense and rep["totals"]["syn_ops"] == 8 * dense
    assert rep["totals"]["params"] == dense + 512 + 512 + 10


def test_inspect_table_shows_every_layer_and_the_totals(capsys):
    rc, out, _ = _run(capsys, "inspect", str(EXAMPLES / "tiny_resnet.yaml"))
    assert rc == 0 and "totals" in out and "19,994 parameters" in out
    assert out.count("conv2d") >= 5


def test_inspect_ir_prints_a_text_form_that_parses_back(capsys, tmp_path):
    rc, out, _ = _run(capsys, "inspect", "resnet18", "--ir")
    assert rc == 0
    f = tmp_path / "r.sfir"
    f.write_text(out)
    rc, out2, _ = _run(capsys, "inspect", str(f), "--json")
    assert rc == 0 and json.loads(out2)["totals"]["params"] == 11_689_512


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, text the error line must contain)."""
    cases = {
        "truncated yaml": ("m.yaml", "layers:\n  - linear: {out_features: 4\n", "invalid YAML"),
        "empty yaml": ("m.yaml", "", "m.yaml: "),
        "wrong type": ("m.yaml", "input: {shape: [4]}\nlayers:\n  - linear: {out_features: four}\n",
                       "layers[0].linear.out_features: must be a positive int, got 'four'"),
        "negative kernel": ("m.yaml", "input: {shape: [1, 8, 8]}\nlayers:\n  - conv2d: {out_channels: 2, kernel: -1}\n",
                            "layers[0].conv2d.kernel"),
        "unknown op": ("m.yaml", "input: {shape: [4]}\nlayers:\n  - softmax: {}\n", "softmax"),
        "cycle": ("m.yaml", "input: {shape: [4]}\nlayers:\n  - add: {}\n    name: a\n    inputs: [input, b]\n"
                  "  - lif: {}\n    name: b\n    inputs: [a]\n", "cycle"),
        "shape mismatch": ("m.yaml", "input: {shape: [4]}\nlayers:\n  - linear: {out_features: 3}\n    name: f\n"
                           "  - add: {}\n    inputs: [f, input]\n", "inputs differ in shape"),
        "binary garbage yaml": ("m.yaml", bytes(range(256)) * 4, "m.yaml: "),
        "garbage nir": ("m.nir", b"\x89HDF\x00garbage" * 50, "m.nir: "),
        "empty nir": ("m.nir", b"", "m.nir: "),
        "bad sfir": ("m.sfir", 'graph "g" { %x = input() {shape = [3]}; %y = lif(%q); }', "input 'q' is not defined"),
        "binary sfir": ("m.sfir", b"\xff\xfe\x00\x01" * 20, "m.sfir: "),
        "unknown suffix": ("m.onnx", "x", "unknown model file type '.onnx'"),
    }
    out = {}
    for name, (fname, content, msg) in cases.items():
        d = tmp / name.replace(" ", "_")
        d.mkdir()
        f = d / fname
        (f.write_bytes if isinstance(content, bytes) else f.write_text)(content)
        out[name] = (f, msg)
    return out


@pytest.mark.parametrize("case", ["truncated yaml", "empty yaml", "wrong type", "negative kernel", "unknown op",
                                  "cycle", "shape mismatch", "binary garbage yaml", "garbage nir", "empty nir",
                                  "bad sfir", "binary sfir", "unknown suffix"])
def test_malformed_model_files_give_one_error_line_and_exit_2(case, tmp_path, capsys):
    f, msg = _bad_files(tmp_path)[case]
    rc, out, err = _run(capsys, "inspect", str(f))
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert msg in err


@pytest.mark.parametrize("argv, msg", [
    (["inspect", "no_such_model"], "'no_such_model' is neither a zoo model"),
    (["inspect", "missing.yaml"], "missing.yaml: file not found"),
    (["inspect", "mlp", "--timesteps", "0"], "--timesteps: must be a positive int, got 0"),
    (["inspect"], "the following arguments are required: MODEL"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_usage_mistakes_give_one_error_line_and_exit_2(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        sys.exit(main(argv))
    _, err = capsys.readouterr()
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and msg in err


def test_nir_with_an_unsupported_node_names_it(tmp_path, capsys):
    nir = pytest.importorskip("nir")
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "d1": nir.Delay(np.ones(3)),
                            "output": nir.Output(np.array([3]))},
                     edges=[("input", "d1"), ("d1", "output")])
    nir.write(tmp_path / "d.nir", g)
    rc, _, err = _run(capsys, "inspect", str(tmp_path / "d.nir"))
    assert rc == 2 and "node 'd1': unsupported NIR node Delay" in err and err.count("\n") == 1


def test_console_script_reports_errors_without_a_traceback(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("layers: [")
    p = subprocess.run([sys.executable, "-m", "spikeforge", "inspect", str(f)], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.startswith("error: ")


# ---- NIR files exported by snnTorch from networks the other tests have not seen ---------------

def _export(net, sample, path):
    from snntorch.export_nir import export_to_nir
    import nir
    nir.write(path, export_to_nir(net, sample, ignore_dims=[0]))


@pytest.mark.parametrize("width, beta, thr", [(37, 0.8, 1.0), (200, 0.95, 0.7)])
def test_inspect_snntorch_mlp_export(tmp_path, capsys, width, beta, thr):
    torch = pytest.importorskip("torch")
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    lif = lambda n: snn.Leaky(beta=torch.full((n,), beta), threshold=torch.full((n,), thr), init_hidden=True)
    net = torch.nn.Sequential(torch.nn.Linear(50, width), lif(width), torch.nn.Linear(width, width // 2), lif(width // 2),
                              torch.nn.Linear(width // 2, 7), lif(7))
    _export(net, torch.zeros(1, 50), tmp_path / "mlp.nir")
    rc, out, _ = _run(capsys, "inspect", str(tmp_path / "mlp.nir"), "--json")
    rep = json.loads(out)
    ops = [l["op"] for l in rep["layers"]]
    assert rc == 0 and ops.count("linear") == 3 and ops.count("lif") == 3
    assert [l["output_shape"] for l in rep["layers"] if l["op"] == "linear"] == [[width], [width // 2], [7]]
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert rep["totals"]["params"] == sum(p.numel() for m in linears for p in m.parameters())
    assert rep["totals"]["syn_ops_per_step"] == 50 * width + width * (width // 2) + (width // 2) * 7


def test_inspect_snntorch_conv_export(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(1)
    lif = lambda shape: snn.Leaky(beta=torch.full(shape, 0.9), threshold=torch.full(shape, 1.0), init_hidden=True)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 6, 3, padding=1), lif((6, 12, 12)), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(6, 10, 3, stride=2), lif((10, 2, 2)), torch.nn.Flatten(), torch.nn.Linear(40, 5), lif((5,)))
    _export(net, torch.zeros(1, 2, 12, 12), tmp_path / "conv.nir")
    rc, out, _ = _run(capsys, "inspect", str(tmp_path / "conv.nir"), "--json")
    rep = json.loads(out)
    shapes = {l["op"]: [] for l in rep["layers"]}
    for l in rep["layers"]:
        shapes[l["op"]].append(l["output_shape"])
    assert rc == 0
    assert shapes["conv2d"] == [[6, 12, 12], [10, 2, 2]] and shapes["pool2d"] == [[6, 6, 6]]
    assert shapes["linear"] == [[5]] and len(shapes["lif"]) == 3
    assert rep["totals"]["params"] == (2 * 9 * 6 + 6) + (6 * 9 * 10 + 10) + (40 * 5 + 5)
