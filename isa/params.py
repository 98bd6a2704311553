"""Declarative parameter schemas: each op kind lists its parameters, and one normaliser
turns user values (from YAML, NIR or code) into canonical Python values or a clear message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spikeforge.isa.limits import show

_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One parameter of an op kind: its name, value type, default (or required)."""

    name: str
    type: str  # pos_int | nonneg_int | int | pair | nonneg_pair | float | pos_float | bool | str | shape | axis
    default: Any = _REQUIRED
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


def normalize(p: Param, v: Any) -> Any:
    """Return the canonical value of `v` for parameter `p`; raise ValueError with a message
    of the form `must be ..., got ...` otherwise."""
    t = p.type
    if t in ("pos_int", "nonneg_int", "int", "axis"):
        if not _is_int(v):
            raise ValueError(f"must be {'a positive int' if t == 'pos_int' else 'an int'}, got {show(v)}")
        if t == "pos_int" and v <= 0:
            raise ValueError(f"must be a positive int, got {show(v)}")
        if t == "nonneg_int" and v < 0:
            raise ValueError(f"must be a non-negative int, got {show(v)}")
        return int(v)
    if t in ("pair", "nonneg_pair"):
        vals = [v, v] if _is_int(v) else v
        lo, word = (1, "positive") if t == "pair" else (0, "non-negative")
        if (not isinstance(vals, (list, tuple)) or len(vals) != 2
                or not all(_is_int(x) and x >= lo for x in vals)):
            raise ValueError(f"must be a {word} int or a pair of {word} ints, got {show(v)}")
        return (int(vals[0]), int(vals[1]))
    if t in ("float", "pos_float"):
        if not _is_number(v) or not abs(v) < float("inf"):
            raise ValueError(f"must be a (finite) number, got {show(v)}")
        if t == "pos_float" and v <= 0:
            raise ValueError(f"must be a positive number, got {show(v)}")
        return float(v)
    if t == "bool":
        if not isinstance(v, bool):
            raise ValueError(f"must be true or false, got {show(v)}")
        return v
    if t == "str":
        if not isinstance(v, str) or (p.choices and v not in p.choices):
            want = " or ".join(repr(c) for c in p.choices) if p.choices else "a string"
            raise ValueError(f"must be {want}, got {show(v)}")
        return v
    if t == "shape":
        if (not isinstance(v, (list, tuple)) or not v
                or not all(_is_int(x) and x > 0 for x in v)):
            raise ValueError(f"must be a non-empty list of positive ints, got {show(v)}")
        return tuple(int(x) for x in v)
    raise AssertionError(f"unknown param type {t}")


def normalize_all(schema: tuple[Param, ...], given: dict[str, Any], where: str) -> dict[str, Any]:
    """Normalise a whole parameter dict against a schema. Raises SpikeforgeError naming the
    parameter's path (`where.name`) for an unknown, missing or bad value."""
    from spikeforge.isa.errors import SpikeforgeError

    known = {p.name: p for p in schema}
    for k in given:
        if k not in known:
            allowed = ", ".join(known) or "none"
            raise SpikeforgeError(f"unknown parameter (allowed: {allowed})", f"{where}.{k}")
    out: dict[str, Any] = {}
    for p in schema:
        if p.name in given and given[p.name] is not None:
            try:
                out[p.name] = normalize(p, given[p.name])
            except ValueError as e:
                raise SpikeforgeError(str(e), f"{where}.{p.name}") from None
        elif p.required:
            raise SpikeforgeError("missing required parameter", f"{where}.{p.name}")
        else:
            out[p.name] = p.default
    return out
