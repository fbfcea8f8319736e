"""fold_bn: fold each BatchNorm that directly follows a convolution or linear layer into its weights.

Pairs are found by tracing the module with torch.fx; a BatchNorm is folded only when its input is the
conv's output and nothing else reads that output. Others (pre-activation BN before a conv, BN after a
residual add) are kept and listed: folding them is not exact at zero-padded borders.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from edgekit.artifact import Artifact, Format
from edgekit.passes.base import Pass
from edgekit.torch_module import apply_bn_folds, load_module, save_module


def find_conv_bn_pairs(module: nn.Module) -> tuple[list[list[str]], list[str], str | None]:
    """(pairs of (conv, bn) module names, BNs left unfolded, why tracing failed if it did)."""
    import torch.fx

    bns = [n for n, m in module.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as exc:  # dynamic control flow: leave BN to the exporter, which folds it too
        return [], bns, f"not traceable by torch.fx ({type(exc).__name__})"
    modules = dict(module.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        prev = node.args[0]
        if (isinstance(prev, torch.fx.Node) and prev.op == "call_module" and len(prev.users) == 1
                and isinstance(modules.get(prev.target), (nn.Conv1d, nn.Conv2d, nn.Linear))
                and modules[node.target].track_running_stats):
            pairs.append([prev.target, node.target])
    folded = {bn for _, bn in pairs}
    return pairs, [b for b in bns if b not in folded], None


def folded_weight_and_bias(conv: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """conv's weight and bias with bn folded in, computed in float64 with numpy and rounded once to the weight's dtype.

    Why not torch: torch's float32 `sqrt` on CPU runs in MKL's vector math library, whose last bit depends on the
    host's instruction set (measured: MKL_ENABLE_INSTRUCTIONS=AVX2 vs AVX-512 gave different folded weights, hence
    different ONNX and TFLite bytes on an AMD EPYC and an Intel Xeon). numpy's +, -, *, / and sqrt are IEEE
    correctly rounded on every ISA, so the same checkpoint folds to the same bytes on any x86-64 host.
    """
    f64 = lambda t: t.detach().cpu().numpy().astype(np.float64)  # noqa: E731
    weight = f64(conv.weight)
    bias = f64(conv.bias) if conv.bias is not None else np.zeros(bn.running_mean.shape, np.float64)
    scale = f64(bn.weight) / np.sqrt(f64(bn.running_var) + float(bn.eps))
    folded_weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    folded_bias = (bias - f64(bn.running_mean)) * scale + f64(bn.bias)
    dtype = conv.weight.dtype
    return torch.from_numpy(folded_weight).to(dtype), torch.from_numpy(folded_bias).to(dtype)


@torch.no_grad()
def fold_pairs(module: nn.Module, pairs: list[list[str]]) -> nn.Module:
    for conv_name, bn_name in pairs:
        conv, bn = module.get_submodule(conv_name), module.get_submodule(bn_name)
        weight, bias = folded_weight_and_bias(conv, bn)
        conv.weight.copy_(weight)
        conv.bias = nn.Parameter(bias)
    return apply_bn_folds(module, pairs)


class FoldBN(Pass):
    name: ClassVar[str] = "fold_bn"
    uses_calibration: ClassVar[bool] = False
    version: ClassVar[int] = 2  # 2: folded in float64 (same bytes on every ISA)
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    produces: ClassVar[Format] = Format.torch
    summary: ClassVar[str] = "fold BatchNorm into the preceding conv/linear weights (exact in eval mode)"

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        module, spec = load_module(src.path, trusted_arch=ctx.card.arch)
        pairs, kept, why = find_conv_bn_pairs(module)
        folded = fold_pairs(copy.deepcopy(module), pairs).eval()
        save_module(folded, out_dir / "module", spec["arch"], spec["arch_config"], spec.get("bn_folds", []) + pairs)
        notes = [f"folded {len(pairs)} BatchNorm layers"]
        if kept:
            notes.append(f"kept {len(kept)} BatchNorm layers that do not directly follow a conv ({', '.join(kept[:4])}"
                         f"{'...' if len(kept) > 4 else ''})" + (f": {why}" if why else ""))
        return Artifact.create(out_dir / "module", Format.torch, src, notes=notes, folded=len(pairs))
