"""`edgekit energy` takes the shared options: -t repeatable and comma-separated, --out a folder, -q, --format json."""

import json

import pytest

from edgekit.cli import run


@pytest.mark.slow  # compiles onnx and onnx-fp16
def test_energy_takes_the_shared_options_and_marks_fp16_run_in_fp32(tmp_path, capsys):
    out = tmp_path / "energy"
    assert run(["energy", "-t", "onnx", "--target", "onnx-fp16", "--out", str(out), "-q", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # -q: results only
    doc = json.loads(captured.out)
    assert sorted(p.name for p in out.iterdir()) == ["onnx", "onnx-fp16"] and doc["out"] == str(out)
    assert {r["scope"] for r in doc["rows"]} == {"whole network"}
    fp16 = [r for r in doc["rows"] if r["target"] == "onnx-fp16" and r["profile"] == "horowitz-45nm"]
    assert fp16 and all(r["ratio_to_first"] == "not a saving on this device" for r in fp16)  # onnxruntime's CPU runs FP32
    assert all("FP32" in r["on_this_device"] for r in fp16)
    assert run(["energy", "--targets", "onnx,onnx-fp16", "--out", str(out)]) == 0  # the deprecated alias, human table
    human = capsys.readouterr()
    assert "whole network" in human.out and "not a saving on this device" in human.out and "3.1x less" not in human.out
    assert "onnx-fp16" in human.err  # a step line per target without -q


def test_energy_refuses_a_target_named_twice(tmp_path, capsys):
    assert run(["energy", "-t", "sample", "-t", "onnx", "--out", str(tmp_path / "e")]) == 2
    assert "name each target once" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
