"""Hostile and malformed input over every command and input kind (docs/reliability.md). Each case
runs `spikeforge.cli.main(argv)` in a forked child under a memory limit (RLIMIT_AS: 2 GiB above
the size at the fork) and a timeout, and must exit 2 with exactly one `error:` line on stderr:
no traceback, no hang, no runaway memory. Then: the writer lock of a sweep directory, stale
temporary folders, and SIGKILL during each command's final write."""

import io
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import spikeforge.cli
from spikeforge.sweeps.store import Store, read, writer_lock

ROOT = Path(__file__).resolve().parents[1]
MEMORY = 2 * 2**30
TIMEOUT = 40.0
MAX_LINE = 2000


def run_cli(argv: list[str], cwd: Path, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `main(argv)` in a forked child with RLIMIT_AS and a timeout."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 99
        try:
            os.chdir(cwd)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
            with open("/proc/self/statm") as f:
                size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (size + MEMORY, resource.getrlimit(resource.RLIMIT_AS)[1]))
            try:
                code = spikeforge.cli.main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 -- reported to the parent as a traceback
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    start = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"timed out after {timeout:.0f} s: spikeforge {' '.join(argv)}")
        time.sleep(0.01)
    texts = []
    for f in (out, err):
        f.seek(0)
        texts.append(f.read().decode(errors="replace"))
        f.close()
    return os.waitstatus_to_exitcode(status), texts[0], texts[1]


def assert_one_error(argv: list[str], cwd: Path, needle: str = "") -> str:
    rc, _, err = run_cli(argv, cwd)
    lines = err.splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), f"rc={rc}\n{err[-3000:]}"
    assert len(lines[0]) <= MAX_LINE + 10
    assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


# ---- the hostile files -------------------------------------------------------------------------

MLP = "input: {shape: [8]}\nlayers:\n  - linear: {out_features: 4}\n  - lif: {beta: 0.9}\n"


def _laughs(levels: int, width: int = 10) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _npz(path: Path, **arrays) -> None:
    np.savez(path, **arrays)


