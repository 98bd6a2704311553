import pytest

from isa import SpikeforgeError
from isa.program import OPCODES, Instr, Loop, Program
from isa.sasm import assemble, disassemble

EXAMPLE = """\
# spikeforge assembly
.program model="mlp" arch="default" timesteps=4 batch=1 training=true
.core 0 0
  dma.load fp.weights, 4096, weights, "fc1.weight[0:256]"
  loop 4
    fp.integrate "fc1", 0, 256
    fp.fire "lif1", 0, 256
    noc.send spike, (0, 1), 32, "lif1[0:256]"
    barrier 1
  end
  loop 4 reverse
    bp.neuron "lif1", 0, 256
    bp.propagate "fc1", 0, 256
    wg.accumulate "fc1", 0, 256
  end
  wg.update "fc1", 0, 256
.core 0 1
  noc.recv spike, (0, 0), 32, "lif1[0:256]"
"""


def _every_opcode() -> Program:
    """A program built in Python that uses every opcode, nested and reverse loops, odd strings."""
    return Program(
        {"model": "vgg \"11\"", "timesteps": 8, "lr": 0.05, "scale": 1e-20, "training": False, "neg": -3},
        {
            (1, 2): [Instr("barrier", (0,))],  # out of order: Program sorts the cores
            (0, 0): [
                Instr("dma.load", ("fp_weights", 0, "weights", "conv1.weight[0:64]")),
                Instr("dma.load", ("optimizer", 128, "optimizer", "")),
                Loop(8, False, [
                    Instr("fp.integrate", ("conv1", 0, 64)),
                    Instr("fp.elem", ("bn1", 0, 64)),
                    Instr("fp.fire", ("lif1", 0, 64)),
                    Loop(2, True, [Instr("noc.send", ("psum", (1, 2), 512, "conv1 #psum\n\u00e9"))]),
                    Loop(3, False, []),
                    Instr("dma.store", ("fp.membrane.t", 4096, "bptt_state", "lif1.v")),
                ]),
                Loop(8, True, [
                    Instr("noc.recv", ("grad", (1, 2), 64, "fc.grad")),
                    Instr("bp.elem", ("pool1", 0, 16)),
                    Instr("bp.neuron", ("lif1", 0, 64)),
                    Instr("bp.propagate", ("conv1", 0, 64)),
                    Instr("wg.accumulate", ("conv1", 0, 64)),
                    Instr("dma.store", ("wg.wgrad", 8, "gradients", "conv1.wgrad")),
                    Instr("dma.load", ("bp.potential", 8, "activations", "x")),
                ]),
                Instr("wg.update", ("conv1", 63, 64)),
                Instr("noc.send", ("spike", (0, 0), 0, "self")),
                Instr("barrier", (7,)),
            ],
            (0, 1): [],
        },
    )


def test_example_is_a_fixed_point():
    program = assemble(EXAMPLE)
    assert disassemble(program) == EXAMPLE
    assert assemble(disassemble(program)) == program
    assert program.meta == {"model": "mlp", "arch": "default", "timesteps": 4, "batch": 1, "training": True}
    loop = program.cores[(0, 0)][2]
    assert isinstance(loop, Loop) and loop.reverse and loop.count == 4
    assert program.cores[(0, 1)] == [Instr("noc.recv", ("spike", (0, 0), 32, "lif1[0:256]"))]


def test_loose_text_becomes_canonical_and_stays_so():
    loose = """
    .program a = 1   b=2.50
    .core 0 1   # a comment
    barrier 3
    .core 0 0
    loop 2 reverse
            loop 3
    fp.fire "n", 1,2   # deep
    end
    end
    """
    canonical = disassemble(assemble(loose))
    assert canonical == disassemble(assemble(canonical))
    assert canonical.splitlines()[1:6] == [
        ".program a=1 b=2.5", ".core 0 0", "  loop 2 reverse", "    loop 3", '      fp.fire "n", 1, 2']


def test_python_program_round_trips_through_text():
    program = _every_opcode()
    text = disassemble(program)
    back = assemble(text)
    assert back == program
    assert disassemble(back) == text
    assert list(back.cores) == [(0, 0), (0, 1), (1, 2)]
    used = {instr.op for core in program.cores for instr, _ in program.walk(core)}
    assert used == set(OPCODES)


def test_walk_and_instruction_counts():
    program = _every_opcode()
    walked = list(program.walk((0, 0)))
    assert walked[0] == (Instr("dma.load", ("fp_weights", 0, "weights", "conv1.weight[0:64]")), ())
    assert walked[5] == (Instr("noc.send", ("psum", (1, 2), 512, "conv1 #psum\n\u00e9")), (8, 2))
    assert program.instruction_count((0, 0)) == len(walked) == 17
    assert program.instruction_count() == 18
    assert program.instruction_count((0, 0), executed=True) == 2 + 8 * 4 + 8 * 2 + 8 * 7 + 3
    assert assemble(EXAMPLE).instruction_count(executed=True) == 1 + 4 * 4 + 4 * 3 + 1 + 1


