"""The IR's text form: `to_text` prints a graph, `from_text` parses it back to an equal graph.
Tensors are printed inline (float32 little-endian, base64) unless `weights=False`."""

from __future__ import annotations

import base64
import json
import math
import re
from functools import lru_cache
from importlib.resources import files

import numpy as np
from lark import Lark, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedInput

from spikeforge.isa.errors import SpikeforgeError
from spikeforge.isa.ir import Graph, Op

_SIMPLE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*\Z")


def _name(s: str) -> str:
    return s if _SIMPLE.match(s) else json.dumps(s)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r or "inf" in r) else r + ".0"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return str(int(v))


def _tensor(k: str, a: np.ndarray) -> str:
    data = base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()
    return f'{k}: [{", ".join(map(str, a.shape))}] b64"{data}"'


def to_text(graph: Graph, weights: bool = True) -> str:
    """Print a graph; each op's inferred type follows as a comment."""
    lines = [f"graph {json.dumps(graph.name)} {{"]
    for op in graph:
        args = ", ".join("%" + _name(i) for i in op.inputs)
        params = ", ".join(f"{k} = {_value(v)}" for k, v in op.params.items())
        s = f"  %{_name(op.name)} = {op.kind}({args})"
        if params:
            s += f" {{{params}}}"
        if weights and op.tensors:
            s += " with\n    " + ",\n    ".join(_tensor(k, v) for k, v in op.tensors.items())
        lines.append(f"{s};  # {op.type}")
    lines.append("}")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(files("spikeforge.isa").joinpath("ir.lark").read_text(), parser="lalr", propagate_positions=False)


@v_args(inline=True)
class _Build(Transformer):
    def float(self, t):
        return float(t)

    def int(self, t):
        return int(t)

    def string(self, t):
        return json.loads(t)

    def true(self):
        return True

    def false(self):
        return False

    def null(self):
        return None

    def list(self, *xs):
        return [x for x in xs if x is not None] if xs != (None,) else []

    def ref(self, t):
        return json.loads(t) if t.type == "STRING" else str(t)

    def dims(self, *xs):
        return tuple(int(x) for x in xs if x is not None)

    def param(self, k, v):
        return str(k), v

    def params(self, *ps):
        return dict(p for p in ps if p is not None)

    def tensor(self, k, dims, data):
        raw = base64.b64decode(str(data)[4:-1])
        n = math.prod(dims)
        if len(raw) != 4 * n:
            raise ValueError(f"tensor '{k}' holds {len(raw) // 4} values, its shape {list(dims)} needs {n}")
        return str(k), np.frombuffer(raw, dtype="<f4").reshape(dims).astype(np.float32)

    def tensors(self, *ts):
        return dict(ts)

    def stmt(self, name, kind, *rest):
        refs = [r for r in rest if isinstance(r, str)]
        params = next((r for r in rest if isinstance(r, dict) and not _is_tensors(r)), {})
        tensors = next((r for r in rest if isinstance(r, dict) and _is_tensors(r)), {})
        return Op(name, str(kind), tuple(refs), params, tensors)

    def start(self, name, *ops):
        return json.loads(name), list(ops)


def _is_tensors(d: dict) -> bool:
    return bool(d) and all(isinstance(v, np.ndarray) for v in d.values())


def from_text(text: str, where: str = "<text>") -> Graph:
    """Parse the text form; errors name the line and column."""
    try:
        tree = _parser().parse(text)
        name, ops = _Build().transform(tree)
    except UnexpectedInput as e:
        raise SpikeforgeError(f"line {e.line} column {e.column}: syntax error", where) from None
    except LarkError as e:
        cause = e.__context__ if e.__context__ is not None else e
        raise SpikeforgeError(f"bad value: {str(cause)[:300]}", where) from None
    except RecursionError:
        raise SpikeforgeError("nested too deeply", where) from None
    return Graph.build(name, ops, where)
