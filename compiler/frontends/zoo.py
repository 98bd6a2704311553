"""The model zoo: spiking versions of published architectures, built as IR graphs.

Every hidden activation (ReLU in the source) is a `lif` neuron with the IR's default
coefficients; convolutions followed by batch-norm have no bias, except the Spike-driven
Transformer's projection and MLP convolutions, which keep theirs as in the authors' code.
Real images are fed with direct encoding (so the first layer multiplies, MAC, and later
layers mostly accumulate spikes, AC); the MLP reads rate-encoded spikes. See docs/zoo.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from spikeforge.compiler.frontends.init import init_tensors
from spikeforge.isa import Graph, Op, SpikeforgeError


@dataclass(frozen=True)
class ZooModel:
    """A zoo entry: what it is, where it comes from, and how to build its ops."""

    name: str
    description: str
    source: str
    input_shape: tuple[int, ...]
    num_classes: int
    builder: Callable[[], list[Op]] = field(repr=False)


# ---- op helpers: each appends one or more ops to `ops` and returns the last op's name ---------

def _op(ops: list[Op], name: str, kind: str, *inputs: str, **params) -> str:
    ops.append(Op(name, kind, inputs, params))
    return name


def _conv_bn(ops, prefix, x, cout, kernel, stride=1, padding=0, suffix="") -> str:
    """`{prefix}conv{suffix}` (no bias) then `{prefix}bn{suffix}`."""
    c = _op(ops, f"{prefix}conv{suffix}", "conv2d", x, out_channels=cout, kernel=kernel,
            stride=stride, padding=padding, bias=False)
    return _op(ops, f"{prefix}bn{suffix}", "batchnorm", c)


def _head(ops, x, widths, num_classes) -> str:
    """Hidden linear + lif layers `classifier.{j}.fc/lif`, then the real-valued `fc` and `output`."""
    for j, w in enumerate(widths):
        x = _op(ops, f"classifier.{j}.fc", "linear", x, out_features=w)
        x = _op(ops, f"classifier.{j}.lif", "lif", x)
    x = _op(ops, "fc", "linear", x, out_features=num_classes)
    return _op(ops, "output", "output", x)


# ---- MLP -----------------------------------------------------------------------------------

def _mlp() -> list[Op]:
    """784-512-512-10: two LIF hidden layers, then a leaky-integrator (li) readout whose
    membrane potential is the class score."""
    ops: list[Op] = []
    x = _op(ops, "input", "input", shape=[784], encoding="rate")
    for i in (1, 2):
        x = _op(ops, f"fc{i}", "linear", x, out_features=512)
        x = _op(ops, f"lif{i}", "lif", x)
    x = _op(ops, "fc3", "linear", x, out_features=10)
    x = _op(ops, "readout", "li", x)
    _op(ops, "output", "output", x)
    return ops


# ---- VGG -----------------------------------------------------------------------------------

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg(cfg, image: int, classifier: tuple[int, ...], num_classes: int, bn: bool) -> list[Op]:
    """Conv layers `features.{i}.conv[/bn]/lif` (3x3, padding 1), a 2x2 max pool
    `features.{i}.pool` after layer i where cfg says "M", flatten, then the classifier."""
    ops: list[Op] = []
    x = _op(ops, "input", "input", shape=[3, image, image])
    i = -1
    for v in cfg:
        if v == "M":
            x = _op(ops, f"features.{i}.pool", "pool2d", x, mode="max", kernel=2)
            continue
        i += 1
        p = f"features.{i}."
        if bn:
            x = _conv_bn(ops, p, x, v, 3, padding=1)
        else:
            x = _op(ops, p + "conv", "conv2d", x, out_channels=v, kernel=3, padding=1)
        x = _op(ops, p + "lif", "lif", x)
    x = _op(ops, "flatten", "flatten", x)
    _head(ops, x, classifier, num_classes)
    return ops


# ---- ResNets -------------------------------------------------------------------------------

def _basic_block(ops, p, x, cin, cout, stride, sew) -> str:
    """Spiking BasicBlock. Zheng et al.: lif2(bn2 + shortcut), the shortcut being the input
    spikes or downsample conv+bn. SEW (Fang et al.): lif2(bn2) + shortcut, the downsample
    branch ending in its own lif; the sum is a real (integer-valued) tensor."""
    h = _conv_bn(ops, p, x, cout, 3, stride, 1, "1")
    h = _op(ops, p + "lif1", "lif", h)
    h = _conv_bn(ops, p, h, cout, 3, 1, 1, "2")
    short = x
    if stride != 1 or cin != cout:
        short = _conv_bn(ops, p + "downsample.", x, cout, 1, stride)
        if sew:
            short = _op(ops, p + "downsample.lif", "lif", short)
    if sew:
        h = _op(ops, p + "lif2", "lif", h)
        return _op(ops, p + "add", "add", h, short)
    h = _op(ops, p + "add", "add", h, short)
    return _op(ops, p + "lif2", "lif", h)


def _stages(ops, x, cin, stages, sew) -> str:
    """Stages `layer{s}` of BasicBlocks `layer{s}.{b}`; stages = ((channels, blocks, stride), ...)."""
    for s, (cout, blocks, stride) in enumerate(stages, 1):
        for b in range(blocks):
            x = _basic_block(ops, f"layer{s}.{b}.", x, cin, cout, stride if b == 0 else 1, sew)
            cin = cout
    return x


def _resnet18(sew: bool) -> list[Op]:
    """ImageNet ResNet-18: 7x7/2 stem conv+bn+lif, 3x3/2 max pool, 4 stages of 2 blocks,
    7x7 average pool, fc 512->1000."""
    ops: list[Op] = []
    x = _op(ops, "input", "input", shape=[3, 224, 224])
    x = _conv_bn(ops, "", x, 64, 7, 2, 3, "1")
    x = _op(ops, "lif1", "lif", x)
    x = _op(ops, "maxpool", "pool2d", x, mode="max", kernel=3, stride=2, padding=1)
    x = _stages(ops, x, 64, ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)), sew)
    x = _op(ops, "avgpool", "pool2d", x, mode="avg", kernel=7)
    x = _op(ops, "flatten", "flatten", x)
    _head(ops, x, (), 1000)
    return ops


def _bottleneck(ops, p, x, cin, width, stride) -> str:
    """Spiking Bottleneck (torchvision v1.5: the stride on the 3x3 conv), residual added before
    the last lif as in the BasicBlock: 1x1 to `width`, 3x3, 1x1 to 4 x `width`."""
    h = _op(ops, p + "lif1", "lif", _conv_bn(ops, p, x, width, 1, 1, 0, "1"))
    h = _op(ops, p + "lif2", "lif", _conv_bn(ops, p, h, width, 3, stride, 1, "2"))
    h = _conv_bn(ops, p, h, 4 * width, 1, 1, 0, "3")
    short = x
    if stride != 1 or cin != 4 * width:
        short = _conv_bn(ops, p + "downsample.", x, 4 * width, 1, stride)
    h = _op(ops, p + "add", "add", h, short)
    return _op(ops, p + "lif3", "lif", h)


def _resnet50() -> list[Op]:
    """ImageNet ResNet-50: the ResNet-18 stem, 4 stages of 3/4/6/3 Bottlenecks (widths 64-512,
    outputs 256-2048), 7x7 average pool, fc 2048->1000."""
    ops: list[Op] = []
    x = _op(ops, "input", "input", shape=[3, 224, 224])
    x = _op(ops, "lif1", "lif", _conv_bn(ops, "", x, 64, 7, 2, 3, "1"))
    x = _op(ops, "maxpool", "pool2d", x, mode="max", kernel=3, stride=2, padding=1)
    cin = 64
    for s, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
        for b in range(blocks):
            x = _bottleneck(ops, f"layer{s}.{b}.", x, cin, width, stride if b == 0 else 1)
            cin = 4 * width
    x = _op(ops, "avgpool", "pool2d", x, mode="avg", kernel=7)
    x = _op(ops, "flatten", "flatten", x)
    _head(ops, x, (), 1000)
    return ops


def _resnet19() -> list[Op]:
    """CIFAR ResNet-19 (Zheng et al.): 3x3 stem conv 128 + bn + lif, stages (128, 3),
    (256, 3, /2), (512, 2, /2), 8x8 average pool, fc1 512->256, lif, fc 256->10."""
    ops: list[Op] = []
    x = _op(ops, "input", "input", shape=[3, 32, 32])
    x = _conv_bn(ops, "", x, 128, 3, 1, 1, "1")
    x = _op(ops, "lif1", "lif", x)
    x = _stages(ops, x, 128, ((128, 3, 1), (256, 3, 2), (512, 2, 2)), sew=False)
    x = _op(ops, "avgpool", "pool2d", x, mode="avg", kernel=8)
    x = _op(ops, "flatten", "flatten", x)
    _head(ops, x, (256,), 10)
    return ops


# ---- Spike-driven Transformer --------------------------------------------------------------

def _cbl(ops, p, x, cout, kernel, bias, lif=True) -> str:
    """`{p}conv` (1-D on tokens if kernel == 1, else 2-D), `{p}bn` and optionally `{p}lif`."""
    kind = "conv1d" if kernel == 1 else "conv2d"
    x = _op(ops, p + "conv", kind, x, out_channels=cout, kernel=kernel, padding=kernel // 2, bias=bias)
    x = _op(ops, p + "bn", "batchnorm", x)
    return _op(ops, p + "lif", "lif", x) if lif else x


def _sps(ops, x, dim) -> str:
    """Spiking patch splitting for 32x32 inputs (pooling "0011"): 3x3 conv-bn-lif stages to
    D/8, D/4, D/2 (then 3x3/2 max pool of spikes), D (bn then 3x3/2 max pool of the real
    values), then a relative position embedding rpe = bn(conv(lif(x))) added to x."""
    for i, c in enumerate((dim // 8, dim // 4, dim // 2)):
        x = _cbl(ops, f"sps.{i}.", x, c, 3, bias=False)
    x = _op(ops, "sps.2.pool", "pool2d", x, mode="max", kernel=3, stride=2, padding=1)
    x = _cbl(ops, "sps.3.", x, dim, 3, bias=False, lif=False)
    feat = _op(ops, "sps.3.pool", "pool2d", x, mode="max", kernel=3, stride=2, padding=1)
    x = _op(ops, "sps.3.lif", "lif", feat)
    x = _cbl(ops, "sps.rpe.", x, dim, 3, bias=False, lif=False)
    return _op(ops, "sps.add", "add", x, feat)


def _sdsa(ops, p, u, dim) -> str:
    """Spike-driven self-attention on the membrane u [D, N]: s = lif(u); Q, K, V =
    lif(bn(conv1d(s))); out = Q * lif(sum_N(K * V)) (masks only); u + bn(conv1d(out))."""
    s = _op(ops, p + "lif", "lif", u)
    q, k, v = (_cbl(ops, p + n + ".", s, dim, 1, bias=False) for n in "qkv")
    kv = _op(ops, p + "kv", "mul", k, v)
    kv = _op(ops, p + "kv_sum", "sum", kv, axis=1)
    kv = _op(ops, p + "kv_lif", "lif", kv, threshold=0.5)
    x = _op(ops, p + "q_kv", "mul", q, kv)
    x = _cbl(ops, p + "proj.", x, dim, 1, bias=True, lif=False)
    return _op(ops, p + "add", "add", x, u)


def _mlp_block(ops, p, u, dim) -> str:
    """u + bn(conv1d(lif(bn(conv1d(lif(u)))))) with hidden width 4D."""
    x = _op(ops, p + "lif", "lif", u)
    x = _cbl(ops, p + "fc1.", x, 4 * dim, 1, bias=True)
    x = _cbl(ops, p + "fc2.", x, dim, 1, bias=True, lif=False)
    return _op(ops, p + "add", "add", x, u)


def _sdt(dim: int = 256, depth: int = 2) -> list[Op]:
    """Spike-driven Transformer-`depth`-`dim` for CIFAR-10 (8x8 = 64 tokens). Head: mean
    of the membrane over tokens, lif, linear D->10 (as the authors' code does)."""
    ops: list[Op] = []
    x = _op(ops, "input", "input", shape=[3, 32, 32])
    x = _sps(ops, x, dim)
    n = 64
    x = _op(ops, "tokens", "reshape", x, shape=[dim, n])
    for b in range(depth):
        x = _sdsa(ops, f"blocks.{b}.attn.", x, dim)
        x = _mlp_block(ops, f"blocks.{b}.mlp.", x, dim)
    x = _op(ops, "head.sum", "sum", x, axis=1)
    x = _op(ops, "head.mean", "scale", x, scale=1.0 / n)
    x = _op(ops, "head.lif", "lif", x)
    x = _op(ops, "head.flatten", "flatten", x)
    x = _op(ops, "head.fc", "linear", x, out_features=10)
    _op(ops, "output", "output", x)
    return ops


# ---- Spikformer and QKFormer ---------------------------------------------------------------

def _heads(ops, p, x, dim, heads, n) -> str:
    """[D, N] -> [H, D/H, N]: one head per leading index, channel-major as the IR's tokens are."""
    return _op(ops, p + "heads", "reshape", x, shape=[heads, dim // heads, n])


def _ssa(ops, p, x, dim, heads, n, qk_first, qkv_bias) -> str:
    """Spiking self-attention on tokens x [D, N]: Q, K, V = lif(bn(conv1d(x))) in heads
    [H, d, N]; Spikformer (`qk_first`) forms (Q K^T) V, QKFormer Q (K^T V), either times 0.125;
    lif (threshold 0.5), then the projection lif(bn(conv1d)). In the channel-major layout the
    token-major product X = (Q K^T) V is X^T = V (K^T Q) and Q (K^T V) is X^T = (V K^T) Q, so
    `attn` is [H, N, N] (Spikformer) or [H, d, d] (QKFormer); the second operand of each
    `matmul` is the stationary one (docs/attention.md)."""
    q, k, v = (_heads(ops, p + m + ".", _cbl(ops, p + m + ".", x, dim, 1, bias=qkv_bias), dim, heads, n)
               for m in "qkv")
    if qk_first:
        attn = _op(ops, p + "attn", "matmul", k, q, transpose_a=True)  # K^T Q: [H, N, N]
        y = _op(ops, p + "attn_v", "matmul", v, attn, scale=0.125)  # V (K^T Q): [H, d, N]
    else:
        attn = _op(ops, p + "attn", "matmul", v, k, transpose_b=True)  # V K^T: [H, d, d]
        y = _op(ops, p + "attn_v", "matmul", attn, q, scale=0.125)  # (V K^T) Q: [H, d, N]
    y = _op(ops, p + "attn_lif", "lif", _op(ops, p + "merge", "reshape", y, shape=[dim, n]), threshold=0.5)
    return _cbl(ops, p + "proj.", y, dim, 1, bias=True)


def _qkta(ops, p, x, dim, heads, n) -> str:
    """QKFormer's Q-K token attention on x [D, N]: Q, K = lif(bn(conv1d(x))) in heads [H, d, N];
    a token mask A_t = lif(sum over each head's channels of Q) (threshold 0.5), [H, 1, N];
    A_t * K, then the projection lif(bn(conv1d)). Linear in N: masks and sums, no matmul."""
    q, k = (_heads(ops, p + m + ".", _cbl(ops, p + m + ".", x, dim, 1, bias=False), dim, heads, n) for m in "qk")
    a = _op(ops, p + "attn_lif", "lif", _op(ops, p + "q_sum", "sum", q, axis=1), threshold=0.5)
    y = _op(ops, p + "merge", "reshape", _op(ops, p + "mask", "mul", k, a), shape=[dim, n])
    return _cbl(ops, p + "proj.", y, dim, 1, bias=True)


def _spike_mlp(ops, p, x, dim) -> str:
    """lif(bn(conv1d(lif(bn(conv1d(x)))))) with hidden width 4D: Spikformer's and QKFormer's MLP."""
    return _cbl(ops, p + "fc2.", _cbl(ops, p + "fc1.", x, 4 * dim, 1, bias=True), dim, 1, bias=True)


def _residual(ops, p, x, y) -> str:
    return _op(ops, p + "add", "add", x, y)


def _token_head(ops, x, n) -> str:
    """Mean of the tokens' values (not spikes), then linear D -> 10, as both papers' heads."""
    x = _op(ops, "head.mean", "scale", _op(ops, "head.sum", "sum", x, axis=1), scale=1.0 / n)
    x = _op(ops, "head.fc", "linear", _op(ops, "head.flatten", "flatten", x), out_features=10)
    return _op(ops, "output", "output", x)


def _spikformer(dim: int = 384, depth: int = 4, heads: int = 12) -> list[Op]:
    """Spikformer-`depth`-`dim` for CIFAR-10: SPS (3x3 conv-bn-lif to D/8, D/4, D/2, max pool,
    D, max pool: 8x8 = 64 tokens; rpe = lif(bn(conv(x))) added to x), `depth` blocks of
    x + SSA(x), x + MLP(x), and the token-mean head."""
    ops: list[Op] = []
    x = _op(ops, "input", "input", shape=[3, 32, 32])
    for i, c in enumerate((dim // 8, dim // 4, dim // 2)):
        x = _cbl(ops, f"sps.{i}.", x, c, 3, bias=False)
    x = _op(ops, "sps.2.pool", "pool2d", x, mode="max", kernel=3, stride=2, padding=1)
    x = _cbl(ops, "sps.3.", x, dim, 3, bias=False)
    feat = _op(ops, "sps.3.pool", "pool2d", x, mode="max", kernel=3, stride=2, padding=1)
    x = _residual(ops, "sps.", _cbl(ops, "sps.rpe.", feat, dim, 3, bias=False), feat)
    n = 64
    x = _op(ops, "tokens", "reshape", x, shape=[dim, n])
    for b in range(depth):
        p = f"blocks.{b}."
        x = _residual(ops, p + "attn.", x, _ssa(ops, p + "attn.", x, dim, heads, n, qk_first=True, qkv_bias=True))
        x = _residual(ops, p + "mlp.", x, _spike_mlp(ops, p + "mlp.", x, dim))
    _token_head(ops, x, n)
    return ops


def _cbl2(ops, p, x, cout, kernel, stride=1, pool=False) -> str:
    """`{p}conv` (2-D, no bias, padding kernel // 2), `{p}bn`, optionally a 3x3/2 max pool, `{p}lif`."""
    x = _conv_bn(ops, p, x, cout, kernel, stride, kernel // 2)
    if pool:
        x = _op(ops, p + "pool", "pool2d", x, mode="max", kernel=3, stride=2, padding=1)
    return _op(ops, p + "lif", "lif", x)


def _qk_stage(ops, p, x, cin, cout) -> str:
    """QKFormer's PatchEmbeddingStage: lif(pool(bn(conv(lif(bn(conv(x)))))) plus the shortcut
    lif(bn(conv1x1/2(x))): [cin, H, W] -> [cout, H/2, W/2]."""
    y = _cbl2(ops, p + "proj4.", _cbl2(ops, p + "proj3.", x, cout, 3), cout, 3, pool=True)
    return _residual(ops, p, y, _cbl2(ops, p + "res.", x, cout, 1, stride=2))


def _qkformer(dim: int = 384, heads: int = 8) -> list[Op]:
    """QKFormer for CIFAR-10 (the authors' cifar10 config: embed 384, 8 heads, depths 4):
    PatchEmbedInit to D/4 at 32x32, a QKTA block (D/4, 1024 tokens), a PatchEmbeddingStage to
    D/2 at 16x16, a QKTA block (D/2, 256 tokens), one to D at 8x8, two SSA blocks (Q (K^T V),
    64 tokens), and the token-mean head."""
    ops: list[Op] = []
    x = _op(ops, "input", "input", shape=[3, 32, 32])
    c = dim // 4
    feat = _cbl2(ops, "patch1.proj.", x, c // 2, 3)
    x = _residual(ops, "patch1.", _cbl2(ops, "patch1.proj1.", feat, c, 3), _cbl2(ops, "patch1.res.", feat, c, 1))
    side = 32
    for s, (cin, cout) in enumerate(((c, c), (c, 2 * c), (2 * c, dim))):
        if s:
            x = _qk_stage(ops, f"patch{s + 1}.", _op(ops, f"stage{s}.image", "reshape", x, shape=[cin, side, side]),
                          cin, cout)
            side //= 2
        n = side * side
        x = _op(ops, f"stage{s + 1}.tokens", "reshape", x, shape=[cout, n])
        for b in range(1 if s < 2 else 2):
            p = f"stage{s + 1}.{b}."
            y = (_qkta(ops, p + "attn.", x, cout, heads, n) if s < 2
                 else _ssa(ops, p + "attn.", x, cout, heads, n, qk_first=False, qkv_bias=False))
            x = _residual(ops, p + "attn.", x, y)
            x = _residual(ops, p + "mlp.", x, _spike_mlp(ops, p + "mlp.", x, cout))
    _token_head(ops, x, n)
    return ops


# ---- recurrent SNN -------------------------------------------------------------------------

def _rsnn(inputs: int = 700, hidden: int = 256, classes: int = 20) -> list[Op]:
    """The recurrent SNN of the Spiking Heidelberg Digits benchmark: event input, one recurrent
    LIF layer (`lif1` reads `fc1` plus `rec`, all-to-all weights on its own spikes of the
    previous step, `prev1`), and a leaky-integrator readout `fc2` -> `readout`."""
    ops: list[Op] = []
    x = _op(ops, "input", "input", shape=[inputs], encoding="events")
    x = _op(ops, "fc1", "linear", x, out_features=hidden)
    r = _op(ops, "rec", "linear", "prev1", out_features=hidden, bias=False)
    h = _op(ops, "lif1", "lif", _op(ops, "add1", "add", r, x))
    _op(ops, "prev1", "delay", h, shape=[hidden])
    x = _op(ops, "fc2", "linear", h, out_features=classes)
    x = _op(ops, "readout", "li", x)
    _op(ops, "output", "output", x)
    return ops


# ---- registry ------------------------------------------------------------------------------

ZOO: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("mlp", "784-512-512-10 LIF MLP with li readout, rate-coded MNIST",
             "multilayer perceptron (snnTorch tutorial style)", (784,), 10, _mlp),
    ZooModel("vgg11", "spiking VGG-11 with batch-norm for CIFAR-10, 512->10 classifier",
             "Simonyan & Zisserman 2015 (config A), CIFAR SNN variant", (3, 32, 32), 10,
             lambda: _vgg(VGG11, 32, (), 10, bn=True)),
    ZooModel("vgg16", "spiking VGG-16 for ImageNet, full 4096-4096-1000 classifier, no BN",
             "Simonyan & Zisserman 2015 (config D)", (3, 224, 224), 1000,
             lambda: _vgg(VGG16, 224, (4096, 4096), 1000, bn=False)),
    ZooModel("resnet18", "spiking ResNet-18 for ImageNet, residual added before the last lif",
             "Zheng et al. 2021 (AAAI), tdBN spiking ResNet", (3, 224, 224), 1000,
             lambda: _resnet18(sew=False)),
    ZooModel("sew_resnet18", "SEW-ResNet-18 for ImageNet, spike-element-wise ADD after the lif",
             "Fang et al. 2021 (NeurIPS), SEW ResNet", (3, 224, 224), 1000,
             lambda: _resnet18(sew=True)),
    ZooModel("resnet50", "spiking ResNet-50 for ImageNet, Bottleneck blocks, residual added before the last lif",
             "He et al. 2016 (torchvision v1.5), spiking as Zheng et al. 2021", (3, 224, 224), 1000, _resnet50),
    ZooModel("resnet19", "spiking ResNet-19 for CIFAR-10 (128/256/512 channels)",
             "Zheng et al. 2021 (AAAI), tdBN spiking ResNet", (3, 32, 32), 10, _resnet19),
    ZooModel("sdt", "Spike-driven Transformer-2-256 for CIFAR-10 (64 tokens, SDSA)",
             "Yao et al. 2023 (NeurIPS), Spike-driven Transformer", (3, 32, 32), 10, _sdt),
    ZooModel("spikformer", "Spikformer-4-384 for CIFAR-10 (64 tokens, 12 heads, SSA: (Q K^T) V on spike matrices)",
             "Zhou et al. 2023 (ICLR), Spikformer", (3, 32, 32), 10, _spikformer),
    ZooModel("qkformer", "QKFormer for CIFAR-10 (embed 384, 8 heads: Q-K token attention at 1024 and 256 tokens, "
             "then two SSA blocks at 64)", "Zhou et al. 2024 (NeurIPS), QKFormer", (3, 32, 32), 10, _qkformer),
    ZooModel("rsnn", "700-256-20 recurrent SNN for Spiking Heidelberg Digits events, li readout",
             "Cramer et al. 2020 (IEEE TNNLS), SHD recurrent SNN", (700,), 20, _rsnn),
]}


def build(name: str, seed: int = 0, weights: bool = True) -> Graph:
    """Build zoo model `name`; with `weights`, fill seeded deterministic tensors."""
    model = ZOO.get(name)
    if model is None:
        raise SpikeforgeError(f"unknown zoo model '{name}' (known: {', '.join(ZOO)})")
    graph = Graph.build(name, model.builder(), where=f"zoo model '{name}'")
    return init_tensors(graph, seed) if weights else graph
