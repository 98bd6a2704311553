"""The sweep spec (docs/sweeps.md): a base architecture, the architecture fields to vary (grids
and seeded random samples), the models and the run settings; validated on load, every error
naming its path. A spec expands into design points, each keyed by the hash of its configuration."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from spikeforge.isa import SpikeforgeError
from spikeforge.isa.limits import MAX_BATCH, MAX_SEED, MAX_TIMESTEPS, check_memory, show
from spikeforge.isa.safeio import load_yaml, read_text
from spikeforge.isa.arch import OPTIONAL_FIELDS, Arch, apply_overrides, arch_doc, arch_from_doc, presets
from spikeforge.isa.program import OPTIMIZERS
from spikeforge.mapping.dataflow import DATAFLOWS, OBJECTIVES

MAX_POINTS = 10_000  # design points of one spec, unless --max-points says otherwise
VERSION = "3"  # of the point configuration: a change invalidates stored results
DISTRIBUTIONS = ("uniform", "log_uniform", "choice")
FIELDS = ("arch", "models", "training", "timesteps", "batch", "rate", "input", "seed", "mode", "dataflow",
          "objective", "optimizer", "params", "samples", "sample_seed")

# Architecture fields the mapper never reads (mapping/plan.py, mapping/dataflow.py and
# compiler/codegen.py read the mesh, the precision and the buffers' names, sizes, levels and
# roles): design points that differ only in these share one mapping. The dataflow search prices
# its candidates with them, so it runs per point (cheap: no simulation).
COST_ONLY = ("clock_mhz", "arithmetic", "description", "core.static_mw", "core.logic_mm2", "core.engines", "noc",
             "dram", "energy_pj", "sram")
COST_ONLY_BUFFER_FIELDS = ("port_bits", "pj_per_bit", "read_pj_per_bit", "write_pj_per_bit")


def cost_only(path: str) -> bool:
    """Whether an architecture field only enters the cost walk (timing and energy), not the mapping."""
    if any(path == p or path.startswith(p + ".") for p in COST_ONLY):
        return True
    keys = path.split(".")
    buffer = keys[:2] == ["core", "buffers"] and len(keys) == 4 or keys[0] == "global_buffers" and len(keys) == 3
    return buffer and keys[-1] in COST_ONLY_BUFFER_FIELDS


def base_doc(arch: str) -> dict:
    """The YAML document of a preset or arch file."""
    return arch_doc(arch)[0]


def build_arch(doc: dict, overrides: dict[str, Any]) -> Arch:
    """The validated architecture of `doc` with dotted-path overrides; errors name the field only."""
    return arch_from_doc(apply_overrides(doc, overrides, ""), "")


@dataclass(frozen=True)
class Param:
    """One varied architecture field: grid `values`, or a distribution to draw `samples` from."""

    path: str
    values: tuple = ()
    dist: str = ""
    args: tuple = ()

    def draw(self, rng: np.random.Generator):
        """One random value; a range with int bounds gives ints."""
        if self.dist == "choice":
            return self.args[int(rng.integers(len(self.args)))]
        lo, hi = self.args
        if self.dist == "log_uniform":
            v = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            return min(max(round(v), lo), hi) if isinstance(lo, int) and isinstance(hi, int) else _sig(v)
        if isinstance(lo, int) and isinstance(hi, int):
            return int(rng.integers(lo, hi, endpoint=True))
        return _sig(rng.uniform(lo, hi))


def _sig(v: float) -> float:
    return float(f"{v:.6g}")


@dataclass(frozen=True)
class Point:
    """One design point: a model on the base architecture with overrides, and the run settings."""

    model: str
    arch: str
    overrides: tuple[tuple[str, Any], ...]
    training: bool
    timesteps: int
    batch: int
    rate: float | None
    input: str | None
    seed: int
    mode: str
    dataflow: str = "search"
    objective: str = "energy"
    optimizer: str = "sgd"

    @cached_property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the whole configuration."""
        config = {**asdict(self), "overrides": dict(self.overrides), "version": VERSION}
        return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @property
    def compile_key(self) -> tuple:
        """What the mapping depends on: points with the same key share one mapping."""
        shape = tuple((p, v) for p, v in self.overrides if not cost_only(p))
        return self.model, self.seed, self.arch, shape, self.training, self.timesteps, self.batch, self.optimizer

    def columns(self) -> dict[str, Any]:
        """The point's settings and parameters, as result-table columns."""
        return {"model": self.model, "arch": self.arch, "training": self.training, "timesteps": self.timesteps,
                "batch": self.batch, "rate": self.rate, "input": self.input, "seed": self.seed, "mode": self.mode,
                "dataflow": self.dataflow, "objective": self.objective, "optimizer": self.optimizer,
                **dict(self.overrides)}


