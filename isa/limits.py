"""Resource limits and value checks shared by every reader: a memory budget that figures are
checked against before anything is allocated, bounds on ints and seeds, finite real values, and
error messages that quote values in bounded length (docs/reliability.md)."""

from __future__ import annotations

import math
import os
import reprlib
import resource
from typing import Any

import numpy as np

from spikeforge.isa.errors import SpikeforgeError

MAX_TIMESTEPS = 100_000
MAX_BATCH = 1_000_000
MAX_SEED = 2**32 - 1  # numpy, METIS and SQLite all take it
MAX_CORES = 65_536  # a mesh of 256 x 256 (of all chips of a system together)
MAX_CHIPS = 1024  # chips of a system
VALUE_BYTES = 4  # float32: weights, inputs and state in the simulator

_limit: int | None = None  # bytes, set by --max-memory; None: what the machine allows
_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 2, 6, 4, 40, 40


def show(v: Any, width: int = 80) -> str:
    """A value as an error message quotes it: repr, abbreviated to at most `width` characters."""
    s = _repr.repr(v)
    return s if len(s) <= width else s[:width - 3] + "..."


def one_line(message: str, width: int = 2000) -> str:
    """A message as one line of at most `width` characters (control characters become spaces)."""
    line = "".join(c if c.isprintable() else " " for c in message)
    return line if len(line) <= width else line[:width - 3] + "..."


def set_memory_limit(nbytes: int | None) -> None:
    """Set the memory budget in bytes (None: the machine's memory and this process's limit)."""
    global _limit
    _limit = nbytes


def memory_limit() -> int:
    """The memory budget: --max-memory, else physical memory or the headroom under RLIMIT_AS."""
    if _limit is not None:
        return _limit
    limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, max(soft - _address_space(), 0))
    return limit


def _address_space() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def check_memory(what: str, nbytes: int) -> None:
    """Refuse work whose estimated memory `nbytes` exceeds the budget, naming the figure."""
    limit = memory_limit()
    if nbytes > limit:
        raise SpikeforgeError(f"{what} needs about {gib(nbytes)}, more than the memory limit of {gib(limit)} "
                              "(raise it with --max-memory GIB if the machine has it)")


def elements(shape) -> int:
    """The number of elements of a shape, without int64 overflow."""
    return math.prod(int(d) for d in shape)


def check_int(name: str, v: Any, low: int, high: int) -> int:
    """`v` as an int in [low, high], or an error naming `name`."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= v <= high:
        raise SpikeforgeError(f"{name}: must be an int in [{low}, {high}], got {show(v)}")
    return int(v)


def check_array(name: str, a: np.ndarray, allow_nonfinite: bool = False) -> None:
    """A numeric array must be real (bool, int or float), and finite as float32."""
    if a.dtype.kind not in "biuf":
        raise SpikeforgeError(f"{name}: must be a real numeric array, got dtype {a.dtype}")
    if allow_nonfinite or a.dtype.kind != "f":
        return
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(a.astype(np.float32, copy=False))
    if not finite.all():
        bad = a.reshape(-1)[np.argmin(finite.reshape(-1))]
        raise SpikeforgeError(f"{name}: holds {int(finite.size - finite.sum())} non-finite value(s) "
                              f"(e.g. {float(bad):g}: NaN, inf or beyond float32); pass --allow-nonfinite to run it anyway")
