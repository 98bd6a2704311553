"""The YAML model format: the examples, edges, weights, round trip, seeding, the doc, and one
exact error line for each kind of malformed file."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from spikeforge.compiler.frontends.yaml_reader import graph_from_doc, graph_to_doc, read_yaml
from spikeforge.isa import REAL, SPIKE, SpikeforgeError, TensorType
from spikeforge.isa.ops import KINDS, canonical_value

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "models"
DOC = ROOT / "docs" / "models.md"

SMALL = """\
input: {shape: [2, 6, 6]}
layers:
  - conv2d: {out_channels: 4, kernel: 3, padding: 1}
    name: conv
  - batchnorm:
    name: bn
  - lif: {beta: 0.8}
    name: lif
"""


def _write(tmp_path, text, name="m.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(path, **kw) -> str:
    with pytest.raises(SpikeforgeError) as e:
        read_yaml(path, **kw)
    return str(e.value)


# ---- the examples --------------------------------------------------------------------------

def test_tiny_resnet_example():
    g = read_yaml(EXAMPLES / "tiny_resnet.yaml")
    assert g.name == "tiny_resnet" and len(g) == 24  # the top-level input + 23 layers
    assert g["stem_lif"].type == TensorType(SPIKE, (16, 32, 32))
    assert g["b1_add"].inputs == ("b1_bn2", "stem_lif")
    assert g["b2_short"].inputs == ("b1_lif2",) and g["b2_add"].type.shape == (32, 16, 16)
    assert g["gap"].type.shape == (32, 1, 1) and g["flat"].type.shape == (32,)
    assert (g["readout"].type.kind, g["readout"].type.shape) == (REAL, (10,))
    convs = 16 * 3 * 9 + 2 * 16 * 16 * 9 + 32 * 16 * 9 + 32 * 32 * 9 + 32 * 16
    bns = 2 * (3 * 16 + 3 * 32)  # gamma and beta of 3 + 3 batch-norms
    assert g.param_count() == convs + bns + 32 * 10 + 10 == 19_994


def test_mlp_example():
    g = read_yaml(EXAMPLES / "mlp.yaml")
    assert [op.name for op in g] == ["input", "fc1", "lif_1", "fc2", "cubalif_3", "fc3", "readout"]
    assert g["input"].type.kind == SPIKE and g["cubalif_3"].params["reset"] == "zero"
    assert g["cubalif_3"].params["alpha"] == 0.5 and g["lif_1"].params["beta"] == 0.95
    assert g.param_count() == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10 == 235_146


def test_recurrent_example():
    """digits_rsnn: `prev` reads lif1, further down the list, and `rec` reads `prev`; lif1, read
    by fc2 in the same step, is no output."""
    g = read_yaml(EXAMPLES / "digits_rsnn.yaml")
    assert [op.name for op in g] == ["input", "fc1", "prev", "rec", "sum", "lif1", "fc2", "readout"]
    assert g["prev"].inputs == ("lif1",) and g["prev"].type == TensorType(SPIKE, (64,))
    assert g["sum"].inputs == ("rec", "fc1") and [o.name for o in g.outputs] == ["readout"]
    assert g.param_count() == 8 * 64 + 64 + 64 * 64 + 64 * 10 + 10


# ---- structure ------------------------------------------------------------------------------

def test_name_based_edges_residual_add_and_defaults(tmp_path):
    g = read_yaml(_write(tmp_path, """\
layers:
  - input: {shape: [4, 5, 5], encoding: events}
    name: x
  - add:
    name: res
    inputs: [lif_3, x]        # a later layer may be named
  - conv2d: {out_channels: 4, kernel: 3, padding: 1, bias: false}
    inputs: x                 # one name needs no list
  - lif:
  - output:
    inputs: [res]