def _npz_header_only(path: Path, shape: tuple, dtype: str = "<f4") -> None:
    """An .npz whose array 'x' declares `shape` in its header but holds no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", buf.getvalue())


def _nir_graph(path: Path, nodes: dict, edges: list) -> None:
    def put(g, d):
        for k, v in d.items():
            if isinstance(v, dict):
                put(g.create_group(k), v)
            else:
                g[k] = v
    with h5py.File(path, "w") as f:
        put(f.create_group("node"), {"type": "NIRGraph", "nodes": nodes, "edges": np.array(edges, dtype="S")})


def _nir_affine(weight, bias=None, tau=0.01) -> dict:
    w = np.asarray(weight)
    n = w.shape[0]
    return {
        "in": {"type": "Input", "shape": np.array([w.shape[1]])},
        "fc": {"type": "Affine", "weight": w, "bias": np.zeros(n, np.float32) if bias is None else bias},
        "lif": {"type": "LIF", "tau": np.full(n, tau), "r": np.ones(n), "v_leak": np.zeros(n),
                "v_threshold": np.ones(n)},
        "out": {"type": "Output", "shape": np.array([n])},
    }


NIR_EDGES = [("in", "fc"), ("fc", "lif"), ("lif", "out")]


def _store(path: Path, rows: int = 3) -> None:
    path.mkdir(parents=True, exist_ok=True)
    store = Store(path)
    store.claim({"params": ["clock_mhz"], "arch": "default"}, {}, str(path))
    for i in range(rows):
        store.add({"hash": f"h{i}", "model": "mlp", "clock_mhz": 100 * (i + 1), "status": "ok", "error": None,
                   "energy_pj": 1.0 + i, "latency_s": 3.0 - i, "cycles": 1, "dram_bytes": 1})
    store.close()


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """A folder of hostile files, and one valid compile directory (`compiled`)."""
    d = tmp_path_factory.mktemp("hostile")
    w = lambda name, text: (d / name).write_text(text)  # noqa: E731

    # model YAML
    w("laughs.yaml", _laughs(9))
    w("laughs5.yaml", _laughs(6))
    w("recursive.yaml", "layers: &a [*a]\n")
    w("deep.yaml", "layers: " + "[" * 50_000 + "]" * 50_000 + "\n")
    w("pytag.yaml", "layers: !!python/object/apply:os.system ['echo pwned']\n")
    w("pyname.yaml", "name: !!python/name:os.system\nlayers: []\n")
    (d / "binary.yaml").write_bytes(bytes(range(256)) * 16)
    w("empty.yaml", "")
    (d / "huge.yaml").write_bytes(b"# " + b"x" * (17 * 2**20) + b"\n")
    w("list.yaml", "- 1\n- 2\n")
    w("scalar.yaml", "42\n")
    w("topkey.yaml", MLP + "evil: 1\n")
    w("nolayers.yaml", "input: {shape: [8]}\n")
    w("layers_str.yaml", "input: {shape: [8]}\nlayers: linear\n")
    w("badkind.yaml", "input: {shape: [8]}\nlayers:\n  - transformer: {}\n")
    w("twokinds.yaml", "input: {shape: [8]}\nlayers:\n  - {linear: {out_features: 2}, lif: {}}\n")
    w("big_linear.yaml", "input: {shape: [1000]}\nlayers:\n  - linear: {out_features: 1000000000}\n")
    w("big_input.yaml", "input: {shape: [100000000000000]}\nlayers:\n  - lif: {}\n")
    w("shape_str.yaml", "input: {shape: [a, b]}\nlayers:\n  - lif: {}\n")
    w("shape_neg.yaml", "input: {shape: [-8]}\nlayers:\n  - lif: {}\n")
    w("shape_float.yaml", "input: {shape: [8.5]}\nlayers:\n  - lif: {}\n")
    w("beta_nan.yaml", MLP.replace("0.9", ".nan"))
    w("beta_inf.yaml", MLP.replace("0.9", ".inf"))
    w("thr_inf.yaml", MLP.replace("beta: 0.9", "threshold: .inf"))
    w("beta_str.yaml", MLP.replace("0.9", "'high'"))
    w("long_value.yaml", MLP.replace("0.9", "[" + ", ".join(["1234567890"] * 50_000) + "]"))
    refs = lambda i: ", ".join([f"*a{i - 1}"] * 10)  # noqa: E731
    w("long_laughs.yaml", MLP.replace("0.9", f"[&a0 [lol], &a1 [{refs(1)}], &a2 [{refs(2)}], &a3 [{refs(3)}]]"))
    w("seed_neg.yaml", MLP + "seed: -1\n")
    w("seed_huge.yaml", MLP + "seed: 100000000000000000000000\n")
    w("dup.yaml", "input: {shape: [8]}\nlayers:\n  - {linear: {out_features: 2}, name: a}\n"
                  "  - {lif: {}, name: a}\n")
    w("unknown_input.yaml", "input: {shape: [8]}\nlayers:\n  - {linear: {out_features: 2}, inputs: nope}\n")
    w("bad_kernel.yaml", "input: {shape: [1, 4, 4]}\nlayers:\n  - conv2d: {out_channels: 2, kernel: 9}\n")
    w("date.yaml", "seed: 2024-13-45\n")
    w("bad_syntax.yaml", "layers: [\n  - {a: \n")
    w("tab.yaml", "layers:\n\t- linear: {}\n")
    w("dupkey.yaml", MLP + "name: a\nname: b\nname: " + "c" * 100_000 + "\n")
    for name, arrays in {
        "w_nan": {"fc.weight": np.full((4, 8), np.nan), "fc.bias": np.zeros(4)},
        "w_inf": {"fc.weight": np.full((4, 8), np.inf), "fc.bias": np.zeros(4)},
        "w_1e300": {"fc.weight": np.full((4, 8), 1e300), "fc.bias": np.zeros(4)},
        "w_complex": {"fc.weight": np.ones((4, 8), complex), "fc.bias": np.zeros(4)},
        "w_str": {"fc.weight": np.array(["a"] * 32).reshape(4, 8), "fc.bias": np.zeros(4)},
        "w_obj": {"fc.weight": np.array([None] * 32, dtype=object).reshape(4, 8), "fc.bias": np.zeros(4)},
        "w_shape": {"fc.weight": np.ones((3, 8)), "fc.bias": np.zeros(4)},
        "w_beta_nan": {"fc.weight": np.ones((4, 8)), "fc.bias": np.zeros(4), "lif.beta": np.full(4, np.nan)},
    }.items():
        (_pickled_npz if name == "w_obj" else _npz)(d / f"{name}.npz", **arrays)
        w(f"{name}.yaml", "input: {shape: [8]}\nlayers:\n  - {linear: {out_features: 4, bias: true}, name: fc}\n"
                          f"  - {{lif: {{}}, name: lif}}\nweights: {name}.npz\n")
    _npz_header_only(d / "w_bomb.npz", (10**12,))
    w("w_bomb.yaml", MLP + "weights: w_bomb.npz\n")
    w("w_dir.yaml", MLP + "weights: .\n")
    w("w_dev.yaml", MLP + "weights: /dev/zero\n")
    w("w_missing.yaml", MLP + "weights: nope.npz\n")
    w("w_text.yaml", MLP + "weights: empty.yaml\n")
    w("mlp.yaml", MLP)

    # arch YAML
    def arch_file(name, change):
        doc = yaml.safe_load(spikeforge_arch_text())
        change(doc)
        w(name, yaml.safe_dump(doc))
    arch_file("a_mesh_huge.yaml", lambda a: a["mesh"].update(rows=1_000_000, cols=1_000_000))
    arch_file("a_mesh_zero.yaml", lambda a: a["mesh"].update(rows=0))
    arch_file("a_mesh_float.yaml", lambda a: a["mesh"].update(rows=2.5))
    arch_file("a_clock_inf.yaml", lambda a: a.update(clock_mhz=float("inf")))
    arch_file("a_clock_nan.yaml", lambda a: a.update(clock_mhz=float("nan")))
    arch_file("a_clock_str.yaml", lambda a: a.update(clock_mhz="fast"))
    arch_file("a_unknown.yaml", lambda a: a.update(warp_drive=True))
    arch_file("a_nocore.yaml", lambda a: a.pop("core"))
    arch_file("a_precision.yaml", lambda a: a.update(precision="fp8"))
    arch_file("a_dram_neg.yaml", lambda a: a["dram"].update(gb_per_s=-1))
    arch_file("a_tiny_membrane.yaml", lambda a: [b.update(kib=1e-6) for b in a["core"]["buffers"].values()
                                                  if "membrane" in str(b.get("role"))])
    arch_file("a_role.yaml", lambda a: [b.update(role="coffee") for b in a["core"]["buffers"].values()][:1])
    arch_file("a_port_zero.yaml", lambda a: [b.update(port_bits=0) for b in a["core"]["buffers"].values()])
    arch_file("a_engines.yaml", lambda a: a["core"]["engines"].pop("fp"))
    arch_file("a_list.yaml", lambda a: a.update(mesh=[1, 2]))
    w("a_laughs.yaml", _laughs(9))
    w("a_pytag.yaml", "mesh: !!python/object/apply:os.system ['true']\n")
    w("a_deep.yaml", "mesh: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n")

    # IR text
    w("bad.sfir", "graph { nonsense\n")
    w("deep.sfir", 'graph "g" {\n  %x = input() {shape = ' + "[" * 50_000 + "]" * 50_000 + "};\n}\n")
    w("huge_input.sfir", 'graph "g" {\n  %x = input() {shape = [100000000000000000000000000]};\n'
                         '  %y = lif(%x);\n}\n')
    w("tensor_count.sfir", 'graph "g" {\n  %x = input() {shape = [2]};\n'
                           '  %y = linear(%x) {out_features = 1} with\n    weight: [1, 2] b64"AAAAAA==";\n}\n')
    nan = __import__("base64").b64encode(np.full(2, np.nan, "<f4").tobytes()).decode()
    w("tensor_nan.sfir", 'graph "g" {\n  %x = input() {shape = [2]};\n'
                         f'  %y = linear(%x) {{out_features = 1, bias = false}} with\n    weight: [1, 2] b64"{nan}";\n'
                         '  %z = lif(%y);\n}\n')
    w("kind.sfir", 'graph "g" {\n  %x = input() {shape = [2]};\n  %y = teleport(%x);\n}\n')
    w("cycle.sfir", 'graph "g" {\n  %x = input() {shape = [2]};\n  %a = lif(%b);\n  %b = lif(%a);\n}\n')
    w("undefined.sfir", 'graph "g" {\n  %x = input() {shape = [2]};\n  %a = lif(%nope);\n}\n')
    w("beta_inf.sfir", 'graph "g" {\n  %x = input() {shape = [2]};\n  %a = lif(%x) {beta = inf};\n}\n')
    (d / "binary.sfir").write_bytes(bytes(range(256)) * 4)
    w("empty.sfir", "")
    (d / "huge.sfir").write_bytes(b"#" * (17 * 2**20))

    # NIR
    (d / "not_hdf5.nir").write_text("hello")
    (d / "empty.nir").write_bytes(b"")
    with h5py.File(d / "node_dataset.nir", "w") as f:
        f["node"] = np.arange(3)
    with h5py.File(d / "no_node.nir", "w") as f:
        f.create_group("other")
    with h5py.File(d / "not_graph.nir", "w") as f:
        f.create_group("node")["type"] = "Affine"
    with h5py.File(d / "bomb.nir", "w") as f:
        g = f.create_group("node")
        g["type"] = "NIRGraph"
        g.create_dataset("edges", shape=(2**31,), dtype="f4", compression="gzip", chunks=(2**20,), fillvalue=0)
        g.create_group("nodes")
    _nir_graph(d / "nir_nan.nir", _nir_affine(np.full((2, 3), np.nan)), NIR_EDGES)
    _nir_graph(d / "nir_1e300.nir", _nir_affine(np.full((2, 3), 1e300, np.float64)), NIR_EDGES)
    _nir_graph(d / "nir_tau_inf.nir", _nir_affine(np.ones((2, 3)), tau=np.inf), NIR_EDGES)
    _nir_graph(d / "nir_tau_nan.nir", _nir_affine(np.ones((2, 3)), tau=np.nan), NIR_EDGES)
    _nir_graph(d / "nir_edge.nir", _nir_affine(np.ones((2, 3))), NIR_EDGES + [("lif", "ghost")])
    _nir_graph(d / "nir_cycle.nir", _nir_affine(np.ones((3, 3))), NIR_EDGES + [("fc", "fc")])
    unsupported = _nir_affine(np.ones((2, 3)))
    unsupported["fc"] = {"type": "Delay", "delay": np.ones(3)}
    _nir_graph(d / "nir_unsupported.nir", unsupported, NIR_EDGES)
    _nir_graph(d / "nir_big.nir", {**_nir_affine(np.ones((2, 3))), "in": {"type": "Input",
               "shape": np.array([10**14])}}, NIR_EDGES)
    (d / "truncated.nir").write_bytes((d / "nir_nan.nir").read_bytes()[:600])

    # --input arrays (mlp takes [784] per sample; T = 4, B = 1 by default)
    np.save(d / "x.npy", np.zeros((1, 784), np.float32))
    _npz(d / "x_none.npz", y=np.zeros((1, 784)))
    _npz(d / "x_str.npz", x=np.array([["a"] * 784]))
    _npz(d / "x_complex.npz", x=np.zeros((1, 784), complex))
    _npz(d / "x_nan.npz", x=np.full((1, 784), np.nan, np.float32))
    _npz(d / "x_inf.npz", x=np.full((1, 784), -np.inf, np.float32))
    _npz(d / "x_1e300.npz", x=np.full((1, 784), 1e300))
    _npz(d / "x_shape.npz", x=np.zeros((3, 5)))
    _pickled_npz(d / "x_obj.npz", x=np.array([{"a": 1}], dtype=object))
    _npz_header_only(d / "x_bomb.npz", (10**10,))
    _npz_header_only(d / "x_bomb2.npz", (2**40, 2**40))
    (d / "x_garbage.npz").write_bytes(b"PK\x03\x04" + os.urandom(200))
    with zipfile.ZipFile(d / "x_notnpy.npz", "w") as z:
        z.writestr("x.txt", "hello")
    with zipfile.ZipFile(d / "x_gzbomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (2**31,)})
        z.writestr("x.npy", buf.getvalue() + b"\0" * 2**20)

    # compiled directories (one real compile, then broken copies)
    rc, _, err = run_cli(["compile", "mlp", "-o", str(d / "compiled")], d, timeout=300)
    assert rc == 0, err
    good = {n: (d / "compiled" / n).read_text() for n in ("compile.json", "program.sasm", "placement.yaml", "arch.yaml")}
    meta = json.loads(good["compile.json"])

    def compiled(name, **files):
        (d / name).mkdir()
        for n, text in {**good, **files}.items():
            if text is not None:
                (d / name / n).write_text(text)
    compiled("c_list", **{"compile.json": "[1, 2, 3]\n"})
    compiled("c_noseed", **{"compile.json": json.dumps({**meta, "source": {k: v for k, v in meta["source"].items()
                                                                          if k != "seed"}})})
    compiled("c_seed_str", **{"compile.json": json.dumps({**meta, "source": {**meta["source"], "seed": "0"}})})
    compiled("c_nosource", **{"compile.json": json.dumps({k: v for k, v in meta.items() if k != "source"})})
    compiled("c_nohash", **{"compile.json": json.dumps({k: v for k, v in meta.items() if k != "files"})})
    compiled("c_foreign", **{"program.sasm": good["program.sasm"].replace("mlp", "vgg11", 1) + "\n"})
    compiled("c_badjson", **{"compile.json": "{not json"})
    compiled("c_deepjson", **{"compile.json": "[" * 100_000 + "]" * 100_000})
    compiled("c_noprogram", **{"program.sasm": None})
    compiled("c_nomodel", **{"compile.json": json.dumps({**meta, "source": {**meta["source"],
                                                                         "model": "gone.yaml"}})})
    compiled("c_arch", **{"arch.yaml": good["arch.yaml"].replace("clock_mhz: 500", "clock_mhz: 900")})
    compiled("c_noarch", **{"arch.yaml": None})
    compiled("c_binary", **{"compile.json": None})
    (d / "c_binary" / "compile.json").write_bytes(bytes(range(256)))
    (d / "c_empty").mkdir()

    # sweep specs
    base = {"models": ["mlp"], "timesteps": 2, "rate": 0.3, "params": [{"path": "clock_mhz", "values": [250, 500]}]}
    specs = {
        "s_grid_huge": {**base, "params": [{"path": "clock_mhz", "values": list(range(1, 3200))},
                                           {"path": "dram.pj_per_bit", "values": list(range(1, 3200))}]},
        "s_samples_huge": {**base, "samples": 10_000_000, "params": [{"path": "clock_mhz", "uniform": [1, 2]}]},
        "s_samples_bigint": {**base, "samples": 10**30, "params": [{"path": "clock_mhz", "uniform": [1, 2]}]},
        "s_uniform_inf": {**base, "samples": 3, "params": [{"path": "clock_mhz", "uniform": [1, float("inf")]}]},
        "s_uniform_nan": {**base, "samples": 3, "params": [{"path": "clock_mhz", "uniform": [float("nan"), 2]}]},
        "s_log_zero": {**base, "samples": 3, "params": [{"path": "clock_mhz", "log_uniform": [0, 2]}]},
        "s_seed_huge": {**base, "seed": 2**70},
        "s_seed_neg": {**base, "seed": -1},
        "s_sample_seed": {**base, "samples": 2, "sample_seed": 2**80,
                          "params": [{"path": "clock_mhz", "uniform": [1, 2]}]},
        "s_t_zero": {**base, "timesteps": 0},
        "s_t_huge": {**base, "timesteps": 10**12},
        "s_b_huge": {**base, "batch": 10**9},
        "s_b_memory": {**base, "batch": 900_000, "timesteps": 1000},
        "s_mode": {**base, "mode": "turbo"},
        "s_training": {**base, "training": "yes"},
        "s_models_empty": {**base, "models": []},
        "s_models_int": {**base, "models": [3]},
        "s_model_missing": {**base, "models": ["gone.yaml"]},
        "s_model_big": {**base, "models": ["big_linear.yaml"]},
        "s_model_laughs": {**base, "models": ["laughs.yaml"]},
        "s_params_empty": {**base, "params": []},
        "s_path_unknown": {**base, "params": [{"path": "warp.factor", "values": [1]}]},
        "s_values_empty": {**base, "params": [{"path": "clock_mhz", "values": []}]},
        "s_values_bad": {**base, "params": [{"path": "mesh.rows", "values": [2, -4]}]},
        "s_mesh_huge": {**base, "params": [{"path": "mesh.rows", "values": [10**6]}]},
        "s_input_missing": {**{k: v for k, v in base.items() if k != "rate"}, "input": "gone.npz"},
        "s_input_dev": {**{k: v for k, v in base.items() if k != "rate"}, "input": "/dev/zero"},
        "s_input_npy": {**{k: v for k, v in base.items() if k != "rate"}, "input": "x.npy"},
        "s_input_nan": {**{k: v for k, v in base.items() if k != "rate"}, "input": "x_nan.npz"},
        "s_input_bomb": {**{k: v for k, v in base.items() if k != "rate"}, "input": "x_bomb.npz"},
        "s_arch_dev": {**base, "arch": "/dev/zero"},
        "s_arch_laughs": {**base, "arch": "a_laughs.yaml"},
        "s_unknown": {**base, "mdoe": "dense"},
        "s_rate_nan": {**base, "rate": float("nan")},
        "s_rate_both": {**base, "input": "x_nan.npz"},
    }
    for name, doc in specs.items():
        w(f"{name}.yaml", yaml.safe_dump(doc))
    w("s_laughs.yaml", _laughs(9))
    w("s_pytag.yaml", "models: !!python/object/apply:os.system ['true']\n")
    w("s_list.yaml", "- mlp\n")
    w("s_ok.yaml", yaml.safe_dump(base))

    # result stores
    (d / "r_empty").mkdir()
    (d / "r_zero").mkdir()
    (d / "r_zero" / "results.sqlite").write_bytes(b"")
    (d / "r_garbage").mkdir()
    (d / "r_garbage" / "results.sqlite").write_bytes(os.urandom(4096))
    (d / "r_foreign").mkdir()
    db = sqlite3.connect(d / "r_foreign" / "results.sqlite")
    db.execute("CREATE TABLE people (name TEXT)")
    db.commit()
    db.close()
    (d / "r_dir").mkdir()
    (d / "r_dir" / "results.sqlite").mkdir()
    _store(d / "r_good")
    (d / "r_truncated").mkdir()
    data = (d / "r_good" / "results.sqlite").read_bytes()
    (d / "r_truncated" / "results.sqlite").write_bytes(data[:len(data) // 2] + os.urandom(512))
    (d / "r_header").mkdir()
    (d / "r_header" / "results.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    _store(d / "r_errors", rows=0)
    (d / "a_file").write_text("a file, not a folder\n")
    return d


def spikeforge_arch_text() -> str:
    from spikeforge.isa.arch import preset_text
    return preset_text("default")


def _pickled_npz(path: Path, **arrays) -> None:
    """An .npz holding pickled object arrays."""
    with zipfile.ZipFile(path, "w") as z:
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=True)
            z.writestr(f"{k}.npy", buf.getvalue())


# ---- the cases: (argv with {d} for the folder above, what the error line must say) ------------------

def _model_cases():
    cases = []
    for cmd in (["inspect"], ["simulate"]):
        for name, needle in [
            ("laughs.yaml", "expands"), ("laughs5.yaml", "expands"), ("recursive.yaml", "alias"),
            ("deep.yaml", "nested too deeply"), ("pytag.yaml", "python/object"), ("pyname.yaml", "python/name"),
            ("binary.yaml", "not a text file"), ("empty.yaml", "empty"), ("huge.yaml", "larger than"),
            ("list.yaml", "mapping"), ("scalar.yaml", "mapping"), ("topkey.yaml", "unknown key"),
            ("nolayers.yaml", "layers"), ("layers_str.yaml", "layers"), ("badkind.yaml", "unknown op kind"),
            ("twokinds.yaml", "op kinds"), ("big_linear.yaml", "memory limit"), ("big_input.yaml", "memory limit"),
            ("shape_str.yaml", "positive ints"), ("shape_neg.yaml", "positive ints"),
            ("shape_float.yaml", "positive ints"), ("beta_nan.yaml", "finite"), ("beta_inf.yaml", "finite"),
            ("thr_inf.yaml", "finite"), ("beta_str.yaml", "number"), ("long_value.yaml", "number"),
            ("long_laughs.yaml", "number"), ("seed_neg.yaml", "seed"), ("seed_huge.yaml", "seed"),
            ("dup.yaml", "duplicate"), ("unknown_input.yaml", "unknown layer"), ("bad_kernel.yaml", "does not fit"),
            ("date.yaml", "invalid YAML"), ("bad_syntax.yaml", "invalid YAML"), ("tab.yaml", "invalid YAML"),
            ("w_shape.yaml", "shape"), ("w_str.yaml", "numeric"), ("w_obj.yaml", "numeric"),
            ("w_complex.yaml", "numeric"), ("w_bomb.yaml", "memory limit"), ("w_dir.yaml", "not a file"),
            ("w_dev.yaml", "not a file"), ("w_missing.yaml", "not found"), ("w_text.yaml", "not an .npz"),
            ("nope.yaml", "not found"), ("nope.zip", "neither a zoo model"),
        ]:
            cases.append((cmd + ["{d}/" + name], needle))
    for name in ("w_nan", "w_inf", "w_1e300", "w_beta_nan"):
        cases.append((["simulate", "{d}/" + name + ".yaml"], "non-finite"))
    cases.append((["compile", "{d}/big_linear.yaml", "-o", "{d}/out_big"], "memory limit"))
    cases.append((["train", "{d}/big_linear.yaml", "-o", "{d}/out_big"], "memory limit"))
    return cases


ARCH_CASES = [(["arch", "show", "{d}/" + name, "--json"], needle) for name, needle in [
    ("a_mesh_huge.yaml", "cores"), ("a_mesh_zero.yaml", "positive int"), ("a_mesh_float.yaml", "positive int"),
    ("a_clock_inf.yaml", "finite"), ("a_clock_nan.yaml", "finite"), ("a_clock_str.yaml", "number"),
    ("a_unknown.yaml", "unknown field"), ("a_nocore.yaml", "core: missing"), ("a_precision.yaml", "fp16"),
    ("a_dram_neg.yaml", "> 0"), ("a_tiny_membrane.yaml", "at least one byte"), ("a_role.yaml", "role"),
    ("a_port_zero.yaml", "positive int"), ("a_engines.yaml", "missing"), ("a_list.yaml", "mapping"),
    ("a_laughs.yaml", "expands"), ("a_pytag.yaml", "python/object"), ("a_deep.yaml", "nested too deeply"),
    ("binary.yaml", "not a text file"), ("empty.yaml", "mapping"), ("nope.yaml", "neither"),
]] + [
    (["simulate", "mlp", "--arch", "{d}/a_tiny_membrane.yaml"], "at least one byte"),
    (["compile", "mlp", "--arch", "{d}/a_mesh_huge.yaml", "-o", "{d}/out_mesh"], "cores"),
    (["train", "{d}/mlp.yaml", "--arch", "{d}/a_tiny_membrane.yaml"], "at least one byte"),
    (["arch", "show", "/dev/zero"], "neither"),
]

IR_CASES = [([cmd, "{d}/" + name], needle) for cmd in ("inspect", "simulate") for name, needle in [
    ("bad.sfir", "syntax error"), ("deep.sfir", "nested too deeply"), ("huge_input.sfir", "memory limit"),
    ("tensor_count.sfir", "holds 1 values"), ("kind.sfir", "unknown op kind"), ("cycle.sfir", "cycle"),
    ("undefined.sfir", "not defined"), ("beta_inf.sfir", "finite"), ("binary.sfir", "not a text file"),
    ("empty.sfir", "syntax error"), ("huge.sfir", "larger than"),
]] + [(["simulate", "{d}/tensor_nan.sfir"], "non-finite")]

NIR_CASES = [([cmd, "{d}/" + name], needle) for cmd in ("inspect", "simulate") for name, needle in [
    ("not_hdf5.nir", "not a NIR file"), ("empty.nir", "empty"), ("node_dataset.nir", "no 'node' group"),
    ("no_node.nir", "no 'node' group"), ("not_graph.nir", "malformed NIR Affine node"), ("bomb.nir", "memory limit"),
    ("nir_tau_inf.nir", "not finite"), ("nir_tau_nan.nir", "not finite"), ("nir_edge.nir", "unknown node"),
    ("nir_cycle.nir", "cycle without a neuron"), ("nir_unsupported.nir", "unsupported"), ("nir_big.nir", "expected [2, 100000000000000]"),
    ("truncated.nir", "HDF5"),
]] + [(["simulate", "{d}/nir_nan.nir"], "non-finite"), (["simulate", "{d}/nir_1e300.nir"], "non-finite")]

INPUT_CASES = [(["simulate", "mlp", "--input", "{d}/" + name], needle) for name, needle in [
    ("x.npy", "not an .npz"), ("x_none.npz", "no array 'x'"), ("x_str.npz", "numeric"),
    ("x_complex.npz", "numeric"), ("x_nan.npz", "non-finite"), ("x_inf.npz", "non-finite"),
    ("x_1e300.npz", "non-finite"), ("x_shape.npz", "expected shape"), ("x_obj.npz", "numeric"),
    ("x_bomb.npz", "memory limit"), ("x_bomb2.npz", "memory limit"), ("x_garbage.npz", "not an .npz"),
    ("x_notnpy.npz", "not an .npz"), ("x_gzbomb.npz", "memory limit"), ("gone.npz", "not found"),
    ("a_file/x.npz", "not found"), ("r_empty", "not a file"),
]] + [(["simulate", "mlp", "--input", "{d}/x_nan.npz", "--input-rate", "0.2"], "not both")]

CLI_CASES = [(argv, needle) for argv, needle in [
    (["simulate", "mlp", "-T", "0"], "--timesteps"), (["simulate", "mlp", "-T", "-1"], "--timesteps"),
    (["compile", "mlp", "-T", "99999999999999999999999", "-o", "{d}/o"], "--timesteps"),
    (["simulate", "mlp", "-T", "1e9"], "invalid int"), (["simulate", "mlp", "-T", "abc"], "invalid int"),
    (["simulate", "mlp", "-B", "0"], "--batch"), (["simulate", "mlp", "-B", "1000000000"], "--batch"),
    (["simulate", "mlp", "-B", "900000", "-T", "1000"], "memory limit"),
    (["simulate", "mlp", "--seed", "-1"], "--seed"), (["compile", "mlp", "--seed", "10" * 12, "-o", "{d}/o"], "--seed"),
    (["inspect", "mlp", "--seed", "-1"], "seed"), (["inspect", "{d}/mlp.yaml", "--seed", "-5"], "seed"),
    (["simulate", "mlp", "--input-rate", "nan"], "finite"), (["simulate", "mlp", "--input-rate", "inf"], "finite"),
    (["simulate", "mlp", "--input-rate", "2"], "--input-rate"), (["simulate", "mlp", "--input-rate", "-0.1"], "--input-rate"),
    (["inspect", "{d}/nir_tau_inf.nir", "--dt", "nan"], "finite"), (["inspect", "{d}/nir_nan.nir", "--dt", "0"], "dt"),
    (["inspect", "{d}/nir_nan.nir", "--dt", "-1"], "dt"),
    (["compile", "mlp", "--spike-rate", "nan", "-o", "{d}/o"], "finite"),
    (["train", "{d}/mlp.yaml", "--lr", "nan"], "finite"), (["train", "{d}/mlp.yaml", "--lr", "inf"], "finite"),
    (["train", "{d}/mlp.yaml", "--epochs", "0"], "--epochs"), (["train", "{d}/mlp.yaml", "-B", "0"], "--batch"),
    (["train", "{d}/mlp.yaml", "--seed", "-1"], "--seed"),
    (["simulate", "nosuchnet"], "neither a zoo model"), (["simulate", "mlp", "--arch", "nosuch"], "neither"),
    (["simulate", "mlp", "--mode", "turbo"], "invalid choice"), (["simulate", "mlp", "--max-memory", "nan"], "finite"),
    (["compile", "vgg11", "--max-memory", "0.001", "-o", "{d}/o"], "memory limit"),
    (["simulate", "mlp", "--record-spikes"], "needs -o"), (["compile", "mlp"], "required"),
    (["inspect", "mlp", "-T", "0"], "--timesteps"), (["simulate", ""], "not a file"),
    (["sweep", "{d}/s_ok.yaml", "-o", "{d}/o", "--workers", "0"], "--workers"),
    (["sweep", "{d}/s_ok.yaml", "-o", "{d}/o", "--max-points", "0"], "--max-points"),
    (["sweep", "{d}/s_ok.yaml"], "-o OUTDIR"), (["sweep", "export", "{d}/r_good"], "usage"),
    (["report", "{d}/r_good", "--color-by", "nope"], "--color-by"), (["zoo", "lisst"], "invalid choice"),
    (["nosuchcommand"], "invalid choice"), (["simulate", "mlp", "--dataflow", "magic"], "invalid choice"),
    (["inspect", "{d}/nir_nan.nir", "--exporter", "lava"], "invalid choice"), (["export", "mlp"], "required"),
    (["export", "vgg11", "-o", "{d}/v.nir"], "NIR has no batch norm"), (["export", "{d}", "-o", "{d}/x.nir"], "train"),
]]

OUTPUT_CASES = [(argv, needle) for argv, needle in [
    (["compile", "mlp", "-o", "{d}/a_file"], "not a directory"),
    (["compile", "mlp", "-o", "{d}/a_file/sub"], "not a directory"),
    (["compile", "mlp", "-o", "/proc/spikeforge"], "cannot write"),
    (["compile", "mlp", "-o", "/proc/self/nope/deeper"], "cannot write"),
    (["simulate", "mlp", "-o", "{d}/a_file/sub"], "not a directory"),
    (["simulate", "mlp", "-o", "/proc/spikeforge"], "cannot write"),
    (["train", "{d}/mlp.yaml", "-o", "/proc/spikeforge"], "cannot write"),
    (["train", "{d}/mlp.yaml", "-o", "{d}/a_file"], "not a directory"),
    (["export", "mlp", "-o", "/proc/spikeforge.nir"], "cannot write"),
    (["export", "mlp", "-o", "{d}/a_file/x.nir"], "not a directory"),
    (["sweep", "{d}/s_ok.yaml", "-o", "{d}/a_file/sub"], "not a directory"),
    (["sweep", "{d}/s_ok.yaml", "-o", "/proc/spikeforge"], "cannot write"),
    (["sweep", "export", "{d}/r_good", "--csv", "/proc/x.csv"], "cannot write"),
    (["sweep", "export", "{d}/r_good", "--csv", "{d}/a_file/x.csv"], "not a directory"),
    (["sweep", "export", "{d}/r_good", "--csv", "{d}/r_empty"], "is a directory"),
]]

COMPILED_CASES = [(["simulate", "{d}/" + name], needle) for name, needle in [
    ("c_list", "source"), ("c_noseed", "source"), ("c_seed_str", "source"), ("c_nosource", "source"),
    ("c_nohash", "hash"), ("c_foreign", "hash"), ("c_badjson", "JSON"), ("c_deepjson", "JSON"),
    ("c_noprogram", "not found"), ("c_nomodel", "not found"), ("c_arch", "hash"), ("c_noarch", "not found"),
    ("c_binary", "not a text"),
    ("c_empty", "no compile.json"),
]]

SWEEP_CASES = [(["sweep", "{d}/" + name + ".yaml", "-o", "{d}/sw_" + name], needle) for name, needle in [
    ("s_grid_huge", "--max-points"), ("s_samples_huge", "samples"), ("s_samples_bigint", "samples"),
    ("s_uniform_inf", "finite"), ("s_uniform_nan", "finite"), ("s_log_zero", "log_uniform"),
    ("s_seed_huge", "seed"), ("s_seed_neg", "seed"), ("s_sample_seed", "sample_seed"), ("s_t_zero", "timesteps"),
    ("s_t_huge", "timesteps"), ("s_b_huge", "batch"), ("s_b_memory", "memory limit"), ("s_mode", "mode"),
    ("s_training", "training"), ("s_models_empty", "models"), ("s_models_int", "models[0]"),
    ("s_model_missing", "not found"), ("s_model_big", "memory limit"), ("s_model_laughs", "expands"),
    ("s_params_empty", "params"), ("s_path_unknown", "unknown architecture field"),
    ("s_values_empty", "non-empty"), ("s_values_bad", "positive int"), ("s_mesh_huge", "cores"),
    ("s_input_missing", "not found"), ("s_input_dev", "not a file"), ("s_input_npy", "not an .npz"),
    ("s_input_nan", "non-finite"), ("s_input_bomb", "memory limit"), ("s_arch_dev", "neither"),
    ("s_arch_laughs", "expands"), ("s_unknown", "unknown field"), ("s_rate_nan", "finite"),
    ("s_rate_both", "not both"), ("s_laughs", "expands"), ("s_pytag", "python/object"), ("s_list", "mapping"),
    ("binary", "not a text"), ("nope", "not found"),
]] + [(["sweep", "{d}/s_ok.yaml", "-o", "{d}/sw_dask", "--dask-scheduler", address], needle) for address, needle in [
    ("notanaddress", "not a Dask scheduler address"), ("tcp://host:99999", "not a Dask scheduler address"),
    ("http://[::1", "not a Dask scheduler address"), ("tcp://", "not a Dask scheduler address"),
    ("tcp://127.0.0.1:1", "cannot connect"),
]] + [(["sweep", "{d}/s_grid_huge.yaml", "-o", "{d}/sw_x", "--max-points", "100"], "--max-points")]

STORE_CASES = [(argv + extra, needle) for name, needle in [
    ("r_empty", "no results.sqlite"), ("r_zero", "not a spikeforge results store"), ("r_garbage", "not a results store"),
    ("r_foreign", "not a spikeforge results store"), ("r_dir", "no results.sqlite"), ("r_truncated", "store"),
    ("r_header", "store"), ("nope", "no results.sqlite"), ("a_file", "no results.sqlite"),
] for argv, extra in [(["report", "{d}/" + name], []), (["sweep", "export", "{d}/" + name], ["--csv", "{d}/x.csv"])]
] + [(["report", "{d}/r_errors"], "no successful design point")]

CASES = (_model_cases() + ARCH_CASES + IR_CASES + NIR_CASES + INPUT_CASES + CLI_CASES + OUTPUT_CASES
         + COMPILED_CASES + SWEEP_CASES + STORE_CASES)


def _id(case) -> str:
    return " ".join(a.replace("{d}/", "") for a in case[0])[:80]


def test_there_are_at_least_150_cases():
    assert len(CASES) >= 150


@pytest.mark.parametrize("argv, needle", CASES, ids=[_id(c) for c in CASES])
def test_hostile_input_is_one_error_line(d, argv, needle):
    assert_one_error([a.replace("{d}", str(d)) for a in argv], d, needle)


def test_nothing_half_made(d):
    """The cases above left no output directory, temporary folder or schema behind."""
    assert not list(d.glob("sw_*")) and not list(d.glob("out_*")) and not (d / "o").exists()
    assert not list(d.glob(".spikeforge-*")) and not (d / "x.csv").exists()
    assert not (d / "v.nir").exists() and not (d / "x.nir").exists()
    assert (d / "r_zero" / "results.sqlite").stat().st_size == 0


def test_values_quoted_in_errors_are_bounded(d):
    line = assert_one_error(["inspect", str(d / "long_value.yaml")], d)
    assert len(line) < 300


# ---- concurrency and crashes ---------------------------------------------------------------------------

def test_a_second_sweep_into_a_directory_gets_a_clear_error_at_once(d, tmp_path):
    out = tmp_path / "sw"
    _store(out)
    before = (out / "results.sqlite").read_bytes()
    with writer_lock(out):  # as a running sweep holds it
        t0 = time.monotonic()
        line = assert_one_error(["sweep", str(d / "s_ok.yaml"), "-o", str(out)], d, "another `spikeforge sweep`")
        assert time.monotonic() - t0 < 10, line
    assert (out / "results.sqlite").read_bytes() == before


def test_two_sweeps_into_one_directory_the_second_gets_a_clear_error_and_nothing_is_lost(tmp_path):
    spec = tmp_path / "race.yaml"
    spec.write_text(yaml.safe_dump({"models": ["mlp"], "timesteps": 2, "rate": 0.3, "params": [
        {"path": "clock_mhz", "values": list(range(100, 1300, 5))}]}))  # 240 points: a few seconds
    out = tmp_path / "sw"
    first = subprocess.Popen([sys.executable, "-m", "spikeforge", "sweep", str(spec), "-o", str(out), "--workers", "1"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "results.sqlite").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first sweep ended before the second could race it"
    assert_one_error(["sweep", str(spec), "-o", str(out)], tmp_path, "another `spikeforge sweep`")
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()[-2000:]
    _, _, rows = read(str(out))
    assert len(rows) == 240 and len({r["hash"] for r in rows}) == 240 and all(r["status"] == "ok" for r in rows)


def test_a_scheduler_address_where_a_non_dask_server_listens_fails_within_the_deadline(d):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(server.accept()) for _ in range(8)], daemon=True).start()
    t0 = time.monotonic()
    line = assert_one_error(["sweep", str(d / "s_ok.yaml"), "-o", str(d / "sw_silent"), "--dask-scheduler",
                             f"tcp://127.0.0.1:{server.getsockname()[1]}"], d, "Dask")
    assert time.monotonic() - t0 < 30, line
    assert not (d / "sw_silent").exists()
    server.close()


KILLER = """
import csv, os, pathlib, signal, sys
real = pathlib.Path.write_text
def write_text(self, text, *a, **k):
    if self.name == sys.argv[1]:
        real(self, text[: len(text) // 2])  # half-written, then killed
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, text, *a, **k)
pathlib.Path.write_text = write_text
real_writer = csv.writer
def writer(f, *a, **k):
    if f.name.endswith(sys.argv[1]):
        real_writer(f).writerow(["half"])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_writer(f, *a, **k)
csv.writer = writer
import nir
real_nir_write = nir.write
def nir_write(path, graph, *a, **k):
    if str(path).endswith(sys.argv[1]):
        pathlib.Path(path).write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGKILL)
    return real_nir_write(path, graph, *a, **k)
