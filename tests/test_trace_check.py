"""edgekit/trace_check.py and verification at the artifact's batch size: a model that branches on a tensor's value is
refused in one line naming the module and the line; values frozen by tracing become report notes; the reference runs
at the batch the artifact ran at."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

import edgekit
from edgekit.cli import run
from edgekit.data.synthetic import standard_set
from edgekit.errors import BadInputError
from edgekit.models.io import save_weights
from edgekit.trace_check import check_no_data_dependent_branches
from tests.fixtures import gaze_models
from tests.fixtures.gaze_models import BranchOnMeanGaze, FlattenByViewGaze, MaxScaledGaze, TorchInternalsGaze

ARGS = (torch.zeros(1, 1, 40, 64),)


def _line_of(cls, text: str) -> int:
    source, start = inspect.getsourcelines(cls.forward)
    return start + next(i for i, line in enumerate(source) if text in line)


def test_a_branch_on_a_value_is_refused_naming_the_submodule_and_line():
    line = _line_of(gaze_models.MeanGate, "if x.mean() > 0")
    with pytest.raises(BadInputError, match=rf"^m.pt: module gate \(MeanGate\) branches on a tensor's value at "
                                            rf".*gaze_models.py:{line}; .*fix: compute both sides and select with torch.where"):
        check_no_data_dependent_branches(BranchOnMeanGaze().eval(), ARGS, "m.pt")


def test_a_frozen_value_is_a_note_and_shape_arithmetic_is_nothing():
    notes = check_no_data_dependent_branches(MaxScaledGaze().eval(), ARGS, "m.pt")
    line = _line_of(MaxScaledGaze, "float(y.abs().max())")
    assert len(notes) == 1 and f"gaze_models.py:{line}" in notes[0] and "(top level) (MaxScaledGaze)" in notes[0]
    assert check_no_data_dependent_branches(FlattenByViewGaze().eval(), ARGS, "m.pt") == []


def test_torchs_own_size_checks_are_not_the_models_branches():
    """nn.LSTM and F.affine_grid convert sizes to Python values inside torch: not a branch of the model (the shipped
    temporalgaze and spatial-transformer models compile)."""
    assert check_no_data_dependent_branches(TorchInternalsGaze().eval(), ARGS, "m.pt") == []


def test_compile_exits_2_before_any_pass(tmp_path, capsys):
    weights = save_weights(BranchOnMeanGaze(), tmp_path / "branchy.safetensors")
    code = run(["compile", str(weights), "--arch", "tests.fixtures.gaze_models:BranchOnMeanGaze", "--input-shape",
                "1x1x40x64", "--target", "onnx", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "module gate (MeanGate) branches on a tensor's value" in err[0]
    assert not (tmp_path / "out").exists()


def _null_recipe(folder, batch: int):
    body = {"name": f"null-b{batch}", "backend": "null", "passes": ["identity"],
            "verify": {"eval_images": 12, "latency_runs": 2, "warmup_runs": 0, "threads": 1, "batch": batch}}
    path = folder / f"b{batch}.yaml"
    path.write_text(json.dumps(body))
    return str(path)


@pytest.mark.parametrize("batch", [1, 5])
def test_reference_and_artifact_run_at_the_recipes_batch(tmp_path, batch):
    res = edgekit.compile(None, _null_recipe(tmp_path, batch), eval=standard_set("eval", 12), out=tmp_path / "o",
                          cache=False)
    assert res.report.accuracy.how.endswith(f"both at batch {batch}")
    assert res.report.accuracy.diff_from_reference.max_deg == 0.0  # the identity artifact, fed exactly like the reference
