#!/usr/bin/env python
"""Test oracle: SpikingJelly 2.0.0 NeuroMC cost model on one BPTT training step.

Needs SpikingJelly beside the test extras: `.venv/bin/pip install --no-deps spikingjelly==2.0.0 loguru`
(torchvision stays uninstalled: it does not import against torch 2.13). As a script it writes
<model>.json beside this file; `run(model)` returns the same record (tests/hwsim/test_neuromc.py
and benchmarks/neuromc.py run it live; compare.py sets it beside hwsim/neuromc.py).

    python run_oracle.py                 # vgg11, vgg11_nobn, vgg11_sj, resnet18
    python run_oracle.py vgg11 resnet18  # a subset

Per run: B=16, T=4, neuron.LIFNode(tau=2, decay_input=True, v_reset=0) multi-step,
MSE loss on the time-averaged output vs. one-hot target, Adam.  The profile is taken
with spikingjelly's own `estimate_neuromc_runtime_energy` (stages "forward",
"backward", "optimizer"; reuse_weights=False) -- we only subclass the profiler to tag
each fragment with the module that produced it, and re-evaluate each fragment with the
profiler's own functions to split its energy into parts.  Nothing in the installed
package is edited; the patches below are runtime monkey-patches, undone after each run
(except the BasicBlock one, which only the spiking_resnet model sees).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import types
from collections import defaultdict

OUT_DIR = os.path.dirname(os.path.abspath(__file__))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import spikingjelly  # noqa: E402
from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based.neuron.base_node import BaseNode  # noqa: E402
from spikingjelly.activation_based.op_counter.neuromc import core, mapping  # noqa: E402

# --- patch 1 (spiking_resnet / spiking_vgg only): torchvision stub. torchvision does not import
# against torch 2.13; those modules only need load_state_dict_from_url ----------------------


def _torchvision_stub():
    if "torchvision" in sys.modules:
        return
    tv = types.ModuleType("torchvision")
    tvm = types.ModuleType("torchvision.models")
    tvu = types.ModuleType("torchvision.models.utils")

    def _no_download(*a, **k):
        raise RuntimeError("torchvision stub: pretrained weights unavailable")

    tvu.load_state_dict_from_url = _no_download
    tv.models, tvm.utils = tvm, tvu
    sys.modules.update({"torchvision": tv, "torchvision.models": tvm, "torchvision.models.utils": tvu})


# --- patch 2: ops missing from the zero-cost whitelist (_AUXILIARY_ATEN_OPS is a module
# level set consulted at get_report time; there is no public API to register ops).
# All are zero-cost in the model: pooling, the LIF surrogate's neg, dropout's mask. ------------------
EXTRA_ZERO_COST_OPS = {
    "aten.neg.default",
    "aten.max_pool2d_with_indices.default",
    "aten.max_pool2d_with_indices_backward.default",
    "aten._adaptive_avg_pool2d.default",
    "aten._adaptive_avg_pool2d_backward.default",
    # only spikingjelly's spiking_vgg11 (layer.Dropout) needs these two:
    "aten.bernoulli_.float",
    "aten.empty_like.default",
}


# --- patch 3 (spiking_resnet only): BasicBlock does `out += identity` in place, which breaks
# register_full_backward_hook (in-place op on a BackwardHook output view).  Same math,
# out of place. ----------------------------------------------------------------------
def _basic_block_forward(self, x):
    identity = x
    out = self.conv1(x)
    out = self.bn1(out)
    out = self.sn1(out)
    out = self.conv2(out)
    out = self.bn2(out)
    if self.downsample is not None:
        identity = self.downsample(x)
    out = out + identity
    out = self.sn2(out)
    return out


B, T = 16, 4
LIF_KW = dict(tau=2.0, decay_input=True, v_reset=0.0)
PATCHES = [
    "torchvision stub module in sys.modules (load_state_dict_from_url only)",
    "core._AUXILIARY_ATEN_OPS += " + ", ".join(sorted(EXTRA_ZERO_COST_OPS)),
    "spiking_resnet.BasicBlock.forward: `out += identity` -> `out = out + identity`",
]


# --------------------------------------------------------------------------------------
# profiler subclass: tags fragments with module names, keeps the final fragment list
# --------------------------------------------------------------------------------------
class TaggingProfiler(core.NeuroMCEnergyProfiler):
    last = None

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        TaggingProfiler.last = self
        self.module_names: dict[nn.Module, str] = {}
        self.module_io: dict[str, dict] = {}
        self.report_fragments: list = []

    def bind_model(self, model):
        super().bind_model(model)
        self.module_names = {m: n for n, m in model.named_modules()}

    def _tag(self, n0, module):
        for f in self._fragments[n0:]:
            f.module_name = self.module_names.get(module, "?")
            f.module_type = type(module).__name__

    def _count_forward_module(self, module, args, kwargs, out):
        n0 = len(self._fragments)
        r = super()._count_forward_module(module, args, kwargs, out)
        self._tag(n0, module)
        if self._active and not self._suspended:
            x = args[0] if args else next(v for v in kwargs.values() if torch.is_tensor(v))
            o = out[0] if isinstance(out, (tuple, list)) else out
            name = self.module_names.get(module, "?")
            self.module_io.setdefault(name, {
                "in_shape": list(x.shape), "out_shape": list(o.shape),
                "in_is_spike": bool(core._is_spike(x)),
            })
        return r

    def _count_backward_module(self, module, grad_input, kwargs, grad_output):
        n0 = len(self._fragments)
        r = super()._count_backward_module(module, grad_input, kwargs, grad_output)
        self._tag(n0, module)
        return r

    def record_optimizer_step(self, stage="optimizer"):
        n0 = len(self._fragments)
        super().record_optimizer_step(stage)
        for f in self._fragments[n0:]:
            f.module_name = "<optimizer>"
            f.module_type = type(self._optimizer).__name__

    def _extra_counts(self, fragment):
        # get_report() calls this exactly once per final fragment, in order
        self.report_fragments.append(fragment)
        return super()._extra_counts(fragment)


# --- per-instance memory split: wrap _accumulate_memory (used by mapping._map_base_memory
# and by core._extra_memory_for_fragment) and log (spec.name, level, dir, bits, pJ) -----
_orig_accumulate = mapping._accumulate_memory
_MEM_LOG: list | None = None


def _logging_accumulate(totals, energy, *, level, direction, bits, spec, config):
    before = energy[level][direction] if (level in energy and direction in energy[level]) else 0.0
    bits_before = totals[level][direction] if (level in totals and direction in totals[level]) else 0
    _orig_accumulate(totals, energy, level=level, direction=direction, bits=bits,
                     spec=spec, config=config)
    if _MEM_LOG is not None and bits > 0:
        e = (energy[level][direction] if (level in energy and direction in energy[level]) else 0.0) - before
        b = (totals[level][direction] if (level in totals and direction in totals[level]) else 0) - bits_before
        _MEM_LOG.append((spec.name, level, direction, b, e))


@contextlib.contextmanager
def _patched():
    """Patch 2, the per-instance memory log, and the tagging profiler (which
    estimate_neuromc_runtime_energy builds), for one run; SpikingJelly is left as it was after."""
    added = EXTRA_ZERO_COST_OPS - core._AUXILIARY_ATEN_OPS
    saved = mapping._accumulate_memory, core._accumulate_memory, core.NeuroMCEnergyProfiler
    core._AUXILIARY_ATEN_OPS.update(added)
    mapping._accumulate_memory = core._accumulate_memory = _logging_accumulate
    core.NeuroMCEnergyProfiler = TaggingProfiler
    try:
        yield
    finally:
        core._AUXILIARY_ATEN_OPS.difference_update(added)
        mapping._accumulate_memory, core._accumulate_memory, core.NeuroMCEnergyProfiler = saved


def engine_of(f) -> str:
    if f.phase == "forward":
        return "fp"
    if f.phase == "optimizer":
        return "opt"
    return "wg" if f.core_type in ("wg", "ann_we") else "bp"


def evaluate_fragment(prof, f) -> dict:
    """Re-evaluate one fragment with the profiler's own functions, split into parts."""
    global _MEM_LOG
    counts = super(TaggingProfiler, prof)._extra_counts(f)  # unpatched rule, no logging
    mac_pj = f.mac_count * core._MAC_COST_PJ.get(f.core_type, 0.0)
    extra_pj = {k: counts[k] * core._EXTRA_OP_COST_PJ[k] for k in counts}
    parts = {}
    for kind, fn in (("base", lambda: mapping._map_base_memory(f, prof.memory_config)),
                     ("extra", lambda: prof._extra_memory_for_fragment(f))):
        _MEM_LOG = []
        fn()
        for name, level, direction, bits, e in _MEM_LOG:
            d = parts.setdefault(name, {"level": level, "bits": {}, "pj": {}, "pj_base": 0.0, "pj_extra": 0.0})
            d["bits"][direction] = d["bits"].get(direction, 0) + bits
            d["pj"][direction] = d["pj"].get(direction, 0.0) + e
            d["pj_" + kind] += e
        _MEM_LOG = None
    reg_pj = sum(sum(d["pj"].values()) for d in parts.values() if d["level"] == "reg")
    sram_pj = sum(sum(d["pj"].values()) for d in parts.values() if d["level"] == "sram")
    base_mem_pj = sum(d["pj_base"] for d in parts.values())
    extra_mem_pj = sum(d["pj_extra"] for d in parts.values())
    total = mac_pj + sum(extra_pj.values()) + reg_pj + sram_pj
    return {
        "op_name": f.op_name, "engine": engine_of(f), "phase": f.phase,
        "core_type": f.core_type, "process_key": f.process_key, "source": f.source,
        "loop_dims": dict(f.loop_dims), "b_type": f.b_type, "t_type": f.t_type,
        "conv_type": f.conv_type,
        "precision_bits": {"input": f.input_precision_bits, "weight": f.weight_precision_bits,
                           "output": f.output_precision_bits},
        "numel": {"input": f.input_numel, "weight": f.weight_numel, "output": f.output_numel},
        "mac_count": f.mac_count,
        "extra_op_counts": counts,
        "energy_pj": {
            "mac": mac_pj,
            "extra_compute": sum(extra_pj.values()),
            "extra_compute_by_op": extra_pj,
            "reg": reg_pj,
            "sram": sram_pj,
            "base_memory": base_mem_pj,
            "extra_memory": extra_mem_pj,
            "memory_by_instance": {n: {"level": d["level"], "bits": d["bits"], "pj": d["pj"],
                                       "pj_total": sum(d["pj"].values())}
                                   for n, d in sorted(parts.items())},
            "total": total,
        },
    }


