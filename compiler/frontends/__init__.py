"""Model frontends: NIR files and graphs, the YAML model format, the IR text form, the zoo."""

from __future__ import annotations

from pathlib import Path

from isa import Graph, SpikeforgeError

SUFFIXES = (".yaml", ".yml", ".nir", ".sfir")


def load_model(spec: str, *, seed: int = 0, weights: bool = True, dt: float = 1e-4,
               reset: str = "subtract") -> Graph:
    """Load MODEL as the CLI names it: a zoo name, or a `.yaml`, `.nir` or `.sfir` (IR text) file.
    `dt` and `reset` apply to NIR files only; `seed` to zoo and YAML models without weights."""
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in SUFFIXES or path.exists():
        if not path.is_file():
            raise SpikeforgeError("file not found" if not path.exists() else "not a file", spec)
        if suffix in (".yaml", ".yml"):
            from compiler.frontends.yaml_reader import read_yaml
            return read_yaml(path, seed=seed)
        if suffix == ".nir":
            from compiler.frontends.nir_reader import read_nir
            return read_nir(path, dt=dt, reset=reset)
        if suffix == ".sfir":
            from isa.text import from_text
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise SpikeforgeError("not a text file (expected the IR text form)", spec) from None
            return from_text(text, spec)
        raise SpikeforgeError(f"unknown model file type '{suffix}' (expected one of {', '.join(SUFFIXES)})", spec)
    from compiler.frontends import zoo
    if spec in zoo.ZOO:
        return zoo.build(spec, seed=seed, weights=weights)
    raise SpikeforgeError(f"'{spec}' is neither a zoo model ({', '.join(zoo.ZOO)}) "
                          f"nor a model file ({', '.join(SUFFIXES)})")
