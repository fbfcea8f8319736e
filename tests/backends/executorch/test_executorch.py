"""ExecuTorch: real lowering with the XNNPACK partitioner, every .pte run in the ExecuTorch runtime (its Python
bindings)."""

import json

import numpy as np
import pytest
import torch

import edgekit.compiler as ek

# c10::ScalarType codes, as the runtime's TensorInfo.dtype() reports them
SCALAR_TYPE_NAMES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32"}


@pytest.mark.slow
def test_fp32_matches_pytorch_and_runs_in_xnnpack(tinygaze_builds):
    res = tinygaze_builds["executorch"]
    report = res.report
    assert report.passed and res.artifact.suffix == ".pte", [g for g in report.gates if not g.passed]
    assert report.accuracy.diff_from_reference.max_deg < 0.01 and report.accuracy.set.n_images == 512
    assert "ExecuTorch runtime" in report.accuracy.how and "XNNPACK" in report.accuracy.how
    runtime = report.runtime
    assert runtime.executed_here and runtime.delegated_mac_fraction >= 0.95
    # L2 normalisation (pow, sum) stays with the portable kernels: listed by name, not hidden
    assert runtime.portable_ops and {"aten::pow", "aten::sum"} <= set(runtime.portable_ops)
    assert report.compute["macs"].value == pytest.approx(4.84e6, rel=0.01)  # the ONNX and TFLite graphs' count
    assert ".pte" in report.compute["macs"].how
    gates = {g.name: g for g in report.gates}
    delegated = gates["min_delegated_mac_fraction"]
    assert delegated.passed and delegated.value == runtime.delegated_mac_fraction
    energy = report.energy
    assert energy.estimates and set(energy.macs_by_precision) == {"fp32"}
    assert energy.macs_by_precision["fp32"] == pytest.approx(report.compute["macs"].value)
    assert report.latency["p50"].value > 0 and report.latency["p99"].value >= report.latency["p50"].value


@pytest.mark.slow
def test_int8_runs_its_macs_in_int8_and_is_compared_with_fp32(tinygaze_builds):
    fp32, res = tinygaze_builds["executorch"], tinygaze_builds["executorch-int8"]
    report = res.report
    assert report.passed, [g for g in report.gates if not g.passed]
    assert report.accuracy.error_increase_deg <= 0.3
    assert report.runtime.int8_mac_fraction_measured > 0.9 and report.runtime.delegated_mac_fraction >= 0.95
    assert report.compute["macs"].value == fp32.report.compute["macs"].value  # same layers, other precision
    assert set(report.energy.macs_by_precision) >= {"int8"}
    assert report.energy.macs_by_precision["int8"] >= 0.9 * report.compute["macs"].value
    assert fp32.size_bytes >= 3 * res.size_bytes
    c = report.comparison  # FP32 and INT8 timed interleaved in the same runtime
    assert c is not None and c.fp32_sha256 == fp32.report.artifact.sha256
    assert c.size_fp32_bytes == fp32.size_bytes and c.size_int8_bytes == res.size_bytes
    assert "interleaved" in c.latency_int8["p50"].how and c.latency_fp32["p50"].value > 0 and c.speedup_p50 > 0


def _runtime_io(path):
    """(shape, dtype) of every input and output as the ExecuTorch runtime reads them from the program."""
    from executorch.runtime import Runtime

    meta = Runtime.get().load_program(path).metadata("forward")
    describe = lambda info: (list(info.sizes()), SCALAR_TYPE_NAMES.get(info.dtype(), info.dtype()))  # noqa: E731
    return ([describe(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
            [describe(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())])


def _check_sidecar_against_runtime(res):
    sidecar = json.loads((res.out_dir / "io.json").read_text())
    assert sidecar["artifact"] == res.artifact.name and sidecar["format"] == "pte"
    inputs, outputs = _runtime_io(res.artifact)
    assert [(e["shape"], e["dtype"]) for e in sidecar["inputs"]] == inputs
    assert [(e["shape"], e["dtype"]) for e in sidecar["outputs"]] == outputs
    # a caller building tensors from the sidecar alone gets outputs of the shape and dtype it promises
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(res.artifact).load_method("forward")
    args = [torch.from_numpy(np.zeros(e["shape"], dtype=e["dtype"])) for e in sidecar["inputs"]]
    got = method.execute(args)
    assert [(list(t.shape), str(t.dtype).removeprefix("torch.")) for t in got] == outputs
    return sidecar


@pytest.mark.slow
@pytest.mark.parametrize("target", ["executorch", "executorch-int8"])
def test_sidecar_describes_the_programs_inputs_and_outputs(tinygaze_builds, target):
    sidecar = _check_sidecar_against_runtime(tinygaze_builds[target])
    assert [e["shape"] for e in sidecar["inputs"]] == [[1, 1, 40, 64]] and sidecar["inputs"][0]["quantization"] is None
    assert [e["shape"] for e in sidecar["outputs"]] == [[1, 3]] and sidecar["outputs"][0]["dtype"] == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["temporalgaze", "gazeresnet18"])
def test_builtin_models_pass_in_fp32(tmp_path, model):
    from edgekit.data.synthetic import standard_set

    # GazeResNet18 on 128 images: the reference and the program each run them one at a time (the recipe's 512 took
    # 13 s, 8 with 128); TemporalGaze's time is its lowering (17 partitions), not its samples
    eval_set = standard_set("eval", 128, (64, 96)) if model == "gazeresnet18" else None
    res = ek.compile(model, "executorch", eval=eval_set, out=tmp_path / model)
    assert res.report.passed, [g for g in res.report.gates if not g.passed]
    assert res.report.accuracy.diff_from_reference.max_deg < 0.01
    assert res.report.runtime.delegated_mac_fraction >= 0.95
    _check_sidecar_against_runtime(res)


def test_xnnpack_patterns_of_ops_a_graph_never_calls_are_left_empty_while_it_lowers():
    """XNNPACK's bilinear-upsample and SDPA pattern graphs (built on first use, 2.5 s a process) are empty while a
    graph calling neither op lowers, the upsample ones kept for a graph that upsamples, and both restored after."""
    from executorch.backends.xnnpack.partition.graphs import bilinear_2d, sdpa
    from torch import nn
    from torch.nn import functional as F

    from edgekit.backends.executorch.convert import WHO, _only_matchable_xnnpack_patterns
    from edgekit.quant import pt2e

    class Upsampling(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="bilinear")

    originals = (bilinear_2d.get_graphs_dict, sdpa.get_graphs)
    x = (torch.zeros(1, 1, 8, 8),)
    with _only_matchable_xnnpack_patterns(pt2e.export(nn.Conv2d(1, 2, 3), x, WHO).graph):
        assert bilinear_2d.get_graphs_dict() == {} and sdpa.get_graphs() == []
    with _only_matchable_xnnpack_patterns(pt2e.export(Upsampling(), x, WHO).graph):
        assert bilinear_2d.get_graphs_dict is originals[0] and sdpa.get_graphs() == []
    assert (bilinear_2d.get_graphs_dict, sdpa.get_graphs) == originals
