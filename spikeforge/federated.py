"""Federated on-chip training: FedAvg [MCMAHAN2017] over a system of simulated chips.

Each round, every worker (one copy of the chip, `isa.arch.System`) starts from the global
weights and trains `local_steps` steps on its own shard with the chip's FP, BP and WG engines:
each step is simulated on real samples and walked through the compiled program, as in `train`.
Then it sends its weights to the host, which averages them weighted by shard size [MCMAHAN2017]
and sends the average back: 2 x parameters x value bytes per worker and round over the system's
links. A round's workers run in parallel: in this process, on a local Dask cluster, or on a Dask
scheduler. A worker's round is a pure function of its inputs (weights, shard, batches), so the
results are the same wherever it runs.

[MCMAHAN2017] McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017 (FedAvg). The Dirichlet partition follows Hsu et al.,
"Measuring the Effects of Non-Identical Data Distribution for Federated Visual Classification",
2019: each class is split over the workers by proportions drawn from Dir(alpha)."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from spikeforge.hwsim.optim import make_optimizer
from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.isa.arch import Arch
from spikeforge.training import Dataset


@dataclass(frozen=True)
class FedConfig:
    workers: int = 5
    rounds: int = 20
    local_steps: int = 10
    partition: str = "iid"  # or dirichlet:ALPHA
    batch: int = 32
    timesteps: int = 8
    lr: float | None = None  # default: hwsim.optim.DEFAULT_LR of the optimizer
    seed: int = 0
    optimizer: str = "sgd"  # each worker's, fresh every round (its state does not travel)

    def check(self) -> None:
        for key in ("workers", "rounds", "local_steps", "batch", "timesteps"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpikeforgeError(f"{key.replace('_', '-')}: must be a positive int, got {v!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise SpikeforgeError(f"lr: must be a positive number, got {self.lr!r}")
        make_optimizer(self.optimizer, self.lr)
        dirichlet_alpha(self.partition)


def dirichlet_alpha(partition: str) -> float | None:
    """None for `iid`, ALPHA for `dirichlet:ALPHA`."""
    if partition == "iid":
        return None
    kind, _, value = str(partition).partition(":")
    try:
        alpha = float(value)
    except ValueError:
        alpha = math.nan
    if kind != "dirichlet" or not (math.isfinite(alpha) and alpha > 0):
        raise SpikeforgeError(f"--partition: expected iid or dirichlet:ALPHA with ALPHA > 0, got {partition!r}")
    return alpha


def shards(y: np.ndarray, workers: int, partition: str, seed: int, min_size: int) -> list[np.ndarray]:
    """Each worker's sample indices: `iid` (a random equal split) or `dirichlet:ALPHA` (each
    class split over the workers by Dir(ALPHA) proportions, redrawn until every worker holds at
    least `min_size` samples, as in NIID-Bench)."""
    alpha = dirichlet_alpha(partition)
    rng = np.random.default_rng([seed, 1])
    if len(y) < workers * min_size:
        raise SpikeforgeError(f"{len(y)} training samples cannot give {workers} workers {min_size} samples each")
    if alpha is None:
        return [np.sort(s) for s in np.array_split(rng.permutation(len(y)), workers)]
    for _ in range(1000):
        parts: list[list[np.ndarray]] = [[] for _ in range(workers)]
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(workers, alpha)))[:-1] * len(idx)).astype(int)
            for w, part in enumerate(np.split(idx, cuts)):
                parts[w].append(part)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(s) for s in out) >= min_size:
            return out
    raise SpikeforgeError(f"--partition {partition}: no draw in 1000 gave every worker {min_size} samples "
                          "(a larger ALPHA, fewer workers or a smaller batch)")


def local_batches(n: int, cfg: FedConfig, rnd: int, worker: int) -> list[np.ndarray]:
    """The batches (indices into a shard of n samples) of a worker's round: passes over the
    shard in fresh random orders, cut into full batches, as many as `local_steps`."""
    rng = np.random.default_rng([cfg.seed, 2, rnd, worker])
    out: list[np.ndarray] = []
    while len(out) < cfg.local_steps:
        order = rng.permutation(n)
        out += [order[i:i + cfg.batch] for i in range(0, n - cfg.batch + 1, cfg.batch)]
    return out[:cfg.local_steps]


def get_weights(graph: Graph) -> dict[tuple[str, str], np.ndarray]:
    return {(op.name, k): w.copy() for op in graph for k, w in op.tensors.items()}


def set_weights(graph: Graph, weights: dict[tuple[str, str], np.ndarray]) -> None:
    for (name, k), w in weights.items():
        graph[name].tensors[k][...] = w


def fedavg(weights: list[dict], sizes: list[int]) -> dict:
    """The average of the workers' weights, weighted by their shard sizes (in float64)."""
    total = float(sum(sizes))
    return {k: sum(w[k].astype(np.float64) * (n / total) for w, n in zip(weights, sizes)).astype(np.float32)
            for k in weights[0]}


