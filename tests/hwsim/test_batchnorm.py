"""Batch-norm in a training step: batch statistics per step (`stats: batch`, torch BatchNorm2d in
train mode at every step) or over all steps (`batch_time`, SpikingJelly's multi-step BatchNorm2d on
[T*B, C, H, W]); gradients and running statistics against torch, determinism, the cost walk's
reductions, and training beside a torch twin."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeforge.compiler.driver import compile_model
from spikeforge.compiler.frontends.init import init_tensors
from spikeforge.compiler.frontends.zoo import build
from spikeforge.hwsim.functional import Simulator, new_stats, run
from spikeforge.isa import Graph, Op, SpikeforgeError
from spikeforge.isa.activity import count
from spikeforge.isa.text import from_text, to_text
from spikeforge.training import Dataset, load_dataset, train

EXAMPLE = Path(__file__).parents[2] / "examples" / "train_digits.py"
STATS = ["batch", "batch_time"]


def _example():
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _random_bn(graph: Graph, stats: str, seed: int = 0) -> Graph:
    """Every batch-norm with statistics `stats` and random gamma, beta and running statistics."""
    rng = np.random.default_rng(seed)
    for op in graph:
        if op.kind == "batchnorm":
            op.params["stats"] = stats
            for k, w in op.tensors.items():
                w[...] = rng.uniform(0.5, 1.5, w.shape) if k in ("gamma", "var") else rng.normal(0, 0.3, w.shape)
    return graph


def _against_torch(graph: Graph, x: np.ndarray, labels: np.ndarray) -> dict:
    """One training step of the simulator and of the torch twin on the same tensors: the largest
    difference of every gradient and running statistic, relative to the largest torch value."""
    res = run(Simulator(graph), {graph.inputs[0].name: x}, labels, True, chunk=1)
    params, running, forward = _example().twin(graph)
    loss = F.cross_entropy(forward(torch.from_numpy(x)).mean(0), torch.from_numpy(labels))
    loss.backward()
    assert res.loss == pytest.approx(loss.item(), rel=1e-5)
    named = [(op.name, k) for op in graph for k in op.tensors if k in ("weight", "bias", "gamma", "beta")]
    assert set(res.grads) == set(named)
    out = {}
    for key, p in [*zip(named, (p.grad for p in params)), *running.items()]:
        ref = p.detach().numpy()
        mine = (res.grads if key in res.grads else res.running)[key].reshape(ref.shape)
        out[key] = float(np.abs(mine - ref).max() / np.abs(ref).max())
    return out


def _bn_net(stats: str) -> Graph:
    """conv (3x3, 2 -> 4 channels) + batch-norm + LIF + linear readout, random batch-norm tensors."""
    ops = [Op("x", "input", params={"shape": [2, 6, 6]}),
           Op("conv", "conv2d", ("x",), {"out_channels": 4, "kernel": 3, "padding": 1, "bias": False}),
           Op("bn", "batchnorm", ("conv",)), Op("lif", "lif", ("bn",)), Op("flat", "flatten", ("lif",)),
           Op("fc", "linear", ("flat",), {"out_features": 5}), Op("out", "output", ("fc",))]
    return _random_bn(init_tensors(Graph.build("bn_net", ops), seed=3), stats)


@pytest.mark.parametrize("stats", STATS)
def test_conv_bn_lif_gradients_and_running_statistics_equal_torch(stats):
    g = _bn_net(stats)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (4, 6, 2, 6, 6)).astype(np.float32)  # T = 4, B = 6, a new image each step
    diff = _against_torch(g, x, rng.integers(0, 5, 6))
    assert max(diff.values()) < 1e-4, diff
    assert diff[("bn", "mean")] < 1e-6 and diff[("bn", "var")] < 1e-6  # momentum, unbiased variance


def _resnet18_first_block(stats: str) -> Graph:
    """The zoo's resnet18 from its input through the first BasicBlock (stem conv + batch-norm +
    LIF, max pool, conv + bn + LIF, conv + bn, residual add, LIF) with its weights, on 3x32x32
    images, then an average pool and a 64 -> 10 linear readout."""
    zoo = build("resnet18", seed=0)
    names = [op.name for op in zoo]
    ops = [Op("input", "input", params={"shape": [3, 32, 32]})]
    ops += [Op(op.name, op.kind, op.inputs, dict(op.params), {k: w.copy() for k, w in op.tensors.items()})
            for op in zoo.ops[1:names.index("layer1.0.lif2") + 1]]
    ops += [Op("avgpool", "pool2d", ("layer1.0.lif2",), {"mode": "avg", "kernel": 8}),
            Op("flatten", "flatten", ("avgpool",)), Op("fc", "linear", ("flatten",), {"out_features": 10}),
            Op("output", "output", ("fc",))]
    return _random_bn(init_tensors(Graph.build("resnet18_block", ops), seed=0), stats)


@pytest.mark.parametrize("stats", STATS)
def test_resnet18_first_block_gradients_equal_torch(stats):
    g = _resnet18_first_block(stats)
    assert [op.kind for op in g][:12] == ["input", "conv2d", "batchnorm", "lif", "pool2d", "conv2d", "batchnorm",
                                          "lif", "conv2d", "batchnorm", "add", "lif"]
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (3, 4, 3, 32, 32)).astype(np.float32)  # T = 3, B = 4
    diff = _against_torch(g, x, np.array([0, 3, 5, 9]))
    assert len(diff) == 17 and max(diff.values()) < 1e-4, diff  # 3 convs, 3 x (gamma, beta, mean, var), fc weight, bias


def test_batch_norm_kernels_equal_torch_with_the_input_gradient():
    """bn_forward / bn_backward on a whole batch against torch's batch_norm in train mode:
    output, input gradient, gamma and beta gradients, per step and over time."""
    for stats in STATS:
        ops = [Op("x", "input", params={"shape": [3, 5, 4]}), Op("bn", "batchnorm", ("x",)), Op("o", "output", ("bn",))]
        g = _random_bn(init_tensors(Graph.build("bn", ops)), stats)
        op, rng = g["bn"], np.random.default_rng(4)
        T, B = 3, 4
        vals = {"x": rng.normal(1, 2, (T, B, 3, 5, 4)).astype(np.float32), "bn": np.empty((T, B, 3, 5, 4), np.float32)}
        go = rng.normal(0, 1, vals["x"].shape).astype(np.float32)
        sim, st, grads = Simulator(g), new_stats(g, B, T, True)["bn"], {}
        saved = sim.bn_forward(op, vals, st, {}, lambda f, items: list(map(f, items)))
        gx = sim.bn_backward(op, vals, go, st, saved, grads, lambda f, items: list(map(f, items)))
        xt = torch.tensor(vals["x"], requires_grad=True)
        gamma, beta = (torch.tensor(op.tensors[k], requires_grad=True) for k in ("gamma", "beta"))
        bn = lambda v: F.batch_norm(v, None, None, gamma, beta, True, 0.1, op.params["eps"])  # noqa: E731
        y = bn(xt.flatten(0, 1)).unflatten(0, (T, B)) if stats == "batch_time" else torch.stack([bn(v) for v in xt])
        y.backward(torch.from_numpy(go))
        for mine, ref in ((vals["bn"], y), (gx, xt.grad), (grads["bn", "gamma"], gamma.grad),
                          (grads["bn", "beta"], beta.grad)):
            ref = ref.detach().numpy()
            assert np.abs(mine - ref).max() < 1e-5 * np.abs(ref).max(), stats
        assert st.out_nonzero.sum() == vals["bn"].size and st.grad_nonzero.sum() == go.size


def test_batch_statistics_are_deterministic_and_independent_of_threads(monkeypatch):
    import numba

    g = _resnet18_first_block("batch")
    x = np.random.default_rng(5).uniform(0, 1, (2, 4, 3, 32, 32)).astype(np.float32)
    labels = np.array([1, 2, 3, 4])
    runs = []
    for threads in (2, 2, 1, 3):  # the samples' and channels' threads
        monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", threads)
        runs.append(run(Simulator(g), {"input": x}, labels, True, chunk=1))
    a = runs[0]
    for b in runs[1:]:
        assert a.loss == b.loss and a.grads.keys() == b.grads.keys()
        assert all(np.array_equal(a.grads[k], b.grads[k]) for k in a.grads)
        assert all(np.array_equal(a.running[k], b.running[k]) for k in a.running)
        assert all(np.array_equal(a.stats[n].grad_nonzero, b.stats[n].grad_nonzero) for n in a.stats)
    whole = run(Simulator(g), {"input": x}, labels, True)  # one chunk: the same statistics and spikes
    assert whole.loss == pytest.approx(a.loss, rel=1e-6)
    for k in a.grads:  # the weight gradients' sums in another order (3.2e-6 at most, conv1)
        assert np.abs(a.grads[k] - whole.grads[k]).max() <= 1e-5 * np.abs(a.grads[k]).max(), k
    assert all(np.array_equal(a.stats[n].out_nonzero, whole.stats[n].out_nonzero) for n in a.stats)
    half = run(Simulator(g, fp16=True), {"input": x}, labels, True, chunk=3, record=True).values["bn1"]
    assert np.array_equal(half, half.astype(np.float16).astype(np.float32))  # stored in FP16


def test_running_statistics_and_inference():
    """`running` normalises a training step with the running statistics and leaves them; inference
    always uses them; a step with batch statistics of one value per channel is an error."""
    g = _bn_net("running")
    x = np.random.default_rng(6).uniform(0, 1, (2, 3, 2, 6, 6)).astype(np.float32)
    res = run(Simulator(g), {"x": x}, np.array([0, 1, 2]), True)
    assert res.running == {}
    g = _bn_net("batch")
    inference = run(Simulator(g), {"x": x}, np.array([0, 1, 2]), False, record=True)
    frozen = run(Simulator(_bn_net("running")), {"x": x}, np.array([0, 1, 2]), True, record=True)
    assert np.array_equal(inference.values["bn"], frozen.values["bn"])
    one = Graph.build("one", [Op("x", "input", params={"shape": [4]}), Op("bn", "batchnorm", ("x",)),
                              Op("o", "output", ("bn",))])
    with pytest.raises(SpikeforgeError, match="more than one value per channel, got 1 .B = 1."):
        run(Simulator(init_tensors(one)), {"x": np.ones((2, 1, 4), np.float32)}, np.array([0]), True)
    one["bn"].params["stats"] = "batch_time"  # 2 steps x 1 sample
    r = run(Simulator(init_tensors(one)), {"x": np.ones((2, 1, 4), np.float32)}, np.array([0]), True).running
    # from mean 0, var 1: momentum 0.1 towards the batch's mean 1 and unbiased variance 0
    assert np.allclose(r["bn", "mean"], 0.1) and np.allclose(r["bn", "var"], 0.9)


def test_ir_params_round_trip_and_errors():
    g = _bn_net("batch_time")
    g["bn"].params["momentum"] = 0.25
    text = to_text(g)
    assert 'stats = "batch_time", momentum = 0.25' in text and from_text(text) == g
    for params, msg in (({"stats": "train"}, "stats: must be 'batch' or 'batch_time' or 'running'"),
                        ({"momentum": 1.5}, "momentum must be at most 1")):
        with pytest.raises(SpikeforgeError, match=msg):
            Graph.build("b", [Op("x", "input", params={"shape": [2, 3]}), Op("bn", "batchnorm", ("x",), params)])


def test_cost_walk_counts_the_reductions():
    """A training step's batch-norm with batch statistics costs 3 element ops per value in FP (the
    sums of x and x^2, the normalisation) and in BP (the sums of the error and error * x^, the input
    gradient), and reads its values twice in FP, four times in BP; with running statistics 1."""
    counted = {}
    for stats in ("batch", "running"):
        g = _bn_net(stats)
        c = compile_model(g, "default", training=True, timesteps=2, batch=3)
        a = count(c.program, g, c.arch)
        counted[stats] = a.layers["bn"]
    size = 4 * 6 * 6 * 2 * 3  # values x T x B
    assert counted["running"].ops["elem"] == 2 * size
    assert counted["batch"].ops["elem"] == 6 * size
    read = lambda c: sum(c.sram_read_bits.values())  # noqa: E731
    assert read(counted["batch"]) == 3 * read(counted["running"])  # (2 + 4) / (1 + 1)


def test_training_a_conv_bn_model_matches_its_torch_twin():
    mod = _example()
    d = load_dataset("digits", seed=0)
    small = Dataset("digits", d.x_train[:320], d.y_train[:320], d.x_test[:200], d.y_test[:200])
    hp = dict(epochs=2, batch=32, timesteps=4, lr=0.1, seed=0)
    g = mod.model(mod.CONV, 0)
    chip = train(g, small, fp16=False, **hp)  # the 64 pixels of a digit as a 1x8x8 image
    ref = mod.train_torch(mod.model(mod.CONV, 0), small, **hp)
    accs = [e.test_acc for e in chip.epochs]
    assert chip.epochs[1].loss < chip.epochs[0].loss and accs[1] > 0.7  # chance is 0.1
    assert np.allclose(accs, ref["test_acc"], atol=2 / 200)  # within 1 point
    assert np.abs(g["bn"].tensors["mean"]).min() > 0  # the running statistics followed the batches


def test_batch_statistics_in_a_recurrent_loop_are_one_error():
    """A batch-norm with batch statistics between a delay and the op it repeats: an error naming
    both; with running statistics, or outside the loop, the step runs."""
    def rnn(stats: str, inside: bool) -> Graph:
        ops = [Op("x", "input", params={"shape": [4]}),
               Op("fc", "linear", ("x",), {"out_features": 3}),
               Op("rec", "linear", ("prev",), {"out_features": 3, "bias": False}),
               Op("add", "add", ("fc", "rec")),
               Op("bn", "batchnorm", ("add" if inside else "x2",), {"stats": stats}),
               Op("lif", "lif", ("bn" if inside else "add",)),
               Op("prev", "delay", ("lif",), {"shape": [3]}),
               Op("x2", "linear", ("lif",), {"out_features": 3}),
               Op("o", "output", ("bn" if not inside else "x2",))]
        if not inside:  # bn after the loop: reads x2, which reads the loop's spikes
            ops = ops[:4] + [ops[5], ops[6], ops[7], ops[4], ops[8]]
        return init_tensors(Graph.build("rnn", ops))

    x = np.random.default_rng(0).uniform(0, 1, (3, 4, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 0])
    with pytest.raises(SpikeforgeError, match=r"op 'bn' \(batchnorm, stats batch\) is in the recurrent loop of "
                                              r"'prev' \(delay\).*use stats: running"):
        run(Simulator(rnn("batch", True)), {"x": x}, labels, True)
    assert run(Simulator(rnn("running", True)), {"x": x}, labels, True).loss > 0
    assert run(Simulator(rnn("batch", False)), {"x": x}, labels, True).running


def test_a_delay_across_a_batch_norm_and_a_branch_without_error_train_as_torch():
    """A delay of a value computed before a batch-norm with batch statistics, read after it (no loop
    through the batch-norm): spikes and gradients as a torch twin; a second output's batch-norm,
    which no error reaches, gets zero gradients."""
    import snntorch as snn

    ops = [Op("x", "input", params={"shape": [4]}),
           Op("fc", "linear", ("x",), {"out_features": 3}),
           Op("bn", "batchnorm", ("fc",)),
           Op("prev", "delay", ("fc",), {"shape": [3], "spikes": False}),
           Op("rec", "linear", ("prev",), {"out_features": 3, "bias": False}),
           Op("add", "add", ("bn", "rec")),
           Op("lif", "lif", ("add",)),
           Op("out", "linear", ("lif",), {"out_features": 3}),
           Op("side", "batchnorm", ("fc",)),
           Op("o", "output", ("out",)), Op("o2", "output", ("side",))]
    g = _random_bn(init_tensors(Graph.build("cross", ops), seed=3), "batch")
    rng = np.random.default_rng(7)
    x, labels = rng.uniform(0, 2, (4, 5, 4)).astype(np.float32), np.array([0, 1, 2, 0, 1])
    res = run(Simulator(g), {"x": x}, labels, True, record=True)

    P = {(op.name, k): torch.tensor(v, requires_grad=k in ("weight", "bias", "gamma", "beta"))
         for op in g for k, v in op.tensors.items()}
    lif, u, prev, logits, spikes = snn.Leaky(beta=0.9), None, None, [], []
    for t in range(len(x)):
        fc = F.linear(torch.from_numpy(x[t]), P["fc", "weight"], P["fc", "bias"])
        bn = F.batch_norm(fc, None, None, P["bn", "gamma"], P["bn", "beta"], True, 0.1, 1e-5)
        rec = F.linear(prev, P["rec", "weight"]) if prev is not None else torch.zeros_like(fc)
        u = lif.init_leaky() if u is None else u
        s, u = lif(bn + rec, u)
        spikes.append(s)
        logits.append(F.linear(s, P["out", "weight"], P["out", "bias"]))
        prev = fc
    loss = F.cross_entropy(torch.stack(logits).mean(0), torch.from_numpy(labels))
    loss.backward()
    assert np.array_equal(res.values["lif"], torch.stack(spikes).detach().numpy())
    assert 0 < res.values["lif"].mean() < 1
    assert res.loss == pytest.approx(loss.item(), rel=1e-5)
    for key in (("fc", "weight"), ("fc", "bias"), ("rec", "weight"), ("bn", "gamma"), ("bn", "beta"),
                ("out", "weight")):
        ref = P[key].grad.numpy()
        assert np.abs(res.grads[key] - ref).max() <= 1e-5 * np.abs(ref).max(), key
    assert not res.grads["side", "gamma"].any() and not res.grads["side", "beta"].any()


def test_simulate_and_on_chip_steps_store_the_running_statistics():
    """A simulated training step (FP16 chip) leaves the step's running statistics in the graph, as
    the functional result gives them, rounded to FP16 by the chip's store; so does OnChip.step."""
    from spikeforge.hwsim.optim import make_optimizer, store_fp16
    from spikeforge.hwsim.simulate import OnChip, functional_step, simulate

    x = np.random.default_rng(8).uniform(0, 1, (2, 3, 2, 6, 6)).astype(np.float32)
    labels = np.array([0, 1, 2])
    g = _bn_net("batch")
    want = functional_step(g, x, True, "fp16", labels).running
    c = compile_model(g, "default", training=True, timesteps=2, batch=3)
    simulate(g, c.program, c.arch, x, labels)
    for k in ("mean", "var"):
        assert np.array_equal(g["bn"].tensors[k], want["bn", k])
        assert not np.array_equal(want["bn", k], _bn_net("batch")["bn"].tensors[k])
    g = _bn_net("batch")
    store_fp16(g)  # what OnChip does first on an FP16 chip
    want = functional_step(g, x, True, "fp16", labels).running
    OnChip(g, c.program, c.arch, make_optimizer("sgd", None)).step(x, labels)
    for k in ("mean", "var"):
        assert np.array_equal(g["bn"].tensors[k], want["bn", k].astype(np.float16).astype(np.float32))
