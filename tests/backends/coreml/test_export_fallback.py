"""to_coreml's torch.export fallback: a model TorchScript conversion fails on (sizes read from x.size(0) -> aten::Int;
affine_grid + grid_sample with border padding, which coremltools maps to MIL affine, zeros padding only) converts from
its torch.export program, its affine_grid decomposed into an explicit grid (MIL resample), and verifies in edgekit's
MIL interpreter; models TorchScript converts keep that path; grid sampling stays FP32 in FP16 programs; what Core ML
cannot express (bicubic grid_sample) is one line naming the module and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import edgekit.compiler as ek
from edgekit._optional import require
from edgekit.backends.coreml.convert import _decompositions, _NotGridSampling, _quantizer_hooks, _serialize_deterministically
from edgekit.backends.coreml.mil_interpreter import MilInterpreter, dtype_name
from edgekit.cli import run
from edgekit.data.synthetic import standard_set
from edgekit.models.io import save_weights
from edgekit.quiet import quiet

ct = require("coremltools", "Core ML tests")

SHAPE = (1, 1, 36, 60)
HERE = "tests.backends.coreml.test_export_fallback"


class TinyStn(nn.Module):
    """A spatial transformer written as users write one: sizes from x.size(0) (traced: aten::Int, which coremltools
    9.0 cannot convert under numpy 2), affine_grid from x.size(), grid_sample with PADDING."""

    padding = "border"

    def __init__(self):
        super().__init__()
        self.loc = nn.Sequential(nn.Conv2d(1, 4, 5, 4, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.theta = nn.Linear(4, 6)
        self.conv = nn.Sequential(nn.Conv2d(1, 6, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(6, 3)
        with torch.no_grad():  # near the identity, with a shift and zoom that samples outside the image
            self.theta.weight.mul_(0.5)
            self.theta.bias.copy_(torch.tensor([1.2, 0.1, 0.15, -0.05, 1.1, -0.2]))

    def forward(self, x):
        loc = self.loc(x)
        theta = self.theta(loc.view(loc.size(0), -1)).view(-1, 2, 3)
        grid = F.affine_grid(theta, x.size(), align_corners=False)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)
        feat = self.conv(warped)
        return F.normalize(self.fc(feat.view(feat.size(0), -1)), dim=-1)


class TinyStnZeros(TinyStn):
    padding = "zeros"


class FixedSizeAffine(nn.Module):
    """affine_grid + grid_sample with zeros padding and constant sizes: TorchScript converts it (MIL affine)."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Linear(SHAPE[2] * SHAPE[3], 6)
        self.fc = nn.Linear(SHAPE[2] * SHAPE[3], 3)
        with torch.no_grad():
            self.theta.weight.mul_(0.01)
            self.theta.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, x):
        theta = self.theta(x.flatten(1)).view(-1, 2, 3)
        warped = F.grid_sample(x, F.affine_grid(theta, list(SHAPE), align_corners=False), align_corners=False)
        return F.normalize(self.fc(warped.flatten(1)), dim=-1)


class Warp(nn.Module):
    def forward(self, x, grid):
        return F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False)


class BicubicStn(nn.Module):
    def __init__(self):
        super().__init__()
        self.theta = nn.Linear(SHAPE[2] * SHAPE[3], 6)
        self.warp = Warp()
        self.fc = nn.Linear(SHAPE[2] * SHAPE[3], 3)

    def forward(self, x):
        theta = self.theta(x.view(x.size(0), -1)).view(-1, 2, 3)
        warped = self.warp(x, F.affine_grid(theta, x.size(), align_corners=False))
        return self.fc(warped.view(x.size(0), -1))


def _compile(cls, target: str, tmp_path: Path):
    torch.manual_seed(0)
    weights = save_weights(cls().eval(), tmp_path / f"{cls.__name__}.safetensors")
    return ek.compile(str(weights), target, arch=f"{HERE}:{cls.__name__}", input_shape=["x".join(map(str, SHAPE))],
                      eval=standard_set("eval", 48, SHAPE[2:]), out=tmp_path / target, cache=False)


def _notes(res) -> str:
    return " ".join(n for step in res.report.steps for n in step.notes)


