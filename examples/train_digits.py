"""Train a spiking network on scikit-learn's 8x8 digits on the simulated chip, and the same network
in torch beside it: by default the MLP of examples/models/digits_mlp.yaml; with `--model
examples/models/digits_conv.yaml` a CNN with batch-norm that sees each digit as a 1x8x8 image.

The chip run uses only the simulator's FP, BP and WG engines and SGD updates (spikeforge.training);
every step is also walked through the compiled program for its energy, latency, DRAM traffic and
measured sparsity. The torch twin (`twin`: the graph run layer by layer over all steps, LIF by
snnTorch `Leaky`, batch-norm by torch in train mode, with the running statistics for the test
set) starts from the same weights, sees the same batches in the same order and uses the same loss
(cross-entropy of the time-averaged readout membrane) and SGD. The chip is trained twice: in FP32
and with the architecture's FP16 arithmetic.

    .venv/bin/python examples/train_digits.py            # about 5 minutes on 2 cores
    .venv/bin/python examples/train_digits.py --epochs 2 -o out/digits
    .venv/bin/python examples/train_digits.py --model examples/models/digits_conv.yaml -T 4 -o out/digits_conv
    .venv/bin/python examples/train_digits.py --model examples/models/digits_conv.yaml -T 4 --stats batch_time

Writes OUTDIR/train_digits.png (loss, accuracy and energy per epoch, snnTorch beside the chip) and OUTDIR/train_digits.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from spikeforge.compiler.frontends import load_model
from spikeforge.training import encode, epoch_batches, fit_input, load_dataset, plot, train
from spikeforge.units import format_bytes

MODEL = str(Path(__file__).parent / "models" / "digits_mlp.yaml")
CONV = str(Path(__file__).parent / "models" / "digits_conv.yaml")


def twin(graph):
    """`graph` in torch with copies of its tensors, run layer by layer, each over all steps:
    (trainable parameters in graph order, running statistics by (op, mean|var), forward).
    forward(x, train=True) maps x [T, B, *input] to the output [T, B, ...]; with `train`, a
    batch-norm normalises as its `stats` say (the batch's per step, or over all steps, updating
    the running ones; or the running ones), else with the running statistics. Ops: input,
    conv2d, batchnorm, lif (snnTorch Leaky), li, pool2d, add, flatten, linear, output."""
    import snntorch
    import torch
    import torch.nn.functional as F
    from snntorch import surrogate

    P = {(op.name, k): torch.tensor(w, requires_grad=k in ("weight", "bias", "gamma", "beta"))
         for op in graph for k, w in op.tensors.items()}
    running = {k: v for k, v in P.items() if k[1] in ("mean", "var")}

    def each(f, x):  # f at every step
        return torch.stack([f(v) for v in x])

    def step(op, ins, train):
        k, p, x = op.kind, op.params, ins[0] if ins else None
        w = lambda n: P.get((op.name, n))  # noqa: E731
        if k == "output":
            return x
        if k == "conv2d":
            return each(lambda v: F.conv2d(v, w("weight"), w("bias"), p["stride"], p["padding"], p["dilation"],
                                           p["groups"]), x)
        if k == "batchnorm":
            bn = lambda v: F.batch_norm(v, w("mean"), w("var"), w("gamma"), w("beta"), train,  # noqa: E731
                                        p["momentum"], p["eps"])
            if train and p["stats"] == "batch_time":  # over [T*B, C, H, W]
                return bn(x.flatten(0, 1)).unflatten(0, x.shape[:2])
            if train and p["stats"] == "running":
                return each(lambda v: F.batch_norm(v, w("mean"), w("var"), w("gamma"), w("beta"), False, 0.0,
                                                   p["eps"]), x)
            return each(bn, x)
        if k == "pool2d":
            s = p["stride"] or p["kernel"]
            if p["mode"] == "max":
                return each(lambda v: F.max_pool2d(v, p["kernel"], s, p["padding"]), x)
            y = each(lambda v: F.avg_pool2d(v, p["kernel"], s, p["padding"], count_include_pad=True), x)
            return y if p["mode"] == "avg" else y * (p["kernel"][0] * p["kernel"][1])
        if k == "add":
            return sum(ins[1:], ins[0])
        if k == "flatten":
            return x.flatten(2)
        if k == "linear":
            return each(lambda v: F.linear(v, w("weight"), w("bias")), x)
        if k == "lif":
            grad = (surrogate.atan(alpha=p["slope"]) if p["surrogate"] == "atan"
                    else surrogate.fast_sigmoid(slope=p["slope"]))
            lif = snntorch.Leaky(beta=p["beta"], threshold=p["threshold"], reset_mechanism=p["reset"], spike_grad=grad)
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


def train_torch(graph, data, epochs: int, batch: int, timesteps: int, lr: float, seed: int) -> dict[str, list[float]]:
    """The same network, weights, batches, loss and SGD in torch; per epoch, the test accuracy
    and the mean loss of the training batches: {"test_acc": [...], "loss": [...]}."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    data = fit_input(data, graph.inputs[0].type.shape, graph.name)
    params, _, forward = twin(graph)
    opt = torch.optim.SGD(params, lr=lr)
    rng = np.random.default_rng(seed)
    acc, losses = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: faster on one thread, and sums that do not depend on the machine
    try:
        for _ in range(epochs):
            steps = []
            for idx in epoch_batches(len(data.x_train), batch, rng):
                x = torch.from_numpy(encode(data.x_train[idx], timesteps))
                loss = F.cross_entropy(forward(x).mean(0), torch.from_numpy(data.y_train[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps.append(loss.item())
            losses.append(float(np.mean(steps)))
            with torch.no_grad():
                pred = forward(torch.from_numpy(encode(data.x_test, timesteps)), train=False).mean(0).argmax(1)
            acc.append(float((pred.numpy() == data.y_test).mean()))
    finally:
        torch.set_num_threads(threads)
    return {"test_acc": acc, "loss": losses}


def model(path: str, seed: int, stats: str | None = None):
    """The model at `path`, its batch-norms normalising with `stats` in training (default: as given)."""
    g = load_model(path, seed=seed)
    for op in g:
        if op.kind == "batchnorm" and stats:
            op.params["stats"] = stats
    return g


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", "-B", type=int, default=32)
    ap.add_argument("--timesteps", "-T", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", default="default")
    ap.add_argument("--model", default=MODEL, help=f"a YAML model (default {MODEL}; the CNN: {CONV})")
    ap.add_argument("--stats", choices=("batch", "batch_time", "running"),
                    help="what the model's batch-norms normalise with in training (default: the model's)")
    ap.add_argument("-o", "--out", default="out/train_digits")
    a = ap.parse_args(argv)
    data = load_dataset("digits", a.seed)
    print(f"digits: {len(data.x_train)} training / {len(data.x_test)} test samples (split by seed {a.seed}); "
          f"model {a.model}; B={a.batch} T={a.timesteps} lr={a.lr}, {a.epochs} epochs on '{a.arch}'")
    hp = dict(epochs=a.epochs, batch=a.batch, timesteps=a.timesteps, lr=a.lr, seed=a.seed)
    runs = {}
    for label, fp16 in (("chip fp32", False), ("chip fp16", True)):
        t0 = time.perf_counter()
        runs[label] = train(model(a.model, a.seed, a.stats), data, a.arch, fp16=fp16,
                            progress=lambda e, i, n: print(f"\r  {label}: epoch {e} step {i}/{n}", end="", flush=True),
                            **hp)
        print(f"\r  {label}: {time.perf_counter() - t0:.0f} s" + " " * 20)
    t0 = time.perf_counter()
    torch_run = train_torch(model(a.model, a.seed, a.stats), data, **hp)
    torch_acc = torch_run["test_acc"]
    print(f"  torch: {time.perf_counter() - t0:.0f} s")

    fp32, fp16 = runs["chip fp32"], runs["chip fp16"]
    print("\nepoch  loss   train  test(chip fp32)  test(chip fp16)     test(torch)  energy/step  latency/step  "
          "DRAM/step  spike rate  grad nonzero  skipped ops")
    for e, h, ta in zip(fp32.epochs, fp16.epochs, torch_acc):
        print(f"{e.epoch:5d}  {e.loss:.3f}  {e.train_acc:.3f}  {e.test_acc:15.3f}  {h.test_acc:15.3f}  {ta:14.3f}  "
              f"{e.energy_pj * 1e-6:8.1f} µJ  {e.latency_s * 1e6:9.1f} µs  {format_bytes(e.dram_bytes):>9}  "
              f"{e.spike_rate:10.3f}  {e.grad_nonzero:12.3f}  {e.op_sparsity:11.3f}")
    last = fp32.epochs[-1].test_acc
    print(f"\ntest accuracy: chip (FP32) {last:.3f}, torch {torch_acc[-1]:.3f} "
          f"(difference {100 * (last - torch_acc[-1]):+.1f} points); chip FP16 {fp16.epochs[-1].test_acc:.3f} "
          f"({100 * (fp16.epochs[-1].test_acc - last):+.1f} points vs FP32)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(fp32, str(out / "train_digits.png"), {"chip (fp16)": {"test_acc": [e.test_acc for e in fp16.epochs],
                                                               "loss": [e.loss for e in fp16.epochs]},
                                               "torch (fp32)": torch_run})
    (out / "train_digits.json").write_text(json.dumps(
        {"chip_fp32": fp32.to_dict(), "chip_fp16": fp16.to_dict(), "torch_test_acc": torch_acc,
         "torch_loss": torch_run["loss"]}, indent=2) + "\n")
    print(f"wrote {out / 'train_digits.png'} and {out / 'train_digits.json'}")
    return 0 if last >= 0.9 and abs(last - torch_acc[-1]) <= 0.03 else 1


if __name__ == "__main__":
    sys.exit(main())
