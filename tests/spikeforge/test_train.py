"""On-chip training (spikeforge.training): it learns, it matches snnTorch step for step, FP16 runs,
and bad settings give one-line errors."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from spikeforge.compiler.frontends import load_model
from spikeforge.compiler.frontends.yaml_reader import graph_from_doc, graph_to_doc
from spikeforge.isa import SpikeforgeError
from spikeforge.training import Dataset, encode, fit_input, load_dataset, train

EXAMPLE = Path(__file__).parents[2] / "examples" / "train_digits.py"
RSNN = Path(__file__).parents[2] / "examples" / "models" / "digits_rsnn.yaml"


def _example():
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def small():
    d = load_dataset("digits", seed=0)
    return Dataset("digits", d.x_train[:256], d.y_train[:256], d.x_test[:200], d.y_test[:200])


def test_digits_split_is_fixed_by_seed():
    a, b, c = load_dataset("digits", 0), load_dataset("digits", 0), load_dataset("digits", 1)
    assert a.x_train.shape == (1347, 64) and a.x_test.shape == (450, 64)
    assert np.array_equal(a.y_test, b.y_test) and not np.array_equal(a.y_test, c.y_test)
    assert 0 <= a.x_train.min() and a.x_train.max() <= 1


def test_digits_rows_is_the_same_split_one_row_per_step():
    a, rows = load_dataset("digits", 0), load_dataset("digits_rows", 0)
    assert rows.x_train.shape == (1347, 8, 8) and rows.steps == 8 and rows.frame == (8,)
    assert np.array_equal(rows.x_train.reshape(-1, 64), a.x_train) and np.array_equal(rows.y_test, a.y_test)
    x = encode(rows.x_train[:3], 8, sequence=True)
    assert x.shape == (8, 3, 8) and np.array_equal(x[5, 2], rows.x_train[2, 5])  # step 5: row 5


def test_a_recurrent_model_learns_the_rows_and_the_recurrence_helps():
    """digits_rsnn against the same model without its recurrent weights (rec and its add), same
    seed, batches and SGD: both learn, the recurrent one more (3 epochs on 512 images)."""
    d = load_dataset("digits_rows", 0)
    data = Dataset("digits_rows", d.x_train[:512], d.y_train[:512], d.x_test, d.y_test, 8)
    rec = load_model(str(RSNN), seed=0)
    doc = graph_to_doc(rec)
    doc["layers"] = [l for l in doc["layers"] if l["name"] not in ("sum", "prev", "rec")]
    next(l for l in doc["layers"] if l["name"] == "lif1")["inputs"] = ["fc1"]
    ff = graph_from_doc(doc, "ff.yaml")
    for name in ("fc1", "fc2"):
        ff[name].tensors.update({k: v.copy() for k, v in rec[name].tensors.items()})
    r, f = (train(g, data, epochs=3, batch=32, timesteps=8, seed=0) for g in (rec, ff))
    assert r.epochs[-1].loss < r.epochs[0].loss and r.epochs[-1].test_acc > 0.5  # chance is 0.1
    assert r.epochs[-1].test_acc > f.epochs[-1].test_acc + 0.05
    assert r.epochs[0].energy_pj > f.epochs[0].energy_pj  # the recurrent weights' work
    with pytest.raises(SpikeforgeError, match=r"--timesteps: dataset 'digits_rows' is a sequence of 8 steps, got 4"):
        train(rec, data, timesteps=4)


def test_chip_training_learns_and_matches_snntorch(small):
    mod = _example()
    hp = dict(epochs=2, batch=32, timesteps=6, lr=0.1, seed=0)
    chip = train(load_model(mod.MODEL, seed=0), small, **hp)
    ref = mod.train_torch(load_model(mod.MODEL, seed=0), small, **hp)
    accs = [e.test_acc for e in chip.epochs]
    assert chip.steps_per_epoch == 8 and len(accs) == 2
    assert chip.epochs[1].loss < chip.epochs[0].loss and accs[1] > 0.6  # chance is 0.1
    # same weights, batches, loss and SGD: the two runs classify the test set alike
    assert np.allclose(accs, ref["test_acc"], atol=2 / 200)
    assert np.allclose([e.loss for e in chip.epochs], ref["loss"], rtol=0.02)  # the chip rounds to FP16
    e = chip.epochs[0]
    assert e.energy_pj > 0 and e.latency_s > 0 and e.dram_bytes > 0
    assert 0 < e.spike_rate < 1 and 0 < e.op_sparsity < 1


def test_fp16_training_rounds_weights(small):
    g = load_model(_example().MODEL, seed=0)
    r = train(g, small, epochs=1, batch=64, timesteps=4, lr=0.1, fp16=True)
    w = g["fc1"].tensors["weight"]
    assert r.arithmetic == "fp16" and np.array_equal(w, w.astype(np.float16).astype(np.float32))
    assert r.epochs[0].test_acc > 0.2


def test_adam_training_learns_with_its_state_kept_between_steps(small, monkeypatch):
    from spikeforge.hwsim import optim

    made = []
    monkeypatch.setattr(optim, "make_optimizer",
                        lambda *a, make=optim.make_optimizer: made.append(make(*a)) or made[-1])
    r = train(load_model(_example().MODEL, seed=0), small, epochs=2, batch=32, timesteps=6, lr=0.01, optimizer="adam")
    assert r.optimizer == "adam" and r.lr == 0.01
    assert r.epochs[1].loss < r.epochs[0].loss and r.epochs[1].test_acc > 0.6  # chance is 0.1
    (opt,) = made
    assert opt.t == 16 and {k for k in opt.m} == {("fc1", "weight"), ("fc1", "bias"), ("fc2", "weight"), ("fc2", "bias")}
    # the 77 KB of state stay in the global buffer: no more DRAM traffic than SGD's step
    sgd = train(load_model(_example().MODEL, seed=0), small, epochs=1, batch=32, timesteps=6)
    assert sgd.optimizer == "sgd" and sgd.lr == 0.1 and r.epochs[0].dram_bytes == sgd.epochs[0].dram_bytes
    assert r.epochs[0].energy_pj > sgd.epochs[0].energy_pj


@pytest.mark.parametrize("kw, msg", [(dict(batch=0), "batch: must be a positive int"),
                                     (dict(lr=-1.0), "lr: must be positive"),
                                     (dict(optimizer="Adam"), "optimizer: must be one of sgd, adam"),
                                     (dict(batch=1000), "larger than the 256 training samples")])
def test_bad_settings(small, kw, msg):
    with pytest.raises(SpikeforgeError, match=msg):
        train(load_model(_example().MODEL), small, **kw)


def test_unknown_dataset_and_shape_mismatch(small):
    with pytest.raises(SpikeforgeError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(SpikeforgeError, match=r"shape \[64\], the model's input wants \[784\]"):
        train(load_model("mlp"), small)
    flat = fit_input(small, (1, 8, 8), "conv")  # flat frames fill an image input in C order
    assert flat.x_train.shape[1:] == (1, 8, 8) and np.array_equal(flat.x_train.reshape(len(flat.x_train), -1),
                                                                    small.x_train)
    images = fit_input(small, (64,), "mlp").x_train.reshape(-1, 8, 8, 1)  # [H, W, C] frames of the right size
    with pytest.raises(SpikeforgeError, match=r"shape \[8, 8, 1\], the model's input wants \[1, 8, 8\]"):
        fit_input(Dataset("hwc", images, small.y_train, images, small.y_test), (1, 8, 8), "conv")


def test_cli_train_errors_exit_2_and_write_nothing(tmp_path, capsys):
    from spikeforge.cli import main

    for argv, msg in ((["mlp"], "the model's input wants [784]"), ([_example().MODEL, "--epochs", "0"], "epochs"),
                      ([_example().MODEL, "--optimizer", "rmsprop"], "--optimizer"),
                      ([_example().MODEL, "--optimizer", "adam", "--lr", "0"], "lr: must be positive"),
                      ([str(RSNN), "--dataset", "digits_rows", "-T", "4"], "is a sequence of 8 steps, got 4"),
                      ([str(RSNN), "--dataset", "digits_rows", "--workers", "2", "--in-process"],
                       "federated training takes a dataset of static samples")):
        try:
            rc = main(["train", *argv, "-o", str(tmp_path / "out")])
        except SystemExit as e:  # a usage mistake, from argparse
            rc = e.code
        assert rc == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and msg in err and err.count("\n") == 1
        assert not (tmp_path / "out").exists()