@dataclass
class WorkerLog:
    """One worker's round: mean loss and accuracy of its steps, and the chip's figures summed
    over its steps."""

    worker: int
    samples: int
    loss: float
    train_acc: float
    energy_pj: float
    latency_s: float
    dram_bytes: float


@dataclass
class RoundLog:
    round: int
    test_acc: float
    loss: float  # mean over workers, weighted by shard size
    compute_energy_pj: float  # every worker's steps
    comm_bytes: int  # weights up to the host and the average back down
    comm_energy_pj: float
    comm_latency_s: float
    latency_s: float  # the slowest worker's steps, then the exchange
    workers: list[WorkerLog] = field(default_factory=list)


@dataclass
class FedResult:
    model: str
    arch: str
    arithmetic: str
    dataset: str
    partition: str
    workers: int
    local_steps: int
    batch: int
    timesteps: int
    optimizer: str
    lr: float
    seed: int
    params: int
    value_bytes: int
    topology: str
    link: dict
    shard_sizes: list[int]
    shard_classes: list[list[int]]  # samples per class, per worker
    rounds: list[RoundLog] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def local_round(graph: Graph, program, chip: Arch, weights: dict, x: np.ndarray, y: np.ndarray,
                batches: list[np.ndarray], optimizer: str, lr: float | None, worker: int) -> tuple[dict, WorkerLog]:
    """One worker's round on its shard (x, y): from `weights`, one simulated training step per
    batch with a fresh `optimizer`; its new weights and figures. `graph` is not changed."""
    from spikeforge.hwsim.simulate import OnChip
    from spikeforge.training import encode

    g = copy.deepcopy(graph)
    set_weights(g, weights)
    chip_run = OnChip(g, program, chip, make_optimizer(optimizer, lr))
    T = program.header.timesteps
    rows = []
    for idx in batches:
        res, costs = chip_run.step(encode(x[idx], T), y[idx])
        rows.append((res.loss, res.correct / len(idx), sum(costs.energy.values()),
                     costs.cycles / (chip.clock_mhz * 1e6), sum(costs.dram_bytes.values())))
    m = np.array(rows, dtype=np.float64)
    energy, latency, dram = m[:, 2:].sum(0)
    # energies to 1e-3 pJ, as in report.json: NumPy's sums may differ in the last bit between processes
    return get_weights(g), WorkerLog(worker, len(x), float(m[:, 0].mean()), float(m[:, 1].mean()),
                                     round(float(energy), 3), float(latency), float(dram))


def exchange(chip: Arch, params: int, workers: int) -> tuple[int, float, float]:
    """Bytes, energy (pJ) and time (s) of one FedAvg exchange: every worker's weights up to the
    host and the average back down. On a star each worker has its own link to the host; in a
    ring or a grid every transfer shares the host's link at chip 0 and crosses
    `host_hops` links."""
    sysm, link = chip.system, chip.system.link
    per = params * chip.value_bytes  # one copy of the weights
    hops = [sysm.host_hops(w) for w in range(workers)]
    energy = sum(2 * per * 8 * link.pj_per_bit * h for h in hops)
    serial = 1 if sysm.topology == "star" else workers  # copies through the busiest link, each way
    seconds = 2 * (serial * per / (link.gb_per_s * 1e9) + max(hops) * link.latency_ns * 1e-9)
    return 2 * per * workers, energy, seconds


