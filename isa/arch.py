"""Architecture description of a multi-core SNN-training chip: dataclasses, a YAML schema
validated on load (errors name the field's path), shipped presets and path overrides."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from spikeforge.isa.errors import SpikeforgeError
from spikeforge.isa.limits import MAX_CHIPS, MAX_CORES, show
from spikeforge.isa.safeio import load_yaml, read_text

ROLES = ("weights", "input", "psum", "membrane", "spikes", "mask", "grad_in", "grad_out", "bptt",
         "wgrad", "bn", "optimizer", "other")
LEVELS = ("tile", "core", "global")  # engine tile buffers, per-core SRAM banks, the chip's global buffers
ENGINES = ("fp", "bp", "wg")
ENERGY_KEYS = ("ac", "mac", "neuron_fwd", "neuron_bwd", "elem", "sgd", "adam", "register_bit", "add", "mul", "mux",
               "comp", "sqrt")
TOPOLOGIES = ("star", "ring", "mesh")  # chips to a host; a ring of chips; a grid of chips (the host at chip 0)


@dataclass(frozen=True)
class Engine:
    """A PE array: pe_rows x pe_cols lanes, each one operation per cycle."""

    pe_rows: int
    pe_cols: int

    @property
    def lanes(self) -> int:
        return self.pe_rows * self.pe_cols


@dataclass(frozen=True)
class Buffer:
    """An SRAM: capacity, port width (bits per cycle), read and write energy, area, the `roles`
    the mapper may keep in it and its `level`: an engine's tile buffer, a core's SRAM bank or a
    global buffer of the chip (reached over the NoC)."""

    name: str
    kib: float
    port_bits: int
    read_pj_per_bit: float
    write_pj_per_bit: float
    roles: tuple[str, ...]
    level: str
    mm2: float

    @property
    def bytes(self) -> int:
        return int(self.kib * 1024)

    @property
    def role(self) -> str:
        return self.roles[0]


@dataclass(frozen=True)
class SramModel:
    """Energy and area of an SRAM macro from its capacity (a CACTI-style fit, see the preset):
    read pJ/bit = pj_base + pj_per_sqrt_kib * sqrt(KiB) (bit- and word-line length grow with the
    side of the array), write = read * write_over_read, mm^2 = mm2_per_mbit * Mbit + mm2_per_macro."""

    pj_base: float
    pj_per_sqrt_kib: float
    write_over_read: float
    mm2_per_mbit: float
    mm2_per_macro: float

    def read_pj_per_bit(self, kib: float) -> float:
        return self.pj_base + self.pj_per_sqrt_kib * kib ** 0.5

    def mm2(self, kib: float) -> float:
        return self.mm2_per_mbit * kib * 1024 * 8 / 2 ** 20 + self.mm2_per_macro


@dataclass(frozen=True)
class Noc:
    link_bits: int
    hop_cycles: int
    hop_pj_per_bit: float


@dataclass(frozen=True)
class Dram:
    gb_per_s: float
    latency_ns: float
    pj_per_bit: float


@dataclass(frozen=True)
class Link:
    """A link between two chips, or a chip and the host."""

    gb_per_s: float
    pj_per_bit: float
    latency_ns: float


# The default link, when an architecture has no `system:` section: PCIe 4.0 x4 to a host.
# 7.88 GB/s per direction = 16 GT/s x 4 lanes x 128/130 encoding (PCI-SIG, PCIe Base Spec 4.0);
# 5 pJ/bit: assumption (the order of published PCIe 4.0 SerDes PHYs; this chip publishes none);
# 1 us per transfer: assumption (DMA set-up and PCIe round trip).
DEFAULT_LINK = Link(7.88, 5.0, 1000.0)


@dataclass(frozen=True)
class System:
    """`chips` copies of the chip joined by `link`s: each to a host (`star`), in a ring, or in a
    grid of ceil(sqrt(chips)) columns (`mesh`); in a ring or a grid the host hangs off chip 0."""

    chips: int = 1
    topology: str = "star"
    link: Link = DEFAULT_LINK

    def hops(self, a: int, b: int) -> int:
        """Links between chips a and b."""
        if a == b:
            return 0
        if self.topology == "star":
            return 2
        if self.topology == "ring":
            d = abs(a - b) % self.chips
            return min(d, self.chips - d)
        cols = math.ceil(math.sqrt(self.chips))
        return abs(a // cols - b // cols) + abs(a % cols - b % cols)

    def route(self, a: int, b: int) -> list[tuple]:
        """The directed links a message from chip a to chip b crosses, `hops(a, b)` of them: up to
        the host and down on a star; the shorter way round a ring; on a grid along the row, then
        the column (the other way round where the corner is missing from a last, partial row)."""
        if a == b:
            return []
        if self.topology == "star":
            return [(a, "host"), ("host", b)]
        if self.topology == "ring":
            step = 1 if (b - a) % self.chips <= self.chips // 2 else -1
            path = [a]
            while path[-1] != b:
                path.append((path[-1] + step) % self.chips)
            return list(zip(path, path[1:]))
        cols = math.ceil(math.sqrt(self.chips))
        (ra, ca), (rb, cb) = divmod(a, cols), divmod(b, cols)
        corner = ra * cols + cb
        legs = [(ra, cb), (rb, cb)] if corner < self.chips else [(rb, ca), (rb, cb)]
        path, (r, c) = [a], (ra, ca)
        for tr, tc in legs:
            while (r, c) != (tr, tc):
                r, c = r + (tr > r) - (tr < r), c + (tc > c) - (tc < c)
                path.append(r * cols + c)
        return list(zip(path, path[1:]))

    def host_hops(self, chip: int) -> int:
        """Links between a chip and the host."""
        return 1 if self.topology == "star" else 1 + self.hops(chip, 0)


@dataclass(frozen=True)
class Energy:
    """pJ per operation (see the preset YAML for each figure's source): the cost walk's operation
    classes, and the FP16 primitives the NeuroMC model (hwsim/neuromc.py) composes its costs from."""

    ac: float
    mac: float
    neuron_fwd: float
    neuron_bwd: float
    elem: float
    sgd: float
    adam: float
    register_bit: float
    add: float
    mul: float
    mux: float
    comp: float
    sqrt: float


@dataclass(frozen=True)
class Arch:
    """A chip: a rows x cols mesh of identical cores, a NoC, one DRAM."""

    name: str
    description: str
    precision: str
    arithmetic: str  # fp32 or fp16 (default: the precision): how the simulator's engines round their results
    clock_mhz: float
    rows: int
    cols: int
    engines: dict[str, Engine]
    buffers: tuple[Buffer, ...]  # per core: tile buffers of the engines and SRAM banks
    static_mw: float
    logic_mm2: float  # per core: engines, control and router (everything but the SRAMs)
    global_buffers: tuple[Buffer, ...]
    noc: Noc
    dram: Dram
    energy: Energy
    sram: SramModel
    system: System = System()

    @property
    def n_cores(self) -> int:
        return self.rows * self.cols

    @property
    def cores(self) -> list[tuple[int, int]]:
        return [(r, c) for r in range(self.rows) for c in range(self.cols)]

    @property
    def value_bytes(self) -> int:
        return 2 if self.precision == "fp16" else 4

    def capacity(self, role: str, level: str | None = None) -> int:
        """Bytes per core of the core's buffers (tile and core level, or only `level`) that may hold `role`."""
        return sum(b.bytes for b in self.buffers if role in b.roles and level in (None, b.level))

    def global_capacity(self, role: str) -> int:
        """Bytes of the chip's global buffers that may hold `role`."""
        return sum(b.bytes for b in self.global_buffers if role in b.roles)

    def buffer_for(self, role: str, engine: str) -> Buffer:
        """The core buffer of `role` that belongs to `engine` (fp/bp/wg: its name starts so), else
        the first buffer of that role (global ones last), else the core's first buffer."""
        named = [b for b in self.buffers + self.global_buffers if role in b.roles]
        return next((b for b in named if b.name.startswith(engine)), named[0] if named else self.buffers[0])

    @property
    def area_mm2(self) -> float:
        """Die area: every core's SRAMs and logic, plus the global buffers (the NoC's wires are not counted)."""
        core = sum(b.mm2 for b in self.buffers) + self.logic_mm2
        return self.n_cores * core + sum(b.mm2 for b in self.global_buffers)

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers + self.global_buffers:
            if b.name == name:
                return b
        raise KeyError(name)


# ---- loading and validation -----------------------------------------------------------------

class _Doc:
    """Typed access to a YAML mapping that names the path of a bad value."""

    def __init__(self, d: Any, path: str, where: str):
        if not isinstance(d, dict):
            raise SpikeforgeError(f"{path or 'document'}: must be a mapping, got {_show(d)}", where)
        self.d, self.path, self.where = d, path, where

    def _p(self, k: str) -> str:
        return f"{self.path}.{k}" if self.path else k

    def err(self, k: str, msg: str) -> SpikeforgeError:
        return SpikeforgeError(f"{self._p(k)}: {msg}", self.where)

    def get(self, k: str):
        if k not in self.d:
            raise self.err(k, "missing")
        return self.d[k]

    def sub(self, k: str) -> "_Doc":
        return _Doc(self.get(k), self._p(k), self.where)

    def pos_int(self, k: str) -> int:
        v = self.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise self.err(k, f"must be a positive int, got {_show(v)}")
        return v

    def num(self, k: str, positive: bool = True) -> float:
        v = self.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) < float("inf"):
            raise self.err(k, f"must be a (finite) number, got {_show(v)}")
        if positive and v <= 0:
            raise self.err(k, f"must be > 0, got {_show(v)}")
        if not positive and v < 0:
            raise self.err(k, f"must be >= 0, got {_show(v)}")
        return float(v)

    def choice(self, k: str, choices: tuple[str, ...]) -> str:
        v = self.get(k)
        if v not in choices:
            raise self.err(k, f"must be one of {', '.join(choices)}, got {_show(v)}")
        return v

    def text(self, k: str, default: str = "") -> str:
        v = self.d.get(k, default)
        if not isinstance(v, str):
            raise self.err(k, f"must be a string, got {_show(v)}")
        return v

    def only(self, allowed: tuple[str, ...]) -> None:
        for k in self.d:
            if k not in allowed:
                raise self.err(str(k), f"unknown field (allowed: {', '.join(allowed)})")


