"""The contract between compiler and chip: the spike-driven IR and its text form."""

from isa.errors import SpikeforgeError
from isa.ir import Graph, LayerInfo, Op
from isa.ops import KINDS, REAL, SPIKE, TensorType, Work

__all__ = ["Graph", "LayerInfo", "Op", "KINDS", "REAL", "SPIKE", "TensorType", "Work", "SpikeforgeError"]
