"""The .pte reader (edgekit/backends/executorch/program.py): MACs per XNNPACK node against an independent count from
the torch model, and MACs the partitioner leaves to the portable kernels, which the min_delegated_mac_fraction gate
catches."""

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgekit.backends.executorch import program as pte
from edgekit.cli import run
from edgekit.models import build
from edgekit.models.io import save_weights
from tests.backends.executorch.models import DepthwiseMatmulNet, InputGainConvGaze, MatMul

KIND = {"Conv2d": "conv", "DepthwiseConv2d": "conv", "FullyConnected": "linear", "BatchMatrixMultiply": "matmul"}


def _torch_macs(module: nn.Module, x: torch.Tensor) -> list[tuple[str, int, int]]:
    """(kind, MACs, weight elements) of every conv, linear and MatMul module in forward order, from forward hooks:
    each output element costs one MAC per element of the reduction (cin/groups x kh x kw, in_features, the shared
    dimension of a matmul)."""
    rows = []

    def hook(m, args, out):
        if isinstance(m, nn.Conv2d):
            reduction = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            rows.append(("conv", out.numel() * reduction, m.weight.numel()))
        elif isinstance(m, nn.Linear):
            rows.append(("linear", out.numel() * m.in_features, m.weight.numel()))
        else:
            rows.append(("matmul", out.numel() * args[0].shape[-1], 0))

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear, MatMul))]
    with torch.no_grad():
        module(x)
    for h in handles:
        h.remove()
    return rows


def _lower(module: nn.Module, shape, path):
    """Lower with ExecuTorch's own API (not edgekit's pass): the reader is checked on any XNNPACK program."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(module.eval(), (torch.zeros(shape),))
    path.write_bytes(to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    return pte.read(path)


def _pte_macs(program) -> list[tuple[str, int, int]]:
    return [(KIND[r["op"]], r["macs"], r["weight_elems"]) for r in program.layers]


@pytest.mark.slow
def test_tinygaze_macs_per_node_match_the_torch_model(tinygaze_builds):
    expected = _torch_macs(build("tinygaze").eval(), torch.zeros(1, 1, 40, 64))
    fp32 = pte.read(tinygaze_builds["executorch"].artifact)
    assert _pte_macs(fp32) == expected and all(r["delegated"] and r["precision"] == "fp32" for r in fp32.layers)
    assert sum(m for _, m, _ in expected) == tinygaze_builds["executorch"].report.compute["macs"].value
    int8 = pte.read(tinygaze_builds["executorch-int8"].artifact)
    assert _pte_macs(int8) == expected  # the same nodes, now with INT8 activations but the 1-channel stem's
    stem, *rest = int8.layers  # float by single_channel_convs (XNNPACK would pad its one input channel to 8)
    assert stem["precision"] == "fp32" and stem["delegated"]
    assert all(r["precision"] == "int8" and r["activation_dtype"] in ("qint8", "qdint8") for r in rest)
    assert all(r["weight_bytes"] == r["weight_elems"] for r in rest)  # one byte per INT8 weight


def test_depthwise_conv_and_activation_matmul_counted_per_node(tmp_path):
    torch.manual_seed(0)
    model = DepthwiseMatmulNet().eval()
    program = _lower(model, (1, 1, 40, 64), tmp_path / "dw.pte")
    assert _pte_macs(program) == _torch_macs(model, torch.zeros(1, 1, 40, 64))
    ops = [r["op"] for r in program.layers]
    assert ops[1] == "DepthwiseConv2d" and "BatchMatrixMultiply" in ops  # both really lowered as such
    matmul = program.layers[ops.index("BatchMatrixMultiply")]
    assert matmul["macs"] == 16 * 16 * 20 * 32 and matmul["delegated"] and matmul["weight_elems"] == 0
    assert program.delegated_share() == 1.0


def test_conv_left_to_portable_kernels_lowers_the_delegated_share(tmp_path):
    torch.manual_seed(0)
    model = InputGainConvGaze().eval()
    program = _lower(model, (1, 1, 40, 64), tmp_path / "gain.pte")
    with FlopCounterMode(display=False) as flops, torch.no_grad():  # torch's own count: 2 FLOPs per MAC
        model(torch.zeros(1, 1, 40, 64))
    conv_macs, head_macs = 8 * 19 * 31 * 9, 8 * 3
    assert flops.get_total_flops() == 2 * (conv_macs + head_macs)
    assert program.portable_ops().get("aten::convolution") == 1
    rows = {r["op"]: r for r in program.layers}
    assert rows["aten::convolution"]["macs"] == conv_macs and not rows["aten::convolution"]["delegated"]
    assert rows["FullyConnected"]["macs"] == head_macs and rows["FullyConnected"]["delegated"]
    assert program.delegated_share() == pytest.approx(head_macs / (conv_macs + head_macs))


@pytest.mark.slow
def test_min_delegated_mac_fraction_gate_fails_when_xnnpack_runs_too_little(tmp_path, capsys):
    torch.manual_seed(0)
    weights = save_weights(InputGainConvGaze(), tmp_path / "gain.safetensors")
    recipe = tmp_path / "delegated.yaml"
    recipe.write_text("name: executorch-delegated\nbackend: executorch\npasses:\n  - fold_bn\n  - to_executorch:\n"
                      "      precision: fp32\ngates:\n  max_diff_deg: 0.01\n  min_delegated_mac_fraction: 0.95\n"
                      "verify:\n  eval_images: 128\n  latency_runs: 20\n  warmup_runs: 2\n  threads: 1\n")
    out = tmp_path / "o"
    code = run(["compile", str(weights), "--arch", "tests.backends.executorch.models:InputGainConvGaze",
                "--input-shape", "1x1x40x64", "-t", str(recipe), "--out", str(out)])
    assert code == 1, capsys.readouterr().err[-2000:]
    report = json.loads((out / "report.json").read_text())
    gates = {g["name"]: g for g in report["gates"]}
    assert not gates["min_delegated_mac_fraction"]["passed"] and gates["min_delegated_mac_fraction"]["value"] < 0.01
    assert gates["max_diff_deg"]["passed"]  # the portable kernels compute it right; only the share is short
    assert report["runtime"]["portable_ops"]["aten::convolution"] == 1
    assert (out / "model.pte").is_file()  # a failed gate keeps the artifact and report
