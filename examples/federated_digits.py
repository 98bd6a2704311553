"""Federated training of the spiking digits MLP on 5 simulated chips (FedAvg), IID and non-IID,
beside a PyTorch/snnTorch FedAvg twin with the same seeds, shards, batches and schedule.

Each chip trains with the simulator's FP, BP and WG engines (spikeforge.federated); the twin
runs the same network in snnTorch (examples/train_digits.py: twin) from the same
initial weights, on the same shards (`shards`) and local batches (`local_batches`), with the
same loss and SGD, and averages the same way (`fedavg`).

    .venv/bin/python examples/federated_digits.py                 # about 3 minutes on 2 cores
    .venv/bin/python examples/federated_digits.py --rounds 5 -o out/fed

Writes OUTDIR/federated_digits.png and OUTDIR/federated_digits.json. Exits 1 unless the non-IID
chip run reaches 90 % test accuracy and lands within 1 point of its twin.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from spikeforge.compiler.frontends import load_model  # noqa: E402
from spikeforge.hwsim.optim import make_optimizer  # noqa: E402
from spikeforge.isa.arch import load_arch, with_chips  # noqa: E402
from spikeforge.federated import (FedConfig, fedavg, federated, get_weights, local_batches, plot,  # noqa: E402
                                  set_weights, shards)
from spikeforge.training import encode, load_dataset  # noqa: E402
from train_digits import MODEL, twin  # noqa: E402

NAMES = [("fc1", "weight"), ("fc1", "bias"), ("fc2", "weight"), ("fc2", "bias")]  # twin's parameter order


def fedavg_snntorch(graph, data, cfg: FedConfig) -> list[float]:
    """FedAvg of the snnTorch twin: the same shards, batches, loss, SGD and averaging; test
    accuracy of the global model after each round (SGD runs only)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    parts = shards(data.y_train, cfg.workers, cfg.partition, cfg.seed, cfg.batch)
    weights, acc = get_weights(graph), []
    for rnd in range(1, cfg.rounds + 1):
        new = []
        for w, p in enumerate(parts):
            g = copy.deepcopy(graph)
            set_weights(g, weights)
            params, _, forward = twin(g)
            opt = torch.optim.SGD(params, lr=make_optimizer("sgd", cfg.lr).lr)
            x, y = data.x_train[p], data.y_train[p]
            for idx in local_batches(len(p), cfg, rnd, w):
                loss = F.cross_entropy(forward(torch.from_numpy(encode(x[idx], cfg.timesteps))).mean(0),
                                       torch.from_numpy(y[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
            new.append({k: v.detach().numpy().copy() for k, v in zip(NAMES, params)})
        weights = fedavg(new, [len(p) for p in parts])
        g = copy.deepcopy(graph)
        set_weights(g, weights)
        _, _, forward = twin(g)
        with torch.no_grad():
            pred = forward(torch.from_numpy(encode(data.x_test, cfg.timesteps))).mean(0).argmax(1).numpy()
        acc.append(float((pred == data.y_test).mean()))
    return acc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--local-steps", type=int, default=10)
    ap.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of the non-IID run")
    ap.add_argument("--batch", "-B", type=int, default=32)
    ap.add_argument("--timesteps", "-T", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", default="default")
    ap.add_argument("-o", "--out", default="out/federated_digits")
    a = ap.parse_args(argv)
    data = load_dataset("digits", a.seed)
    chip = with_chips(load_arch(a.arch), a.workers)
    runs, twins = {}, {}
    for partition in ("iid", f"dirichlet:{a.alpha:g}"):
        cfg = FedConfig(a.workers, a.rounds, a.local_steps, partition, a.batch, a.timesteps, a.lr, a.seed)
        t0 = time.perf_counter()
        runs[partition] = federated(load_model(MODEL, seed=a.seed), data, chip, cfg,
                                    progress=lambda r: print(f"\r  chip {partition}: round {r}", end="", flush=True))
        print(f"\r  chip {partition}: {time.perf_counter() - t0:.0f} s" + " " * 10)
        t0 = time.perf_counter()
        twins[partition] = fedavg_snntorch(load_model(MODEL, seed=a.seed), data, cfg)
        print(f"  snnTorch twin {partition}: {time.perf_counter() - t0:.0f} s")
    print(f"\n{a.workers} workers, {a.local_steps} local steps of B={a.batch} T={a.timesteps} per round, "
          f"lr {a.lr}, arch {chip.name} ({chip.arithmetic}); shards: "
          + "; ".join(f"{k} {r.shard_sizes}" for k, r in runs.items()))
    print("round  " + "  ".join(f"{k:>14} twin" for k in runs))
    for i in range(a.rounds):
        print(f"{i + 1:5d}  " + "  ".join(f"{runs[k].rounds[i].test_acc:14.3f} {twins[k][i]:.3f}" for k in runs))
    r = runs[f"dirichlet:{a.alpha:g}"].rounds[-1]
    print(f"per round: compute {r.compute_energy_pj * 1e-6:.0f} µJ, communication {r.comm_energy_pj * 1e-6:.2f} µJ "
          f"({r.comm_bytes:,} bytes = {runs['iid'].params:,} parameters x {chip.value_bytes} B x 2 x {a.workers} "
          f"workers), latency {r.latency_s * 1e3:.2f} ms")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(runs, str(out / "federated_digits.png"), twins)
    (out / "federated_digits.json").write_text(json.dumps(
        {"chip": {k: r.to_dict() for k, r in runs.items()}, "snntorch_twin_test_acc": twins}, indent=2) + "\n")
    print(f"wrote {out / 'federated_digits.png'} and {out / 'federated_digits.json'}")
    last = {k: (runs[k].rounds[-1].test_acc, twins[k][-1]) for k in runs}
    for k, (chip_acc, twin_acc) in last.items():
        print(f"{k}: chip {chip_acc:.3f}, twin {twin_acc:.3f} ({100 * (chip_acc - twin_acc):+.1f} points)")
    chip_acc, twin_acc = last[f"dirichlet:{a.alpha:g}"]
    return 0 if chip_acc >= 0.9 and abs(chip_acc - twin_acc) <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
