"""Float artifacts are byte-identical whatever the host's instruction set.

Hosts differ (an Intel Xeon with AVX-512/VNNI/AMX, an AMD EPYC with AVX2 only). A subprocess here forces
another family of CPU kernels than this host's own: torch's (ATEN_CPU_CAPABILITY), MKL's
(MKL_ENABLE_INSTRUCTIONS: torch's float32 sqrt runs in MKL's vector math, whose last bit depends on the ISA:
that is what once gave different ONNX bytes on the two hosts) and oneDNN's (ONEDNN_MAX_CPU_ISA): AVX2's on a
host with AVX-512 (the other host type's), the SSE baseline on one without (whose own kernels are AVX2's).
INT8 and spiking artifacts are not covered: their ranges and thresholds come from float calibration runs
(README: reproducibility).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("determinism_probe.py")
MODELS = "tinygaze,gazeresnet18,temporalgaze"
TARGETS = "onnx,onnx-fp16,tflite,tflite-fp16,coreml,coreml-fp32,coreml-int8,executorch"
BASELINE_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"}
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _other_kernels() -> dict[str, str]:
    from edgekit.environment import host_info

    return AVX2_KERNELS if "avx512f" in host_info()["isa_flags"] else BASELINE_KERNELS


def _start(kernels: dict[str, str], log) -> subprocess.Popen:
    env = {**os.environ, **kernels, "OMP_NUM_THREADS": "1"}
    # stderr to a file: converters log a lot, and a full pipe would stall one probe until the other ends
    return subprocess.Popen([sys.executable, str(PROBE), MODELS, TARGETS], env=env, stdout=subprocess.PIPE,
                            stderr=log, text=True)


def _digests(proc: subprocess.Popen, log) -> dict[str, str]:
    out, _ = proc.communicate(timeout=900)
    log.seek(0)
    assert proc.returncode == 0, log.read()[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_float_artifacts_have_the_same_bytes_under_this_hosts_and_another_isas_kernels(tmp_path):
    from edgekit.environment import cache_root
    from tests.determinism_probe import digests

    kernels = _other_kernels()
    with open(tmp_path / "other.log", "w+") as log:
        proc = _start(kernels, log)
        try:
            # this host's own kernels, meanwhile, through the session's pass cache: entries other tests built here are
            # this host's builds too (content-addressed, keyed on the code), and the ones built now serve later tests
            here = digests(MODELS.split(","), TARGETS.split(","), cache_root() / "passes")
            other = _digests(proc, log)
        finally:
            proc.kill() if proc.poll() is None else None
    assert len(here) == len(MODELS.split(",")) * len(TARGETS.split(","))
    differ = sorted(k for k in here if here[k] != other[k])
    assert not differ, f"artifact bytes differ between this host's kernels and {kernels} for {differ}"


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
