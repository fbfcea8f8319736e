"""export_onnx: an operator the TorchScript exporter refuses becomes one line naming the op, the module that calls it
and the fix; affine_grid, which ONNX has only from opset 20, exports at older opsets."""

from __future__ import annotations

import pytest
from torch import nn

from edgekit.artifact import Artifact, Format
from edgekit.backends.onnx.export import ExportOnnx
from edgekit.errors import BadInputError
from edgekit.models.card import InputSpec, ModelCard, OutputSpec
from edgekit.torch_module import save_module


class UnevenPool(nn.Module):
    """Pools a 9x15 map to 2x3: neither size divides, which the exporter cannot write as a fixed-kernel pool."""

    def __init__(self, pooled: list = [2, 3]):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(tuple(pooled)), nn.Flatten())
        self.fc = nn.Linear(4 * pooled[0] * pooled[1], 3)

    def forward(self, x):
        return self.fc(self.features(x))


class Ctx:
    def __init__(self, card):
        self.card = card


@pytest.mark.parametrize("pooled, fails", [([2, 3], True), ([3, 5], False)])
def test_adaptive_pool_with_an_uneven_output_names_module_and_fix(tmp_path, pooled, fails):
    card = ModelCard(name="u", arch=f"{__name__}:UnevenPool", arch_config={"pooled": pooled},
                     inputs=[InputSpec(shape=[1, 1, 36, 60])], output=OutputSpec(shape=[1, 3]))
    folder = save_module(UnevenPool(pooled).eval(), tmp_path / "module", card.arch, card.arch_config, [])
    src = Artifact.create(folder, Format.torch, None)
    if not fails:
        assert ExportOnnx().run(src, Ctx(card), tmp_path / "out").path.is_file()
        return
    with pytest.raises(BadInputError, match=r"^export_onnx: operator adaptive_avg_pool2d \(in module features.2\) cannot be "
                                            r"exported: output size that are not factor of input size; fix: give "
                                            r"AdaptiveAvgPool2d an output size that divides its input size"):
        ExportOnnx().run(src, Ctx(card), tmp_path / "out")


class Warp(nn.Module):
    """A spatial transformer's sampling: a batch-sized affine grid (x.shape[0]) and grid_sample."""

    def __init__(self, align_corners: bool = False, padding: str = "border"):
        super().__init__()
        self.align_corners, self.padding = align_corners, padding
        self.theta = nn.Linear(36 * 60, 6)

    def forward(self, x):
        theta = self.theta(x.flatten(1)).view(-1, 2, 3)
        grid = nn.functional.affine_grid(theta, [x.shape[0], 1, 36, 60], align_corners=self.align_corners)
        return nn.functional.grid_sample(x, grid, padding_mode=self.padding, align_corners=self.align_corners)


@pytest.mark.parametrize("align_corners, padding", [(False, "border"), (True, "zeros")])
def test_affine_grid_exports_below_opset_20_and_matches_torch(tmp_path, align_corners, padding):
    import numpy as np
    import onnxruntime as ort
    import torch

    from edgekit.backends.onnx.export import _export

    torch.manual_seed(0)
    model = Warp(align_corners, padding).eval()
    with torch.no_grad():
        model.theta.weight.mul_(0.01)
        model.theta.bias.copy_(torch.tensor([0.9, 0.1, 0.05, -0.1, 1.1, 0.0]))
    x = torch.randn(3, 1, 36, 60)
    _export(model, (x[:1],), tmp_path / "w.onnx", 17, ["image"], "out", {"image": {0: "b"}, "out": {0: "b"}})
    got = ort.InferenceSession(str(tmp_path / "w.onnx")).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(got - want).max() < 1e-4  # float32 MatMul vs torch's own grid: last-bit differences


class Folding(nn.Module):
    """nn.Fold (aten::col2im): ONNX has Col2Im from opset 18."""

    def __init__(self):
        super().__init__()
        self.fold = nn.Fold((6, 6), 2, stride=2)

    def forward(self, x):
        return self.fold(x.flatten(2)).flatten(1)[:, :3]


def test_an_op_of_a_later_opset_names_the_first_opset_that_exports_it(tmp_path):
    card = ModelCard(name="f", arch=f"{__name__}:Folding", inputs=[InputSpec(shape=[1, 4, 3, 3])], output=OutputSpec(shape=[1, 3]))
    folder = save_module(Folding().eval(), tmp_path / "module", card.arch, {}, [])
    with pytest.raises(BadInputError, match=r"^export_onnx: operator aten::col2im \(in module fold\) is not supported by the "
                                            r"ONNX exporter at opset 17; fix: set `export_onnx: \{opset: 18\}`"):
        ExportOnnx().run(Artifact.create(folder, Format.torch, None), Ctx(card), tmp_path / "out")


def test_fp16_keeps_grid_sampling_and_its_coordinates_in_float32(tmp_path):
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from edgekit.backends.onnx.export import OnnxFp16, _export

    torch.manual_seed(0)
    warp = Warp().eval()
    with torch.no_grad():
        warp.theta.weight.mul_(0.01)
        warp.theta.bias.copy_(torch.tensor([0.9, 0.1, 0.05, -0.1, 1.1, 0.0]))
    model = nn.Sequential(warp, nn.Conv2d(1, 2, 3)).eval()  # as in a spatial transformer, a float16 conv reads the samples
    _export(model, (torch.zeros(1, 1, 36, 60),), tmp_path / "w.onnx", 17, ["image"], "out", {"image": {0: "b"}, "out": {0: "b"}})
    art = OnnxFp16().run(Artifact.create(tmp_path / "w.onnx", Format.onnx, None), None, tmp_path / "fp16")
    graph = onnx.load(str(art.path)).graph
    assert any(n.startswith("kept float32: grid sampling") for n in art.meta.notes)
    weights = {i.name: i.data_type for i in graph.initializer}
    assert weights["0.theta.weight"] == weights["1.weight"] == onnx.TensorProto.FLOAT16  # the rest is float16
    x = torch.randn(2, 1, 36, 60)
    got = ort.InferenceSession(str(art.path)).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        assert got.dtype == np.float32 and np.abs(got - model(x).numpy()).max() < 0.05