def _add_energy(acc: dict, e: dict):
    for k in ("mac", "extra_compute", "reg", "sram", "base_memory", "extra_memory", "total"):
        acc[k] = acc.get(k, 0.0) + e[k]
    bi = acc.setdefault("memory_by_instance", {})
    for n, d in e["memory_by_instance"].items():
        bi[n] = bi.get(n, 0.0) + d["pj_total"]


def module_shape(name, module, io) -> dict:
    d = {"name": name, "type": type(module).__name__}
    if isinstance(module, nn.Conv2d):
        d.update(C=module.in_channels, K=module.out_channels, FY=module.kernel_size[0],
                 FX=module.kernel_size[1], stride=list(module.stride),
                 padding=list(module.padding) if not isinstance(module.padding, str) else module.padding,
                 groups=module.groups, bias=module.bias is not None)
    elif isinstance(module, nn.Linear):
        d.update(C=module.in_features, K=module.out_features, FY=1, FX=1, OY=1, OX=1,
                 stride=[1, 1], padding=[0, 0], bias=module.bias is not None)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        d.update(C=module.num_features, K=module.num_features)
    if io:
        d.update(io)
        if isinstance(module, nn.Conv2d):
            d.update(IY=io["in_shape"][-2], IX=io["in_shape"][-1],
                     OY=io["out_shape"][-2], OX=io["out_shape"][-1])
        elif isinstance(module, (BaseNode, nn.modules.batchnorm._BatchNorm)):
            d.update(C=io["out_shape"][2], K=io["out_shape"][2],
                     spatial=io["out_shape"][3:])
    return d


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------
VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11Cifar(nn.Module):
    """conv3x3(pad 1)[+BN]+LIF per cfg entry, 2x2/2 max pool at "M", flatten, Linear(512, 10)."""

    def __init__(self, bn: bool, num_classes=10):
        super().__init__()
        feats, cin = [], 3
        for v in VGG11_CFG:
            if v == "M":
                feats.append(layer.MaxPool2d(2, 2))
                continue
            feats.append(layer.Conv2d(cin, v, 3, padding=1, bias=not bn))
            if bn:
                feats.append(layer.BatchNorm2d(v))
            feats.append(neuron.LIFNode(**LIF_KW))
            cin = v
        self.features = nn.Sequential(*feats)
        self.flatten = layer.Flatten(start_dim=1)
        self.fc = layer.Linear(512, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.features(x)))


