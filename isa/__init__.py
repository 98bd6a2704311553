"""The contract between compiler and chip: the spike-driven IR and its text form."""

from spikeforge.isa.errors import SpikeforgeError
from spikeforge.isa.ir import Graph, LayerInfo, Op
from spikeforge.isa.ops import KINDS, REAL, SPIKE, TensorType, Work

__all__ = ["Graph", "LayerInfo", "Op", "KINDS", "REAL", "SPIKE", "TensorType", "Work", "SpikeforgeError"]