def _show(v: Any) -> str:
    return show(v) if not isinstance(v, (dict, list)) else type(v).__name__


def _buffers(doc: _Doc, sram: SramModel | None, level: str | None) -> tuple[Buffer, ...]:
    """Buffers of one section; `level` None: each names its own (tile or core, default core).
    Energies not given (pj_per_bit for both, or read_/write_pj_per_bit) come from the SRAM model."""
    out = []
    for name in doc.d:
        b = doc.sub(str(name))
        b.only(("kib", "port_bits", "pj_per_bit", "read_pj_per_bit", "write_pj_per_bit", "role", "level"))
        kib = b.num("kib")
        roles = b.get("role")
        roles = tuple(roles) if isinstance(roles, list) and roles else (roles,)
        for r in roles:
            if r not in ROLES:
                raise b.err("role", f"must be one of {', '.join(ROLES)} (or a list of them), got {_show(r)}")
        lvl = level or (b.choice("level", LEVELS[:2]) if "level" in b.d else "core")
        if "pj_per_bit" in b.d:
            read = write = b.num("pj_per_bit", False)
        elif "read_pj_per_bit" in b.d or sram is None:
            read, write = b.num("read_pj_per_bit", False), b.num("write_pj_per_bit", False)
        else:
            read = sram.read_pj_per_bit(kib)
            write = read * sram.write_over_read
        out.append(Buffer(str(name), kib, b.pos_int("port_bits"), read, write, roles, lvl,
                          sram.mm2(kib) if sram else 0.0))
    return tuple(out)


