"""The model zoo: structure, parameter counts, spike/real inputs of weight layers, seeding."""

import numpy as np
import pytest

from spikeforge.compiler.frontends.zoo import ZOO, _sdt, build
from spikeforge.isa import REAL, SPIKE, Graph, SpikeforgeError
from spikeforge.isa.ops import WEIGHT_KINDS

PARAMS = {
    "mlp": 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10,
    "vgg11": 9_228_362,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "sew_resnet18": 11_689_512,
    "resnet50": 25_557_032,  # torchvision resnet50
    "resnet19": 12_697_994,
    "sdt": 2_566_954,
    "spikformer": 9_324_730,  # the paper's 9.32 M
    "qkformer": 6_706_234,  # the paper quotes 6.74 M (docs/zoo.md)
    "rsnn": 700 * 256 + 256 + 256 * 256 + 256 * 20 + 20,
}

# Weight layers that read real values (MAC); every other weight layer reads spikes (AC).
# SEW: every block after layer1.0 reads the previous block's integer-valued ADD output.
SEW_REAL = {f"layer{s}.{b}.conv1" for s in (1, 2, 3, 4) for b in (0, 1)} - {"layer1.0.conv1"}
SEW_REAL |= {f"layer{s}.0.downsample.conv" for s in (2, 3, 4)}
REAL_INPUT = {
    "mlp": set(),
    "vgg11": {"features.0.conv"},
    "vgg16": {"features.0.conv"},
    "resnet18": {"conv1", "fc"},  # fc reads the average-pooled spike rates
    "sew_resnet18": {"conv1", "fc"} | SEW_REAL,
    "resnet50": {"conv1", "fc"},
    "resnet19": {"conv1", "classifier.0.fc"},
    "sdt": {"sps.0.conv"},
    # the residual stream of Spikformer and QKFormer is a sum of spikes: every layer reading it multiplies
    "spikformer": {"sps.0.conv", "head.fc"} | {f"blocks.{b}.{m}.conv" for b in range(4)
                                                for m in ("attn.q", "attn.k", "attn.v", "mlp.fc1")},
    "qkformer": ({"patch1.proj.conv", "head.fc"} | {f"patch{s}.{c}.conv" for s in (2, 3) for c in ("proj3", "res")}
                 | {f"stage{s}.0.{m}.conv" for s in (1, 2) for m in ("attn.q", "attn.k", "mlp.fc1")}
                 | {f"stage3.{b}.{m}.conv" for b in (0, 1) for m in ("attn.q", "attn.k", "attn.v", "mlp.fc1")}),
    "rsnn": set(),
}


@pytest.fixture(scope="module")
def graphs():
    return {name: build(name, weights=False) for name in ZOO}


def test_registry_matches_graphs(graphs):
    assert set(PARAMS) == set(REAL_INPUT) == set(ZOO)
    for name, model in ZOO.items():
        g = graphs[name]
        assert model.name == name and model.description and model.source
        assert g.inputs[0].type.shape == model.input_shape
        assert [o.type.shape for o in g.outputs] == [(model.num_classes,)]
        assert g.outputs[0].type.kind == REAL
        assert all(not op.tensors for op in g)


@pytest.mark.parametrize("name", list(PARAMS))
def test_param_count(graphs, name):
    assert graphs[name].param_count() == PARAMS[name]


def test_sdt_2_512_size():
    """The same structure at D = 512 (the paper's 2-512 CIFAR model is quoted at 10.28 M)."""
    assert Graph.build("sdt512", _sdt(512)).param_count() == 10_233_418


@pytest.mark.parametrize("name", list(REAL_INPUT))
def test_weight_layer_input_kinds(graphs, name):
    layers = [li for li in graphs[name].layers() if li.kind in WEIGHT_KINDS]
    real = {li.name for li in layers if li.in_types[0].kind == REAL}
    assert real == REAL_INPUT[name]
    assert all(li.work.arith == ("MAC" if li.name in real else "AC") for li in layers)


def test_mlp_reads_rate_spikes(graphs):
    g = graphs["mlp"]
    assert g["input"].params["encoding"] == "rate" and g["input"].type.kind == SPIKE
    assert g["readout"].kind == "li"


def test_residual_placement(graphs):
    r, s = graphs["resnet18"], graphs["sew_resnet18"]
    assert r["layer1.0.lif2"].inputs == ("layer1.0.add",)
    assert r["layer2.0.add"].inputs == ("layer2.0.bn2", "layer2.0.downsample.bn")
    assert r["layer1.0.add"].inputs == ("layer1.0.bn2", "maxpool")
    assert s["layer1.0.add"].inputs == ("layer1.0.lif2", "maxpool")
    assert s["layer2.0.add"].inputs == ("layer2.0.lif2", "layer2.0.downsample.lif")


def test_sdsa_is_masks_only(graphs):
    g = graphs["sdt"]
    p = "blocks.0.attn."
    assert g["tokens"].type.shape == (256, 64)
    assert g[p + "kv"].type == g[p + "q_kv"].type
    assert str(g[p + "kv"].type) == "spike[256,64]"
    assert str(g[p + "kv_lif"].type) == "spike[256,1]"
    assert g[p + "q_kv"].inputs == (p + "q.lif", p + "kv_lif")
    assert g[p + "add"].inputs == (p + "proj.bn", "tokens")
    assert str(g["head.lif"].type) == "spike[256,1]"


def test_rsnn_reads_its_own_spikes_of_the_previous_step(graphs):
    g = graphs["rsnn"]
    assert g["input"].params["encoding"] == "events"
    assert g["rec"].inputs == ("prev1",) and g["prev1"].inputs == ("lif1",)
    assert g["add1"].inputs == ("rec", "fc1") and str(g["prev1"].type) == "spike[256]"
    assert [op.name for op in g].index("rec") < [op.name for op in g].index("lif1")


def test_weights_are_seeded():
    a, b, c = build("mlp", seed=3), build("mlp", seed=3), build("mlp", seed=4)
    assert a == b and a != c
    assert not np.array_equal(a["fc1"].tensors["weight"], c["fc1"].tensors["weight"])


def test_weights_fill_every_tensor():
    g = build("sdt", seed=1)
    assert sum(op.tensors[k].size for op in g for k in ("weight", "bias", "gamma", "beta")
               if k in op.tensors) == PARAMS["sdt"]
    assert g.structure() == build("sdt", weights=False)


def test_unknown_model():
    with pytest.raises(SpikeforgeError, match="unknown zoo model 'vgg19'.*mlp.*sdt"):
        build("vgg19")