def build(model_name):
    if model_name == "vgg11":
        return VGG11Cifar(bn=True), 32, 10, ("custom CIFAR VGG-11 (cfg A), conv3x3 no-bias + BatchNorm2d + LIF, "
                                            "5x maxpool2x2, flatten 512 -> Linear(512,10); matches spikeforge zoo 'vgg11'")
    if model_name == "vgg11_nobn":
        return VGG11Cifar(bn=False), 32, 10, ("custom CIFAR VGG-11 (cfg A), conv3x3 with bias + LIF (no BN), "
                                             "5x maxpool2x2, flatten 512 -> Linear(512,10)")
    if model_name in ("vgg11_sj", "resnet18"):
        _torchvision_stub()
        from spikingjelly.activation_based.model import spiking_resnet, spiking_vgg
        spiking_resnet.BasicBlock.forward = _basic_block_forward
    if model_name == "vgg11_sj":
        return (spiking_vgg.spiking_vgg11(num_classes=10, spiking_neuron=neuron.LIFNode, **LIF_KW), 32, 10,
                "spikingjelly spiking_vgg11(num_classes=10) on 32x32: conv3x3(bias)+LIF, AdaptiveAvgPool2d((7,7)) "
                "upsamples 1x1->7x7, classifier Linear(25088,4096)+LIF+Dropout, Linear(4096,4096)+LIF+Dropout, "
                "Linear(4096,10)")
    if model_name == "resnet18":
        return (spiking_resnet.spiking_resnet18(num_classes=1000, spiking_neuron=neuron.LIFNode, **LIF_KW), 224,
                1000, "spikingjelly spiking_resnet18(num_classes=1000) (BasicBlock, BN, LIF; in-place add patched)")
    raise KeyError(model_name)


