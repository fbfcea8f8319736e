"""output_layers (to_tflite, to_executorch): a layer whose output is the model's output stays float, so the output is
neither rounded to 8 bits nor clipped at its calibrated range; LiteRT runs the artifact (a head regressing a vector
straight to the output, as the zoo's MPIIGaze and Gaze360 models do)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.backends.tflite.runner import LiteRTRunner
from edgekit.cli import run
from edgekit.models.io import save_weights

RECIPE = {"name": "tflite-int8-small", "backend": "tflite", "calibration": "synthetic-512",
          "passes": ["fold_bn", {"to_tflite": {"precision": "int8", "io": "float", "mixed_precision": False,
                                               "sensitivity_samples": 16}}],
          "gates": {"max_error_increase_deg": 30},
          "verify": {"eval_images": 32, "latency_runs": 5, "warmup_runs": 1, "threads": 1}}


class Regressor(nn.Module):
    """conv -> ReLU -> pool -> Linear, the Linear's output returned as it is."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 8, 3, 2, 1), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.slow
def test_a_head_writing_the_output_runs_float_in_litert(tmp_path):
    torch.manual_seed(0)
    weights = save_weights(Regressor(), tmp_path / "regressor.safetensors")
    recipe = tmp_path / "int8.json"
    recipe.write_text(json.dumps(RECIPE))
    out = tmp_path / "out"
    code = run(["compile", str(weights), "--arch", "tests.backends.tflite.test_output_layers:Regressor",
                "--input-shape", "1x1x40x64", "-t", str(recipe), "--out", str(out), "--no-cache", "-q"])
    report = json.loads((out / "report.json").read_text())
    assert code == 0, report["gates"]
    assert [(f["name"], f["reason"].endswith("(output_layers)")) for f in report["quantization"]["float_layers"]] == [
        ("head", True)]
    float_macs = [f for f in report["runtime"]["float_ops"] if f["macs"]]
    assert [(f["op"], f["macs"]) for f in float_macs] == [("FULLY_CONNECTED", 8 * 3)]
    # an INT8 output takes at most 256 values; this one as many as there are inputs
    x = np.random.default_rng(0).uniform(-1, 1, (400, 1, 1, 40, 64)).astype(np.float32)
    runner = LiteRTRunner(out / "model.tflite")
    first = np.array([runner.run({"image": xi})[0, 0] for xi in x])
    assert len(np.unique(first)) > 300
