"""Train a spiking MLP on scikit-learn's 8x8 digits on the simulated chip, and the same network
in snnTorch beside it.

The chip run uses only the simulator's FP, BP and WG engines and SGD updates (spikeforge.training);
every step is also walked through the compiled program for its energy, latency, DRAM traffic and
measured sparsity. The snnTorch twin starts from the same weights, sees the same batches in the
same order and uses the same loss (cross-entropy of the time-averaged readout membrane) and SGD.
The chip is trained twice: in FP32 and with the architecture's FP16 arithmetic.

    .venv/bin/python examples/train_digits.py            # about 5 minutes on 2 cores
    .venv/bin/python examples/train_digits.py --epochs 2 -o out/digits

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
from spikeforge.training import encode, epoch_batches, load_dataset, plot, train
from spikeforge.units import format_bytes

MODEL = str(Path(__file__).parent / "models" / "digits_mlp.yaml")


def snntorch_twin(graph):
    """The digits MLP in snnTorch with `graph`'s weights: (its parameters, forward), where
    forward maps x [T, B, 64] to the readout membrane [T, B, 10]."""
    import snntorch as snn
    import torch

    fc1, fc2 = (torch.nn.Linear(*graph[n].tensors["weight"].shape[::-1]) for n in ("fc1", "fc2"))
    with torch.no_grad():
        for lin, n in ((fc1, "fc1"), (fc2, "fc2")):
            lin.weight.copy_(torch.from_numpy(graph[n].tensors["weight"]))
            lin.bias.copy_(torch.from_numpy(graph[n].tensors["bias"]))
    lif1 = snn.Leaky(beta=graph["lif1"].params["beta"], threshold=graph["lif1"].params["threshold"])
    readout = snn.Leaky(beta=graph["readout"].params["beta"], reset_mechanism="none")

    def forward(x):
        m1, m2 = lif1.init_leaky(), readout.init_leaky()
        out = []
        for t in range(x.shape[0]):
            s1, m1 = lif1(fc1(x[t]), m1)
            _, m2 = readout(fc2(s1), m2)
            out.append(m2)
        return torch.stack(out)

    return list(fc1.parameters()) + list(fc2.parameters()), forward


def train_snntorch(graph, data, epochs: int, batch: int, timesteps: int, lr: float, seed: int) -> dict[str, list[float]]:
    """The same network, weights, batches, loss and SGD in snnTorch; per epoch, the test accuracy
    and the mean loss of the training batches: {"test_acc": [...], "loss": [...]}."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    params, forward = snntorch_twin(graph)
    opt = torch.optim.SGD(params, lr=lr)
    rng = np.random.default_rng(seed)
    acc, losses = [], []
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
            pred = forward(torch.from_numpy(encode(data.x_test, timesteps))).mean(0).argmax(1).numpy()
        acc.append(float((pred == data.y_test).mean()))
    return {"test_acc": acc, "loss": losses}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", "-B", type=int, default=32)
    ap.add_argument("--timesteps", "-T", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", default="default")
    ap.add_argument("-o", "--out", default="out/train_digits")
    a = ap.parse_args(argv)
    data = load_dataset("digits", a.seed)
    print(f"digits: {len(data.x_train)} training / {len(data.x_test)} test samples (split by seed {a.seed}); "
          f"model {MODEL}; B={a.batch} T={a.timesteps} lr={a.lr}, {a.epochs} epochs on '{a.arch}'")
    hp = dict(epochs=a.epochs, batch=a.batch, timesteps=a.timesteps, lr=a.lr, seed=a.seed)
    runs = {}
    for label, fp16 in (("chip fp32", False), ("chip fp16", True)):
        t0 = time.perf_counter()
        runs[label] = train(load_model(MODEL, seed=a.seed), data, a.arch, fp16=fp16,
                            progress=lambda e, i, n: print(f"\r  {label}: epoch {e} step {i}/{n}", end="", flush=True),
                            **hp)
        print(f"\r  {label}: {time.perf_counter() - t0:.0f} s" + " " * 20)
    t0 = time.perf_counter()
    torch_run = train_snntorch(load_model(MODEL, seed=a.seed), data, **hp)
    torch_acc = torch_run["test_acc"]
    print(f"  snnTorch: {time.perf_counter() - t0:.0f} s")

    fp32, fp16 = runs["chip fp32"], runs["chip fp16"]
    print("\nepoch  loss   train  test(chip fp32)  test(chip fp16)  test(snnTorch)  energy/step  latency/step  "
          "DRAM/step  spike rate  grad nonzero  skipped ops")
    for e, h, ta in zip(fp32.epochs, fp16.epochs, torch_acc):
        print(f"{e.epoch:5d}  {e.loss:.3f}  {e.train_acc:.3f}  {e.test_acc:15.3f}  {h.test_acc:15.3f}  {ta:14.3f}  "
              f"{e.energy_pj * 1e-6:8.1f} µJ  {e.latency_s * 1e6:9.1f} µs  {format_bytes(e.dram_bytes):>9}  "
              f"{e.spike_rate:10.3f}  {e.grad_nonzero:12.3f}  {e.op_sparsity:11.3f}")
    last = fp32.epochs[-1].test_acc
    print(f"\ntest accuracy: chip (FP32) {last:.3f}, snnTorch {torch_acc[-1]:.3f} "
          f"(difference {100 * (last - torch_acc[-1]):+.1f} points); chip FP16 {fp16.epochs[-1].test_acc:.3f} "
          f"({100 * (fp16.epochs[-1].test_acc - last):+.1f} points vs FP32)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(fp32, str(out / "train_digits.png"), {"chip (fp16)": {"test_acc": [e.test_acc for e in fp16.epochs],
                                                               "loss": [e.loss for e in fp16.epochs]},
                                               "snnTorch (fp32)": torch_run})
    (out / "train_digits.json").write_text(json.dumps(
        {"chip_fp32": fp32.to_dict(), "chip_fp16": fp16.to_dict(), "snntorch_test_acc": torch_acc,
         "snntorch_loss": torch_run["loss"]}, indent=2) + "\n")
    print(f"wrote {out / 'train_digits.png'} and {out / 'train_digits.json'}")
    return 0 if last >= 0.9 and abs(last - torch_acc[-1]) <= 0.03 else 1


if __name__ == "__main__":
    sys.exit(main())