"""))
    assert [op.name for op in g] == ["x", "conv2d_2", "lif_3", "res", "output_4"]
    assert g["lif_3"].inputs == ("conv2d_2",) and g["res"].inputs == ("lif_3", "x")
    assert g["res"].type.shape == (4, 5, 5) and g["output_4"].inputs == ("res",)
    assert g.name == "m" and [op.name for op in g.outputs] == ["output_4"]


def test_batchnorm_tensors_and_params(tmp_path):
    g = read_yaml(_write(tmp_path, SMALL + "  - batchnorm: {eps: 1e-3}\n"))
    bn = g["bn"]
    assert bn.params["eps"] == 1e-5 and g["batchnorm_3"].params["eps"] == 1e-3
    assert sorted(bn.tensors) == ["beta", "gamma", "mean", "var"]
    assert np.array_equal(bn.tensors["gamma"], np.ones(4)) and np.array_equal(bn.tensors["mean"], np.zeros(4))
    assert g.param_count() == 4 * 2 * 9 + 4 + 2 * 4 + 0 + 2 * 4  # conv, bn, lif, bn


def _save_small_weights(tmp_path, **extra):
    rng = np.random.default_rng(1)
    arrays = {"conv.weight": rng.random((4, 2, 3, 3)), "conv.bias": rng.random(4),
              "bn.gamma": rng.random(4), "bn.beta": rng.random(4), "bn.mean": rng.random(4),
              "bn.var": rng.random(4) + 1, **extra}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(tmp_path / "w.npz", **arrays)
    return arrays


def test_weights_npz_with_per_neuron_coefficients(tmp_path):
    arrays = _save_small_weights(tmp_path, **{"lif.beta": np.full((4, 1, 1), 0.5)})
    g = read_yaml(_write(tmp_path, "weights: w.npz\n" + SMALL))
    for key, a in arrays.items():
        layer, tensor = key.split(".")
        assert g[layer].tensors[tensor].dtype == np.float32
        assert np.allclose(g[layer].tensors[tensor], a)
    assert g["lif"].coef("beta").shape == (4, 1, 1) and g["lif"].coef("threshold") == 1.0


def test_weights_path_is_relative_to_the_yaml_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    _save_small_weights(tmp_path / "sub")
    path = _write(tmp_path / "sub", "weights: w.npz\n" + SMALL)
    monkeypatch.chdir(tmp_path)
    assert read_yaml(Path("sub") / path.name)["conv"].tensors["weight"].shape == (4, 2, 3, 3)


@pytest.mark.parametrize("name", ["tiny_resnet", "mlp", "digits_rsnn"])
def test_graph_to_doc_round_trip(name):
    g = read_yaml(EXAMPLES / f"{name}.yaml")
    doc = graph_to_doc(g)
    assert graph_from_doc(doc, "x.yaml").structure() == g.structure()
    text = yaml.safe_dump(doc, sort_keys=False)
    assert graph_from_doc(yaml.safe_load(text), "x.yaml").structure() == g.structure()
    layers = {e["name"]: e for e in doc["layers"]}
    assert layers["stem" if name == "tiny_resnet" else "fc1"].get("inputs") is None  # the default edge
    if name == "tiny_resnet":
        assert layers["b2_short"]["inputs"] == ["b1_lif2"]
        assert layers["stem"]["conv2d"] == {"out_channels": 16, "kernel": [3, 3], "padding": [1, 1],
                                            "bias": False}


def _conv_weight(graph):
    return graph["conv"].tensors["weight"]


def test_seeded_initialisation_is_deterministic(tmp_path):
    path = _write(tmp_path, SMALL)
    assert read_yaml(path, seed=3) == read_yaml(path, seed=3)
    assert not np.array_equal(_conv_weight(read_yaml(path, seed=3)), _conv_weight(read_yaml(path, seed=4)))
    pinned = _write(tmp_path, "seed: 3\n" + SMALL, "pinned.yaml")
    assert np.array_equal(_conv_weight(read_yaml(pinned, seed=4)),  # the file's seed wins
                          _conv_weight(read_yaml(path, seed=3)))


# ---- malformed files: one exact line each ----------------------------------------------------

L = "input: {shape: [3, 8, 8]}\nlayers:\n"
MALFORMED = [
    # (file text, error after "<file>: ")
    (L + "  - lif: {beta: 0.9}\n  - conv2d: {out_channels: 4, kern",  # a truncated file
     "line 4: invalid YAML (expected ',' or '}', but got '<stream end>')"),
    (L + "  - conv2d: {out_channels: 4, kernel: 3\n  - lif:\n",
     "line 4: invalid YAML (expected ',' or '}', but got ':' while parsing a flow mapping from line 3)"),
    (L + "  - conv2d: {out_channels: 4, kernel: '3'}\n",
     "layers[0].conv2d.kernel: must be a positive int or a pair of positive ints, got '3'"),
    (L + "  - conv2d: {out_channels: 4.0, kernel: 3}\n",
     "layers[0].conv2d.out_channels: must be a positive int, got 4.0"),
    (L + "  - conv2d: {out_channels: 4, kernel: 3, bias: 1}\n",
     "layers[0].conv2d.bias: must be true or false, got 1"),
    (L + "  - conv2d: {out_channels: true, kernel: 3}\n",
     "layers[0].conv2d.out_channels: must be a positive int, got True"),
    ("input: {shape: [3, 8]}\nlayers:\n  - lif:\n  - conv1d: {out_channels: 4, kernel: -1}\n",
     "layers[1].conv1d.kernel: must be a positive int, got -1"),
    (L + "  - lif: {reset: hard}\n",
     "layers[0].lif.reset: must be 'subtract' or 'zero', got 'hard'"),
    (L + "  - conv3d: {out_channels: 4}\n",
     f"layers[0].conv3d: unknown op kind (known: {', '.join(KINDS)})"),
    (L + "  - lif:\n    name: a\n    input: [x]\n",
     "layers[0]: has 2 op kinds (lif, input); give one per layer"),
    (L + "  - lif:\n    inptus: [input]\n",
     "layers[0].inptus: unknown key (allowed: one op kind, name, inputs)"),
    (L + "  - conv2d:\n    out_channels: 4\n",
     "layers[0].out_channels: unknown key (a parameter of conv2d? indent it under `conv2d:`)"),
    (L + "  - lif: {tau: 2.0}\n",
     "layers[0].lif.tau: unknown parameter (allowed: beta, threshold, gain, bias, reset, v_reset, "
     "surrogate, slope)"),
    (L + "  - conv2d: {out_channels: 4}\n", "layers[0].conv2d.kernel: missing required parameter"),
    (L + "  - lif:\n  - conv2d: {out_channels: 4, kernel: 3}\n    linear: {out_features: 2}\n",
     "layers[1]: has 2 op kinds (conv2d, linear); give one per layer"),
    (L + "  - lif:\n  - batchnorm: 3\n",
     "layers[1].batchnorm: must be a mapping of parameters (or empty), got 3"),
    (L + "  - [lif]\n", "layers[0]: must be a mapping with one op-kind key, got ['lif']"),
    (L + "  - name: x\n", f"layers[0]: has no op kind (one of: {', '.join(KINDS)})"),
    (L + "  - lif:\n    name: 7\n", "layers[0].name: must be a non-empty string, got 7"),
    (L + "  - lif:\n  - lif:\n    name: lif_0\n", "layers[1].name: duplicate layer name 'lif_0'"),
    (L + "  - lif:\n  - add:\n    inputs: [lif_0, lif_9]\n", "layers[1].inputs: unknown layer 'lif_9'"),
    (L + "  - lif:\n    inputs: [3]\n",
     "layers[0].inputs: must be a layer name or a list of layer names, got [3]"),
    (L + "  - lif:\n    inputs: [b]\n    name: a\n  - lif:\n    name: b\n",
     "op 'a': graph has a cycle through this op (a recurrent edge reads the previous step through a `delay` op)"),
    (L + "  - conv2d: {out_channels: 16, kernel: 3, padding: 1}\n    name: c16\n"
         "  - conv2d: {out_channels: 32, kernel: 3, padding: 1}\n    name: c32\n"
         "  - add:\n    name: res\n    inputs: [c16, c32]\n",
     "op 'res' (add): inputs differ in shape: real[16,8,8], real[32,8,8]"),
    (L + "  - add:\n", "op 'add_0' (add): takes at least 2 input(s), got 1"),
    (L + "  - conv2d: {out_channels: 4, kernel: 9}\n",
     "op 'conv2d_0' (conv2d): kernel 9 (dilation 1, padding 0) does not fit input height 8"),
    ("input: {shape: [3, -8, 8]}\nlayers: [lif: {}]\n",
     "input.shape: must be a non-empty list of positive ints, got [3, -8, 8]"),
    ("input: {shape: [3], encoding: spikes}\nlayers: [lif: {}]\n",
     "input.encoding: must be 'direct' or 'rate' or 'events', got 'spikes'"),
    ("layers:\n  - lif:\n", "model has no input (give a top-level `input` or an `input` layer)"),
    ("input: {shape: [3]}\n", "layers: must be a non-empty list of layers, got nothing"),
    ("input: {shape: [3]}\nlayers: []\n", "layers: must be a non-empty list of layers, got []"),
    ("input: {shape: [3]}\nlayer: [lif: {}]\n",
     "layer: unknown key (allowed: name, input, seed, weights, layers)"),
    ("input: {shape: [3]}\nseed: -1\nlayers: [lif: {}]\n", "seed: must be an int in [0, 4294967295], got -1"),
    ("name: [a]\ninput: {shape: [3]}\nlayers: [lif: {}]\n", "name: must be a non-empty string, got ['a']"),
    ("- lif\n- add\n", "must be a mapping with a `layers` list, got ['lif', 'add']"),
    ("", "model file is empty (expected a mapping with a `layers` list)"),
    ("# nothing but a comment\n", "model file is empty (expected a mapping with a `layers` list)"),
    ("layers:\n\t- lif:\n", "line 2: invalid YAML (found character '\\t' that cannot start any token)"),
    ("input: {shape: [3]}\nname: \"tiny\nlayers: [lif: {}]\n",
     "line 4: invalid YAML (found unexpected end of stream while scanning a quoted scalar from line 2)"),
]


@pytest.mark.parametrize("text, message", MALFORMED, ids=[m.split(":")[0] for _, m in MALFORMED])
def test_malformed_model_names_the_file_and_the_path(tmp_path, text, message):
    path = _write(tmp_path, text)
    assert _error(path) == f"{path}: {message}"


def test_malformed_files(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)) * 8)
    assert _error(binary) == f"{binary}: not a text file (expected a YAML model)"
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"layers: \x00\x01\x02")
    assert _error(nul) == f"{nul}: not a text file (expected a YAML model)"
    assert _error(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: file not found"
    assert _error(tmp_path) == f"{tmp_path}: not a file"
    date = _write(tmp_path, "seed: 2024-13-45\n")
    assert _error(date) == f"{date}: invalid YAML (month must be in 1..12)"


BAD_WEIGHTS = [
    ({"bn.var": None}, "weights: missing key 'bn.var' (shape [4])"),
    ({"lif.tau": np.ones(4)},
     "weights: op 'lif' (lif): unexpected tensor 'tau' (allowed: beta, threshold, gain, bias)"),
    ({"fc.weight": np.ones(4)}, "weights: key 'fc.weight' names no layer (keys are 'layer.tensor')"),
    ({"conv.weight": np.ones((4, 3, 3, 3))},
     "weights: op 'conv' (conv2d): tensor 'weight' has shape [4, 3, 3, 3], expected [4, 2, 3, 3]"),
    ({"lif.beta": np.ones((4, 2, 1))},
     "weights: op 'lif' (lif): tensor 'beta' has shape [4, 2, 1], expected one broadcastable to [4, 6, 6]"),
    ({"bn.mean": np.array(["a"] * 4)}, "weights: key 'bn.mean': must be a numeric array, got dtype <U1"),
]


@pytest.mark.parametrize("extra, message", BAD_WEIGHTS, ids=[m.split(":")[1].strip() for _, m in BAD_WEIGHTS])
def test_bad_weights_npz(tmp_path, extra, message):
    _save_small_weights(tmp_path, **extra)
    path = _write(tmp_path, "weights: w.npz\n" + SMALL)
    assert _error(path) == f"{path}: {message}"


def test_weights_file_missing_or_not_npz(tmp_path):
    path = _write(tmp_path, "weights: w.npz\n" + SMALL)
    assert _error(path) == f"{path}: weights: file not found: {tmp_path / 'w.npz'}"
    (tmp_path / "w.npz").write_text("not a zip")
    assert _error(path) == f"{path}: weights: {tmp_path / 'w.npz'} is not an .npz archive of numeric arrays"
    np.save(tmp_path / "a.npy", np.ones(3))
    (tmp_path / "a.npy").rename(tmp_path / "w.npz")
    assert _error(path) == f"{path}: weights: {tmp_path / 'w.npz'} is not an .npz archive of numeric arrays"
    bad = _write(tmp_path, "weights: 3\n" + SMALL, "bad.yaml")
    assert _error(bad) == f"{bad}: weights: must be a non-empty string, got 3"


# ---- the doc --------------------------------------------------------------------------------

def _doc_default(p) -> str:
    return "required" if p.required else f"`{json.dumps(canonical_value(p.default))}`"


def test_doc_lists_every_op_kind_and_parameter():
    text = DOC.read_text()
    sections = dict(re.findall(r"^### `(\w+)`\n(.*?)(?=^#)", text, re.M | re.S))
    assert sorted(sections) == sorted(KINDS)
    for kind, spec in KINDS.items():
        rows = re.findall(r"^\| `(\w+)` \| (\w+) \| ([^|]+?) \|", sections[kind], re.M)
        assert rows == [(p.name, p.type, _doc_default(p)) for p in spec.params], kind


def test_doc_example_is_the_tiny_resnet_file():
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert (EXAMPLES / "tiny_resnet.yaml").read_text() in blocks