@pytest.mark.parametrize("cls", [TinyStn, TinyStnZeros])
@pytest.mark.parametrize("target", ["coreml-fp32", "coreml"])
def test_traced_sizes_and_affine_grid_convert_through_torch_export(cls, target, tmp_path):
    res = _compile(cls, target, tmp_path)
    assert res.passed, [g for g in res.report.gates if not g.passed]
    assert "converted from a torch.export program" in _notes(res) and "TorchScript conversion failed on op int" in _notes(res)
    assert ("grid sampling (resample and the ops computing its coordinates) kept in FP32" in _notes(res)) == (target == "coreml")
    interp = MilInterpreter(res.artifact)
    hist = interp.op_histogram()
    assert hist.get("resample") == 1 and "affine" not in hist
    assert {op.padding_mode.val for op in interp.ops if op.op_type == "resample"} == {
        {"border": "border", "zeros": "constant"}[cls.padding]}
    # the interpreter's result is torch's (the gate above compares gaze angles; this compares the vectors)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    torch.manual_seed(0)
    with torch.no_grad():
        want = cls().eval()(x).numpy()
    tol = 1e-5 if target == "coreml-fp32" else 2e-3
    np.testing.assert_allclose(interp.run({interp.input_names[0]: x.numpy()}), want, atol=tol)
    if target == "coreml":  # the sampling grid and the resample stay in FP32; the convolutions run in FP16
        dtypes = {op.op_type: dtype_name(op.outputs[0]) for op in interp.ops if op.op_type in ("resample", "reduce_sum")}
        assert dtypes == {"resample": "fp32", "reduce_sum": "fp32"}, dtypes
        assert any(op.op_type == "conv" and dtype_name(op.outputs[0]) == "fp16" for op in interp.ops)


def test_a_model_torchscript_converts_keeps_the_torchscript_path(tmp_path):
    res = _compile(FixedSizeAffine, "coreml-fp32", tmp_path)
    assert res.passed
    assert "torch.export" not in _notes(res)
    assert "affine" in MilInterpreter(res.artifact).op_histogram()  # TorchScript's mapping, not the decomposed grid


def test_bicubic_grid_sample_is_refused_in_one_line_naming_the_module(tmp_path, capsys):
    torch.manual_seed(0)
    weights = save_weights(BicubicStn().eval(), tmp_path / "bicubic.safetensors")
    out = tmp_path / "o"
    assert run(["compile", str(weights), "--arch", f"{HERE}:BicubicStn", "--input-shape", "x".join(map(str, SHAPE)),
                "-t", "coreml-fp32", "--out", str(out), "--no-cache"]) == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Traceback" not in err, err
    assert "to_coreml: grid_sample mode 'bicubic' in module warp has no Core ML equivalent" in error[0]
    assert "fix: use mode='bilinear' or 'nearest'" in error[0]
    assert not out.exists()


# --- the pieces, without the compiler ----------------------------------------------------------------------------
def _convert_exported(module: nn.Module, shape, tmp_path: Path, precision, name="m") -> MilInterpreter:
    with quiet():
        program = torch.export.export(module.eval(), (torch.zeros(shape),)).run_decompositions(_decompositions())
        model = ct.convert(program, convert_to="mlprogram", inputs=[ct.TensorType(name="x", shape=shape, dtype=np.float32)],
                           minimum_deployment_target=ct.target.iOS17, compute_precision=precision)
        model.save(str(tmp_path / f"{name}.mlpackage"))
    _serialize_deterministically(tmp_path / f"{name}.mlpackage")
    return MilInterpreter(tmp_path / f"{name}.mlpackage")


class _Grid(nn.Module):  # theta from the input, the grid itself as the output: the decomposed affine_grid alone
    def __init__(self, size, align_corners):
        super().__init__()
        self.size, self.align_corners = size, align_corners

    def forward(self, x):
        return F.affine_grid(x.view(-1, 2, 3), self.size, align_corners=self.align_corners)


@pytest.mark.parametrize("align_corners", [False, True])
def test_decomposed_affine_grid_runs_in_the_interpreter_as_torch_computes_it(align_corners, tmp_path):
    size = [2, 3, 5, 7]
    theta = torch.tensor([[0.9, -0.2, 0.1, 0.15, 1.1, -0.05], [1.3, 0.3, -0.4, -0.1, 0.7, 0.5]])
    interp = _convert_exported(_Grid(size, align_corners), (2, 6), tmp_path, ct.precision.FLOAT32)
    assert "affine" not in interp.op_histogram()
    np.testing.assert_allclose(interp.run({"x": theta.numpy()}), F.affine_grid(theta.view(-1, 2, 3), size,
                                                                                align_corners=align_corners).numpy(),
                               rtol=1e-6, atol=1e-6)


