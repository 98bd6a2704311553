import numpy as np
import pytest

from spikeforge.isa import Graph, Op, SpikeforgeError


def _g(*ops):
    return Graph.build("t", list(ops))


def _inp(shape, enc="direct"):
    return Op("x", "input", (), {"shape": shape, "encoding": enc})


def test_conv2d_shape_and_work_follow_the_formula():
    g = _g(_inp([6, 33, 20]),
           Op("c", "conv2d", ("x",), {"out_channels": 12, "kernel": [5, 3], "stride": 2,
                                       "padding": [2, 0], "dilation": [1, 2], "groups": 3}))
    c = g["c"]
    # H: (33 + 4 - 4 - 1)//2 + 1 = 17 ; W: (20 + 0 - 2*2 - 1)//2 + 1 = 8
    assert c.type.shape == (12, 17, 8) and c.type.kind == "real"
    li = {l.name: l for l in g.layers()}["c"]
    assert li.params == 12 * 2 * 5 * 3 + 12
    assert li.work.syn_ops == 12 * 17 * 8 * (6 // 3) * 5 * 3
    assert li.work.arith == "MAC"


def test_spike_input_costs_accumulates_real_input_multiply_accumulates():
    g = _g(_inp([100], "rate"), Op("fc", "linear", ("x",), {"out_features": 7}),
           Op("n", "lif", ("fc",)), Op("fc2", "linear", ("n",), {"out_features": 3, "bias": False}))
    layers = {l.name: l for l in g.layers()}
    assert (layers["fc"].work.syn_ops, layers["fc"].work.arith) == (700, "AC")
    assert layers["fc2"].work.arith == "AC" and layers["fc2"].params == 21
    g2 = _g(_inp([100]), Op("fc", "linear", ("x",), {"out_features": 7}))
    assert {l.name: l for l in g2.layers()}["fc"].work.arith == "MAC"
    assert g.param_count() == 707 + 21


def test_types_of_pooling_neurons_and_masks():
    g = _g(_inp([4, 8, 8], "events"),
           Op("mp", "pool2d", ("x",), {"mode": "max", "kernel": 2}),
           Op("sp", "pool2d", ("x",), {"mode": "sum", "kernel": 2, "stride": 2}),
           Op("n", "if", ("sp",)), Op("m", "mul", ("mp", "n")),
           Op("s", "sum", ("m",), {"axis": 1}), Op("f", "flatten", ("m",), {"start_dim": 1}),
           Op("r", "li", ("f",)))
    assert str(g["mp"].type) == "spike[4,4,4]" and str(g["sp"].type) == "real[4,4,4]"
    assert str(g["m"].type) == "spike[4,4,4]" and str(g["s"].type) == "real[4,1,4]"
    assert str(g["f"].type) == "spike[4,16]" and str(g["r"].type) == "real[4,16]"
    assert [o.name for o in g.outputs] == ["s", "r"]


def test_ops_are_ordered_topologically_whatever_the_given_order():
    g = _g(Op("n", "lif", ("fc",)), Op("fc", "linear", ("x",), {"out_features": 2}), _inp([3]))
    assert [o.name for o in g] == ["x", "fc", "n"]


def test_a_delay_closes_a_cycle_and_reads_spikes_into_an_accumulating_layer():
    """rec reads the previous step of n: the delay's edge does not order it, so it precedes n."""
    g = _g(_inp([5]), Op("fc", "linear", ("x",), {"out_features": 4}), Op("a", "add", ("fc", "rec")),
           Op("n", "lif", ("a",)), Op("prev", "delay", ("n",), {"shape": [4]}),
           Op("rec", "linear", ("prev",), {"out_features": 4, "bias": False}))
    assert [o.name for o in g] == ["x", "fc", "prev", "rec", "a", "n"]
    assert str(g["prev"].type) == "spike[4]" and g["prev"].params["spikes"] is True
    layers = {l.name: l for l in g.layers()}
    assert (layers["rec"].work.syn_ops, layers["rec"].work.arith, layers["rec"].params) == (16, "AC", 16)
    assert layers["prev"].work.syn_ops == layers["prev"].params == 0
    assert [o.name for o in g.outputs] == ["n"]


def test_per_neuron_coefficients_must_broadcast_to_the_output():
    ok = _g(_inp([2, 3]), Op("n", "lif", ("x",), {}, {"beta": np.full((2, 1), 0.5)}))
    assert ok["n"].coef("beta").shape == (2, 1) and ok["n"].coef("threshold") == 1.0
    with pytest.raises(SpikeforgeError, match=r"op 'n' \(lif\): tensor 'beta' has shape \[3, 1\]"):
        _g(_inp([2, 3]), Op("n", "lif", ("x",), {}, {"beta": np.ones((3, 1))}))


@pytest.mark.parametrize("ops, message", [
    ([], "model has no layers"),
    ([Op("x", "input", (), {"shape": [3]}), Op("x", "lif", ("x",))], "op 'x': duplicate name"),
    ([Op("x", "input", (), {"shape": [3]}), Op("y", "softmax", ("x",))], "op 'y': unknown op kind 'softmax'"),
    ([Op("x", "input", (), {"shape": [3]}), Op("y", "lif", ("z",))], "op 'y': input 'z' is not defined"),
    ([Op("x", "input", (), {"shape": [3]}), Op("a", "add", ("x", "b")), Op("b", "lif", ("a",))],
     "graph has a cycle through this op"),
    ([Op("x", "input", (), {"shape": [3]}), Op("a", "add", ("x", "d")), Op("b", "lif", ("a",)),
      Op("d", "delay", ("b",), {"shape": [3], "spikes": False})],
     "op 'd' (delay): declares real[3], but its input 'b' is spike[3]"),
    ([Op("x", "input", (), {"shape": [3]}), Op("b", "lif", ("x",)), Op("d", "delay", ("b",), {"shape": [3]})],
     "op 'd' (delay): no op reads it"),
    ([Op("x", "input", (), {"shape": [3]}), Op("a", "add", ("x", "d1")), Op("d1", "delay", ("d2",), {"shape": [3]}),
      Op("d2", "delay", ("d1",), {"shape": [3]})], "op 'd1' (delay): a cycle of delays only"),
    ([Op("x", "input", (), {"shape": [3]}), Op("a", "add", ("x",))], "takes at least 2 input(s), got 1"),
    ([Op("x", "input", (), {"shape": [3, 4, 4]}), Op("c", "conv2d", ("x",), {"out_channels": 2, "kernel": 5})],
     "op 'c' (conv2d): kernel 5 (dilation 1, padding 0) does not fit input height 4"),
    ([Op("x", "input", (), {"shape": [3, 4, 4]}), Op("c", "conv2d", ("x",), {"out_channels": 2, "kernel": -1})],
     "op 'c'.kernel: must be a positive int or a pair of positive ints, got -1"),
    ([Op("x", "input", (), {"shape": [3, 4, 4]}), Op("c", "conv2d", ("x",), {"kernel": 1})],
     "op 'c'.out_channels: missing required parameter"),
    ([Op("x", "input", (), {"shape": [3, 4, 4]}), Op("c", "conv2d", ("x",), {"out_channels": 2, "kernel": 1, "groups": 2})],
     "groups=2 must divide input channels 3"),
    ([Op("x", "input", (), {"shape": [12]}), Op("r", "reshape", ("x",), {"shape": [5, 2]})],
     "cannot reshape real[12] (12 elements) to [5, 2]"),
    ([Op("x", "input", (), {"shape": [4]}), Op("y", "input", (), {"shape": [5]}), Op("a", "add", ("x", "y"))],
     "op 'a' (add): inputs differ in shape: real[4], real[5]"),
    ([Op("x", "input", (), {"shape": [4]}), Op("f", "linear", ("x",), {"out_features": 2}, {"weight": np.ones((2, 5))})],
     "op 'f' (linear): tensor 'weight' has shape [2, 5], expected [2, 4]"),
    ([Op("x", "input", (), {"shape": [4]}), Op("f", "linear", ("x",), {"out_features": 2, "bais": True})],
     "op 'f'.bais: unknown parameter"),
    ([Op("x", "lif", ())], "takes 1 input(s), got 0"),
])
def test_bad_graphs_name_the_op_and_the_problem(ops, message):
    with pytest.raises(SpikeforgeError) as e:
        Graph.build("t", ops, "m.yaml")
    assert message in str(e.value)
    assert str(e.value).startswith("m.yaml: ")
