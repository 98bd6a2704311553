"""A compiled program: per core, a list of instructions and (nestable) loops over time steps.
`OPCODES` is the one table of opcodes and their operand kinds that codegen and simulator share;
`Program` validates every instruction when it is built. A program for a system of several
chips (header `chips` > 1) names its cores (chip, row, col); a one-chip program (row, col)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterator, Union

from spikeforge.isa.errors import SpikeforgeError

# DRAM traffic by what it carries: weights; activations (layer inputs and outputs); errors (the
# gradients of activations between layers); BPTT state; gradients (of the weights); optimizer
CATEGORIES = ("weights", "activations", "errors", "bptt_state", "gradients", "optimizer")
NOC_KINDS = ("spike", "grad", "psum")
LOOP_VARS = ("batch", "time")  # a loop runs over the samples of the batch or over the time steps
ORDERS = ("step", "sample", "batch")  # loop orders: docs/dataflow.md
# the rule of the weight update (wg.update) -> the state words it keeps per parameter, each
# FP32 (STATE_WORD_BYTES) whatever the chip's precision: Adam's first and second moments m, v
OPTIMIZERS = {"sgd": 0, "adam": 2}
STATE_WORD_BYTES = 4

_PIECE = ("layer", "lo", "hi")
# dma: a transfer between a core buffer and `level` (dram, or a global buffer by name) on behalf
# of `layer`; noc: a message of `layer`'s values to or from another core; link: a message of
# `elements` of `layer`'s values to or from a core of another chip (1 bit per spike element, a
# value per element otherwise).
OPCODES: dict[str, tuple[str, ...]] = {
    "dma.load": ("buffer", "bytes", "category", "layer", "level"),
    "dma.store": ("buffer", "bytes", "category", "layer", "level"),
    "noc.send": ("kind", "coord", "bytes", "layer"),
    "noc.recv": ("kind", "coord", "bytes", "layer"),
    "link.send": ("kind", "chip", "coord", "elements", "layer"),
    "link.recv": ("kind", "chip", "coord", "elements", "layer"),
    "fp.integrate": _PIECE,
    "fp.fire": _PIECE,
    "fp.elem": _PIECE,
    "bp.neuron": _PIECE,
    "bp.propagate": _PIECE,
    "bp.elem": _PIECE,
    "wg.accumulate": _PIECE,
    "wg.update": _PIECE,
    "barrier": ("id",),
}

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def _nat(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# operand kind -> (check, what a valid value is)
OPERAND_KINDS = {
    "buffer": (lambda v: isinstance(v, str) and bool(NAME.match(v)), "a buffer name such as fp.weights"),
    "bytes": (_nat, "a non-negative int"),
    "category": (lambda v: v in CATEGORIES, "one of " + ", ".join(CATEGORIES)),
    "kind": (lambda v: v in NOC_KINDS, "one of " + ", ".join(NOC_KINDS)),
    "coord": (lambda v: isinstance(v, tuple) and len(v) == 2 and all(map(_nat, v)),
              "a (row, col) pair of non-negative ints"),
    "level": (lambda v: isinstance(v, str) and bool(NAME.match(v)), "dram or a global buffer name"),
    "layer": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "chip": (_nat, "a non-negative int"),
    "elements": (_nat, "a non-negative int"),
    "lo": (_nat, "a non-negative int"),
    "hi": (_nat, "a non-negative int"),
    "id": (_nat, "a non-negative int"),
}


@dataclass(frozen=True)
class Instr:
    """One instruction: `args` follow the operand kinds `OPCODES[op]`; a coord is a (row, col) tuple."""

    op: str
    args: tuple = ()

    @property
    def unit(self) -> str:
        """What executes it: dma, noc, link, fp, bp, wg or barrier."""
        return self.op.split(".")[0]

    @property
    def operands(self) -> dict:
        """The args by operand kind, e.g. {"layer": "fc1", "lo": 0, "hi": 256}."""
        return dict(zip(OPCODES[self.op], self.args))


@dataclass
class Loop:
    """Run `body` for `var` (batch: the sample b, time: the step t) = 0 .. count-1, or
    count-1 .. 0 when `reverse` (BPTT)."""

    var: str
    count: int
    reverse: bool = False
    body: list[Union[Instr, Loop]] = field(default_factory=list)


@dataclass(frozen=True)
class Header:
    """What a program computes and how: the model and chip it was compiled for, inference or a
    training step of `batch` samples over `timesteps` steps, the dataflow (its name and loop
    order) the compiler chose, and the optimizer of the weight update."""

    model: str
    arch: str
    training: bool
    timesteps: int
    batch: int
    dataflow: str = "naive"
    order: str = "step"
    rounds: int = 1
    strategy: str = "metis"
    spike_rate: float = 0.1
    optimizer: str = "sgd"
    chips: int = 1  # chips of the system the program runs on (docs/multichip.md)


_HEADER_CHECKS = {
    "model": (lambda v: isinstance(v, str), "a string"),
    "arch": (lambda v: isinstance(v, str), "a string"),
    "training": (lambda v: isinstance(v, bool), "true or false"),
    "timesteps": (lambda v: _nat(v) and v > 0, "a positive int"),
    "batch": (lambda v: _nat(v) and v > 0, "a positive int"),
    "dataflow": (lambda v: isinstance(v, str) and bool(NAME.match(v)), "a name"),
    "order": (lambda v: v in ORDERS, "one of " + ", ".join(ORDERS)),
    "rounds": (lambda v: _nat(v), "a non-negative int"),
    "strategy": (lambda v: isinstance(v, str), "a string"),
    "spike_rate": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1, "in (0, 1]"),
    "optimizer": (lambda v: v in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS)),
    "chips": (lambda v: _nat(v) and v > 0, "a positive int"),
}


def header_problem(fields: dict, complete: bool = True) -> str | None:
    """What is wrong with the fields of a header (unknown, mistyped, or missing when `complete`), or None."""
    for key, value in fields.items():
        if key not in _HEADER_CHECKS:
            return f"unknown header field {key!r} (fields: {', '.join(_HEADER_CHECKS)})"
        check, what = _HEADER_CHECKS[key]
        if not check(value):
            return f"header {key} must be {what}, got {value!r}"
    for key in ("model", "arch", "training", "timesteps", "batch") if complete else ():
        if key not in fields:
            return f"header field {key!r} is missing"
    return None


def problem(item) -> str | None:
    """What is wrong with one instruction or loop header (not its body), or None."""
    if isinstance(item, Loop):
        if item.var not in LOOP_VARS:
            return f"loop variable must be one of {', '.join(LOOP_VARS)}, got {item.var!r}"
        if not (_nat(item.count) and item.count > 0):
            return f"loop count must be a positive int, got {item.count!r}"
        if not isinstance(item.reverse, bool):
            return f"loop reverse must be a bool, got {item.reverse!r}"
        return None if isinstance(item.body, list) else "loop body must be a list"
    if not isinstance(item, Instr):
        return f"expected an Instr or a Loop, got {type(item).__name__}"
    if item.op not in OPCODES:
        return f"unknown opcode {item.op!r}"
    kinds = OPCODES[item.op]
    if not isinstance(item.args, tuple) or len(item.args) != len(kinds):
        got = len(item.args) if isinstance(item.args, tuple) else repr(item.args)
        return f"{item.op} takes {len(kinds)} operand(s) ({', '.join(kinds)}), got {got}"
    for i, (kind, value) in enumerate(zip(kinds, item.args), 1):
        check, what = OPERAND_KINDS[kind]
        if not check(value):
            return f"{item.op} operand {i} ({kind}) must be {what}, got {value!r}"
    ops = item.operands
    if "lo" in ops and ops["lo"] >= ops["hi"]:
        return f"{item.op} range [{ops['lo']}, {ops['hi']}) is empty: LO must be < HI"
    return None


def link_problem(item, chip: int, chips: int) -> str | None:
    """What is wrong with a link instruction's chip operand on a core of `chip`, or None."""
    if not (isinstance(item, Instr) and item.unit == "link"):
        return None
    to = item.operands["chip"]
    if chips == 1:
        return f"{item.op} needs a program for several chips (header chips > 1)"
    if to < chips and to != chip:
        return None
    return f"{item.op} chip {to} must be another chip of the system (0 to {chips - 1}; this core is on chip {chip})"


