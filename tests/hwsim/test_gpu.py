"""GPU DRAM-traffic baseline: calibration against Nsight Compute measurements and the model's
basic properties."""

import ast
from functools import cache
from pathlib import Path

import pytest

from spikeforge.compiler.frontends import load_model
from spikeforge.hwsim.gpu import CATEGORIES, GpuConfig, gpu_dram_bytes
from spikeforge.isa import Graph, Op

# One training iteration, batch 16, T = 4, plain PyTorch with an unfused LIF, H100 (50 MB L2);
# Nsight Compute dram__bytes_read.sum + dram__bytes_write.sum, in GB (1e9 bytes).
MEASURED_GB = {
    ("vgg11", "fp32"): 1.56, ("vgg11", "fp16"): 0.84,
    ("resnet18", "fp32"): 42.9, ("resnet18", "fp16"): 18.6,
    ("vgg16", "fp32"): 297.5, ("vgg16", "fp16"): 151.5,
}
ZOO = ["mlp", "vgg11", "vgg16", "resnet18", "sew_resnet18", "resnet19", "sdt"]


@cache
def _model(name: str) -> Graph:
    return load_model(name, weights=False)


@pytest.mark.parametrize("name,precision", list(MEASURED_GB))
def test_model_is_within_2x_of_the_measurement(name, precision):
    got = gpu_dram_bytes(_model(name), 16, 4, GpuConfig(precision=precision))["total"] / 1e9
    ratio = got / MEASURED_GB[name, precision]
    print(f"{name} {precision}: model {got:.2f} GB, measured {MEASURED_GB[name, precision]} GB, "
          f"ratio {ratio:.2f}")
    assert 0.5 <= ratio <= 2.0, f"{name} {precision}: model/measured = {ratio:.2f} ({got:.2f} GB)"


@pytest.mark.parametrize("name", ZOO)
def test_categories_sum_to_the_total(name):
    for cfg in (GpuConfig(), GpuConfig(precision="fp16", fused=True, optimizer="momentum")):
        d = gpu_dram_bytes(_model(name), 16, 4, cfg)
        assert set(d) == {"total", *CATEGORIES}
        assert all(isinstance(v, int) and v >= 0 for v in d.values())
        assert sum(d[c] for c in CATEGORIES) == d["total"] > 0


@pytest.mark.parametrize("name", ["vgg11", "resnet18", "vgg16", "sdt"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_fused_neurons_move_less_than_unfused(name, precision):
    unfused = gpu_dram_bytes(_model(name), 16, 4, GpuConfig(precision=precision))
    fused = gpu_dram_bytes(_model(name), 16, 4, GpuConfig(precision=precision, fused=True))
    assert fused["total"] < unfused["total"]
    assert fused["weights"] == unfused["weights"] and fused["optimizer"] == unfused["optimizer"]


@pytest.mark.parametrize("name", ["vgg11", "resnet18", "vgg16"])
@pytest.mark.parametrize("fused", [False, True])
def test_fp16_moves_less_than_fp32(name, fused):
    fp32 = gpu_dram_bytes(_model(name), 16, 4, GpuConfig(fused=fused))["total"]
    fp16 = gpu_dram_bytes(_model(name), 16, 4, GpuConfig(precision="fp16", fused=fused))["total"]
    assert fp16 < fp32


@pytest.mark.parametrize("name", ["vgg11", "resnet18"])
def test_bytes_scale_about_linearly_with_a_large_batch(name):
    small, large = (gpu_dram_bytes(_model(name), b, 4)["total"] for b in (512, 1024))
    assert 1.9 <= large / small <= 2.1


def test_bytes_grow_with_time_steps_and_shrink_with_a_larger_l2():
    g = _model("resnet18")
    t2, t4 = (gpu_dram_bytes(g, 16, t)["total"] for t in (2, 4))
    assert 1.8 <= t4 / t2 <= 2.1
    no_l2, big_l2 = (gpu_dram_bytes(g, 16, 4, GpuConfig(l2_mb=mb))["total"] for mb in (0, 500))
    assert big_l2 < gpu_dram_bytes(g, 16, 4)["total"] < no_l2


def test_momentum_and_adam_add_optimizer_traffic_only():
    sgd = gpu_dram_bytes(_model("vgg11"), 16, 4)
    mom = gpu_dram_bytes(_model("vgg11"), 16, 4, GpuConfig(optimizer="momentum"))
    adam = gpu_dram_bytes(_model("vgg11"), 16, 4, GpuConfig(optimizer="adam"))
    assert adam["optimizer"] > mom["optimizer"] > sgd["optimizer"]
    assert all(mom[c] == sgd[c] for c in CATEGORIES if c != "optimizer")
    # Adam reads each gradient twice: a small one written just before the update leaves L2 now
    assert all(adam[c] == sgd[c] for c in ("weights", "activations", "bptt_state"))
    assert 0 <= adam["gradients"] - sgd["gradients"] <= 0.0001 * sgd["gradients"]


def test_tiny_linear_layer_counts_by_hand():
    # fp32, batch 1, T = 1, no L2: forward reads x (3 floats) and W (2x3 + 2), writes y (2);
    # backward wgrad reads dy (2) and x (3), writes dW (8); bias grad reads dy (2); the input
    # gets no grad; SGD reads W and dW, writes W (8 each).
    g = Graph.build("t", [Op("x", "input", (), {"shape": [3]}),
                          Op("fc", "linear", ("x",), {"out_features": 2})])
    d = gpu_dram_bytes(g, 1, 1, GpuConfig(l2_mb=0))
    assert d["weights"] == 8 * 4
    assert d["activations"] == (3 + 2) * 4
    assert d["bptt_state"] == 3 * 4
    assert d["gradients"] == (2 + 8 + 2) * 4
    assert d["optimizer"] == 3 * 8 * 4
    # Adam's seven foreach stages: m g -> m, v -> v, v g -> v, v -> s, s -> s, s -> s, W m s -> W
    adam = gpu_dram_bytes(g, 1, 1, GpuConfig(l2_mb=0, optimizer="adam"))
    assert adam["optimizer"] == (3 + 2 + 3 + 2 + 2 + 2 + 4) * 8 * 4


def test_unsupported_config_is_rejected():
    for cfg in (GpuConfig(precision="bf16"), GpuConfig(optimizer="rmsprop")):
        with pytest.raises(ValueError):
            gpu_dram_bytes(_model("mlp"), 16, 4, cfg)


def test_gpu_model_imports_only_numpy_and_isa():
    tree = ast.parse((Path(__file__).parents[2] / "hwsim" / "gpu.py").read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    project = {m.split(".")[1] if m.startswith("spikeforge.") else m.split(".")[0] for m in mods}
    assert project & {"isa", "compiler", "mapping", "spikeforge", "hwsim", "sweep"} <= {"isa"}, mods