SRAM_KEYS = ("pj_base", "pj_per_sqrt_kib", "write_over_read", "mm2_per_mbit", "mm2_per_macro")


def arch_from_doc(d: Any, where: str = "arch") -> Arch:
    """Validate a parsed architecture YAML document."""
    doc = _Doc(d, "", where)
    doc.only(("name", "description", "precision", "arithmetic", "clock_mhz", "mesh", "core", "global_buffers",
              "noc", "dram", "energy_pj", "sram", "system"))
    mesh, core = doc.sub("mesh"), doc.sub("core")
    mesh.only(("rows", "cols"))
    if mesh.pos_int("rows") * mesh.pos_int("cols") > MAX_CORES:
        raise mesh.err("rows", f"a {mesh.d['rows']} x {mesh.d['cols']} mesh has more than {MAX_CORES} cores, "
                               "the limit of the mapper")
    core.only(("engines", "buffers", "static_mw", "logic_mm2"))
    sram = None
    if "sram" in doc.d:
        sd = doc.sub("sram")
        sd.only(SRAM_KEYS)
        sram = SramModel(*(sd.num(k, False) for k in SRAM_KEYS))
    eng = core.sub("engines")
    eng.only(ENGINES)
    engines = {}
    for e in ENGINES:
        s = eng.sub(e)
        s.only(("pe_rows", "pe_cols"))
        engines[e] = Engine(s.pos_int("pe_rows"), s.pos_int("pe_cols"))
    buffers = _buffers(core.sub("buffers"), sram, None)
    for role in ("weights", "membrane"):
        if not any(role in b.roles for b in buffers):
            raise core.err("buffers", f"needs at least one buffer with role '{role}'")
    noc, dram, en = doc.sub("noc"), doc.sub("dram"), doc.sub("energy_pj")
    noc.only(("link_bits", "hop_cycles", "hop_pj_per_bit"))
    dram.only(("gb_per_s", "latency_ns", "pj_per_bit"))
    en.only(ENERGY_KEYS)
    gb = doc.d.get("global_buffers") or {}
    arch = Arch(
        name=doc.text("name", "custom") or "custom", description=doc.text("description"),
        precision=doc.choice("precision", ("fp16", "fp32")),
        arithmetic=doc.choice("arithmetic", ("fp32", "fp16")) if "arithmetic" in doc.d else doc.d.get("precision"),
        clock_mhz=doc.num("clock_mhz"),
        rows=mesh.pos_int("rows"), cols=mesh.pos_int("cols"), engines=engines, buffers=buffers,
        static_mw=core.num("static_mw", False),
        logic_mm2=core.num("logic_mm2", False) if "logic_mm2" in core.d else 0.0,
        global_buffers=_buffers(_Doc(gb, "global_buffers", where), sram, "global"),
        noc=Noc(noc.pos_int("link_bits"), noc.pos_int("hop_cycles"), noc.num("hop_pj_per_bit", False)),
        dram=Dram(dram.num("gb_per_s"), dram.num("latency_ns", False), dram.num("pj_per_bit", False)),
        energy=Energy(*(en.num(k, False) for k in ENERGY_KEYS)),
        sram=sram or SramModel(0.0, 0.0, 1.0, 0.0, 0.0),
        system=_system(doc.sub("system")) if "system" in doc.d else System(),
    )
    for b in arch.buffers + arch.global_buffers:
        if b.bytes < 1:
            path = f"core.buffers.{b.name}" if b in arch.buffers else f"global_buffers.{b.name}"
            raise SpikeforgeError(f"{path}.kib: must hold at least one byte, got {b.kib:g} KiB", where)
    return arch


