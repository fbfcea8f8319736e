"""Float artifacts are byte-identical whatever the host's instruction set.

Hosts differ (an Intel Xeon with AVX-512/VNNI/AMX, an AMD EPYC with AVX2 only). A subprocess here forces
another family of CPU kernels than this host's own: torch's (ATEN_CPU_CAPABILITY), MKL's
(MKL_ENABLE_INSTRUCTIONS: torch's float32 sqrt runs in MKL's vector math, whose last bit depends on the ISA:
that is what once gave different ONNX bytes on the two hosts) and oneDNN's (ONEDNN_MAX_CPU_ISA): AVX2's on a
host with AVX-512 (the other host type's), the SSE baseline on one without (whose own kernels are AVX2's).
Its digests must equal the committed ones (tests/float_digests.json, written with the kernels of the host that made
it, an AVX-512 Xeon's: `python -m tests.determinism_probe --write`). TinyGaze's are also reports/demo.json's, which
tests/report/test_sample_report.py rebuilds with this host's kernels. INT8 and spiking artifacts are not covered: their
ranges and thresholds come from float calibration runs (README: reproducibility).
"""

import json
from pathlib import Path

import pytest

from tests.determinism_probe import COMMITTED, FLOAT_MODELS, FLOAT_TARGETS, in_fresh_process

ROOT = Path(__file__).resolve().parents[1]
BASELINE_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"}
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _other_kernels() -> dict[str, str]:
    from edgekit.environment import host_info

    return AVX2_KERNELS if "avx512f" in host_info()["isa_flags"] else BASELINE_KERNELS


def _committed() -> dict[str, str]:
    return json.loads(COMMITTED.read_text())["sha256"]


@pytest.mark.slow
def test_float_artifacts_have_the_committed_bytes_under_another_isas_kernels(tmp_path):
    kernels = _other_kernels()
    other = in_fresh_process(FLOAT_MODELS, FLOAT_TARGETS, tmp_path / "other.log", kernels)
    committed = _committed()
    assert sorted(other) == sorted(committed) and len(committed) == len(FLOAT_MODELS) * len(FLOAT_TARGETS)
    differ = sorted(k for k in committed if committed[k] != other[k])
    assert not differ, (f"artifact bytes under {kernels} differ from tests/float_digests.json for {differ}: either they "
                        "depend on the ISA (a defect), or a change meant to alter them (then rewrite the file with "
                        "`python -m tests.determinism_probe --write` and reports/demo.json with `make sample-report`)")


def test_the_committed_digests_are_the_sample_reports_where_both_have_the_artifact():
    """The sample report's rebuild checks TinyGaze's float artifacts on this host's kernels against the same bytes."""
    demo = json.loads((ROOT / "reports" / "demo.json").read_text())
    committed = _committed()
    both = {t["target"]: t["sha256"] for t in demo["targets"] if f"tinygaze/{t['target']}" in committed}
    assert set(both) == {"onnx", "onnx-fp16", "tflite", "tflite-fp16", "coreml", "coreml-int8", "executorch"}
    assert {t: committed[f"tinygaze/{t}"] for t in both} == both


def test_bn_folding_does_not_use_torch_sqrt_whose_bits_depend_on_the_isa():
    """The folded weights equal a float64 fold rounded once; torch's float32 arithmetic would differ in the last bit."""
    import numpy as np
    import torch
    from torch import nn

    from edgekit.passes.fold_bn import folded_weight_and_bias

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64)
    bn.running_var.uniform_(0.01, 4.0)
    bn.running_mean.normal_()
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    weight, bias = folded_weight_and_bias(conv, bn)
    f64 = lambda t: t.detach().numpy().astype(np.float64)  # noqa: E731
    scale = f64(bn.weight) / np.sqrt(f64(bn.running_var) + bn.eps)
    assert np.array_equal(weight.numpy(), (f64(conv.weight) * scale[:, None, None, None]).astype(np.float32))
    assert np.array_equal(bias.numpy(), ((f64(conv.bias) - f64(bn.running_mean)) * scale + f64(bn.bias)).astype(np.float32))
    assert weight.dtype == torch.float32 and bias.dtype == torch.float32