def federated(graph: Graph, data: Dataset, chip: Arch, cfg: FedConfig, client=None, progress=None,
              on_round=None) -> FedResult:
    """FedAvg training of `graph` (in place: it ends with the final global weights) on `data`,
    `cfg.workers` simulated copies of `chip`. `client`: a `distributed.Client` to run each
    round's workers on, or None to run them here, one after another. `progress(round)` and
    `on_round(result)` are called after each round."""
    from spikeforge.compiler.driver import compile_model
    from spikeforge.hwsim.functional import Simulator
    from spikeforge.hwsim.optim import store_fp16
    from spikeforge.training import evaluate, fit_input

    cfg.check()
    if data.steps:
        raise SpikeforgeError(f"--dataset: federated training takes a dataset of static samples, not the sequence "
                              f"{data.name!r}")
    data = fit_input(data, graph.inputs[0].type.shape, graph.name)
    parts = shards(data.y_train, cfg.workers, cfg.partition, cfg.seed, cfg.batch)
    program = compile_model(graph, chip, training=True, timesteps=cfg.timesteps, batch=cfg.batch,
                            seed=cfg.seed, optimizer=cfg.optimizer, chips=1).program  # each worker on one chip
    fp16 = chip.arithmetic == "fp16"
    if fp16:
        store_fp16(graph)
    classes = int(data.y_train.max()) + 1
    params = graph.param_count()
    link = chip.system.link
    result = FedResult(graph.name, chip.name, chip.arithmetic, data.name, cfg.partition, cfg.workers,
                       cfg.local_steps, cfg.batch, cfg.timesteps, cfg.optimizer,
                       make_optimizer(cfg.optimizer, cfg.lr).lr, cfg.seed, params, chip.value_bytes,
                       chip.system.topology, asdict(link), [len(p) for p in parts],
                       [np.bincount(data.y_train[p], minlength=classes).tolist() for p in parts])
    comm_bytes, comm_pj, comm_s = exchange(chip, params, cfg.workers)
    shared = (graph, program, chip)
    if client is not None:
        shared = tuple(client.scatter(v, broadcast=True) for v in shared)
    for rnd in range(1, cfg.rounds + 1):
        weights = get_weights(graph)
        jobs = [(*shared, weights, data.x_train[p], data.y_train[p], local_batches(len(p), cfg, rnd, w),
                 cfg.optimizer, cfg.lr, w)
                for w, p in enumerate(parts)]
        if client is None:
            outs = [local_round(*job) for job in jobs]
        else:
            outs = client.gather([client.submit(local_round, *job, pure=False) for job in jobs])
        new, logs = zip(*outs)
        set_weights(graph, fedavg(list(new), [len(p) for p in parts]))
        if fp16:  # the average is stored on the chips in FP16
            store_fp16(graph)
        acc = evaluate(Simulator(graph, fp16=fp16), data.x_test, data.y_test, cfg.timesteps)
        sizes = np.array([len(p) for p in parts], dtype=np.float64)
        result.rounds.append(RoundLog(
            rnd, acc, float(np.dot([l.loss for l in logs], sizes) / sizes.sum()),
            round(sum(l.energy_pj for l in logs), 3), comm_bytes, comm_pj, comm_s,
            max(l.latency_s for l in logs) + comm_s, list(logs)))
        if progress:
            progress(rnd)
        if on_round:
            on_round(result)
    return result


def plot(results: dict[str, FedResult], path: str, twins: dict[str, list[float]] | None = None) -> None:
    """PNG: test accuracy per round for each run (by label; a twin's accuracies of the same
    label dashed beside it), and each run's compute and communication energy per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, r) in enumerate(results.items()):
        rounds, color = [x.round for x in r.rounds], f"C{i}"
        ax1.plot(rounds, [x.test_acc for x in r.rounds], "o-", ms=3, color=color, label=f"chip, {label}")
        if twins and label in twins:
            ax1.plot(rounds, twins[label], "--", color=color, alpha=0.7, label=f"snnTorch twin, {label}")
    first = next(iter(results.values()))
    ax1.set(xlabel="round", ylabel="test accuracy of the global model", ylim=(0, 1))
    ax1.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax1.set_title(f"FedAvg, {first.workers} simulated chips, {first.local_steps} local steps per round", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    labels = list(results)
    compute = [np.mean([x.compute_energy_pj for x in r.rounds]) * 1e-6 for r in results.values()]
    comm = [np.mean([x.comm_energy_pj for x in r.rounds]) * 1e-6 for r in results.values()]
    pos = np.arange(len(labels))
    ax2.bar(pos - 0.2, compute, 0.4, label="computation (all workers' steps)")
    ax2.bar(pos + 0.2, comm, 0.4, label="communication (weights up and down)")
    ax2.set_xticks(pos, labels, fontsize=8)
    ax2.set(ylabel="energy per round (µJ, log)", yscale="log")
    ax2.set_title(f"{first.topology} link, {first.link['gb_per_s']:g} GB/s, {first.link['pj_per_bit']:g} pJ/bit",
                  fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
