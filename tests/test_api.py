"""The Python API as users call it: edgekit.compile on a module, a program, arrays; the README's example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import edgekit
from edgekit.data.gaze import vector_to_pitchyaw
from edgekit.errors import BadInputError

ROOT = Path(__file__).resolve().parent.parent


def _readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _readme_python_example()], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                            "EDGEKIT_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CompileResult(target='onnx', passed=True" in proc.stdout
    assert (tmp_path / "build/eyenet/model.onnx").is_file() and (tmp_path / "build/eyenet/report.html").is_file()


def test_readme_is_short_with_a_target_table_and_an_install_path():
    """The README is the front page (the reference lives in docs/, linked under `## More`): under 150 lines, with the
    table of which target serves which device and a pip install line for one's own project."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; move reference material to docs/"
    assert "| target | device | runtime | verified here by |" in lines
    assert any(line.startswith("pip install ") for line in lines)


def test_public_api_is_listed_and_documented():
    assert "compile" in edgekit.__all__ and "CompileResult" in edgekit.__all__
    for name in edgekit.__all__:
        value = getattr(edgekit, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"edgekit.{name} has no docstring"


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        return torch.nn.functional.normalize(self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3))), dim=1)


@pytest.fixture(scope="module")
def sets():
    return edgekit.synthetic_set(64, seed=901, size=(40, 64)), edgekit.synthetic_set(64, seed=902, size=(40, 64))


def test_module_with_arrays_is_verified_and_left_unchanged(tmp_path, sets):
    calib, test = sets
    torch.manual_seed(0)
    net = _Net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = edgekit.compile(net, target="onnx-int8", input_shape=(1, 1, 40, 64), calib=calib.images,
                             eval={"images": test.images, "pitchyaw": vector_to_pitchyaw(test.gaze)}, out=tmp_path / "o")
    assert isinstance(result, edgekit.CompileResult)
    assert result.artifact == tmp_path / "o" / "model.onnx" and result.sidecar.is_file()
    assert result.report.model.kind == "module" and result.report.accuracy.artifact.n == 64
    assert result.report.quantization is not None and result.report.quantization.int8_mac_fraction > 0
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the caller's object


def test_exported_program_and_tuple_data(tmp_path, sets):
    _, test = sets
    program = torch.export.export(_Net().eval(), (torch.zeros(1, 1, 40, 64),))
    result = edgekit.compile(program, target="onnx", eval=(test.images, test.gaze), out=tmp_path / "o")
    assert result.passed and result.max_diff_deg < 0.01
    assert result.report.model.kind == "exported_program"
    assert result.report.model.inputs[0].shape == [1, 1, 40, 64]  # read from the program


def test_bad_data_and_missing_shape_are_one_line(tmp_path, sets):
    _, test = sets
    with pytest.raises(BadInputError, match="without labels"):
        edgekit.compile("tinygaze", target="onnx", eval=test.images, out=tmp_path / "a")
    with pytest.raises(BadInputError, match="needs input_shape="):
        edgekit.compile(_Net(), target="onnx", out=tmp_path / "b")
    with pytest.raises(BadInputError, match="evaluation arrays"):
        edgekit.compile("tinygaze", target="onnx", eval={"images": test.images.astype(np.float32), "gaze": test.gaze},
                        out=tmp_path / "c")
    assert not any(tmp_path.iterdir())  # nothing half-written
