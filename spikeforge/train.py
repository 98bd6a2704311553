"""On-chip training on a dataset: every step runs the simulator's FP, BP and WG engines on real
samples, applies the update (SGD, or Adam with its state kept from step to step), and walks
the compiled program for that step's energy, latency, DRAM traffic and measured sparsity."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.isa.arch import load_arch

DATASETS = ("digits", "digits_rows")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # [N, *input] float32, or [N, steps, *input] for a sequence
    y_train: np.ndarray  # [N] int
    x_test: np.ndarray
    y_test: np.ndarray
    steps: int = 0  # a sequence: one frame per time step, `steps` of them; 0: the sample at every step

    @property
    def frame(self) -> tuple[int, ...]:
        """The shape the model's input sees at each step."""
        return tuple(self.x_train.shape[2 if self.steps else 1:])


@dataclass
class EpochLog:
    """One epoch: the mean loss and accuracy of its training steps, the test accuracy after it,
    and the chip's figures per training step (means over the epoch's steps)."""

    epoch: int
    loss: float
    train_acc: float
    test_acc: float
    energy_pj: float
    latency_s: float
    dram_bytes: float
    spike_rate: float  # spikes / (spike-valued elements x T x B)
    grad_nonzero: float  # non-zero errors / (elements x T x B)
    op_sparsity: float  # 1 - synaptic ops done / dense synaptic ops (FP + BP + WG)
    wall_s: float


