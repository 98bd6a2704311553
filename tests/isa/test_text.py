import numpy as np
import pytest

from spikeforge.compiler.frontends.init import init_tensors
from spikeforge.isa import Graph, Op, SpikeforgeError
from spikeforge.isa.text import from_text, to_text


def _small():
    g = Graph.build("small net", [
        Op("x", "input", (), {"shape": [2, 6, 6], "encoding": "rate"}),
        Op("c", "conv2d", ("x",), {"out_channels": 4, "kernel": 3, "padding": 1, "bias": False}),
        Op("bn", "batchnorm", ("c",)),
        Op("n1", "lif", ("bn",), {"beta": 0.25, "threshold": 0.5, "reset": "zero"},
           {"beta": np.linspace(0.1, 0.9, 4, dtype=np.float32).reshape(4, 1, 1)}),
        Op("p", "pool2d", ("n1",), {"mode": "avg", "kernel": 2}),
        Op("sk", "pool2d", ("x",), {"mode": "sum", "kernel": [2, 2], "stride": [2, 2]}),
        Op("sc", "conv2d", ("sk",), {"out_channels": 4, "kernel": 1}),
        Op("res", "add", ("p", "sc")),
        Op("n2", "cubalif", ("res",), {"alpha": 0.3}),
        Op("f", "flatten", ("n2",)),
        Op("weird name/1", "linear", ("f",), {"out_features": 3}),
        Op("ro", "li", ("weird name/1",), {"beta": 1.0 / 3.0}),
        Op("out", "output", ("ro",)),
    ])
    return init_tensors(g, seed=7)


def test_text_round_trip_with_weights_is_exact():
    g = _small()
    text = to_text(g)
    back = from_text(text)
    assert back == g
    assert to_text(back) == text
    assert back["ro"].params["beta"] == 1.0 / 3.0
    assert np.array_equal(back["n1"].tensors["beta"], g["n1"].tensors["beta"])


def test_text_without_weights_round_trips_the_structure():
    g = _small()
    back = from_text(to_text(g, weights=False))
    assert back == g.structure() and back != g


def test_graphs_with_different_weights_are_not_equal():
    assert init_tensors(_small().structure(), 1) != init_tensors(_small().structure(), 2)


@pytest.mark.parametrize("text, message", [
    ('graph "g" { %x = input() {shape = [3]}; %y = lif(%x) ', "line 1 column"),
    ('graph "g" { %x = input() {shape = [3]}; %y = lif(%z); }', "op 'y': input 'z' is not defined"),
    ('graph "g" { %x = input() {shape = [3]}; %y = lif(%x) {beta = "a"}; }', "op 'y'.beta: must be a (finite) number"),
    ('graph "g" { %x = input() {shape = [2]}; %y = linear(%x) {out_features = 1} with weight: [1, 2] b64"AAAAAA=="; }',
     "tensor 'weight' holds 1 values, its shape [1, 2] needs 2"),
    ("", "syntax error"),
])
def test_text_errors_are_one_clear_line(text, message):
    with pytest.raises(SpikeforgeError) as e:
        from_text(text, "m.sfir")
    assert message in str(e.value) and str(e.value).startswith("m.sfir: ")
