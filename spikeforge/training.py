"""On-chip training on a dataset: every step runs the simulator's FP, BP and WG engines on real
samples, applies the update (SGD, or Adam with its state kept from step to step), and walks
the compiled program for that step's energy, latency, DRAM traffic and measured sparsity."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

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
    classes: int
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


def fit_input(data: Dataset, shape: tuple[int, ...], where: str) -> Dataset:
    """`data` with its frames shaped as the model's input: flat frames of the input's size fill it
    in C order (the 64 pixels of a digit feed a [64] or a [1, 8, 8] input); any other shape that
    differs is an error (no guessing at an [H, W, C] image for a [C, H, W] input)."""
    if data.frame == tuple(shape):
        return data
    if len(data.frame) != 1 or data.frame[0] != math.prod(shape):
        raise SpikeforgeError(f"dataset {data.name!r} has {'frames' if data.steps else 'samples'} of shape "
                              f"{list(data.frame)}, the model's input wants {list(shape)}", where)
    lead = 2 if data.steps else 1
    return replace(data, x_train=data.x_train.reshape(data.x_train.shape[:lead] + tuple(shape)),
                   x_test=data.x_test.reshape(data.x_test.shape[:lead] + tuple(shape)))


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
          optimizer: str = "sgd", progress=None, on_epoch=None) -> TrainResult:
    """Train `graph` in place on `data`, one simulated on-chip training step per batch, on the
    architecture `arch` (preset or YAML file), updating with `optimizer` (sgd or adam) at `lr`
    (default: hwsim.optim.DEFAULT_LR). `fp16` (default: the architecture's `arithmetic`) rounds
    every stored value, weights included, to FP16 (Adam's state stays FP32).
    `progress(epoch, step, steps)` is called after each step, `on_epoch(result)` after each epoch."""
    from spikeforge.compiler.driver import compile_model
    from spikeforge.hwsim.optim import make_optimizer
    from spikeforge.hwsim.simulate import OnChip

    for key, v in (("epochs", epochs), ("batch", batch), ("timesteps", timesteps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpikeforgeError(f"{key}: must be a positive int, got {v!r}")
    update = make_optimizer(optimizer, lr)
    chip = load_arch(arch, None if fp16 is None else {"arithmetic": "fp16" if fp16 else "fp32"})
    data = fit_input(data, graph.inputs[0].type.shape, graph.name)
    if data.steps and timesteps != data.steps:
        raise SpikeforgeError(f"--timesteps: dataset {data.name!r} is a sequence of {data.steps} steps, got {timesteps}")
    if len(data.x_train) < batch:
        raise SpikeforgeError(f"batch {batch} is larger than the {len(data.x_train)} training samples")
    program = compile_model(graph, chip, training=True, timesteps=timesteps, batch=batch, seed=seed,
                            optimizer=optimizer).program
    chip_run = OnChip(graph, program, chip, update)
    rng = np.random.default_rng(seed)
    result = TrainResult(graph.name, chip.name, chip.arithmetic, data.name, timesteps, batch, optimizer, update.lr,
                         seed, len(data.x_train) // batch, int(max(data.y_train.max(), data.y_test.max())) + 1)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        rows = []
        steps = epoch_batches(len(data.x_train), batch, rng)
        for i, idx in enumerate(steps):
            res, costs = chip_run.step(encode(data.x_train[idx], timesteps, bool(data.steps)), data.y_train[idx])
            rate, grad_nz = _sparsity(graph, res.stats, timesteps, batch)
            rows.append((res.loss, res.correct / batch, sum(costs.energy.values()),
                         costs.cycles / (chip.clock_mhz * 1e6), sum(costs.dram_bytes.values()), rate, grad_nz,
                         1 - sum(costs.syn_ops.values()) / max(sum(costs.dense_syn_ops.values()), 1)))
            if progress:
                progress(epoch, i + 1, len(steps))
        m = np.mean(np.array(rows, dtype=np.float64), axis=0)
        acc = evaluate(chip_run.sim, data.x_test, data.y_test, timesteps, sequence=bool(data.steps))
        result.epochs.append(EpochLog(epoch, *(float(v) for v in m[:2]), acc, *(float(v) for v in m[2:]),
                                      time.perf_counter() - t0))
        if on_epoch:
            on_epoch(result)
    return result


def plot(result: TrainResult, path: str, references: dict[str, dict[str, list[float]]] | None = None) -> None:
    """train.png: the figure of `train_figure`."""
    train_figure(result, references).savefig(path, dpi=120)


def train_figure(result: TrainResult, references: dict[str, dict[str, list[float]]] | None = None):
    """Per epoch: training loss, accuracy (train and test) and energy per training step. Reference
    runs (label -> {"test_acc": [...], "loss": [...]}, either optional) are dashed beside the
    chip's curves; chance (a uniform output: loss ln(classes), accuracy 1/classes) is dotted."""
    from spikeforge.plots import figure, fit_axis

    fig, ((loss, acc, energy),) = figure(14, 4, 1, 3)
    ep = [e.epoch for e in result.epochs]
    loss.plot(ep, [e.loss for e in result.epochs], "o-", label=f"chip ({result.arithmetic}), training batches")
    acc.plot(ep, [e.test_acc for e in result.epochs], "o-", label=f"chip ({result.arithmetic}), test")
    acc.plot(ep, [e.train_acc for e in result.epochs], "o:", color="C0", alpha=0.6, label="chip, training batches")
    for k, (label, ref) in enumerate((references or {}).items()):
        for ax, key in ((loss, "loss"), (acc, "test_acc")):
            if key in ref:
                ax.plot(ep, ref[key], "s--", color=f"C{k + 1}", label=label)
    loss.axhline(math.log(result.classes), color="grey", ls=":", label=f"chance (ln {result.classes})")
    acc.axhline(1 / result.classes, color="grey", ls=":", label=f"chance (1/{result.classes})")
    loss.set(xlabel="epoch", ylabel="cross-entropy loss", ylim=(0, None), title=f"{result.model} on {result.dataset}")
    acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title=f"{result.optimizer}, lr {result.lr:g}")
    values = [e.energy_pj * 1e-6 for e in result.epochs]
    energy.plot(ep, values, "o-", color="tab:red")
    energy.set(xlabel="epoch", ylabel="energy per training step (µJ)",
               title=f"on {result.arch}, B={result.batch}, T={result.timesteps}")
    fit_axis(energy, "y", values)
    for ax in (loss, acc, energy):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in (loss, acc):
        ax.legend(fontsize=8)
    return fig