nir.write = nir_write
from spikeforge.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _killed(file: str, argv: list[str], cwd: Path) -> None:
    p = subprocess.run([sys.executable, "-c", KILLER, file, *argv], cwd=cwd, capture_output=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-2000:]


DIGITS = str(Path(__file__).resolve().parents[1] / "examples" / "models" / "digits_mlp.yaml")


@pytest.mark.parametrize("file, argv", [
    ("compile.json", ["compile", "mlp", "-T", "2", "-o", "out"]),
    ("report.json", ["simulate", "mlp", "-T", "2", "-o", "out"]),
    ("train.json", ["train", DIGITS, "--epochs", "1", "-B", "128", "-T", "2", "-o", "out"]),
])
def test_sigkill_during_the_final_write_leaves_nothing_half_written(tmp_path, file, argv):
    _killed(file, argv, tmp_path)
    assert not (tmp_path / "out").exists()  # all or nothing: the directory appears whole or not at all
    assert [p.name.split("-")[0] for p in tmp_path.glob(".spikeforge-*")] == [".spikeforge"]  # the dead one's
    rc, _, err = run_cli(argv, tmp_path, timeout=300)
    assert rc == 0, err
    assert not list(tmp_path.glob(".spikeforge-*"))  # removed by the next run
    assert (tmp_path / "out" / file).read_text().endswith("}\n")


