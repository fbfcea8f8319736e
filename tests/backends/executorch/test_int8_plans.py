"""executorch-int8 on the model shapes that broke it while the zoo matrix was built: a module called twice, a plan
that keeps a layer float, and a matmul of two activations, which XNNPACK runs in float only; and an expectation over
softmax bins, which stays float."""

import json

import pytest
import torch

from edgekit.cli import run
from edgekit.models.io import save_weights

SMALL_INT8 = ("name: executorch-int8-small\nbackend: executorch\ncalibration: synthetic-512\npasses:\n  - fold_bn\n"
              "  - to_executorch:\n      precision: int8\n      mixed_precision: false\n      sensitivity_samples: 32\n{extra}"
              "gates:\n  max_error_increase_deg: 30\nverify:\n  eval_images: 64\n  latency_runs: 5\n  warmup_runs: 1\n"
              "  threads: 1\n")


def _compile(tmp_path, arch: str, extra: str = "", more: tuple = ()) -> tuple[int, dict | None]:
    from tests.backends.executorch import models

    torch.manual_seed(0)
    weights = save_weights(getattr(models, arch)(), tmp_path / f"{arch}.safetensors")
    recipe = tmp_path / "int8.yaml"
    recipe.write_text(SMALL_INT8.format(extra=extra))
    out = tmp_path / "out"
    code = run(["compile", str(weights), "--arch", f"tests.backends.executorch.models:{arch}", "--input-shape",
                "1x1x40x64", "-t", str(recipe), "--out", str(out), "--no-cache", "-q", *more])
    report = out / "report.json"
    return code, json.loads(report.read_text()) if report.is_file() else None


@pytest.mark.slow
def test_a_module_called_twice_is_int8_in_both_calls_and_loads(tmp_path):
    # before its weights were unshared, the second call was INT8 with a float bias and XNNPACK refused the program
    code, report = _compile(tmp_path, "SharedTowerGaze")
    assert code == 0 and report["runtime"]["int8_mac_fraction_measured"] == 1.0
    assert report["runtime"]["delegated_mac_fraction"] == 1.0


@pytest.mark.slow
def test_keep_float_leaves_that_layer_float_in_the_program(tmp_path):
    code, report = _compile(tmp_path, "SharedTowerGaze", extra="      keep_float: [head]\n      min_int8_mac_fraction: 0.5\n"
                                                              "      single_channel_convs: int8\n")
    assert code == 0, report
    assert [f["name"] for f in report["quantization"]["float_layers"]] == ["head"]
    float_macs = [f for f in report["runtime"]["float_ops"] if f["macs"]]
    assert [f["op"] for f in float_macs] == ["FullyConnected"] and float_macs[0]["macs"] == 2 * 8 * 10 * 8 * 3
    assert 0.5 < report["runtime"]["int8_mac_fraction_measured"] < 1.0


@pytest.mark.slow
def test_a_matmul_of_two_activations_runs_float_outside_the_int8_share(tmp_path):
    """XNNPACK's batch matmul is FP32-only: the Gram matrix of two activations computes in float and is reported
    apart; min_int8_mac_fraction counts the conv and linear MACs, all INT8 (until 2026-12-05 this exited 2)."""
    # output_layers int8: its head writes the output, which would stay float by default (tests/backends/tflite)
    code, report = _compile(tmp_path, "DepthwiseMatmulNet", extra="      output_layers: int8\n")
    assert code == 0, report
    assert report["runtime"]["int8_mac_fraction_measured"] == 1.0
    float_macs = [f for f in report["runtime"]["float_ops"] if f["macs"]]
    assert [f["op"] for f in float_macs] == ["BatchMatrixMultiply"] and float_macs[0]["macs"] == 16 * 16 * 640
    assert any("1 matmul(s) of two activations" in n and "compute in float" in n for n in report["notes"])


