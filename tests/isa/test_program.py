import pytest

from spikeforge.isa import SpikeforgeError
from spikeforge.isa.program import OPCODES, Header, Instr, Loop, Program
from spikeforge.isa.sasm import assemble, disassemble

EXAMPLE = """\
# spikeforge assembly
.program model="mlp" arch="default" training=true timesteps=4 batch=1 dataflow="naive" order="step" rounds=1 strategy="metis" spike_rate=0.1 optimizer="sgd"
.core 0 0
  dma.load fp.weights, 4096, weights, "fc1", dram
  loop time 4
    fp.integrate "fc1", 0, 256
    fp.fire "lif1", 0, 256
    noc.send spike, (0, 1), 32, "lif1"
    barrier 1
  end
  loop time 4 reverse
    bp.neuron "lif1", 0, 256
    bp.propagate "fc1", 0, 256
    wg.accumulate "fc1", 0, 256
  end
  wg.update "fc1", 0, 256
.core 0 1
  noc.recv spike, (0, 0), 32, "lif1"
"""
HEADER = Header(model="mlp", arch="default", training=True, timesteps=4, batch=1)


def _every_opcode() -> Program:
    """A program built in Python that uses every opcode, nested and reverse loops, odd strings."""
    return Program(
        Header(model="vgg \"11\"\n\u00e9", arch="chip #1", training=False, timesteps=8, batch=3, dataflow="ws_batch",
               order="batch", rounds=2, strategy="sequential", spike_rate=1e-3, optimizer="adam"),
        {
            (1, 2): [Instr("barrier", (0,))],  # out of order: Program sorts the cores
            (0, 0): [
                Instr("dma.load", ("fp_weights", 0, "weights", "conv1", "dram")),
                Instr("dma.load", ("gb", 128, "optimizer", "conv1", "dram")),
                Loop("time", 8, False, [
                    Instr("fp.integrate", ("conv1", 0, 64)),
                    Instr("fp.elem", ("bn1", 0, 64)),
                    Instr("fp.fire", ("lif1", 0, 64)),
                    Loop("batch", 2, True, [Instr("noc.send", ("psum", (1, 2), 512, "conv1 #psum\n\u00e9"))]),
                    Loop("batch", 3, False, []),
                    Instr("dma.store", ("fp.membrane.t", 4096, "bptt_state", "lif1", "gb")),
                ]),
                Loop("time", 8, True, [
                    Instr("noc.recv", ("grad", (1, 2), 64, "fc")),
                    Instr("bp.elem", ("pool1", 0, 16)),
                    Instr("bp.neuron", ("lif1", 0, 64)),
                    Instr("bp.propagate", ("conv1", 0, 64)),
                    Instr("wg.accumulate", ("conv1", 0, 64)),
                    Instr("dma.store", ("wg.wgrad", 8, "gradients", "conv1", "dram")),
                    Instr("dma.load", ("bp.potential", 8, "activations", "x", "gb")),
                ]),
                Instr("wg.update", ("conv1", 63, 64)),
                Instr("noc.send", ("spike", (0, 0), 0, "lif1")),
                Instr("barrier", (7,)),
            ],
            (0, 1): [],
        },
    )


def test_example_is_a_fixed_point():
    program = assemble(EXAMPLE)
    assert disassemble(program) == EXAMPLE
    assert assemble(disassemble(program)) == program
    assert program.header == HEADER
    loop = program.cores[(0, 0)][2]
    assert isinstance(loop, Loop) and loop.reverse and loop.count == 4 and loop.var == "time"
    assert program.cores[(0, 1)] == [Instr("noc.recv", ("spike", (0, 0), 32, "lif1"))]


def test_loose_text_becomes_canonical_and_stays_so():
    loose = """
    .program model = "m"   arch="a" training=false timesteps=2 batch=3 spike_rate=0.50
    .core 0 1   # a comment
    barrier 3
    .core 0 0
    loop time 2 reverse
            loop batch 3
    fp.fire "n", 1,2   # deep
    end
    end
    """
    canonical = disassemble(assemble(loose))
    assert canonical == disassemble(assemble(canonical))
    assert canonical.splitlines()[1:6] == [
        '.program model="m" arch="a" training=false timesteps=2 batch=3 dataflow="naive" order="step" rounds=1 '
        'strategy="metis" spike_rate=0.5 optimizer="sgd"', ".core 0 0", "  loop time 2 reverse", "    loop batch 3", '      fp.fire "n", 1, 2']