def _system(doc: _Doc) -> System:
    doc.only(("chips", "topology", "link"))
    link = doc.sub("link")
    link.only(("gb_per_s", "pj_per_bit", "latency_ns"))
    if doc.pos_int("chips") > MAX_CHIPS:
        raise doc.err("chips", f"must be at most {MAX_CHIPS}, got {doc.d['chips']}")
    return System(doc.pos_int("chips"), doc.choice("topology", TOPOLOGIES),
                  Link(link.num("gb_per_s"), link.num("pj_per_bit", False), link.num("latency_ns", False)))


def with_chips(arch: Arch, chips: int) -> Arch:
    """`arch` in a system of `chips` copies (its own system's topology and link)."""
    return replace(arch, system=replace(arch.system, chips=chips))


def presets() -> list[str]:
    return sorted(p.name[:-5] for p in files("spikeforge.isa").joinpath("presets").iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    return files("spikeforge.isa").joinpath("presets", f"{name}.yaml").read_text()


def arch_doc(spec: str) -> tuple[dict, str]:
    """The YAML document of a preset name or a file path, and where it came from."""
    if spec in presets():
        return load_yaml(preset_text(spec), spec), spec
    if not Path(spec).is_file():
        raise SpikeforgeError(f"'{show(spec)}' is neither an architecture preset ({', '.join(presets())}) "
                              "nor an existing YAML file")
    what = "an architecture YAML file"
    return load_yaml(read_text(spec, spec, what), spec, what), spec


def load_arch(spec: str = "default", overrides: dict[str, Any] | None = None) -> Arch:
    """Load a preset or an architecture YAML file, optionally with `{"dotted.path": value}`
    overrides (e.g. `{"noc.link_bits": 128, "core.buffers.fp_membrane.kib": 256}`)."""
    doc, where = arch_doc(spec)
    if overrides:
        doc = apply_overrides(doc, overrides, where)
    return arch_from_doc(doc, where)


OPTIONAL_FIELDS = ("arithmetic",)  # fields an override may set although the document leaves them out


def apply_overrides(doc: dict, overrides: dict[str, Any], where: str = "arch") -> dict:
    """A copy of `doc` with each dotted path set to its value; the path must exist (or be one of
    the optional fields)."""
    doc = copy.deepcopy(doc)
    for path, value in overrides.items():
        node, keys = doc, path.split(".")
        for i, k in enumerate(keys[:-1]):
            if not isinstance(node, dict) or k not in node:
                raise SpikeforgeError(f"{'.'.join(keys[:i + 1])}: no such field (override '{path}')", where)
            node = node[k]
        if not isinstance(node, dict) or (keys[-1] not in node and path not in OPTIONAL_FIELDS):
            raise SpikeforgeError(f"{path}: no such field (override)", where)
        node[keys[-1]] = value
    return doc


def xy_route(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Directed mesh links of the XY route from core a to core b (columns first, then rows)."""
    links, (r, c) = [], a
    while c != b[1]:
        nc = c + (1 if b[1] > c else -1)
        links.append(((r, c), (r, nc)))
        c = nc
    while r != b[0]:
        nr = r + (1 if b[0] > r else -1)
        links.append(((r, c), (nr, c)))
        r = nr
    return links