class _Warp(nn.Module):  # affine_grid + grid_sample on the input, theta computed from it, as a spatial transformer
    def __init__(self, padding, align_corners):
        super().__init__()
        self.padding, self.align_corners = padding, align_corners
        self.theta = nn.Linear(2 * 7 * 9, 6)
        with torch.no_grad():
            self.theta.weight.mul_(0.5)
            self.theta.bias.copy_(torch.tensor([1.3, 0.2, 0.3, -0.1, 1.2, -0.4]))  # samples well outside the image

    def forward(self, x):
        theta = self.theta(x.view(x.size(0), -1)).view(-1, 2, 3)
        grid = F.affine_grid(theta, [x.size(0), x.size(1), 5, 6], align_corners=self.align_corners)
        return F.grid_sample(x, grid, padding_mode=self.padding, align_corners=self.align_corners)


@pytest.mark.parametrize("padding, mil_padding", [("zeros", "constant"), ("border", "border"), ("reflection", None)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_every_grid_sample_padding_mode_converts_to_resample_and_runs_as_torch(padding, mil_padding, align_corners,
                                                                               tmp_path):
    torch.manual_seed(0)
    module = _Warp(padding, align_corners).eval()
    x = torch.randn(1, 2, 7, 9)
    with torch.no_grad():
        want = module(x).numpy()
    interp = _convert_exported(module, (1, 2, 7, 9), tmp_path, ct.precision.FLOAT32)
    # coremltools: reflection about the edge pixels' centres (align_corners) is MIL reflection, about their edges symmetric
    expected = mil_padding or ("reflection" if align_corners else "symmetric")
    assert [op.padding_mode.val for op in interp.ops if op.op_type == "resample"] == [expected]
    np.testing.assert_allclose(interp.run({"x": x.numpy()}), want, rtol=1e-5, atol=1e-5)


def test_fp16_selector_keeps_grid_sampling_fp32_and_changes_nothing_else(tmp_path):
    torch.manual_seed(0)
    interp = _convert_exported(TinyStn(), SHAPE, tmp_path, ct.transform.FP16ComputePrecision(op_selector=_NotGridSampling()))
    by_type = {}
    for op in interp.ops:
        if op.op_type not in ("const", "cast"):
            by_type.setdefault(op.op_type, set()).add(dtype_name(op.outputs[0]))
    # the localisation net and grid feed the sampling coordinates: FP32; the task net after the resample: FP16
    assert by_type["resample"] == {"fp32"} and by_type["reduce_sum"] == {"fp32"} and by_type["linear"] == {"fp32", "fp16"}
    assert by_type["conv"] == {"fp32", "fp16"}
    # without grid sampling the selector is ct.precision.FLOAT16, byte for byte
    plain = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 18 * 30, 3))
    torch.manual_seed(0)
    a = _convert_exported(plain, SHAPE, tmp_path, ct.precision.FLOAT16, "a")
    b = _convert_exported(plain, SHAPE, tmp_path, ct.transform.FP16ComputePrecision(op_selector=_NotGridSampling()), "b")
    spec = Path("Data") / "com.apple.CoreML" / "model.mlmodel"
    assert (a.package / spec).read_bytes() == (b.package / spec).read_bytes()


def test_decomposed_quantizer_hooks_quantize_as_torchs_quantized_tensors():
    """The torch.export path's activation quantizers (quantized_decomposed ops) give the TorchScript path's values."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 2, 3, 2, 1)).eval()
    ranges = {"0": (-1.0, 1.0), "2": (0.0, 1.7)}
    x = torch.randn(2, 1, 12, 16)
    outs = []
    for decomposed in (False, True):
        hooks = _quantizer_hooks(net, ranges, decomposed=decomposed)
        with torch.no_grad():
            outs.append(net(x))
        for h in hooks:
            h.remove()
    with torch.no_grad():
        plain = net(x)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.equal(outs[0], plain)