def test_python_program_round_trips_through_text():
    program = _every_opcode()
    text = disassemble(program)
    back = assemble(text)
    assert back == program
    assert disassemble(back) == text
    assert list(back.cores) == [(0, 0), (0, 1), (1, 2)]
    used = {instr.op for core in program.cores for instr, _ in program.walk(core)}
    assert used == set(OPCODES) - {"link.send", "link.recv"}  # a one-chip program has no chip links


SYSTEM = """\
# spikeforge assembly
.program model="mlp" arch="edge4" training=true timesteps=2 batch=1 dataflow="naive" order="step" rounds=2 strategy="metis" spike_rate=0.1 optimizer="sgd" chips=3
.chip 0
.core 0 0
  loop time 2
    fp.fire "lif1", 0, 100
    link.send spike, 2, (1, 0), 100, "lif1"
    barrier 1
  end
.core 0 1
.chip 2
.core 1 0
  loop time 2
    link.recv spike, 0, (0, 0), 100, "lif1"
    link.send grad, 0, (0, 0), 100, "fc2"
    barrier 1
  end
"""


def test_a_system_program_names_chips_and_round_trips():
    program = assemble(SYSTEM)
    assert program.header.chips == 3 and list(program.cores) == [(0, 0, 0), (0, 0, 1), (2, 1, 0)]
    assert disassemble(program) == SYSTEM and assemble(disassemble(program)) == program
    assert [i.operands for i, _ in program.walk((2, 1, 0))][0] == {
        "kind": "spike", "chip": 0, "coord": (0, 0), "elements": 100, "layer": "lif1"}
    # one chip: neither `.chip` nor `chips` in the text, as before there were systems
    assert ".chip" not in EXAMPLE and "chips=" not in disassemble(assemble(EXAMPLE))