def test_sigkill_during_an_update_keeps_the_old_files(tmp_path):
    argv = ["compile", "mlp", "-T", "2", "-o", "out"]
    assert run_cli(argv, tmp_path, timeout=300)[0] == 0
    old = (tmp_path / "out" / "compile.json").read_text()
    _killed("compile.json", argv[:-2] + ["-B", "2", "-o", "out"], tmp_path)
    assert (tmp_path / "out" / "compile.json").read_text() == old


def test_sigkill_during_export_and_report_leaves_the_old_file(d, tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text("old\n")
    src = tmp_path / "r"
    _store(src)
    for argv in (["sweep", "export", str(src), "--csv", str(csv)], ["report", str(src)]):
        _killed("summary.md" if argv[0] == "report" else "x.csv", argv, tmp_path)
    assert csv.read_text() == "old\n" and not (src / "summary.md").exists()


def test_sigkill_during_export_keeps_the_old_file(tmp_path):
    (tmp_path / "m.nir").write_bytes(b"old")
    _killed("m.nir", ["export", "mlp", "-o", "m.nir"], tmp_path)
    assert (tmp_path / "m.nir").read_bytes() == b"old"
    rc, _, err = run_cli(["export", "mlp", "-o", "m.nir"], tmp_path)
    assert rc == 0, err
    assert not list(tmp_path.glob(".spikeforge-*"))  # the dead one's temporary file, removed by the next run


def test_ir_text_printed_by_inspect_simulates_with_seeded_tensors(tmp_path):
    rc, out, err = run_cli(["inspect", "mlp", "--ir"], tmp_path)
    assert rc == 0, err
    (tmp_path / "mlp.sfir").write_text(out)
    rc, out, err = run_cli(["simulate", "mlp.sfir", "-T", "2", "--json"], tmp_path, timeout=300)
    assert rc == 0, err
    assert json.loads(out)["totals"]["energy_pj"] > 0


def test_layer_names_are_safe_entry_names_in_spikes_npz(tmp_path):
    (tmp_path / "m.yaml").write_text("input: {shape: [4]}\nlayers:\n  - {linear: {out_features: 2}, name: ../../evil}\n"
                                     "  - {lif: {}, name: .hidden}\n  - {lif: {}, name: _hidden}\n")
    rc, _, err = run_cli(["simulate", "m.yaml", "-T", "2", "--record-spikes", "-o", "s"], tmp_path, timeout=300)
    assert rc == 0, err
    with zipfile.ZipFile(tmp_path / "s" / "spikes.npz") as z:
        names = z.namelist()
    assert all("/" not in n and not n.startswith(".") for n in names), names
    assert {"_._.._evil.npy", "_hidden.npy", "_hidden_2.npy"} <= set(names)
    assert not (tmp_path.parent / "evil.npy").exists()