EXPECTED = {
    "resnet18": {"fp_mJ": 218.9, "bp_mJ": 337.3, "wg_mJ": 153.3, "opt_mJ": 6.9, "total_mJ": 716.4,
                 "tflops_per_w": 0.96, "fp_gmac": 116.10, "bp_gmac": 108.55, "wg_gmac": 116.10},
}


def run(model_name: str) -> dict:
    torch.manual_seed(0)
    net, hw, ncls, desc = build(model_name)
    functional.set_step_mode(net, "m")
    functional.reset_net(net)
    net.train()
    img = torch.rand(B, 3, hw, hw)
    x = img.unsqueeze(0).repeat(T, 1, 1, 1, 1)  # direct encoding [T, B, 3, H, W]
    target = F.one_hot(torch.randint(0, ncls, (B,)), ncls).float()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def loss_fn(out, tgt):  # out: [T, B, ncls]
        return F.mse_loss(out.mean(0), tgt)

    # one intra-op thread: the hooks run sequentially anyway, and on a shared machine torch's
    # threads spin against other processes (vgg11: 4.9 s on one thread, 22.6 s on two under load)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        with _patched():
            report = core.estimate_neuromc_runtime_energy(net, x, target=target, loss_fn=loss_fn, optimizer=opt)
            wall = time.perf_counter() - t0
            prof = TaggingProfiler.last
            frags = list(prof.report_fragments)
            evals = [evaluate_fragment(prof, f) for f in frags]
    finally:
        torch.set_num_threads(threads)
    named = dict(net.named_modules())

    recomputed_total = sum(e["energy_pj"]["total"] for e in evals)

    # per module
    modules, order = {}, []
    for f, e in zip(frags, evals):
        name = getattr(f, "module_name", None)
        if name is None:
            name = f"<trace:{f.op_name}>"
        if name not in modules:
            m = named.get(name)
            modules[name] = {**(module_shape(name, m, prof.module_io.get(name)) if m is not None
                                else {"name": name, "type": "trace" if f.source == "trace"
                                      else getattr(f, "module_type", "?")}),
                             "engines": {}}
            order.append(name)
        eng = modules[name]["engines"].setdefault(e["engine"], {"fragments": [], "mac_count": 0, "energy_pj": {}})
        eng["fragments"].append(e)
        eng["mac_count"] += e["mac_count"]
        _add_energy(eng["energy_pj"], e["energy_pj"])

    def totals(pred):
        out = {}
        for e in evals:
            if not pred(e):
                continue
            g = out.setdefault(e["engine"], {"mac_count": 0, "energy_pj": {}, "extra_op_counts": defaultdict(int)})
            g["mac_count"] += e["mac_count"]
            _add_energy(g["energy_pj"], e["energy_pj"])
            for k, v in e["extra_op_counts"].items():
                g["extra_op_counts"][k] += v
        summary = {}
        tot_pj = sum(g["energy_pj"]["total"] for g in out.values())
        tot_mac = sum(g["mac_count"] for g in out.values())
        tot_extra_ops = sum(sum(g["extra_op_counts"].values()) for g in out.values())
        for k, g in out.items():
            g["extra_op_counts"] = dict(g["extra_op_counts"])
            summary[f"{k}_mJ"] = g["energy_pj"]["total"] / 1e9
            summary[f"{k}_gmac"] = g["mac_count"] / 1e9
        flops_2mac = 2 * tot_mac
        summary.update({
            "total_mJ": tot_pj / 1e9,
            "total_gmac": tot_mac / 1e9,
            "flops_2mac": flops_2mac,
            "extra_ops": tot_extra_ops,
            "tflops_per_w_2mac": flops_2mac / (tot_pj * 1e-12) / 1e12,
            "tflops_per_w_2mac_plus_extra": (flops_2mac + tot_extra_ops) / (tot_pj * 1e-12) / 1e12,
        })
        return {"summary": summary, "by_engine": out}

    module_only = totals(lambda e: e["source"] != "trace")
    with_trace = totals(lambda e: True)

    result = {
        "model": model_name,
        "description": desc,
        "spikingjelly_version": getattr(spikingjelly, "__version__", "2.0.0"),
        "torch_version": torch.__version__,
        "setup": {"B": B, "T": T, "input": [T, B, 3, hw, hw], "num_classes": ncls,
                  "neuron": "neuron.LIFNode(tau=2.0, decay_input=True, v_reset=0.0), step_mode='m', "
                            "surrogate Sigmoid (default), backend torch",
                  "loss": "mse_loss(out.mean(0), one_hot)", "optimizer": "Adam(lr=1e-3)",
                  "entry_point": "estimate_neuromc_runtime_energy (stages forward/backward/optimizer, "
                                 "reuse_weights=False => b_type=t_type=0)"},
        "patches": PATCHES,
        "wall_time_s": wall,
        "n_params": sum(p.numel() for p in net.parameters()),
        "totals_module_fragments_only": module_only,
        "totals_profiler_as_reported_incl_trace_fallback": with_trace,
        "profiler_report": {
            "energy_total_pj": report.energy_total_pj,
            "energy_compute_pj": report.energy_compute_pj,
            "energy_memory_pj": report.energy_memory_pj,
            "energy_mac_pj": report.energy_mac_pj,
            "energy_extra_compute_pj": report.energy_extra_compute_pj,
            "energy_base_memory_pj": report.energy_base_memory_pj,
            "energy_extra_memory_pj": report.energy_extra_memory_pj,
            "energy_by_stage": report.energy_by_stage,
            "energy_by_op": report.energy_by_op,
            "energy_by_core_type": report.energy_by_core_type,
            "energy_by_process_key": report.energy_by_process_key,
            "energy_by_memory_level_dir": report.energy_by_memory_level_dir,
            "counts_by_core_type": report.counts_by_core_type,
            "primitive_totals": report.primitive_counts["totals"],
            "memory_bits_by_level": report.memory_bits_by_level,
            "warnings": report.warnings,
            "recomputed_total_pj": recomputed_total,
            "recompute_rel_err": abs(recomputed_total - report.energy_total_pj) / report.energy_total_pj,
        },
        "modules": [modules[n] for n in order],
    }
    if model_name in EXPECTED:
        exp = EXPECTED[model_name]
        cmp = {}
        for label, tot in (("module_only", module_only["summary"]), ("with_trace", with_trace["summary"])):
            c = {}
            for k, v in exp.items():
                got = tot.get(k) if k != "tflops_per_w" else tot["tflops_per_w_2mac"]
                if got is not None:
                    c[k] = {"expected": v, "got": got, "rel_diff": (got - v) / v}
            c["tflops_per_w_2mac_plus_extra"] = {"expected": exp["tflops_per_w"],
                                                 "got": tot["tflops_per_w_2mac_plus_extra"]}
            cmp[label] = c
        result["comparison_with_colleague"] = cmp
    return result


