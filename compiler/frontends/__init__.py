"""Model frontends: NIR files and graphs, the YAML model format, the IR text form, the zoo."""

from __future__ import annotations

from pathlib import Path

from spikeforge.isa import Graph, SpikeforgeError
from spikeforge.isa.ir import check_finite
from spikeforge.isa.limits import MAX_SEED, check_int
from spikeforge.isa.safeio import read_text

SUFFIXES = (".yaml", ".yml", ".nir", ".sfir")


def load_model(spec: str, *, seed: int = 0, weights: bool = True, dt: float | None = None,
               reset: str | None = None, exporter: str = "snntorch", allow_nonfinite: bool = False) -> Graph:
    """Load MODEL as the CLI names it: a zoo name, or a `.yaml`, `.nir` or `.sfir` (IR text) file.
    `exporter`, `dt` and `reset` apply to NIR files only (nir_reader.read_nir); `seed` fills the
    tensors a zoo, YAML or IR text model lacks. With `weights`, every tensor must be finite
    unless `allow_nonfinite`."""
    check_int("seed", seed, 0, MAX_SEED)
    graph = _load(spec, seed, weights, dt, reset, exporter)
    if weights and not allow_nonfinite:
        check_finite(graph, spec)
    return graph


def _load(spec: str, seed: int, weights: bool, dt: float | None, reset: str | None, exporter: str) -> Graph:
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in SUFFIXES or path.exists():
        if not path.is_file():
            raise SpikeforgeError("file not found" if not path.exists() else "not a file", spec)
        if suffix in (".yaml", ".yml"):
            from spikeforge.compiler.frontends.yaml_reader import read_yaml
            return read_yaml(path, seed=seed)
        if suffix == ".nir":
            from spikeforge.compiler.frontends.nir_reader import read_nir
            return read_nir(path, dt=dt, reset=reset, exporter=exporter)
        if suffix == ".sfir":
            from spikeforge.compiler.frontends.init import init_tensors
            from spikeforge.isa.text import from_text
            graph = from_text(read_text(path, spec, "the IR text form"), spec)
            return init_tensors(graph, seed) if weights else graph  # `inspect --ir` prints no tensors
        raise SpikeforgeError(f"unknown model file type '{suffix}' (expected one of {', '.join(SUFFIXES)})", spec)
    from spikeforge.compiler.frontends import zoo
    if spec in zoo.ZOO:
        return zoo.build(spec, seed=seed, weights=weights)
    raise SpikeforgeError(f"'{spec}' is neither a zoo model ({', '.join(zoo.ZOO)}) "
                          f"nor a model file ({', '.join(SUFFIXES)})")
