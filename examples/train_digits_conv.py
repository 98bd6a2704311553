"""Train a small spiking CNN with batch-norm on scikit-learn's 8x8 digits (as 1x8x8 images) on the
simulated chip, and the same network in torch beside it.

The chip run uses only the simulator's FP, BP and WG engines and SGD updates (spikeforge.train);
its batch-norm normalises with the batch's statistics and keeps running statistics for the
test-set evaluation, as torch's BatchNorm2d does in train and eval mode. The torch twin
(`twin`: the graph run layer by layer over all steps, batch-norm by torch, LIF by snnTorch)
starts from the same weights, sees the same batches in the same order and uses the same loss
(cross-entropy of the time-averaged readout membrane) and SGD.

    .venv/bin/python examples/train_digits_conv.py                      # stats: batch (per step)
    .venv/bin/python examples/train_digits_conv.py --stats batch_time   # over the steps too (SpikingJelly multi-step)

Writes OUTDIR/train_digits_conv.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from spikeforge.compiler.frontends import load_model
from spikeforge.train import encode, epoch_batches, fit_input, load_dataset, train

MODEL = str(Path(__file__).parent / "models" / "digits_conv.yaml")


def twin(graph, stats: str | None = None):
    """`graph` in torch with copies of its tensors, run layer by layer over all steps:
    (trainable parameters, running statistics by (op, mean|var), forward). forward(x, train)
    maps x [T, B, *input] to the output [T, B, ...]; `train` normalises with batch statistics
    (per step, or over all steps for `batch_time`; `stats` overrides the graph's) and updates the
    running ones, else with the running ones. Ops: input, conv2d, batchnorm, lif (snnTorch
    Leaky), li, pool2d, add, flatten, linear, output."""
    import snntorch
    import torch
    import torch.nn.functional as F
    from snntorch import surrogate

    P = {(op.name, k): torch.tensor(w, requires_grad=k in ("weight", "bias", "gamma", "beta"))
         for op in graph for k, w in op.tensors.items()}
    running = {k: v for k, v in P.items() if k[1] in ("mean", "var")}

    def over(f, x):  # f on [T*B, ...], back to [T, B, ...]
        return f(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def step(op, ins, train):
        k, p, x = op.kind, op.params, ins[0] if ins else None
        w = lambda n: P.get((op.name, n))  # noqa: E731
        if k == "output":
            return x
        if k == "conv2d":
            return over(lambda v: F.conv2d(v, w("weight"), w("bias"), p["stride"], p["padding"], p["dilation"],
                                           p["groups"]), x)
        if k == "batchnorm":
            bn = lambda v: F.batch_norm(v, w("mean"), w("var"), w("gamma"), w("beta"), train,  # noqa: E731
                                        p["momentum"], p["eps"])
            if train and (stats or p["stats"]) == "batch_time":
                return over(bn, x)
            if train and (stats or p["stats"]) == "running":
                return torch.stack([F.batch_norm(v, w("mean"), w("var"), w("gamma"), w("beta"), False, 0.0, p["eps"])
                                    for v in x])
            return torch.stack([bn(v) for v in x])
        if k == "pool2d":
            s = p["stride"] or p["kernel"]
            if p["mode"] == "max":
                return over(lambda v: F.max_pool2d(v, p["kernel"], s, p["padding"]), x)
            y = over(lambda v: F.avg_pool2d(v, p["kernel"], s, p["padding"], count_include_pad=True), x)
            return y if p["mode"] == "avg" else y * (p["kernel"][0] * p["kernel"][1])
        if k == "add":
            return sum(ins[1:], ins[0])
        if k == "flatten":
            return x.flatten(2)
        if k == "linear":
            return F.linear(x, w("weight"), w("bias"))
        if k == "lif":
            lif = snntorch.Leaky(beta=p["beta"], threshold=p["threshold"], reset_mechanism=p["reset"],
                                 spike_grad=surrogate.atan(alpha=p["slope"]))
            u, out = lif.init_leaky(), []
            for v in x:
                s, u = lif(v, u)
                out.append(s)
            return torch.stack(out)
        if k == "li":
            u, out = torch.zeros_like(x[0]), []
            for v in x:
                u = p["beta"] * u + v
                out.append(u)
            return torch.stack(out)
        raise NotImplementedError(k)

    def forward(x, train=True):
        vals = {}
        for op in graph:
            vals[op.name] = x if op.kind == "input" else step(op, [vals[i] for i in op.inputs], train)
        return vals[graph.outputs[0].name]

    return [v for v in P.values() if v.requires_grad], running, forward


def train_torch(graph, data, epochs: int, batch: int, timesteps: int, lr: float, seed: int) -> list[float]:
    """The same network, weights, batches, loss and SGD in torch; test accuracy per epoch."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    data = fit_input(data, graph.inputs[0].type.shape, graph.name)
    params, _, forward = twin(graph)
    opt = torch.optim.SGD(params, lr=lr)
    rng = np.random.default_rng(seed)
    acc = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: faster on one thread, and sums that do not depend on the machine
    try:
        for _ in range(epochs):
            for idx in epoch_batches(len(data.x_train), batch, rng):
                x = torch.from_numpy(encode(data.x_train[idx], timesteps))
                loss = F.cross_entropy(forward(x).mean(0), torch.from_numpy(data.y_train[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                pred = forward(torch.from_numpy(encode(data.x_test, timesteps)), train=False).mean(0).argmax(1)
            acc.append(float((pred.numpy() == data.y_test).mean()))
    finally:
        torch.set_num_threads(threads)
    return acc


def model(stats: str, seed: int):
    """The digits CNN with its batch-norm normalising with `stats` in training."""
    g = load_model(MODEL, seed=seed)
    g["bn"].params["stats"] = stats
    return g


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", "-B", type=int, default=32)
    ap.add_argument("--timesteps", "-T", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stats", choices=("batch", "batch_time"), default="batch")
    ap.add_argument("--arch", default="default")
    ap.add_argument("-o", "--out", default="out/train_digits_conv")
    a = ap.parse_args(argv)
    data = load_dataset("digits", a.seed)
    print(f"digits: {len(data.x_train)} training / {len(data.x_test)} test samples as 1x8x8 images; model {MODEL} "
          f"(batch-norm stats {a.stats}); B={a.batch} T={a.timesteps} lr={a.lr}, {a.epochs} epochs on '{a.arch}'")
    hp = dict(epochs=a.epochs, batch=a.batch, timesteps=a.timesteps, lr=a.lr, seed=a.seed)
    t0 = time.perf_counter()
    chip = train(model(a.stats, a.seed), data, a.arch, fp16=False,
                 progress=lambda e, i, n: print(f"\r  chip: epoch {e} step {i}/{n}", end="", flush=True), **hp)
    print(f"\r  chip: {time.perf_counter() - t0:.0f} s" + " " * 20)
    t0 = time.perf_counter()
    torch_acc = train_torch(model(a.stats, a.seed), data, **hp)
    print(f"  torch: {time.perf_counter() - t0:.0f} s")
    print("\nepoch  loss   train  test(chip)  test(torch)  energy/step  spike rate")
    for e, ta in zip(chip.epochs, torch_acc):
        print(f"{e.epoch:5d}  {e.loss:.3f}  {e.train_acc:.3f}  {e.test_acc:10.3f}  {ta:11.3f}  "
              f"{e.energy_pj * 1e-6:8.1f} µJ  {e.spike_rate:10.3f}")
    last = chip.epochs[-1].test_acc
    print(f"\ntest accuracy: chip {last:.3f}, torch {torch_acc[-1]:.3f} "
          f"(difference {100 * (last - torch_acc[-1]):+.1f} points)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_digits_conv.json").write_text(json.dumps(
        {"stats": a.stats, "chip": chip.to_dict(), "torch_test_acc": torch_acc}, indent=2) + "\n")
    print(f"wrote {out / 'train_digits_conv.json'}")
    return 0 if last >= 0.9 and abs(last - torch_acc[-1]) <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