def main(argv):
    names = argv or ["vgg11", "vgg11_nobn", "vgg11_sj", "resnet18"]
    for n in names:
        t0 = time.perf_counter()
        res = run(n)
        res["total_script_time_s"] = time.perf_counter() - t0
        path = os.path.join(OUT_DIR, f"{n}.json")
        with open(path, "w") as fh:
            json.dump(res, fh, indent=1)
        s = res["totals_module_fragments_only"]["summary"]
        s2 = res["totals_profiler_as_reported_incl_trace_fallback"]["summary"]
        print(f"{n}: profile {res['wall_time_s']:.1f}s, total {res['total_script_time_s']:.1f}s -> {path}")
        print("  module-only : " + ", ".join(f"{k}={v:.4g}" for k, v in s.items()))
        print("  as reported : " + ", ".join(f"{k}={v:.4g}" for k, v in s2.items()))
        print(f"  report total {res['profiler_report']['energy_total_pj']/1e9:.4f} mJ, recompute rel err "
              f"{res['profiler_report']['recompute_rel_err']:.2e}")
        if "comparison_with_colleague" in res:
            for lab, c in res["comparison_with_colleague"].items():
                print(f"  vs colleague ({lab}): " + ", ".join(
                    f"{k}: {d['got']:.4g}/{d['expected']}" for k, d in c.items()))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
