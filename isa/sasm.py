"""The text assembly of a program (.sasm): `assemble` parses it, `disassemble` prints it back.
`disassemble(assemble(text))` is canonical and `assemble(disassemble(program)) == program`."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

from lark import Lark, Transformer, Tree, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput

from spikeforge.isa.errors import SpikeforgeError
from spikeforge.isa.program import (OPCODES, Header, Instr, Loop, Program, chip_of, coord_of, core_key, header_problem,
                                    link_problem, problem)

_BARE = {"buffer", "category", "kind", "level"}  # string operands written unquoted; the others are quoted


class _Bare(str):
    """A string operand that was written unquoted."""


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(files("spikeforge.isa").joinpath("sasm.lark").read_text(), parser="lalr", propagate_positions=True)


@v_args(inline=True)
class _Values(Transformer):
    def int(self, t):
        return int(t)

    def float(self, t):
        return float(t)

    def string(self, t):
        return json.loads(t, strict=False)

    def name(self, t):
        return _Bare(t)

    def coord(self, r, c):
        return int(r), int(c)

    def true(self):
        return True

    def false(self):
        return False


def _unexpected(e: UnexpectedInput) -> str:
    if isinstance(e, UnexpectedCharacters):
        return f"character {e.char!r}"
    token = getattr(e, "token", None)
    if token is None or token.type == "$END":
        return "end of input"
    return "end of line" if token.type == "_NL" else repr(str(token))


class _Assembler:
    """Builds the program statement by statement; `stack` holds the open bodies: the current
    core's, then each open loop's, with the statement that opened it."""

    def __init__(self, where: str):
        self.where = where
        self.meta: dict | None = None
        self.cores: dict = {}
        self.on_chip: int | None = None  # the chip of the cores that follow (`.chip`)
        self.stack: list[tuple[list, Tree]] = []

    def error(self, node: Tree, message: str) -> SpikeforgeError:
        return SpikeforgeError(f"line {node.meta.line} column {node.meta.column}: {message}", self.where)

    def statement(self, stmt: Tree) -> None:
        if stmt.data not in ("program", "chip", "core") and not self.stack:
            raise self.error(stmt, f"{'instruction' if stmt.data == 'instr' else stmt.data} before any .core")
        getattr(self, stmt.data)(stmt)

    def program(self, stmt: Tree) -> None:
        if self.cores or self.meta is not None:
            raise self.error(stmt, ".program must come once, before any .core")
        self.meta = {}
        for entry in stmt.children:
            key, value = str(entry.children[0]), entry.children[1]
            if key in self.meta:
                raise self.error(entry, f"duplicate header field {key!r}")
            if msg := header_problem({key: value}, complete=False):
                raise self.error(entry, msg)
            self.meta[key] = value
        if msg := header_problem(self.meta):
            raise self.error(stmt, msg)

    def _chips(self) -> int:
        return (self.meta or {}).get("chips", 1)

    def chip(self, stmt: Tree) -> None:
        self.check_closed()
        chip = int(stmt.children[0])
        if self._chips() == 1:
            raise self.error(stmt, ".chip needs a .program header with chips > 1")
        if not 0 <= chip < self._chips():
            raise self.error(stmt, f".chip {chip}: must be 0 to {self._chips() - 1} (the header's chips)")
        self.on_chip = chip
        self.stack = []

    def core(self, stmt: Tree) -> None:
        self.check_closed()
        coord = tuple(int(x) for x in stmt.children)
        if min(coord) < 0:
            raise self.error(stmt, f"core {coord} must have a non-negative row and col")
        if self._chips() > 1 and self.on_chip is None:
            raise self.error(stmt, f".core before any .chip (the header has chips={self._chips()})")
        key = core_key(self.on_chip or 0, coord, self._chips())
        if key in self.cores:
            raise self.error(stmt, f"duplicate .core {coord[0]} {coord[1]}" + (f" on .chip {self.on_chip}"
                                                                                if self._chips() > 1 else ""))
        self.cores[key] = []
        self.stack = [(self.cores[key], stmt)]

    def loop(self, stmt: Tree) -> None:
        loop = Loop(str(stmt.children[0]), int(stmt.children[1]), len(stmt.children) == 3)
        if msg := problem(loop):
            raise self.error(stmt, msg)
        self.stack[-1][0].append(loop)
        self.stack.append((loop.body, stmt))

    def end(self, stmt: Tree) -> None:
        if len(self.stack) == 1:
            raise self.error(stmt, "end without loop")
        self.stack.pop()

    def instr(self, stmt: Tree) -> None:
        name, *raw = stmt.children
        instr = Instr(str(name), tuple(str(a) if isinstance(a, str) else a for a in raw))
        if msg := problem(instr) or link_problem(instr, self.on_chip or 0, self._chips()):
            raise self.error(stmt, msg)
        for i, (kind, a) in enumerate(zip(OPCODES[instr.op], raw), 1):
            if isinstance(a, str) and isinstance(a, _Bare) != (kind in _BARE):
                form = "a bare name" if kind in _BARE else "a quoted string"
                raise self.error(stmt, f"{instr.op} operand {i} ({kind}) must be {form}")
        self.stack[-1][0].append(instr)

    def check_closed(self) -> None:
        if len(self.stack) > 1:
            raise self.error(self.stack[-1][1], "loop is never closed (no matching end)")


def assemble(text: str, where: str = "<sasm>") -> Program:
    """Parse assembly text; errors name the line and column."""
    try:
        tree = _Values().transform(_parser().parse(text))
    except UnexpectedInput as e:
        line = e.line if e.line > 0 else text.count("\n") + 1
        raise SpikeforgeError(f"line {line} column {max(e.column, 1)}: syntax error: unexpected {_unexpected(e)}",
                              where) from None
    except LarkError as e:
        raise SpikeforgeError(f"syntax error ({e})", where) from None
    asm = _Assembler(where)
    for stmt in tree.children:
        asm.statement(stmt)
    asm.check_closed()
    if asm.meta is None:
        raise SpikeforgeError("no .program header (model, arch, training, timesteps, batch)", where)
    return Program(Header(**asm.meta), asm.cores)


def _literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r) else r + ".0"
    return json.dumps(v) if isinstance(v, str) else str(v)


def _operand(kind: str, v) -> str:
    if kind == "coord":
        return f"({v[0]}, {v[1]})"
    return v if kind in _BARE else _literal(v)


def _emit(body: list, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    for item in body:
        if isinstance(item, Loop):
            lines.append(f"{pad}loop {item.var} {item.count}" + (" reverse" if item.reverse else ""))
            _emit(item.body, depth + 1, lines)
            lines.append(pad + "end")
        else:
            operands = ", ".join(_operand(k, a) for k, a in zip(OPCODES[item.op], item.args))
            lines.append(f"{pad}{item.op} {operands}".rstrip())


def disassemble(program: Program) -> str:
    """Print a program in canonical form: two-space indents, cores in sorted order (a `.chip`
    line before each chip's cores, and `chips` in the header, only when there are several)."""
    fields = {k: v for k, v in vars(program.header).items() if k != "chips" or v != 1}
    lines = ["# spikeforge assembly", ".program" + "".join(f" {k}={_literal(v)}" for k, v in fields.items())]
    chip = None
    for core, body in program.cores.items():
        if program.header.chips > 1 and chip_of(core) != chip:
            chip = chip_of(core)
            lines.append(f".chip {chip}")
        lines.append(".core {} {}".format(*coord_of(core)))
        _emit(body, 1, lines)
    return "\n".join(lines) + "\n"
