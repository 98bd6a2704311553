import pytest
import yaml

from spikeforge.isa import SpikeforgeError
from spikeforge.isa.arch import ENERGY_KEYS, load_arch, preset_text, presets


def test_presets_load_with_the_published_figures():
    assert presets() == ["default", "edge4", "large64", "neuromc"]
    a = load_arch("default")
    assert (a.n_cores, a.rows * a.cols, a.precision) == (20, 20, "fp16")
    assert a.buffer("fp_membrane").kib == 128 and a.buffer("fp_weights").kib == 2.25
    assert a.buffer("gb").kib == 6144 and a.buffer("gb").read_pj_per_bit == a.buffer("gb").write_pj_per_bit == 1.8
    assert a.buffer("fp_weights").level == "tile" and a.buffer("fp_membrane").level == "core"
    assert a.buffer("gb").level == "global" and "weights" in a.buffer("gb").roles
    assert a.capacity("weights") == 2 * 2304 and a.global_capacity("weights") == 6 * 2 ** 20
    assert a.dram.pj_per_bit == 20.3 and a.energy.ac == 0.582 and a.energy.mac == 1.36
    assert a.engines["fp"].lanes == 256
    assert load_arch("large64").n_cores == 64 and load_arch("edge4").n_cores == 4
    # one engine set: the default's buffers sized and priced as the model's memory instances, its
    # figures unrounded (SpikingJelly's config.py / core.py)
    n = load_arch("neuromc")
    assert n.n_cores == 1 and n.dram == a.dram
    assert all(getattr(n.energy, k) == pytest.approx(getattr(a.energy, k), rel=0.02) for k in ENERGY_KEYS)
    assert (n.energy.ac, n.energy.register_bit) == (0.548 * 17 / 16, 0.00901 / 7.1 * 2)
    assert sorted((b.name, b.level) for b in n.buffers) == sorted((b.name, b.level) for b in a.buffers)
    assert (n.buffer("fp_weights").kib, n.buffer("bn").kib, n.buffer("optimizer").kib) == (576, 2048, 6144)
    assert n.buffer("fp_weights").read_pj_per_bit == 5.302477904 / 16
    assert (n.buffer("bn").read_pj_per_bit, n.buffer("bn").write_pj_per_bit) == (46.976 / 256, 45.96 / 256)
    assert n.buffer("optimizer").write_pj_per_bit == 375.0422185 / 256


def test_sram_energy_and_area_grow_with_capacity():
    a = load_arch("default")
    # the fit passes through the [NEUROMC] anchors: 128 KiB -> 0.45, 6 MiB -> 1.8 pJ/bit
    assert a.sram.read_pj_per_bit(128) == pytest.approx(0.45, abs=0.002)
    assert a.sram.read_pj_per_bit(6144) == pytest.approx(1.8, abs=0.002)
    assert a.buffer("fp_membrane").read_pj_per_bit == pytest.approx(0.45, abs=0.002)
    big = load_arch("default", {"core.buffers.fp_weights.kib": 64})
    assert big.buffer("fp_weights").read_pj_per_bit > a.buffer("fp_weights").read_pj_per_bit
    # 0.25 mm^2 per Mbit plus 0.005 per macro: 61.9 KiB more on each of 20 cores
    assert big.area_mm2 - a.area_mm2 == pytest.approx(20 * 0.25 * (64 - 2.25) * 8 / 1024, rel=1e-6)
    srams = 20 * sum(b.kib for b in a.buffers) + 6144
    assert a.area_mm2 == pytest.approx(0.25 * srams * 8 / 1024 + 0.005 * (20 * 17 + 1) + 20 * 1.2, rel=1e-6)


@pytest.mark.parametrize("preset", ["default", "neuromc"])
def test_every_default_constant_carries_its_source_or_says_assumption(preset):
    keys = ("clock_mhz:", "static_mw:", "link_bits:", "hop_cycles:", "hop_pj_per_bit:", "gb_per_s:", "latency_ns:",
            "pj_per_bit: 20.3", "ac:", "mac:", "neuron_fwd:", "neuron_bwd:", "elem:", "sgd:", "adam:", "register_bit:",
            "add:", "mul:", "mux:", "comp:", "sqrt:")
    lines = preset_text(preset).splitlines()
    for k in keys:
        line = next(l for l in lines if l.strip().startswith(k))
        comment = line.split("#", 1)[1] if "#" in line else ""
        assert "[NEUROMC]" in comment or "[LI2024]" in comment or "assumption" in comment or "+" in comment, line


def test_shown_preset_text_loads_back_to_the_same_arch(tmp_path):
    f = tmp_path / "chip.yaml"
    f.write_text(preset_text("default"))
    assert load_arch(str(f)) == load_arch("default")


def test_overrides_change_a_field_by_path():
    a = load_arch("default", {"noc.link_bits": 128, "core.buffers.fp_membrane.kib": 256, "mesh.rows": 2})
    assert a.noc.link_bits == 128 and a.capacity("membrane") == 256 * 1024 and a.n_cores == 10


@pytest.mark.parametrize("override, message", [
    ({"core.buffers.fp_membrane.kib": -4}, "default: core.buffers.fp_membrane.kib: must be > 0, got -4"),
    ({"mesh.rows": 0}, "default: mesh.rows: must be a positive int, got 0"),
    ({"mesh.cols": 2.5}, "default: mesh.cols: must be a positive int, got 2.5"),
    ({"precision": "int3"}, "default: precision: must be one of fp16, fp32, got 'int3'"),
    ({"core.buffers.bn.role": "cache"}, "default: core.buffers.bn.role: must be one of"),
    ({"dram.pj_per_bit": "lots"}, "default: dram.pj_per_bit: must be a (finite) number, got 'lots'"),
    ({"noc.hop_pj": 1}, "default: noc.hop_pj: no such field"),
    ({"core.engines": {"fp": {"pe_rows": 4, "pe_cols": 4}}}, "default: core.engines.bp: missing"),
])
def test_bad_fields_are_named_by_path(override, message):
    with pytest.raises(SpikeforgeError) as e:
        load_arch("default", override)
    assert message in str(e.value)


def test_bad_files(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("mesh: {rows: 2\n")
    with pytest.raises(SpikeforgeError, match=r"a.yaml: line \d+: invalid YAML"):
        load_arch(str(f))
    doc = yaml.safe_load(preset_text("edge4"))
    doc["core"]["buffers"] = {"x": {"kib": 1, "port_bits": 8, "role": "other"}}
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpikeforgeError, match="core.buffers: needs at least one buffer with role 'weights'"):
        load_arch(str(f))
    with pytest.raises(SpikeforgeError, match="neither an architecture preset"):
        load_arch(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("preset", ["default", "edge4", "large64", "neuromc"])
def test_adam_energy_is_neuromcs_ops_per_parameter(preset):
    # 4 adds + 11 muls + 1 sqrt per parameter (docs/neuromc_rules.md section 5)
    assert load_arch(preset).energy.adam == pytest.approx(4 * 0.548 + 11 * 0.812 + 0.514)
