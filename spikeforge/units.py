"""Figures as people read them: the one byte formatter, and readable names with units for the
architecture fields a sweep varies (the units follow the arch schema's field names: `kib`,
`clock_mhz`, `pj_per_bit`, `gb_per_s`, `link_bits`, ...; docs/arch.md)."""

from __future__ import annotations

_BYTE_UNITS = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))
_COUNT_UNITS = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))

# last key of an architecture path -> (what it is, unit)
_LEAVES = {
    "kib": ("size", "KiB"), "clock_mhz": ("clock", "MHz"), "pj_per_bit": ("energy", "pJ/bit"),
    "read_pj_per_bit": ("read energy", "pJ/bit"), "write_pj_per_bit": ("write energy", "pJ/bit"),
    "hop_pj_per_bit": ("hop energy", "pJ/bit"), "gb_per_s": ("bandwidth", "GB/s"), "latency_ns": ("latency", "ns"),
    "link_bits": ("link width", "bits"), "port_bits": ("port width", "bits"), "hop_cycles": ("hop latency", "cycles"),
    "static_mw": ("static power", "mW"), "logic_mm2": ("logic area", "mm²"), "pe_rows": ("PE rows", ""),
    "pe_cols": ("PE columns", ""), "rows": ("rows", ""), "cols": ("columns", ""), "chips": ("chips", ""),
    "pj_base": ("read energy base", "pJ/bit"), "pj_per_sqrt_kib": ("read energy slope", "pJ/bit/√KiB"),
    "write_over_read": ("write/read energy", ""), "mm2_per_mbit": ("area", "mm²/Mbit"),
    "mm2_per_macro": ("area per macro", "mm²"), "precision": ("precision", ""), "arithmetic": ("arithmetic", ""),
}
_PREFIXES = {"mesh": "mesh", "noc": "NoC", "dram": "DRAM", "core": "core", "sram": "SRAM model",
             "system.link": "chip link", "system": "system"}


def _scaled(n: float, units: tuple[tuple[str, float], ...], base: str) -> str:
    for unit, div in units:
        if abs(n) >= div:
            v = n / div
            return f"{v:.{2 if abs(v) < 10 else 1 if abs(v) < 100 else 0}f} {unit}"
    return f"{round(n)} {base}".rstrip()


def format_bytes(n: float) -> str:
    """Decimal units with a space: "0 B", "512 B", "1.20 MB", "102 MB"."""
    return _scaled(n, _BYTE_UNITS, "B")


def format_count(n: float) -> str:
    """A count with a decimal prefix: "0", "512", "960 k", "1.11 G"."""
    return _scaled(n, _COUNT_UNITS, "")


def field_unit(path: str) -> str:
    """The unit of an architecture field ("" for counts and names)."""
    keys = path.split(".")
    if keys[0] == "energy_pj":
        return "pJ"
    return _LEAVES.get(keys[-1], ("", ""))[1]


def field_label(path: str) -> str:
    """A readable axis label with the unit: `dram.pj_per_bit` -> "DRAM energy (pJ/bit)",
    `core.buffers.fp_weights.kib` -> "fp_weights buffer size (KiB)"; an unknown field keeps its path."""
    keys = path.split(".")
    if keys[0] == "energy_pj" and len(keys) == 2:
        return f"{keys[1]} op energy (pJ)"
    if keys[-1] not in _LEAVES:
        return path
    what, unit = _LEAVES[keys[-1]]
    owner = ".".join(keys[:-1])
    if keys[:2] == ["core", "buffers"] and len(keys) == 4:
        owner = f"{keys[2]} buffer"
    elif keys[0] == "global_buffers" and len(keys) == 3:
        owner = f"{keys[1]} global buffer"
    elif keys[:2] == ["core", "engines"] and len(keys) == 4:
        owner = f"{keys[2].upper()} engine"
    else:
        owner = _PREFIXES.get(owner, owner)
    text = f"{owner} {what}".strip()
    return f"{text} ({unit})" if unit else text
