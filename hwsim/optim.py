"""The weight update of a training step (the WG engine's `wg.update`): SGD, or Adam with its
state kept between steps. Both update the graph's trained tensors in place from the gradients
of `hwsim.functional.run` (keyed by (op name, tensor name)), in FP32."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.isa.program import OPTIMIZERS

DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}  # learning rate when none is given (Adam: torch.optim.Adam's)


@dataclass
class SGD:
    """w -= lr * g."""

    lr: float = DEFAULT_LR["sgd"]

    def step(self, graph: Graph, grads: dict) -> int:
        """Update every tensor in `grads`; returns the parameters updated."""
        n = 0
        for (name, tensor), g in grads.items():
            w = graph[name].tensors[tensor]
            w -= np.float32(self.lr) * g.reshape(w.shape)
            n += w.size
        return n


@dataclass
class Adam:
    """Adam (Kingma and Ba) as `torch.optim.Adam` computes it, with its defaults, bias correction
    and L2 `weight_decay` added to the gradient (not AdamW's decoupled decay). The moments `m`
    and `v` of each trained tensor are FP32 arrays, kept (with the step count `t`) between steps,
    also when the chip rounds its weights to FP16."""

    lr: float = DEFAULT_LR["adam"]
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    t: int = 0
    m: dict = field(default_factory=dict)  # (op name, tensor name) -> FP32 array shaped as the tensor
    v: dict = field(default_factory=dict)

    def step(self, graph: Graph, grads: dict) -> int:
        """Update every tensor in `grads` and the state; returns the parameters updated."""
        b1, b2 = self.betas
        self.t += 1
        step_size = np.float32(self.lr / (1 - b1 ** self.t))
        root_bc2 = np.float32((1 - b2 ** self.t) ** 0.5)
        n = 0
        for key, g in grads.items():
            w = graph[key[0]].tensors[key[1]]
            g = g.reshape(w.shape).astype(np.float32)
            if self.weight_decay:
                g = g + np.float32(self.weight_decay) * w
            m = self.m.setdefault(key, np.zeros_like(w, np.float32))
            v = self.v.setdefault(key, np.zeros_like(w, np.float32))
            m += np.float32(1 - b1) * (g - m)
            v *= np.float32(b2)
            v += np.float32(1 - b2) * g * g
            w -= step_size * m / (np.sqrt(v) / root_bc2 + np.float32(self.eps))
            n += w.size
        return n


def make_optimizer(name: str, lr: float | None = None) -> SGD | Adam:
    """The optimizer `name` (sgd or adam) at learning rate `lr` (default: DEFAULT_LR[name])."""
    if name not in OPTIMIZERS:
        raise SpikeforgeError(f"optimizer: must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    lr = DEFAULT_LR[name] if lr is None else lr
    if not lr > 0:
        raise SpikeforgeError(f"lr: must be positive, got {lr!r}")
    return SGD(lr) if name == "sgd" else Adam(lr)


def store_fp16(graph: Graph) -> None:
    """Store every tensor of `graph` in FP16 (an FP16 chip keeps no FP32 master copy)."""
    for op in graph:
        for w in op.tensors.values():
            w[...] = w.astype(np.float16).astype(np.float32)
