"""export_onnx: an operator the TorchScript exporter refuses becomes one line naming the op, the module that calls it
and the fix."""

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
