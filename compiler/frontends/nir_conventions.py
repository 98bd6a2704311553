"""The conventions of the frameworks that write NIR (docs/nir.md), and the metadata key under
which spikeforge keeps what NIR has no field for. Kept apart from nir_reader so that the CLI
lists the exporters without importing nir."""

from __future__ import annotations

from dataclasses import dataclass

META = "spikeforge"  # node metadata: IR parameters NIR cannot hold (nir_writer writes, nir_reader applies)


@dataclass(frozen=True)
class Convention:
    """How one framework writes NIR and runs what it wrote (docs/nir.md)."""

    name: str
    dt: float            # the time step it assumes, s
    reset: str           # what its neurons do after a spike
    tau_times_dt: bool   # time constants written multiplied by dt (Norse 1.1.0, norse issue 411)
    exact: bool          # decay exp(-dt/tau) with unscaled input (Sinabs), else forward Euler
    jump: bool           # IF input and CubaLIF synaptic input jump by r x and w_in x (no dt factor)
    batch_input: bool    # a leading axis of 1 on Input is the batch axis even when no consumer says so


EXPORTERS = {
    "snntorch": Convention("snntorch", 1e-4, "subtract", False, False, False, False),
    "norse": Convention("norse", 1e-3, "zero", True, False, True, True),
    "sinabs": Convention("sinabs", 1.0, "subtract", False, True, True, False),
}
