"""spikeforge: compile spiking neural networks to multi-core training chips and simulate them.

    import spikeforge as sf
    graph = sf.load_model("vgg11")                       # a zoo name, a model file, or build a Graph
    compiled = sf.compile(graph, arch="default", train=True, timesteps=4, batch=2)
    result = sf.simulate(compiled)                       # runs the compiled program as it is
    result.doc["totals"]["energy_pj"]; result.save("out/vgg11")

docs/api.md describes the functions and their results."""

__version__ = "0.1.0"

_API = {"compile": "spikeforge.api", "simulate": "spikeforge.api", "train": "spikeforge.api",
        "sweep": "spikeforge.api", "inspect_model": "spikeforge.api", "export_nir": "spikeforge.api",
        "load_model": "spikeforge.compiler.frontends", "load_arch": "spikeforge.isa.arch",
        "Graph": "spikeforge.isa", "SpikeforgeError": "spikeforge.isa"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """The API's names, imported when first used (so `spikeforge --help` starts fast)."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'spikeforge' has no attribute {name!r}")
