"""executorch-int8 on the model shapes that broke it while the zoo matrix was built: a module called twice, a plan
that keeps a layer float, and a MAC op XNNPACK cannot run in INT8 (exit 2 naming the module)."""

import json

import pytest
import torch

from edgekit.cli import run
from edgekit.models.io import save_weights

SMALL_INT8 = ("name: executorch-int8-small\nbackend: executorch\ncalibration: synthetic-512\npasses:\n  - fold_bn\n"
              "  - to_executorch:\n      precision: int8\n      mixed_precision: false\n      sensitivity_samples: 32\n{extra}"
              "gates:\n  max_error_increase_deg: 30\nverify:\n  eval_images: 64\n  latency_runs: 5\n  warmup_runs: 1\n"
              "  threads: 1\n")


def _compile(tmp_path, arch: str, extra: str = "") -> tuple[int, dict | None]:
    from tests.backends.executorch import models

    torch.manual_seed(0)
    weights = save_weights(getattr(models, arch)(), tmp_path / f"{arch}.safetensors")
    recipe = tmp_path / "int8.yaml"
    recipe.write_text(SMALL_INT8.format(extra=extra))
    out = tmp_path / "out"
    code = run(["compile", str(weights), "--arch", f"tests.backends.executorch.models:{arch}", "--input-shape",
                "1x1x40x64", "-t", str(recipe), "--out", str(out), "--no-cache", "-q"])
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
    code, report = _compile(tmp_path, "SharedTowerGaze", extra="      keep_float: [head]\n      min_int8_mac_fraction: 0.5\n")
    assert code == 0, report
    assert [f["name"] for f in report["quantization"]["float_layers"]] == ["head"]
    float_macs = [f for f in report["runtime"]["float_ops"] if f["macs"]]
    assert [f["op"] for f in float_macs] == ["FullyConnected"] and float_macs[0]["macs"] == 2 * 8 * 10 * 8 * 3
    assert 0.5 < report["runtime"]["int8_mac_fraction_measured"] < 1.0


@pytest.mark.slow
def test_a_mac_op_xnnpack_runs_only_in_float_exits_2_naming_its_module(tmp_path, capsys):
    code, report = _compile(tmp_path, "DepthwiseMatmulNet")
    err = capsys.readouterr().err.strip()
    assert code == 2 and report is None, err
    assert len(err.splitlines()) == 1 and "module gram" in err and "fix:" in err