@pytest.mark.parametrize("cores, message", [
    ({(0, 0): []}, "core (0, 0) must be a (chip, row, col) triple"),
    ({(3, 0, 0): []}, "with chip < 3"),
    ({(1, 0, 0): [Instr("link.send", ("spike", 1, (0, 0), 8, "a"))]}, "link.send chip 1 must be another chip"),
    ({(1, 0, 0): [Instr("link.recv", ("spike", 5, (0, 0), 8, "a"))]}, "link.recv chip 5 must be another chip"),
    ({(1, 0, 0): [Instr("link.send", ("spike", 0, (0, 0), -8, "a"))]}, "operand 4 (elements)"),
])
def test_system_programs_are_validated(cores, message):
    from dataclasses import replace

    with pytest.raises(SpikeforgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Program(replace(HEADER, chips=3), cores)


def test_walk_and_instruction_counts():
    program = _every_opcode()
    walked = list(program.walk((0, 0)))
    assert walked[0] == (Instr("dma.load", ("fp_weights", 0, "weights", "conv1", "dram")), ())
    instr, loops = walked[5]
    assert instr == Instr("noc.send", ("psum", (1, 2), 512, "conv1 #psum\n\u00e9"))
    assert [(l.var, l.count, l.reverse) for l in loops] == [("time", 8, False), ("batch", 2, True)]
    assert program.instruction_count((0, 0)) == len(walked) == 17
    assert program.instruction_count() == 18
    assert program.instruction_count((0, 0), executed=True) == 2 + 8 * 4 + 8 * 2 + 8 * 7 + 3
    assert assemble(EXAMPLE).instruction_count(executed=True) == 1 + 4 * 4 + 4 * 3 + 1 + 1


def test_instr_helpers():
    instr = Instr("noc.send", ("grad", (2, 3), 64, "fc1"))
    assert instr.unit == "noc" and Instr("barrier", (1,)).unit == "barrier"
    assert instr.operands == {"kind": "grad", "coord": (2, 3), "bytes": 64, "layer": "fc1"}
    dma = Instr("dma.load", ("fp_weights", 8, "weights", "fc1", "gb"))
    assert dma.operands["level"] == "gb" and dma.operands["layer"] == "fc1"


@pytest.mark.parametrize("body, message", [
    ([Instr("fp.fire", ("lif1", 4, 4))], "instruction 0: fp.fire range [4, 4) is empty"),
    ([Loop("time", 2, False, [Instr("barrier"), Instr("nop")])], "instruction 0.0: barrier takes 1 operand"),
    ([Loop("time", 2, False, [Instr("barrier", (1,)), Instr("nop")])], "instruction 0.1: unknown opcode 'nop'"),
    ([Instr("dma.load", ("fp.weights", -1, "weights", "t", "dram"))], "operand 2 (bytes) must be a non-negative int"),
    ([Instr("dma.store", ("fp.weights", 1, "spikes", "t", "dram"))], "operand 3 (category) must be one of"),
    ([Instr("dma.store", ("fp.weights", 1, "weights", "t", "the dram"))], "operand 5 (level) must be dram or a global"),
    ([Instr("dma.store", ("fp.weights", 1, "weights", "t"))], "dma.store takes 5 operand(s)"),
    ([Instr("noc.recv", ("data", (0, 0), 1, "t"))], "operand 1 (kind) must be one of spike, grad, psum"),
    ([Instr("noc.recv", ("spike", [0, 0], 1, "t"))], "operand 2 (coord)"),
    ([Instr("barrier", (True,))], "operand 1 (id)"),
    ([Loop("time", 0, False, [])], "loop count must be a positive int"),
    ([Loop("layer", 2, False, [])], "loop variable must be one of batch, time"),
    (["barrier 1"], "expected an Instr or a Loop"),
])
def test_python_programs_are_validated(body, message):
    with pytest.raises(SpikeforgeError) as e:
        Program(HEADER, {(0, 3): body})
    assert str(e.value).startswith("core (0, 3) ") and message in str(e.value)


def test_bad_cores_and_header_in_python():
    from dataclasses import replace

    with pytest.raises(SpikeforgeError, match="core"):
        Program(HEADER, {(0, -1): []})
    with pytest.raises(SpikeforgeError, match="header timesteps must be a positive int"):
        Program(replace(HEADER, timesteps=0), {})
    with pytest.raises(SpikeforgeError, match="header order must be one of step, sample, batch"):
        Program(replace(HEADER, order="random"), {})
    with pytest.raises(SpikeforgeError, match="header spike_rate must be in"):
        Program(replace(HEADER, spike_rate=float("nan")), {})
    with pytest.raises(SpikeforgeError, match="header optimizer must be one of sgd, adam, got 'rmsprop'"):
        Program(replace(HEADER, optimizer="rmsprop"), {})
    with pytest.raises(SpikeforgeError, match="must be a Header"):
        Program({"model": "mlp"}, {})


_HEAD = '.program model="m" arch="a" training=true timesteps=4 batch=1\n.core 0 0\n'


@pytest.mark.parametrize("text, message", [
    (_HEAD + "  fp.frob \"a\", 0, 1\n", "line 3 column 3: unknown opcode 'fp.frob'"),
    (_HEAD + "  dma.load fp.weights, 8, weight, \"t\", dram\n", "line 3 column 3: dma.load operand 3 (category)"),
    (_HEAD + "  dma.load fp.weights, 8, weights, \"t\", \"dram\"\n", "operand 5 (level) must be a bare name"),
    (_HEAD + "  noc.send spikes, (0, 1), 8, \"t\"\n", "line 3 column 3: noc.send operand 1 (kind)"),
    (_HEAD + "  barrier 0\n  fp.fire \"n\", 8, 8\n", "line 4 column 3: fp.fire range [8, 8) is empty"),
    (_HEAD + "  wg.update \"fc\", 0\n", "line 3 column 3: wg.update takes 3 operand(s)"),
    (_HEAD + "  dma.store fp.w, -8, weights, \"t\", dram\n", "line 3 column 3: dma.store operand 2 (bytes)"),
    (_HEAD + "  loop time 4\n    barrier 1\n", "line 3 column 3: loop is never closed"),
    (_HEAD + "  loop time 4\n  barrier 1\n.core 0 1\n", "line 3 column 3: loop is never closed"),
    (_HEAD + "  loop layer 4\n  end\n", "line 3 column 3: loop variable must be one of batch, time"),
    (_HEAD + "  loop 4\n  end\n", "line 3 column 8: syntax error"),
    (_HEAD + "  barrier 1\n  end\n", "line 4 column 3: end without loop"),
    ("# c\n  fp.fire \"n\", 0, 1\n.core 0 0\n", "line 2 column 3: instruction before any .core"),
    (_HEAD + ".core 1 1\n.core 0 0\n", "line 4 column 1: duplicate .core 0 0"),
    (_HEAD + "  barrier 1 @@\n", "line 3 column 13: syntax error"),
    (_HEAD + "  fp.fire \"n\", 0, 1,\n", "line 3 column 21: syntax error: unexpected end of line"),
    (_HEAD + "  fp.fire n, 0, 1\n", "line 3 column 3: fp.fire operand 1 (layer) must be a quoted string"),
    (_HEAD + "  dma.load \"fp.w\", 1, weights, \"t\", dram\n", "operand 1 (buffer) must be a bare name"),
    (_HEAD + "  loop batch 0\n  end\n", "line 3 column 3: loop count must be a positive int"),
    (".program model=\"m\" model=\"n\"\n", "line 1 column 20: duplicate header field 'model'"),
    (".program model=\"m\" arch=\"a\"\n", "line 1 column 1: header field 'training' is missing"),
    (".program model=\"m\" lr=0.1\n", "line 1 column 20: unknown header field 'lr'"),
    (".program model=\"m\" batch=0\n", "line 1 column 20: header batch must be a positive int"),
    (".program model=\"m\" optimizer=\"Adam\"\n", "line 1 column 20: header optimizer must be one of sgd, adam"),
    (_HEAD + ".program model=\"m\"\n", "line 3 column 1: .program must come once"),
    (".core 0 0\n", "no .program header"),
    (_HEAD + "  noc.recv grad, (0, -1), 1, \"t\"\n", "line 3 column 3: noc.recv operand 2 (coord)"),
    (".core 0", "line 1 column 7: syntax error: unexpected end of input"),
    (_HEAD + "  link.send spike, 1, (0, 0), 8, \"t\"\n", "line 3 column 3: link.send needs a program for several chips"),
    (_HEAD + ".chip 0\n", "line 3 column 1: .chip needs a .program header with chips > 1"),
    (_HEAD.replace("batch=1", "batch=1 chips=2"), "line 2 column 1: .core before any .chip"),
    (_HEAD.replace("batch=1\n", "batch=1 chips=2\n.chip 2\n"), "line 2 column 1: .chip 2: must be 0 to 1"),
    (_HEAD.replace("batch=1\n", "batch=1 chips=2\n.chip 1\n") + "  link.send spike, 1, (0, 0), 8, \"t\"\n",
     "line 4 column 3: link.send chip 1 must be another chip of the system (0 to 1; this core is on chip 1)"),
    (_HEAD.replace("batch=1\n", "batch=1 chips=2\n.chip 1\n") + ".chip 1\n.core 0 0\n",
     "line 5 column 1: duplicate .core 0 0 on .chip 1"),
    (".program model=\"m\" chips=0\n", "line 1 column 20: header chips must be a positive int"),
])
def test_malformed_assembly_names_the_line(text, message):
    with pytest.raises(SpikeforgeError) as e:
        assemble(text, "m.sasm")
    assert str(e.value).startswith("m.sasm: ") and message in str(e.value), str(e.value)


def test_a_header_alone_is_an_empty_program():
    text = disassemble(Program(HEADER))
    assert assemble(text) == assemble("# nothing\n\n" + text + "\n   \n") == Program(HEADER)
    assert text.splitlines()[1].startswith('.program model="mlp" arch="default" training=true timesteps=4 batch=1')


def test_docs_example_runs(capsys):
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "isa.md").read_text()
    exec(doc.split("```python\n")[-1].split("```")[0], {})
    assert "noc.recv spike, (0, 0), 32" in capsys.readouterr().out
