"""The weight update (hwsim/optim.py): SGD is w -= lr * g, and Adam follows torch.optim.Adam
step after step on the same gradients, for weights, biases and batch-norm parameters."""

import numpy as np
import pytest
import torch

from spikeforge.compiler.frontends.yaml_reader import graph_from_doc
from spikeforge.hwsim.functional import Simulator, run
from spikeforge.hwsim.optim import DEFAULT_LR, SGD, Adam, make_optimizer
from spikeforge.hwsim.simulate import make_input
from spikeforge.isa import SpikeforgeError

NET = {"name": "optim_net", "input": {"shape": [2, 6, 6], "encoding": "direct"}, "seed": 0,
       "layers": [{"conv2d": {"out_channels": 4, "kernel": 3, "padding": 1}, "name": "conv"},
                  {"batchnorm": None, "name": "bn"},
                  {"lif": {"beta": 0.9, "threshold": 0.5}, "name": "lif"},
                  {"flatten": None, "name": "flat"},
                  {"linear": {"out_features": 5}, "name": "fc"},
                  {"li": {"beta": 0.9}, "name": "out"}]}


def _grads(graph, step: int) -> dict:
    """The simulator's gradients of one training step at the graph's current weights."""
    x = make_input(graph, 3, 4, None, seed=step)
    labels = np.arange(4) % 5
    return run(Simulator(graph), {graph.inputs[0].name: x}, labels, True).grads


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_equals_torch_adam_over_steps(weight_decay):
    graph = graph_from_doc(NET, "optim_net")
    opt = Adam(lr=0.01, weight_decay=weight_decay)
    first = _grads(graph, 0)
    keys = sorted(first)
    assert {len(graph[n].tensors[t].shape) for n, t in keys} == {1, 2, 4}  # biases, BN, fc and conv weights
    params = {k: torch.nn.Parameter(torch.from_numpy(graph[k[0]].tensors[k[1]].copy())) for k in keys}
    ref = torch.optim.Adam(params.values(), lr=0.01, weight_decay=weight_decay)
    worst = 0.0
    grads = first
    for step in range(5):
        for k in keys:
            params[k].grad = torch.from_numpy(grads[k].reshape(params[k].shape).copy())
        ref.step()
        assert opt.step(graph, grads) == sum(p.numel() for p in params.values())
        for k in keys:
            ours, theirs = graph[k[0]].tensors[k[1]], params[k].detach().numpy()
            worst = max(worst, float(np.abs(ours - theirs).max()))
            # the state too, to FP32 rounding of its terms (torch's kernels fuse multiply-adds)
            for ours_s, name in ((opt.m[k], "exp_avg"), (opt.v[k], "exp_avg_sq")):
                theirs_s = ref.state[params[k]][name].numpy()
                assert np.abs(ours_s - theirs_s).max() <= 1e-6 * np.abs(theirs_s).max(), (k, name)
        grads = _grads(graph, step + 1)  # the next step's gradients at the updated weights
    assert opt.t == 5
    # weights of magnitude ~0.1-1 moved by ~lr per step; they agree to FP32 rounding
    assert worst <= 1e-6
    moved = max(float(np.abs(graph[k[0]].tensors[k[1]] - graph_from_doc(NET, "optim_net")[k[0]].tensors[k[1]]).max())
                for k in keys)
    assert moved > 100 * 1e-6  # the test sees the updates, not only the starting weights


def test_sgd_is_w_minus_lr_g():
    graph = graph_from_doc(NET, "optim_net")
    before = {k: v.copy() for k, v in graph["fc"].tensors.items()}
    grads = _grads(graph, 0)
    SGD(lr=0.25).step(graph, grads)
    for t, w in before.items():
        expect = w - np.float32(0.25) * grads[("fc", t)].reshape(w.shape)
        assert np.array_equal(graph["fc"].tensors[t], expect)


def test_make_optimizer_defaults_and_errors():
    assert make_optimizer("sgd").lr == DEFAULT_LR["sgd"] == 0.1
    assert isinstance(make_optimizer("adam"), Adam) and make_optimizer("adam").lr == 1e-3
    with pytest.raises(SpikeforgeError, match="optimizer: must be one of sgd, adam, got 'rmsprop'"):
        make_optimizer("rmsprop")
    with pytest.raises(SpikeforgeError, match="lr: must be positive"):
        make_optimizer("adam", 0.0)