@dataclass(frozen=True)
class Spec:
    """A validated sweep spec; file paths in it are absolute."""

    source: str
    arch: str
    models: tuple[str, ...]
    params: tuple[Param, ...]
    training: bool = False
    timesteps: int = 4
    batch: int = 1
    rate: float | None = None
    input: str | None = None
    seed: int = 0
    mode: str = "sparse"
    dataflow: str = "search"
    objective: str = "energy"
    optimizer: str = "sgd"
    samples: int = 0
    sample_seed: int = 0
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of every file the sweep reads

    def points(self) -> list[Point]:
        """Every design point, without duplicates: models x grid values x random samples."""
        grid = [p for p in self.params if p.values]
        drawn = [p for p in self.params if p.dist]
        rng = np.random.default_rng(self.sample_seed)
        samples = [[(p.path, p.draw(rng)) for p in drawn] for _ in range(self.samples)] or [[]]
        points = {}
        for model in self.models:
            for values in itertools.product(*(p.values for p in grid)):
                for sample in samples:
                    chosen = dict(zip((p.path for p in grid), values)) | dict(sample)
                    overrides = tuple((p.path, chosen[p.path]) for p in self.params)
                    pt = Point(model, self.arch, overrides, self.training, self.timesteps, self.batch, self.rate,
                               self.input, self.seed, self.mode, self.dataflow, self.objective, self.optimizer)
                    points.setdefault(pt.hash, pt)
        return list(points.values())

    def settings(self) -> dict[str, Any]:
        """What all points share: a sweep directory holds the points of one set of settings."""
        return {"arch": self.arch, "training": self.training, "timesteps": self.timesteps, "batch": self.batch,
                "rate": self.rate, "input": self.input, "seed": self.seed, "mode": self.mode,
                "dataflow": self.dataflow, "objective": self.objective, "optimizer": self.optimizer,
                "params": [p.path for p in self.params]}


# ---- loading and validation ------------------------------------------------------------------