def _walk(body: list, loops: tuple[Loop, ...]) -> Iterator[tuple[Instr, tuple[Loop, ...]]]:
    for item in body:
        if isinstance(item, Loop):
            yield from _walk(item.body, loops + (item,))
        else:
            yield item, loops


def chip_of(core: tuple) -> int:
    """The chip of a core key: (chip, row, col), or chip 0 for a one-chip (row, col)."""
    return core[0] if len(core) == 3 else 0


def coord_of(core: tuple) -> tuple[int, int]:
    """The (row, col) of a core key on its chip."""
    return core[-2:]


def core_key(chip: int, coord: tuple[int, int], chips: int) -> tuple:
    """The key of core `coord` of `chip` in a program for `chips` chips."""
    return coord if chips == 1 else (chip, *coord)


@dataclass
class Program:
    """A validated program: `cores` maps each core to its instructions, kept in sorted order; a
    core is (row, col) when the header's `chips` is 1, else (chip, row, col)."""

    header: Header
    cores: dict[tuple, list[Union[Instr, Loop]]] = field(default_factory=dict)

    def __post_init__(self):
        self.validate()
        self.cores = dict(sorted(self.cores.items()))

    def validate(self) -> None:
        """Raise SpikeforgeError naming the core and instruction index (e.g. 3.1: item 1 of loop 3)."""
        if not isinstance(self.header, Header):
            raise SpikeforgeError(f"program header must be a Header, got {type(self.header).__name__}")
        if msg := header_problem(vars(self.header)):
            raise SpikeforgeError(msg)
        chips = self.header.chips
        for core, body in self.cores.items():
            if chips == 1 and not (isinstance(core, tuple) and len(core) == 2 and all(map(_nat, core))):
                raise SpikeforgeError(f"core {core!r} must be a (row, col) pair of non-negative ints")
            if chips > 1 and not (isinstance(core, tuple) and len(core) == 3 and all(map(_nat, core))
                                  and core[0] < chips):
                raise SpikeforgeError(f"core {core!r} must be a (chip, row, col) triple of non-negative ints "
                                      f"with chip < {chips} (the header's chips)")
            if not isinstance(body, list):
                raise SpikeforgeError(f"core {core}: instructions must be a list")
            self._check_body(core, body, "")

    def _check_body(self, core, body: list, path: str) -> None:
        for i, item in enumerate(body):
            if msg := problem(item) or link_problem(item, chip_of(core), self.header.chips):
                raise SpikeforgeError(f"core {core} instruction {path}{i}: {msg}")
            if isinstance(item, Loop):
                self._check_body(core, item.body, f"{path}{i}.")

    def walk(self, core: tuple) -> Iterator[tuple[Instr, tuple[Loop, ...]]]:
        """Each instruction of a core in program order, with its enclosing loops (outermost
        first): it executes prod(loop.count) times."""
        return _walk(self.cores[core], ())

    def instruction_count(self, core: tuple | None = None, executed: bool = False) -> int:
        """Instructions in one core (or all): as written, or as executed with loops unrolled."""
        cores = [core] if core is not None else list(self.cores)
        return sum(math.prod(l.count for l in loops) if executed else 1 for c in cores for _, loops in self.walk(c))
