"""spikeforge: compile spiking neural networks to multi-core training chips and simulate them."""

__version__ = "0.1.0"