@dataclass
class TrainResult:
    model: str
    arch: str
    arithmetic: str
    dataset: str
    timesteps: int
    batch: int
    optimizer: str
    lr: float
    seed: int
    steps_per_epoch: int
    epochs: list[EpochLog] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def load_dataset(name: str, seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """A dataset shipped offline, split into train and test by `seed` (stratified). `digits`:
    scikit-learn's 1,797 8x8 digit images, pixels scaled to [0, 1], 64 inputs, 10 classes.
    `digits_rows`: the same images and split as sequences of their 8 rows, one row (8 inputs)
    per time step: a task for recurrent models."""
    if name not in DATASETS:
        raise SpikeforgeError(f"--dataset: unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=test_fraction, random_state=seed, stratify=d.target)
    if name == "digits_rows":
        return Dataset(name, xtr.reshape(-1, 8, 8), ytr.astype(np.int64), xte.reshape(-1, 8, 8), yte.astype(np.int64), 8)
    return Dataset(name, xtr, ytr.astype(np.int64), xte, yte.astype(np.int64))


def epoch_batches(n: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffled epoch in full batches (the last partial batch is dropped: the program is
    compiled for one batch size)."""
    order = rng.permutation(n)
    return [order[i:i + batch] for i in range(0, n - batch + 1, batch)]


def encode(x: np.ndarray, timesteps: int, sequence: bool = False) -> np.ndarray:
    """Direct encoding, [T, B, ...]: the same real-valued sample is the input current at every
    step, or, for a `sequence` ([B, T, ...]), frame t at step t."""
    if sequence:
        return np.ascontiguousarray(np.moveaxis(x, 1, 0))
    return np.ascontiguousarray(np.broadcast_to(x, (timesteps,) + x.shape))


def evaluate(sim, x: np.ndarray, y: np.ndarray, timesteps: int, chunk: int = 256, sequence: bool = False) -> float:
    """Test accuracy of the simulator's current weights (forward only)."""
    from spikeforge.hwsim.functional import run

    name = sim.graph.inputs[0].name
    correct = 0
    for i in range(0, len(x), chunk):
        correct += run(sim, {name: encode(x[i:i + chunk], timesteps, sequence)}, y[i:i + chunk], False).correct
    return correct / len(x)


def _sparsity(graph: Graph, stats, T: int, B: int) -> tuple[float, float]:
    spikes = [(st.out_nonzero.sum(), st.size) for n, st in stats.items() if graph[n].type.kind == "spike"
              and graph[n].kind != "input"]
    grads = [(st.grad_nonzero.sum(), st.size) for n, st in stats.items() if graph[n].kind != "input"]
    rate = sum(s for s, _ in spikes) / max(sum(n for _, n in spikes) * T * B, 1)
    return float(rate), float(sum(s for s, _ in grads) / max(sum(n for _, n in grads) * T * B, 1))


def train(graph: Graph, data: Dataset, arch: str = "default", epochs: int = 5, batch: int = 32,
          timesteps: int = 8, lr: float | None = None, seed: int = 0, fp16: bool | None = None,
          optimizer: str = "sgd", progress=None) -> TrainResult:
    """Train `graph` in place on `data`, one simulated on-chip training step per batch, on the
    architecture `arch` (preset or YAML file), updating with `optimizer` (sgd or adam) at `lr`
    (default: hwsim.optim.DEFAULT_LR). `fp16` (default: the architecture's `arithmetic`) rounds
    every stored value, weights included, to FP16 (Adam's state stays FP32).
    `progress(epoch, step, steps)` is called after each step."""
    from spikeforge.compiler.driver import compile_model
    from spikeforge.hwsim.cost import run_costs
    from spikeforge.hwsim.functional import Simulator, run
    from spikeforge.hwsim.optim import make_optimizer

    for key, v in (("epochs", epochs), ("batch", batch), ("timesteps", timesteps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpikeforgeError(f"{key}: must be a positive int, got {v!r}")
    update = make_optimizer(optimizer, lr)
    chip = load_arch(arch, None if fp16 is None else {"arithmetic": "fp16" if fp16 else "fp32"})
    fp16 = chip.arithmetic == "fp16"
    shape = graph.inputs[0].type.shape
    if data.frame != tuple(shape):
        raise SpikeforgeError(f"dataset {data.name!r} has {'frames' if data.steps else 'samples'} of shape "
                              f"{list(data.frame)}, the model's input wants {list(shape)}", graph.name)
    if data.steps and timesteps != data.steps:
        raise SpikeforgeError(f"--timesteps: dataset {data.name!r} is a sequence of {data.steps} steps, got {timesteps}")
    if len(data.x_train) < batch:
        raise SpikeforgeError(f"batch {batch} is larger than the {len(data.x_train)} training samples")
    program = compile_model(graph, chip, training=True, timesteps=timesteps, batch=batch, seed=seed,
                            optimizer=optimizer).program
    sim = Simulator(graph, fp16=fp16)
    if fp16:
        _round_weights(graph)
        sim.refresh()
    rng = np.random.default_rng(seed)
    name = graph.inputs[0].name
    result = TrainResult(graph.name, chip.name, chip.arithmetic, data.name, timesteps, batch, optimizer, update.lr,
                         seed, len(data.x_train) // batch)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        rows = []
        steps = epoch_batches(len(data.x_train), batch, rng)
        for i, idx in enumerate(steps):
            res = run(sim, {name: encode(data.x_train[idx], timesteps, bool(data.steps))}, data.y_train[idx], True)
            costs = run_costs(program, graph, chip, res.stats, "sparse")
            update.step(graph, res.grads)
            if fp16:
                _round_weights(graph)
            sim.refresh()
            rate, grad_nz = _sparsity(graph, res.stats, timesteps, batch)
            rows.append((res.loss, res.correct / batch, sum(costs.energy.values()),
                         costs.cycles / (chip.clock_mhz * 1e6), sum(costs.dram_bytes.values()), rate, grad_nz,
                         1 - sum(costs.syn_ops.values()) / max(sum(costs.dense_syn_ops.values()), 1)))
            if progress:
                progress(epoch, i + 1, len(steps))
        m = np.mean(np.array(rows, dtype=np.float64), axis=0)
        acc = evaluate(sim, data.x_test, data.y_test, timesteps, sequence=bool(data.steps))
        result.epochs.append(EpochLog(epoch, *(float(v) for v in m[:2]), acc, *(float(v) for v in m[2:]),
                                      time.perf_counter() - t0))
    return result


def _round_weights(graph: Graph) -> None:
    """Store every trained tensor in FP16 (the chip keeps no FP32 master copy)."""
    for op in graph:
        for k, w in op.tensors.items():
            w[...] = w.astype(np.float16).astype(np.float32)


def plot(result: TrainResult, path: str, others: dict[str, list[float]] | None = None) -> None:
    """PNG: test accuracy per epoch (with other runs' curves, by label) and energy per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [e.epoch for e in result.epochs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, [e.test_acc for e in result.epochs], "o-", label=f"chip ({result.arithmetic})")
    for label, acc in (others or {}).items():
        ax1.plot(ep, acc, "s--", label=label)
    ax1.set(xlabel="epoch", ylabel="test accuracy", title=f"{result.model} on {result.dataset}")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(ep, [e.energy_pj * 1e-6 for e in result.epochs], "o-", color="tab:red")
    ax2.set(xlabel="epoch", ylabel="energy per training step (µJ)",
            title=f"on {result.arch}, B={result.batch}, T={result.timesteps}")
    ax2.grid(alpha=0.3)
    ax2.ticklabel_format(axis="y", useOffset=False)
    for ax in (ax1, ax2):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