def test_average_pools_get_their_own_output_range():
    """XNNPACKQuantizer gives an average pool and a mean their input's scale; the average of a ReLU map spans far
    less than the map, so edgekit observes the pooled output itself (each pooled tensor's INT8 scale well below its
    input's), and the quantized graph stays close to float."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    from edgekit.backends.executorch.convert import ToExecuTorch, _quantizer_class
    from edgekit.quant import pt2e
    from edgekit.quant.plan import QuantPlan

    class PooledFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, 1, 1), torch.nn.ReLU())
            self.fc_a, self.fc_b = torch.nn.Linear(16, 2), torch.nn.Linear(16, 2)

        def forward(self, x):
            h = self.features(x)
            return self.fc_a(torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1)) + self.fc_b(h.mean((2, 3)))

    torch.manual_seed(0)
    model = PooledFeatures().eval()
    x = (torch.rand(64, 1, 12, 20) > 0.9).float() * torch.rand(64, 1, 1, 1) * 4  # sparse bright spots
    config = pt2e.with_edgekit_observers(get_symmetric_quantization_config(is_per_channel=True), QuantPlan(),
                                         ToExecuTorch(precision="int8"))
    quantizer = _quantizer_class()().set_global(config)
    converted, _ = pt2e.quantize(model, (x[:1],), quantizer, [(x[i:i + 1],) for i in range(len(x))], "test", "onnx-int8",
                                 fold_quantize=True)
    pools = [n for n in converted.graph.nodes if pt2e.aten_name(n) in ("adaptive_avg_pool2d", "mean")]
    assert len(pools) == 2
    for pool in pools:
        (dequantize,), (quantize,) = pool.all_input_nodes, list(pool.users)
        assert "dequantize_per_tensor" in str(dequantize.target) and "quantize_per_tensor" in str(quantize.target)
        assert 0 < quantize.args[1] < dequantize.args[1] / 2  # shared, they were equal
    with torch.no_grad():
        ref, got = model(x[:16]), converted(x[:16])
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()


def _expectation_quantized(x):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    from edgekit.backends.executorch.convert import ToExecuTorch, _quantizer_class
    from edgekit.quant import pt2e
    from edgekit.quant.plan import QuantPlan
    from tests.backends.executorch.models import ExpectationHeadGaze

    torch.manual_seed(0)
    model = ExpectationHeadGaze().eval()
    config = pt2e.with_edgekit_observers(get_symmetric_quantization_config(is_per_channel=True), QuantPlan(),
                                         ToExecuTorch(precision="int8"))
    quantizer = _quantizer_class()().set_global(config)
    converted, decisions = pt2e.quantize(model, (x[:1],), quantizer, [(x[i:i + 1],) for i in range(len(x))], "test",
                                         "onnx-int8", fold_quantize=True, decisions_of=pt2e.rounding_island_decisions)
    return model, converted, decisions


def test_an_expectation_over_softmax_bins_stays_float():
    """XNNPACKQuantizer leaves a softmax float but quantizes the MUL after it (the probabilities and the bin centres
    to 8 bits), whose SUM then reads float: that MUL stays float (pt2e.rounding_islands_left_float, named in the
    decisions), the linear heads stay INT8, and the graph is as close to float as the INT8 heads allow."""
    from edgekit.quant import pt2e

    x = torch.rand(64, 1, 40, 64)
    model, converted, decisions = _expectation_quantized(x)
    nodes = list(converted.graph.nodes)
    muls = [n for n in nodes if pt2e.aten_name(n) == "mul"]
    assert len(muls) == 2
    for mul in muls:
        assert not any("dequantize" in str(i.target) for i in mul.all_input_nodes)
        assert not any("quantize" in str(u.target) for u in mul.users)
    linears = [n for n in nodes if pt2e.aten_name(n) == "linear"]
    assert len(linears) == 2 and all("dequantize" in str(n.args[0].target) for n in linears)
    assert sum("kept float: its inputs are float" in d and d.startswith("mul") for d in decisions) == 2
    with torch.no_grad():
        ref, got = model(x[:16]), converted(x[:16])
    assert (got - ref).abs().max() < 0.01  # radians; the bins span 0.58


@pytest.mark.slow
def test_an_expectation_head_model_compiles_runs_and_keeps_its_heads_int8(tmp_path):
    code, report = _compile(tmp_path, "ExpectationHeadGaze", more=("--output-convention", "pitchyaw"))
    assert code == 0, report
    # every conv and linear INT8 (the 1-channel stem too: float, it would take the share under min_int8_mac_fraction)
    assert report["runtime"]["int8_mac_fraction_measured"] == 1.0
    # the expectation's two multiplies, then the concatenation of the two float sums
    assert sorted(n.split()[0] for n in report["notes"] if "kept float: its inputs are float" in n) == ["cat", "mul", "mul"]