class _Check:
    """Errors of one spec file, each naming its path inside the spec."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, path: str, msg: str) -> SpikeforgeError:
        return SpikeforgeError(f"{path}: {msg}", self.where)

    def int_(self, d: dict, key: str, default: int, low: int, high: int) -> int:
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise self.fail(key, f"must be an int in [{low}, {high}], got {show(v)}")
        return v

    def number(self, path: str, v: Any) -> float | int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) < float("inf"):
            raise self.fail(path, f"must be a finite number, got {show(v)}")
        return v


def load_spec(path: str, max_points: int = MAX_POINTS) -> Spec:
    """Read and validate a sweep spec: every override path and value is checked by building the
    architecture, every model by loading it, before any work starts; a spec of more than
    `max_points` design points is refused before they are made."""
    doc = load_yaml(read_text(path, path, "a sweep spec"), path, "a sweep spec")
    ck = _Check(path)
    if not isinstance(doc, dict):
        raise SpikeforgeError("must be a mapping (docs/sweeps.md)", path)
    for k in doc:
        if k not in FIELDS:
            raise ck.fail(str(k), f"unknown field (allowed: {', '.join(FIELDS)})")
    folder = Path(path).resolve().parent
    files: dict[str, str] = {}
    arch = _arch(doc.get("arch", "default"), folder, files, ck)
    base = base_doc(arch)
    kw = dict(training=doc.get("training", False), timesteps=ck.int_(doc, "timesteps", 4, 1, MAX_TIMESTEPS),
              batch=ck.int_(doc, "batch", 1, 1, MAX_BATCH), seed=ck.int_(doc, "seed", 0, 0, MAX_SEED),
              mode=doc.get("mode", "sparse"), dataflow=doc.get("dataflow", "search"),
              objective=doc.get("objective", "energy"), optimizer=doc.get("optimizer", "sgd"),
              samples=ck.int_(doc, "samples", 0, 1, max_points) if "samples" in doc else 0,
              sample_seed=ck.int_(doc, "sample_seed", 0, 0, MAX_SEED))
    if not isinstance(kw["training"], bool):
        raise ck.fail("training", f"must be true or false, got {show(kw['training'])}")
    if kw["mode"] not in ("sparse", "dense"):
        raise ck.fail("mode", f"must be sparse or dense, got {show(kw['mode'])}")
    for key, allowed in (("dataflow", DATAFLOWS), ("objective", OBJECTIVES), ("optimizer", tuple(OPTIMIZERS))):
        if kw[key] not in allowed:
            raise ck.fail(key, f"must be one of {', '.join(allowed)}, got {show(kw[key])}")
    rate, input_file, data = _input(doc, folder, files, ck)
    models = _models(doc, folder, files, ck, kw, data)
    params = _params(doc.get("params"), base, ck)
    drawn = any(p.dist for p in params)
    if drawn and not kw["samples"]:
        raise ck.fail("samples", "needed: a parameter draws from a distribution (uniform, log_uniform, choice)")
    if kw["samples"] and not drawn:
        raise ck.fail("samples", "no parameter to sample: give one uniform, log_uniform or choice")
    n = len(models) * math.prod(len(p.values) for p in params if p.values) * max(kw["samples"], 1)
    if n > max_points:
        raise SpikeforgeError(f"{n} design points, more than the limit of {max_points} (raise it with --max-points)",
                              path)
    spec = Spec(path, arch, models, params, rate=rate, input=input_file, files=files, **kw)
    for pt in spec.points():  # combinations (e.g. buffer roles) the single values did not check
        try:
            build_arch(base, dict(pt.overrides))
        except SpikeforgeError as e:
            shown = ", ".join(f"{p}={v}" for p, v in pt.overrides)
            raise SpikeforgeError(f"design point ({shown}): {e}", path) from None
    return spec


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _arch(v: Any, folder: Path, files: dict, ck: _Check) -> str:
    if not isinstance(v, str):
        raise ck.fail("arch", f"must be a preset name or an arch YAML file, got {show(v)}")
    if v in presets():
        return v
    path = folder / v
    if not path.is_file():
        raise ck.fail("arch", f"'{v}' is neither a preset ({', '.join(presets())}) nor an existing file")
    try:
        build_arch(base_doc(str(path)), {})
    except SpikeforgeError as e:
        raise ck.fail("arch", str(e)) from None
    files[str(path)] = _digest(path)
    return str(path)


def _input(doc: dict, folder: Path, files: dict, ck: _Check) -> tuple[float | None, str | None, np.ndarray | None]:
    """The input rate, or the input file and its array."""
    rate, name = doc.get("rate"), doc.get("input")
    if rate is not None and name is not None:
        raise ck.fail("rate", "give rate or input, not both")
    if rate is not None and not 0 <= ck.number("rate", rate) <= 1:
        raise ck.fail("rate", f"must be in [0, 1], got {show(rate)}")
    if name is None:
        return rate, None, None
    from spikeforge.hwsim.simulate import read_input

    path = folder / str(name)
    data = read_input(str(path), f"{ck.where}: input")
    files[str(path)] = _digest(path)
    return None, str(path), data


def _models(doc: dict, folder: Path, files: dict, ck: _Check, kw: dict, data) -> tuple[str, ...]:
    from spikeforge.compiler.frontends import SUFFIXES, load_model
    from spikeforge.hwsim.simulate import make_input

    models = doc.get("models")
    models = [models] if isinstance(models, str) else models
    if not isinstance(models, list) or not models:
        raise ck.fail("models", f"must be a zoo name or a non-empty list of zoo names and model files, got {show(models)}")
    out = []
    for i, m in enumerate(models):
        if not isinstance(m, str):
            raise ck.fail(f"models[{i}]", f"must be a zoo name or a model file, got {show(m)}")
        path = folder / m
        is_file = Path(m).suffix.lower() in SUFFIXES or path.exists()
        name = str(path) if is_file else m
        try:
            graph = load_model(name, weights=False)
            check_memory(f"a step of {graph.name} (T = {kw['timesteps']}, B = {kw['batch']})",
                         graph.footprint(kw["timesteps"], kw["batch"], kw["training"]))
            if data is not None:
                make_input(graph, kw["timesteps"], kw["batch"], None, 0, data)
        except SpikeforgeError as e:
            raise ck.fail(f"models[{i}]", str(e)) from None
        if is_file:
            files[name] = _digest(path)
        out.append(name)
    return tuple(out)


def _params(v: Any, base: dict, ck: _Check) -> tuple[Param, ...]:
    if not isinstance(v, list) or not v:
        raise ck.fail("params", "must be a non-empty list of {path, values | uniform | log_uniform | choice}")
    out: list[Param] = []
    for i, d in enumerate(v):
        at = f"params[{i}]"
        if not isinstance(d, dict):
            raise ck.fail(at, f"must be a mapping with path and values (or a distribution), got {show(d)}")
        for k in d:
            if k not in ("path", "values") + DISTRIBUTIONS:
                raise ck.fail(f"{at}.{k}", f"unknown field (allowed: path, values, {', '.join(DISTRIBUTIONS)})")
        path = d.get("path")
        _check_path(path, base, f"{at}.path", ck)
        if any(p.path == path for p in out):
            raise ck.fail(f"{at}.path", f"'{path}' is varied twice")
        kinds = [k for k in ("values",) + DISTRIBUTIONS if k in d]
        if len(kinds) != 1:
            raise ck.fail(at, f"give exactly one of values, {', '.join(DISTRIBUTIONS)}")
        kind, arg = kinds[0], d[kinds[0]]
        if not isinstance(arg, list) or not arg:
            raise ck.fail(f"{at}.{kind}", f"must be a non-empty list, got {show(arg)}")
        if kind in ("uniform", "log_uniform"):
            if len(arg) != 2:
                raise ck.fail(f"{at}.{kind}", f"must be [low, high], got {show(arg)}")
            lo, hi = (ck.number(f"{at}.{kind}", x) for x in arg)
            if not lo <= hi or kind == "log_uniform" and lo <= 0:
                raise ck.fail(f"{at}.{kind}", f"needs {'0 < ' if kind == 'log_uniform' else ''}low <= high, got {show(arg)}")
        for j, value in enumerate(arg):
            try:
                build_arch(base, {path: value})
            except SpikeforgeError as e:
                raise ck.fail(f"{at}.{kind}[{j}]", str(e)) from None
        out.append(Param(path, tuple(arg)) if kind == "values" else Param(path, dist=kind, args=tuple(arg)))
    return tuple(out)


def _check_path(path: Any, base: dict, at: str, ck: _Check) -> None:
    if not isinstance(path, str) or not path:
        raise ck.fail(at, f"must be a dotted architecture field such as 'clock_mhz', got {show(path)}")
    if path in OPTIONAL_FIELDS:  # may be left out of an arch file, and set all the same
        return
    node = base
    for k in path.split("."):
        if not isinstance(node, dict) or k not in node:
            raise ck.fail(at, f"unknown architecture field '{path}' (docs/arch.md)")
        node = node[k]
    if isinstance(node, (dict, list)):
        raise ck.fail(at, f"'{path}' is a section, not a single value")
