"""`spikeforge export MODEL -o FILE.nir`: zoo, NIR and `train` models (their trained weights),
read back equal; what NIR cannot hold is one `error:` line, exit 2, and no file written."""

from pathlib import Path

import nir
import numpy as np
import torch

from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.nir_reader import read_nir
from spikeforge.isa.text import from_text
from spikeforge.cli import main

DIGITS = str(Path(__file__).resolve().parents[2] / "examples" / "models" / "digits_mlp.yaml")


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_export_zoo_model_reads_back_equal(capsys, tmp_path):
    rc, out, err = _run(capsys, "export", "mlp", "--seed", 3, "-o", tmp_path / "out" / "mlp.nir")
    assert rc == 0, err
    assert out.startswith(f"wrote {tmp_path / 'out' / 'mlp.nir'}: mlp, 8 NIR nodes, 669706 parameters")
    assert read_nir(tmp_path / "out" / "mlp.nir", name="mlp") == load_model("mlp", seed=3)


def test_export_a_norse_file(capsys, tmp_path):
    import norse.torch as norse

    cells = norse.SequentialState(torch.nn.Linear(6, 5), norse.LIFCell(), torch.nn.Linear(5, 3), norse.LIFBoxCell())
    nir.write(tmp_path / "n.nir", norse.to_nir(cells, torch.randn(1, 6)), compression=None)
    rc, _, err = _run(capsys, "export", tmp_path / "n.nir", "--exporter", "norse", "-o", tmp_path / "s.nir")
    assert rc == 0, err
    assert read_nir(tmp_path / "s.nir", name="n") == read_nir(tmp_path / "n.nir", exporter="norse")


def test_export_the_trained_weights_of_a_train_run(capsys, tmp_path):
    rc, out, err = _run(capsys, "train", DIGITS, "--epochs", 1, "-B", 256, "-T", 2, "-o", tmp_path / "tr")
    assert rc == 0, err
    trained = from_text((tmp_path / "tr" / "model.sfir").read_text())
    initial = load_model(DIGITS)
    assert not np.array_equal(trained["fc1"].tensors["weight"], initial["fc1"].tensors["weight"])
    rc, out, err = _run(capsys, "export", tmp_path / "tr", "-o", tmp_path / "digits.nir")
    assert rc == 0 and out.rstrip().endswith("(trained weights)"), err
    back = read_nir(tmp_path / "digits.nir", name="digits_mlp")
    assert [op for op in back if op.kind != "output"] == list(trained)


def test_export_errors_write_nothing(capsys, tmp_path):
    (tmp_path / "old.nir").write_bytes(b"old")
    (tmp_path / "empty").mkdir()
    cases = [(("vgg11", "-o", tmp_path / "old.nir"), "vgg11: op 'features.0.bn' (batchnorm): NIR has no batch norm"),
             (("vgg16", "-o", tmp_path / "s.nir"), "(pool2d): NIR has no max pooling"),
             ((tmp_path / "empty", "-o", tmp_path / "e.nir"), "not a `train` output directory (no model.sfir)"),
             (("mlp", "-o", tmp_path / "empty"), "empty: is a directory")]
    for argv, msg in cases:
        rc, out, err = _run(capsys, "export", *argv)
        assert rc == 2 and not out and err.count("\n") == 1 and err.startswith("error: ") and msg in err, err
    assert (tmp_path / "old.nir").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "old.nir"]