def test_instr_helpers():
    instr = Instr("noc.send", ("grad", (2, 3), 64, "t"))
    assert instr.unit == "noc" and Instr("barrier", (1,)).unit == "barrier"
    assert instr.operands == {"kind": "grad", "coord": (2, 3), "bytes": 64, "tag": "t"}


@pytest.mark.parametrize("body, message", [
    ([Instr("fp.fire", ("lif1", 4, 4))], "instruction 0: fp.fire range [4, 4) is empty"),
    ([Loop(2, False, [Instr("barrier"), Instr("nop")])], "instruction 0.0: barrier takes 1 operand"),
    ([Loop(2, False, [Instr("barrier", (1,)), Instr("nop")])], "instruction 0.1: unknown opcode 'nop'"),
    ([Instr("dma.load", ("fp.weights", -1, "weights", "t"))], "operand 2 (bytes) must be a non-negative int"),
    ([Instr("dma.store", ("fp.weights", 1, "spikes", "t"))], "operand 3 (category) must be one of"),
    ([Instr("noc.recv", ("data", (0, 0), 1, "t"))], "operand 1 (kind) must be one of spike, grad, psum"),
    ([Instr("noc.recv", ("spike", [0, 0], 1, "t"))], "operand 2 (coord)"),
    ([Instr("barrier", (True,))], "operand 1 (id)"),
    ([Loop(0, False, [])], "loop count must be a positive int"),
    (["barrier 1"], "expected an Instr or a Loop"),
])
def test_python_programs_are_validated(body, message):
    with pytest.raises(SpikeforgeError) as e:
        Program({}, {(0, 3): body})
    assert str(e.value).startswith("core (0, 3) ") and message in str(e.value)


def test_bad_cores_and_meta_in_python():
    with pytest.raises(SpikeforgeError, match="core"):
        Program({}, {(0, -1): []})
    with pytest.raises(SpikeforgeError, match="metadata key"):
        Program({"a b": 1}, {})
    with pytest.raises(SpikeforgeError, match="must be finite"):
        Program({"x": float("nan")}, {})


_HEAD = ".program t=4\n.core 0 0\n"


@pytest.mark.parametrize("text, message", [
    (_HEAD + "  fp.frob \"a\", 0, 1\n", "line 3 column 3: unknown opcode 'fp.frob'"),
    (_HEAD + "  dma.load fp.weights, 8, weight, \"t\"\n", "line 3 column 3: dma.load operand 3 (category)"),
    (_HEAD + "  noc.send spikes, (0, 1), 8, \"t\"\n", "line 3 column 3: noc.send operand 1 (kind)"),
    (_HEAD + "  barrier 0\n  fp.fire \"n\", 8, 8\n", "line 4 column 3: fp.fire range [8, 8) is empty"),
    (_HEAD + "  wg.update \"fc\", 0\n", "line 3 column 3: wg.update takes 3 operand(s)"),
    (_HEAD + "  dma.store fp.w, -8, weights, \"t\"\n", "line 3 column 3: dma.store operand 2 (bytes)"),
    (_HEAD + "  loop 4\n    barrier 1\n", "line 3 column 3: loop is never closed"),
    (_HEAD + "  loop 4\n  barrier 1\n.core 0 1\n", "line 3 column 3: loop is never closed"),
    (_HEAD + "  barrier 1\n  end\n", "line 4 column 3: end without loop"),
    ("# c\n  fp.fire \"n\", 0, 1\n.core 0 0\n", "line 2 column 3: instruction before any .core"),
    (_HEAD + ".core 1 1\n.core 0 0\n", "line 4 column 1: duplicate .core 0 0"),
    (_HEAD + "  barrier 1 @@\n", "line 3 column 13: syntax error"),
    (_HEAD + "  fp.fire \"n\", 0, 1,\n", "line 3 column 21: syntax error: unexpected end of line"),
    (_HEAD + "  fp.fire n, 0, 1\n", "line 3 column 3: fp.fire operand 1 (layer) must be a quoted string"),
    (_HEAD + "  dma.load \"fp.w\", 1, weights, \"t\"\n", "operand 1 (buffer) must be a bare name"),
    (_HEAD + "  loop 0\n  end\n", "line 3 column 3: loop count must be a positive int"),
    (".program a=1 a=2\n", "line 1 column 14: duplicate metadata key 'a'"),
    (_HEAD + ".program b=1\n", "line 3 column 1: .program must come once"),
    (_HEAD + "  noc.recv grad, (0, -1), 1, \"t\"\n", "line 3 column 3: noc.recv operand 2 (coord)"),
    (".core 0", "line 1 column 7: syntax error: unexpected end of input"),
])
def test_malformed_assembly_names_the_line(text, message):
    with pytest.raises(SpikeforgeError) as e:
        assemble(text, "m.sasm")
    assert str(e.value).startswith("m.sasm: ") and message in str(e.value), str(e.value)


def test_empty_and_comment_only_text_is_an_empty_program():
    assert assemble("") == assemble("# nothing\n\n   \n") == Program()
    assert disassemble(Program()) == "# spikeforge assembly\n.program\n"


def test_docs_example_runs(capsys):
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "isa.md").read_text()
    exec(doc.split("```python\n")[-1].split("```")[0], {})
    assert "noc.recv spike, (0, 0), 32" in capsys.readouterr().out
