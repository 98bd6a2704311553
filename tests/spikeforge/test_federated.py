"""Federated training (FedAvg over simulated chips): shards, the exchange's bytes and energy,
the same result in this process and on a Dask cluster, agreement with a snnTorch FedAvg twin,
and the CLI's errors."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeforge.compiler.frontends import load_model
from spikeforge.isa import SpikeforgeError
from spikeforge.isa.arch import arch_doc, arch_from_doc, load_arch, with_chips
from spikeforge.cli import main
from spikeforge.federated import FedConfig, exchange, federated, local_batches, shards
from spikeforge.training import load_dataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = str(EXAMPLES / "models" / "digits_mlp.yaml")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", 0)


def _example():
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location("federated_digits", EXAMPLES / "federated_digits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shards_split_the_training_set_iid_or_by_dirichlet(data):
    y = data.y_train
    iid = shards(y, 5, "iid", 0, 32)
    assert sorted(len(s) for s in iid) == [269, 269, 269, 270, 270]
    noniid = shards(y, 5, "dirichlet:0.5", 0, 32)
    for parts in (iid, noniid):
        every = np.concatenate(parts)
        assert len(every) == len(y) and len(np.unique(every)) == len(y)  # disjoint and complete
    assert min(len(s) for s in noniid) >= 32
    skew = lambda parts: max(np.bincount(y[s], minlength=10).max() / len(s) for s in parts)  # noqa: E731
    assert skew(iid) < 0.2 < skew(noniid)  # iid shards hold about 10 % of each class
    assert [s.tolist() for s in shards(y, 5, "dirichlet:0.5", 0, 32)] == [s.tolist() for s in noniid]
    assert [s.tolist() for s in shards(y, 5, "dirichlet:0.5", 1, 32)] != [s.tolist() for s in noniid]


@pytest.mark.parametrize("partition, msg", [("dirichlet", "dirichlet:ALPHA"), ("dirichlet:0", "ALPHA > 0"),
                                            ("noniid", "iid or dirichlet"), ("dirichlet:nan", "ALPHA > 0")])
def test_a_bad_partition_is_refused(data, partition, msg):
    with pytest.raises(SpikeforgeError, match=msg):
        shards(data.y_train, 5, partition, 0, 32)


def test_too_many_workers_for_the_samples_is_refused(data):
    with pytest.raises(SpikeforgeError, match="cannot give 100 workers 32 samples"):
        shards(data.y_train, 100, "iid", 0, 32)


def test_local_batches_are_full_distinct_and_fixed_by_seed_round_and_worker():
    cfg = FedConfig(local_steps=7, batch=32)
    b = local_batches(100, cfg, 1, 0)
    assert len(b) == 7 and all(len(x) == 32 and len(set(x.tolist())) == 32 for x in b)
    assert all((x < 100).all() for x in b)
    again = local_batches(100, cfg, 1, 0)
    assert all((x == y).all() for x, y in zip(b, again))
    assert any((x != y).any() for x, y in zip(b, local_batches(100, cfg, 2, 0)))
    assert any((x != y).any() for x, y in zip(b, local_batches(100, cfg, 1, 1)))


def test_the_exchange_moves_parameters_times_bytes_times_two_per_worker():
    params = 9610
    star = with_chips(load_arch("default"), 5)
    n, pj, s = exchange(star, params, 5)
    assert n == params * 2 * 2 * 5  # FP16 weights, up and down, 5 workers
    link = star.system.link
    assert pj == pytest.approx(n * 8 * link.pj_per_bit)  # one link per worker
    assert s == pytest.approx(2 * (params * 2 / (link.gb_per_s * 1e9) + link.latency_ns * 1e-9))
    doc, _ = arch_doc("default")
    doc["system"] = {"chips": 5, "topology": "ring", "link": {"gb_per_s": 25, "pj_per_bit": 1.0, "latency_ns": 100}}
    ring = arch_from_doc(doc)
    n2, pj2, s2 = exchange(ring, params, 5)
    hops = [1, 2, 3, 3, 2]  # to the host at chip 0, around the ring
    assert n2 == n and pj2 == pytest.approx(sum(2 * params * 2 * 8 * 1.0 * h for h in hops))
    assert s2 == pytest.approx(2 * (5 * params * 2 / 25e9 + 3 * 100e-9))


def test_a_system_section_is_validated():
    doc, _ = arch_doc("edge4")
    doc["system"] = {"chips": 4, "topology": "torus", "link": {"gb_per_s": 25, "pj_per_bit": 1.0, "latency_ns": 0}}
    with pytest.raises(SpikeforgeError, match="system.topology: must be one of star, ring, mesh"):
        arch_from_doc(doc, "chip.yaml")
    doc["system"] = {"chips": 4, "topology": "mesh", "link": {"gb_per_s": 0, "pj_per_bit": 1.0, "latency_ns": 0}}
    with pytest.raises(SpikeforgeError, match="system.link.gb_per_s"):
        arch_from_doc(doc, "chip.yaml")
    doc["system"]["link"]["gb_per_s"] = 25
    mesh = arch_from_doc(doc).system
    assert [mesh.host_hops(c) for c in range(4)] == [1, 2, 2, 3]  # a 2 x 2 grid, the host at chip 0


def test_the_dask_cluster_and_this_process_give_identical_results(data):
    from distributed import Client, LocalCluster

    cfg = FedConfig(workers=3, rounds=2, local_steps=2, partition="dirichlet:0.5", batch=16, timesteps=4)
    chip = with_chips(load_arch("default"), 3)
    here_graph, there_graph = load_model(MODEL, seed=0), load_model(MODEL, seed=0)
    here = federated(here_graph, data, chip, cfg)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        there = federated(there_graph, data, chip, cfg, client)
    assert here.to_dict() == there.to_dict()
    for op in here_graph:
        for k, w in op.tensors.items():
            assert w.tobytes() == there_graph[op.name].tensors[k].tobytes()
    assert here.rounds[-1].comm_bytes == here.params * 2 * 2 * 3
    assert here.rounds[-1].compute_energy_pj == pytest.approx(sum(w.energy_pj for w in here.rounds[-1].workers))


def test_non_iid_fedavg_on_chips_learns_and_matches_its_snntorch_twin(data):
    mod = _example()
    cfg = FedConfig(workers=5, rounds=4, local_steps=5, partition="dirichlet:0.5")
    fp32 = with_chips(load_arch("default", {"arithmetic": "fp32"}), 5)
    chip = federated(load_model(MODEL, seed=0), data, fp32, cfg)
    twin = mod.fedavg_snntorch(load_model(MODEL, seed=0), data, cfg)
    accs = [r.test_acc for r in chip.rounds]
    assert accs[-1] > 0.7 and accs[-1] > accs[0]
    assert np.abs(np.array(accs) - np.array(twin)).max() <= 0.01  # every round within 1 point


def test_cli_federated_writes_its_files_and_refuses_bad_settings(tmp_path, capsys):
    out = tmp_path / "fed"
    assert main(["train", MODEL, "--workers", "2", "--rounds", "1", "--local-steps", "1", "-B", "16", "-T", "2",
                 "--in-process", "-o", str(out)]) == 0
    doc = json.loads((out / "federated.json").read_text())
    assert doc["workers"] == 2 and len(doc["rounds"]) == 1 and (out / "federated.png").stat().st_size > 0
    assert main(["export", str(out), "-o", str(tmp_path / "fed.nir")]) == 0  # the global model, as NIR
    assert "comm" in capsys.readouterr().out
    for argv, msg in ((["--workers", "2", "--partition", "dirichlet:-1"], "ALPHA > 0"),
                      (["--workers", "0"], "workers: must be a positive int"),
                      (["--workers", "2", "--rounds", "0"], "rounds: must be a positive int"),
                      (["--in-process"], "--in-process needs --workers N"),
                      (["--workers", "2", "--epochs", "3"], "--epochs and --fp16 are for single-chip"),
                      (["--workers", "2", "--in-process", "--dask-scheduler", "tcp://127.0.0.1:1"], "not both")):
        bad = tmp_path / "bad"
        assert main(["train", MODEL, *argv, "-o", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and msg in err and len(err.strip().splitlines()) == 1, err
        assert not bad.exists()
