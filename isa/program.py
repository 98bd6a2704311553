"""A compiled program: per core, a list of instructions and (nestable) loops over time steps.
`OPCODES` is the one table of opcodes and their operand kinds that codegen and simulator share;
`Program` validates every instruction when it is built."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterator, Union

from isa.errors import SpikeforgeError

CATEGORIES = ("weights", "activations", "bptt_state", "gradients", "optimizer")
NOC_KINDS = ("spike", "grad", "psum")

_PIECE = ("layer", "lo", "hi")
OPCODES: dict[str, tuple[str, ...]] = {
    "dma.load": ("buffer", "bytes", "category", "tag"),
    "dma.store": ("buffer", "bytes", "category", "tag"),
    "noc.send": ("kind", "coord", "bytes", "tag"),
    "noc.recv": ("kind", "coord", "bytes", "tag"),
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
    "tag": (lambda v: isinstance(v, str), "a string"),
    "layer": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
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
        """What executes it: dma, noc, fp, bp, wg or barrier."""
        return self.op.split(".")[0]

    @property
    def operands(self) -> dict:
        """The args by operand kind, e.g. {"layer": "fc1", "lo": 0, "hi": 256}."""
        return dict(zip(OPCODES[self.op], self.args))


@dataclass
class Loop:
    """Run `body` for t = 0 .. count-1, or count-1 .. 0 when `reverse` (BPTT)."""

    count: int
    reverse: bool = False
    body: list[Union[Instr, Loop]] = field(default_factory=list)


def problem(item) -> str | None:
    """What is wrong with one instruction or loop header (not its body), or None."""
    if isinstance(item, Loop):
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


def meta_problem(key, value) -> str | None:
    """What is wrong with one metadata entry, or None."""
    if not (isinstance(key, str) and NAME.match(key)):
        return f"metadata key {key!r} must be a name such as timesteps"
    if isinstance(value, float) and not math.isfinite(value):
        return f"metadata {key} must be finite, got {value!r}"
    if not isinstance(value, (str, int, float, bool)):
        return f"metadata {key} must be a str, int, float or bool, got {value!r}"
    return None


def _walk(body: list, counts: tuple[int, ...]) -> Iterator[tuple[Instr, tuple[int, ...]]]:
    for item in body:
        if isinstance(item, Loop):
            yield from _walk(item.body, counts + (item.count,))
        else:
            yield item, counts


@dataclass
class Program:
    """A validated program: `cores` maps (row, col) to its instructions, kept in sorted order."""

    meta: dict[str, Union[str, int, float, bool]] = field(default_factory=dict)
    cores: dict[tuple[int, int], list[Union[Instr, Loop]]] = field(default_factory=dict)

    def __post_init__(self):
        self.validate()
        self.cores = dict(sorted(self.cores.items()))

    def validate(self) -> None:
        """Raise SpikeforgeError naming the core and instruction index (e.g. 3.1: item 1 of loop 3)."""
        for key, value in self.meta.items():
            if msg := meta_problem(key, value):
                raise SpikeforgeError(msg)
        for core, body in self.cores.items():
            if not (isinstance(core, tuple) and len(core) == 2 and all(map(_nat, core))):
                raise SpikeforgeError(f"core {core!r} must be a (row, col) pair of non-negative ints")
            if not isinstance(body, list):
                raise SpikeforgeError(f"core {core}: instructions must be a list")
            self._check_body(core, body, "")

    def _check_body(self, core, body: list, path: str) -> None:
        for i, item in enumerate(body):
            if msg := problem(item):
                raise SpikeforgeError(f"core {core} instruction {path}{i}: {msg}")
            if isinstance(item, Loop):
                self._check_body(core, item.body, f"{path}{i}.")

    def walk(self, core: tuple[int, int]) -> Iterator[tuple[Instr, tuple[int, ...]]]:
        """Each instruction of a core in program order, with the counts of its enclosing loops
        (outermost first): it executes prod(counts) times."""
        return _walk(self.cores[core], ())

    def instruction_count(self, core: tuple[int, int] | None = None, executed: bool = False) -> int:
        """Instructions in one core (or all): as written, or as executed with loops unrolled."""
        cores = [core] if core is not None else list(self.cores)
        return sum(math.prod(counts) if executed else 1 for c in cores for _, counts in self.walk(c))
